//! Requests that end before the user's answer (issues 21 and 22): the
//! technician withdraws (window closed, SIGTERM, stdin EOF, process killed,
//! before or after the agent joined), an admin kills it, the technician is
//! revoked, the relay shuts down. Each time the user's real prompt turns
//! into what happened within a second, a key pressed afterwards starts
//! nothing, the agent exits, and the audit says why with no `consent` or
//! `session_start`. Real processes throughout; windows under Xvfb.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use assent_tests::{bin, eventually, lines, run, wait_line, Proc, TestRelay};
use assent_xvfb::Xvfb;

use crate::common::WAIT;

const PROMPT: &str = "Assent — support request";
const CLOSED: &str = "Assent — request closed";
/// The bound for the prompt to change once the request ended.
const PROMPT_GONE_WITHIN: Duration = Duration::from_secs(1);

struct ViewerProc {
    proc: Proc,
    stdin: Option<ChildStdin>,
    log: PathBuf,
    code: String,
}

/// `assent-viewer connect` for ticket `ticket`: in a window on `display`,
/// or `--headless` (stdin piped, so the test decides when it ends).
fn spawn_viewer(relay: &TestRelay, home: &Path, ticket: &str, display: Option<&str>) -> ViewerProc {
    let key = home.join("tech.key");
    if !key.exists() {
        relay.enrol_keyfile("alice", &key);
    }
    let log = home.join(format!("viewer-{ticket}.log"));
    let mut cmd = Command::new(bin("assent-viewer"));
    cmd.args(["connect", "--relay", &relay.addr, "--ca"])
        .arg(relay.ca())
        .args(["--ticket", ticket, "--scope", "control"])
        .args(["--identity-check", "in-person", "--key"])
        .arg(&key)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(&log).unwrap());
    match display {
        Some(d) => cmd.env("DISPLAY", d),
        None => cmd.arg("--headless").env_remove("DISPLAY"),
    };
    let mut child = cmd.spawn().expect("spawn assent-viewer");
    let out = lines(child.stdout.take().unwrap());
    let stdin = child.stdin.take();
    let code = wait_line(&out, |l| l.starts_with("Invite code: "), "invite code")
        .trim_start_matches("Invite code: ")
        .to_string();
    std::thread::spawn(move || for _ in out {});
    ViewerProc {
        proc: Proc::new(child),
        stdin,
        log,
        code,
    }
}

impl ViewerProc {
    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

struct AgentProc {
    proc: Proc,
    stdin: Option<ChildStdin>,
    /// `--tty`: its stderr lines (the prompt and what replaced it).
    lines: Option<Receiver<String>>,
    log: PathBuf,
}

/// `assent-agent join` with the real window on `display`, or `--tty`.
fn spawn_agent(relay: &TestRelay, home: &Path, code: &str, display: Option<&Xvfb>) -> AgentProc {
    let log = home.join("agent.log");
    let mut cmd = Command::new(bin("assent-agent"));
    cmd.args(["join", "--relay", &relay.addr, "--ca"])
        .arg(relay.ca())
        .args(["--device-name", "pc-pending"])
        .env("XDG_CONFIG_HOME", home.join("agent"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    match display {
        Some(x) => cmd
            .env("DISPLAY", x.display())
            .stderr(File::create(&log).unwrap()),
        None => cmd.arg("--tty").stderr(Stdio::piped()),
    };
    let mut child = cmd.arg(code).spawn().expect("spawn assent-agent");
    let lines = child.stderr.take().map(lines);
    AgentProc {
        stdin: child.stdin.take(),
        proc: Proc::new(child),
        lines,
        log,
    }
}

impl AgentProc {
    /// Waits until the tty prompt is on the terminal.
    fn wait_tty_prompt(&self) {
        let rx = self.lines.as_ref().expect("a --tty agent");
        wait_line(rx, |l| l.contains("d or Escape = deny"), "consent prompt");
    }

    /// The first tty line matching `pred` within `limit`.
    fn tty_line_within(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let rx = self.lines.as_ref().expect("a --tty agent");
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(l) if pred(&l) => return Some(l),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    }

    /// Answers `v` on the terminal (ignored once the request is gone; the
    /// pipe may already be closed).
    fn type_v(&mut self) {
        use std::io::Write as _;
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(b"v\n");
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn xdotool(x: &Xvfb, args: &[&str]) -> String {
    let out = x.command("xdotool").args(args).output().expect("xdotool");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn find_window(x: &Xvfb, title: &str) -> Option<String> {
    xdotool(x, &["search", "--name", title])
        .lines()
        .next()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
}

fn wait_window(x: &Xvfb, title: &str) -> String {
    eventually(Duration::from_secs(30), || find_window(x, title))
        .unwrap_or_else(|| panic!("no window titled {title:?}"))
}

/// Presses `key` in `window` the way a user would (pointer over it, focus).
fn press(x: &Xvfb, window: &str, key: &str) {
    xdotool(x, &["mousemove", "--window", window, "40", "20"]);
    xdotool(x, &["windowfocus", window]);
    xdotool(x, &["key", key]);
}

fn screenshot(x: &Xvfb, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let _ = x
        .command("import")
        .args(["-window", "root"])
        .arg(dir.join(name))
        .status();
}

/// The request's `invite_closed` has `reason`, and nothing started.
fn assert_closed_without_session(relay: &TestRelay, reason: &str) {
    let closed = relay
        .wait_record(WAIT, |r| r["event"] == "invite_closed")
        .unwrap_or_else(|| panic!("no invite_closed; events {:?}", relay.events()));
    assert_eq!(closed["reason"], reason, "{closed}");
    let events = relay.events();
    assert!(
        !events
            .iter()
            .any(|e| e == "consent" || e == "session_start"),
        "a session started after the request ended: {events:?}"
    );
}

/// Waits for the real prompt window to turn into the "request closed"
/// message, measured from `since`.
fn prompt_turns_closed(x: &Xvfb, since: Instant, what: &str) -> String {
    let window = eventually(Duration::from_secs(5), || find_window(x, CLOSED))
        .unwrap_or_else(|| panic!("{what}: the prompt never turned into the closed message"));
    let took = since.elapsed();
    assert!(
        took <= PROMPT_GONE_WITHIN,
        "{what}: the prompt changed {took:?} after the request ended"
    );
    assert!(
        find_window(x, PROMPT).is_none(),
        "{what}: the prompt is still up"
    );
    window
}

#[test]
fn closing_the_waiting_window_takes_the_prompt_away() {
    let x = Xvfb::start_with_size(1280, 900);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let mut viewer = spawn_viewer(&relay, home.path(), "T-5001", Some(x.display()));
    let waiting = wait_window(&x, "Assent — waiting for the user — T-5001");
    let mut agent = spawn_agent(&relay, home.path(), &viewer.code, Some(&x));
    wait_window(&x, PROMPT);
    // The viewer window names the device once it joined: the user is asked.
    wait_window(&x, "Assent — pc-pending — T-5001");

    let closed_at = Instant::now();
    assent_tests::x11::close_window(x.display(), waiting.parse().unwrap());
    let window = prompt_turns_closed(&x, closed_at, "window closed");
    screenshot(&x, "request-withdrawn.png");
    // The user answers anyway: nothing starts.
    press(&x, &window, "v");

    let status = viewer
        .proc
        .wait_timeout(WAIT)
        .expect("viewer still running");
    assert!(
        status.success(),
        "viewer exit {status:?}: {}",
        viewer.text()
    );
    assert!(
        viewer.text().contains("Request withdrawn"),
        "{}",
        viewer.text()
    );
    assert!(
        agent.proc.wait_timeout(Duration::from_secs(10)).is_some(),
        "the agent did not exit after the withdrawal"
    );
    assert!(
        agent
            .log_text()
            .contains("alice withdrew the request (ticket T-5001)"),
        "agent said: {}",
        agent.log_text()
    );
    assert_closed_without_session(&relay, "withdrawn");
}

#[derive(Debug, Clone, Copy)]
enum Leaving {
    Sigterm,
    StdinEof,
    Sigkill,
}

#[test]
fn a_headless_viewer_leaving_takes_the_tty_prompt_away() {
    for how in [Leaving::Sigterm, Leaving::StdinEof, Leaving::Sigkill] {
        let relay = TestRelay::started(&[]);
        let home = assent_tests::tempdir();
        let mut viewer = spawn_viewer(&relay, home.path(), "T-5002", None);
        let mut agent = spawn_agent(&relay, home.path(), &viewer.code, None);
        agent.wait_tty_prompt();

        let left_at = Instant::now();
        match how {
            Leaving::Sigterm => viewer.proc.signal(libc::SIGTERM),
            Leaving::StdinEof => drop(viewer.stdin.take()),
            Leaving::Sigkill => viewer.proc.signal(libc::SIGKILL),
        }
        // A killed viewer says nothing: the relay notices within the
        // connection's liveness bound (3 s), and the user is told.
        let (bound, words, reason) = match how {
            Leaving::Sigkill => (Duration::from_secs(3), "connection was lost", "viewer_left"),
            _ => (
                PROMPT_GONE_WITHIN,
                "alice withdrew the request",
                "withdrawn",
            ),
        };
        let line = agent.tty_line_within(bound + Duration::from_secs(2), |l| l.contains(words));
        let took = left_at.elapsed();
        assert!(line.is_some(), "{how:?}: the tty prompt was not withdrawn");
        assert!(took <= bound, "{how:?}: withdrawn after {took:?}");
        agent.type_v();
        assert!(
            agent.proc.wait_timeout(WAIT).is_some(),
            "{how:?}: the agent did not exit"
        );
        let status = viewer
            .proc
            .wait_timeout(WAIT)
            .expect("viewer still running");
        if !matches!(how, Leaving::Sigkill) {
            assert!(status.success(), "{how:?}: viewer exit {status:?}");
            assert!(
                viewer.text().contains("Request withdrawn"),
                "{}",
                viewer.text()
            );
        }
        assert_closed_without_session(&relay, reason);
    }
}

#[test]
fn a_code_withdrawn_before_the_agent_joined_is_refused_as_withdrawn() {
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let mut viewer = spawn_viewer(&relay, home.path(), "T-5003", None);
    drop(viewer.stdin.take());
    let status = viewer
        .proc
        .wait_timeout(WAIT)
        .expect("viewer still running");
    assert!(status.success(), "viewer exit {status:?}");
    assert!(
        viewer.text().contains("Request withdrawn"),
        "{}",
        viewer.text()
    );
    assert_closed_without_session(&relay, "withdrawn");

    let ca = relay.ca();
    let out = run(
        "assent-agent",
        &[
            "join",
            "--relay",
            &relay.addr,
            "--ca",
            ca.to_str().unwrap(),
            "--tty",
            &viewer.code,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("withdrawn by the technician"),
        "agent said: {said}"
    );
    let refused = relay
        .wait_record(WAIT, |r| {
            r["event"] == "auth_failed" && r["role"] == "agent"
        })
        .expect("the refused code is audited");
    assert_eq!(refused["reason"], "withdrawn_code");
}

fn sessions_json(relay: &TestRelay) -> serde_json::Value {
    let out = run(
        "assent-relay",
        &["sessions", "--data-dir", relay.data_dir(), "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn sessions_lists_pending_requests_in_both_states_and_kill_ends_them() {
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let mut viewer = spawn_viewer(&relay, home.path(), "T-5004", None);
    let list = sessions_json(&relay);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["state"], "waiting for the user to join");
    assert_eq!(list[0]["ticket"], "T-5004");
    assert_eq!(list[0]["started"], "");
    assert!(list[0]["age_secs"].as_u64().is_some(), "{list}");

    let mut agent = spawn_agent(&relay, home.path(), &viewer.code, None);
    agent.wait_tty_prompt();
    let list = sessions_json(&relay);
    assert_eq!(list[0]["state"], "asking the user", "{list}");
    assert_eq!(list[0]["device"], "pc-pending");
    let table = run(
        "assent-relay",
        &["sessions", "--data-dir", relay.data_dir()],
    );
    assert!(String::from_utf8_lossy(&table.stdout).contains("asking the user"));

    let id = list[0]["id"].as_str().unwrap().to_string();
    let out = run(
        "assent-relay",
        &["kill", "--data-dir", relay.data_dir(), &id],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = agent.tty_line_within(WAIT, |l| l.contains("Nothing was shared"));
    assert!(
        line.as_deref()
            .is_some_and(|l| l.contains("An administrator cancelled")),
        "{line:?}"
    );
    agent.type_v();
    assert!(
        agent.proc.wait_timeout(WAIT).is_some(),
        "agent still running"
    );
    assert!(
        viewer.proc.wait_timeout(WAIT).is_some(),
        "viewer still running"
    );
    assert_closed_without_session(&relay, "admin_killed");
    assert_eq!(sessions_json(&relay).as_array().unwrap().len(), 0);
}

#[derive(Debug, Clone, Copy)]
enum Ender {
    AdminKill,
    Revoke,
    RelayShutdown,
}

#[test]
fn admin_kill_revoke_and_relay_shutdown_take_the_window_prompt_away() {
    let x = Xvfb::start_with_size(1024, 768);
    for ender in [Ender::AdminKill, Ender::Revoke, Ender::RelayShutdown] {
        let mut relay = TestRelay::started(&[]);
        let home = assent_tests::tempdir();
        let mut viewer = spawn_viewer(&relay, home.path(), "T-5005", None);
        let mut agent = spawn_agent(&relay, home.path(), &viewer.code, Some(&x));
        wait_window(&x, PROMPT);

        let ended_at = Instant::now();
        let (words, reason) = match ender {
            Ender::AdminKill => {
                let id = sessions_json(&relay)[0]["id"].as_str().unwrap().to_string();
                let out = run(
                    "assent-relay",
                    &["kill", "--data-dir", relay.data_dir(), &id],
                );
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                ("An administrator cancelled this request", "admin_killed")
            }
            Ender::Revoke => {
                let out = run(
                    "assent-relay",
                    &[
                        "technician",
                        "revoke",
                        "alice",
                        "--data-dir",
                        relay.data_dir(),
                    ],
                );
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                (
                    "alice is no longer allowed to connect",
                    "technician_revoked",
                )
            }
            Ender::RelayShutdown => {
                relay.proc.as_ref().unwrap().signal(libc::SIGTERM);
                ("The support service is restarting", "relay_shutdown")
            }
        };
        let what = format!("{ender:?}");
        let window = prompt_turns_closed(&x, ended_at, &what);
        screenshot(&x, &format!("request-closed-{what}.png"));
        press(&x, &window, "v");
        assert!(
            agent.proc.wait_timeout(Duration::from_secs(10)).is_some(),
            "{what}: the agent did not exit"
        );
        let said = agent.log_text();
        assert!(
            said.contains(words) && said.contains("Nothing was shared"),
            "{what}: {said}"
        );
        assert!(
            viewer.proc.wait_timeout(WAIT).is_some(),
            "{what}: viewer still running"
        );
        if matches!(ender, Ender::RelayShutdown) {
            assert!(relay.stop().is_some_and(|s| s.success()), "relay exit");
        }
        assert_closed_without_session(&relay, reason);
        assert!(
            find_window(&x, CLOSED).is_none(),
            "{what}: message still up"
        );
    }
}
