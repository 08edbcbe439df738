//! The real viewer (`--headless`) and the real agent (`--tty`, capturing a
//! real Xvfb screen) through the real relay: statistics, the viewer's audit
//! log and session note, and how the session ends when the viewer goes.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assent_tests::{bin, eventually, lines, wait_line, Proc, TestRelay};
use assent_xvfb::Xvfb;

use crate::common::WAIT;

pub(crate) struct Session {
    pub(crate) _xvfb: Xvfb,
    pub(crate) relay: TestRelay,
    pub(crate) home: tempfile::TempDir,
    pub(crate) viewer: Proc,
    pub(crate) viewer_stdin: Option<std::process::ChildStdin>,
    pub(crate) viewer_out: mpsc::Receiver<String>,
    pub(crate) agent: Proc,
    pub(crate) agent_stdin: std::process::ChildStdin,
    /// The agent's stderr lines (also kept in `home/agent.log`).
    pub(crate) agent_err: mpsc::Receiver<String>,
    pub(crate) code: String,
}

/// Viewer and agent processes in a live view-only session.
fn live_session() -> Session {
    live_session_logging("info")
}

/// [`live_session`] with both processes logging at `log` (RUST_LOG), the
/// viewer's stderr in `home/viewer.log` and the agent's in `home/agent.log`.
pub(crate) fn live_session_logging(log: &str) -> Session {
    let xvfb = Xvfb::start_with_size(640, 480);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let HeadlessViewer {
        viewer,
        stdin: viewer_stdin,
        out: viewer_out,
        code,
    } = spawn_headless_viewer(&relay, home.path(), "view", log);

    let mut agent_child = Command::new(bin("assent-agent"))
        .args([
            "join",
            "--relay",
            &relay.addr,
            "--ca",
            relay.ca().to_str().unwrap(),
            "--tty",
            &code,
        ])
        .env("DISPLAY", xvfb.display())
        .env("XDG_CONFIG_HOME", home.path().join("agent-config"))
        .env("RUST_LOG", log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Every line the agent writes is kept in agent.log (secret-grep tests
    // read it) and passed on for the waits below.
    let agent_raw = lines(agent_child.stderr.take().unwrap());
    let (agent_tx, agent_err) = mpsc::channel();
    let mut agent_log = std::fs::File::create(home.path().join("agent.log")).unwrap();
    std::thread::spawn(move || {
        for line in agent_raw {
            let _ = writeln!(agent_log, "{line}");
            let _ = agent_tx.send(line);
        }
    });
    wait_line(
        &agent_err,
        |l| l.contains("v = allow view"),
        "consent prompt",
    );
    let mut agent_stdin = agent_child.stdin.take().unwrap();
    agent_stdin.write_all(b"v\n").unwrap();
    Session {
        _xvfb: xvfb,
        relay,
        home,
        viewer,
        viewer_stdin,
        viewer_out,
        agent: Proc::new(agent_child),
        agent_stdin,
        agent_err,
        code,
    }
}

/// A headless viewer process of a freshly enrolled technician (key in
/// `home/tech.key`, logs in `home/viewer.log`), once it has printed its code.
pub(crate) struct HeadlessViewer {
    pub(crate) viewer: Proc,
    pub(crate) stdin: Option<std::process::ChildStdin>,
    pub(crate) out: mpsc::Receiver<String>,
    pub(crate) code: String,
}

pub(crate) fn spawn_headless_viewer(
    relay: &TestRelay,
    home: &std::path::Path,
    scope: &str,
    log: &str,
) -> HeadlessViewer {
    let key_path = home.join("tech.key");
    relay.enrol_keyfile("alice", &key_path);
    let mut child = Command::new(bin("assent-viewer"))
        .args(["connect", "--relay", &relay.addr, "--ca"])
        .arg(relay.ca())
        .args(["--ticket", "T-3003", "--key", key_path.to_str().unwrap()])
        .args([
            "--client",
            "Acme Ltd",
            "--summary",
            "VPN drops",
            "--impact",
            "high",
        ])
        .args(["--scope", scope, "--headless"])
        // A complete note, as a script files it.
        .args(["--result", "resolved", "--tick", "all"])
        .args(["--actions-taken", "Reset the VPN profile"])
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("RUST_LOG", log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(home.join("viewer.log")).unwrap())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let out = lines(child.stdout.take().unwrap());
    let viewer = Proc::new(child);
    let code_line = wait_line(&out, |l| l.starts_with("Invite code: "), "invite code line");
    let code = code_line.trim_start_matches("Invite code: ").to_string();
    assert!(
        code.split('-')
            .all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit())),
        "{code}"
    );
    HeadlessViewer {
        viewer,
        stdin,
        out,
        code,
    }
}

#[test]
fn headless_viewer_stats_audit_note_and_close_ends_everywhere() {
    let mut s = live_session();
    // Statistics, one JSON object a line each second, with frames flowing.
    let stats = wait_line(
        &s.viewer_out,
        |l| l.starts_with('{') && !l.contains("\"frames\":0"),
        "stats with frames",
    );
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    for k in ["frames", "fps", "bytes", "kbps", "decode_ms", "latency_ms"] {
        assert!(v.get(k).is_some(), "stats lack {k}: {stats}");
    }
    assert!(v["frames"].as_u64().unwrap() >= 1);
    assert!(v["bytes"].as_u64().unwrap() > 0);

    // stdin EOF = closing the window: viewer_closed at the relay, and the
    // user told soon after (3 s: the bound for a vanished viewer, with room
    // for a loaded CI machine) that nothing is shared any more, then asked
    // whether the problem was solved.
    let closed = Instant::now();
    drop(s.viewer_stdin.take());
    let end = s
        .relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    assert_eq!(end["reason"], "viewer_closed");
    let headline = wait_line(
        &s.agent_err,
        |l| l.contains("can no longer see or control this computer"),
        "the end, told to the user",
    );
    assert!(headline.contains("UTC: alice"), "{headline}");
    wait_line(
        &s.agent_err,
        |l| l.contains("Was your problem solved?"),
        "question",
    );
    let took = closed.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the user was told {took:?} after the close"
    );
    let confirmed = answer_the_end(&mut s, "y", "yes");
    assert_eq!(confirmed["session"], end["session"]);
    let update = s
        .relay
        .wait_record(WAIT, |r| r["event"] == "session_note_update")
        .expect("the answer is added to the note filed before it");
    assert_eq!(update["user_confirmation"], "yes");
    assert!(s
        .viewer
        .wait_timeout(Duration::from_secs(5))
        .map(|st| st.success())
        .unwrap_or(false));

    // The viewer's own audit log verifies and tells the story, without the code.
    let audit = s.home.path().join("data/assent/audit.jsonl");
    let n = assent_audit::verify(&audit).expect("viewer audit verifies");
    let text = std::fs::read_to_string(&audit).unwrap();
    for event in [
        "connect",
        "invite_created",
        "consent",
        "session_start",
        "session_end",
        "session_note",
    ] {
        assert!(
            text.contains(&format!("\"event\":\"{event}\"")),
            "no {event} in {n} records:\n{text}"
        );
    }
    let digits: String = s.code.chars().filter(char::is_ascii_digit).collect();
    assert!(
        !text.contains(&s.code) && !text.contains(&digits),
        "invite code in the viewer audit"
    );

    // The note: all 13 fields, filled where the software knows them.
    let notes: Vec<_> = std::fs::read_dir(s.home.path().join("data/assent/notes"))
        .unwrap()
        .collect();
    assert_eq!(notes.len(), 1);
    let note = std::fs::read_to_string(notes[0].as_ref().unwrap().path()).unwrap();
    for field in assent_viewer::record::NOTE_FIELDS {
        assert!(
            note.contains(&format!("**{field}:**")),
            "note lacks {field}:\n{note}"
        );
    }
    assert!(note.contains("**Client:** Acme Ltd"), "{note}");
    assert!(note.contains("**Technician:** alice"), "{note}");
    assert!(note.contains("**Consent Confirmed:** Yes (view"), "{note}");
    assert!(note.contains("**Session Ended:** Yes"), "{note}");
    assert!(note.contains("**Business Impact:** High"), "{note}");
    // ...and the relay has it on record.
    let rec = s
        .relay
        .wait_record(WAIT, |r| r["event"] == "session_note")
        .expect("relay session_note");
    assert_eq!(rec["client"], "Acme Ltd");
    assert_eq!(rec["technician"], "alice");
}

#[test]
fn headless_viewer_asks_for_control_and_the_user_answers_at_the_terminal() {
    let mut s = live_session();
    wait_line(&s.viewer_out, |l| l.starts_with('{'), "stats");
    let stdin = s.viewer_stdin.as_mut().unwrap();
    stdin.write_all(b"control\n").unwrap();
    stdin.flush().unwrap();
    let agent_log = s.home.path().join("agent.log");
    assert!(
        file_contains_within(&agent_log, "keep view only", WAIT),
        "the user was not asked"
    );
    s.agent_stdin.write_all(b"c\n").unwrap();
    let change = s
        .relay
        .wait_record(WAIT, |r| r["event"] == "scope_changed")
        .expect("scope change recorded by the relay");
    assert_eq!(change["scope"], "control");
    // The viewer learned it too and wrote it in its own audit.
    let viewer_audit = s.home.path().join("data/assent/audit.jsonl");
    assert!(
        file_contains_within(&viewer_audit, "scope_changed", WAIT),
        "not in the viewer's audit"
    );
}

/// Whether the file at `path` holds `needle` within `limit`.
pub(crate) fn file_contains_within(path: &std::path::Path, needle: &str, limit: Duration) -> bool {
    eventually(limit, || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.contains(needle).then_some(())
    })
    .is_some()
}

#[test]
fn killed_viewer_is_noticed_and_the_agent_stops() {
    let mut s = live_session();
    wait_line(&s.viewer_out, |l| l.starts_with('{'), "stats");
    let killed = Instant::now();
    s.viewer.signal(libc::SIGKILL);
    let end = s
        .relay
        .wait_record(Duration::from_secs(9), |r| r["event"] == "session_end")
        .expect("session_end");
    assert_eq!(end["reason"], "viewer_lost");
    // Interrupted after a second of silence, ended after the grace (3 s).
    assert!(
        killed.elapsed() < Duration::from_secs(6),
        "noticed after {:?}",
        killed.elapsed()
    );
    // The agent stopped sharing and says so (the user is then asked
    // whether the problem was solved; their answer still goes on record).
    let told = wait_line(
        &s.agent_err,
        |l| l.contains("can no longer see or control this computer"),
        "the end, told to the user",
    );
    assert!(
        killed.elapsed() < Duration::from_secs(7),
        "the user was told after {:?}: {told}",
        killed.elapsed()
    );
    answer_the_end(&mut s, "u", "not_sure");
}

/// The user types `key` at "Was your problem solved?": the agent exits and
/// the relay records `recorded`. Returns the `user_confirmation` record.
fn answer_the_end(s: &mut Session, key: &str, recorded: &str) -> serde_json::Value {
    writeln!(s.agent_stdin, "{key}").unwrap();
    assert!(
        s.agent.wait_timeout(Duration::from_secs(5)).is_some(),
        "agent still running after the answer"
    );
    let confirmed = s
        .relay
        .wait_record(WAIT, |r| r["event"] == "user_confirmation")
        .expect("user_confirmation");
    assert_eq!(confirmed["answer"], recorded);
    confirmed
}

#[test]
fn when_the_user_ends_the_session_the_note_still_reaches_the_relay() {
    let mut s = live_session();
    wait_line(&s.viewer_out, |l| l.starts_with('{'), "stats");
    s.agent_stdin.write_all(b"e\n").unwrap();
    let end = s
        .relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    assert_eq!(end["reason"], "agent_ended");
    wait_line(
        &s.agent_err,
        |l| l.contains("Was your problem solved?"),
        "question",
    );
    s.agent_stdin.write_all(b"n\n").unwrap();
    assert!(s.agent.wait_timeout(Duration::from_secs(5)).is_some());
    // The headless viewer sends its note after the end; the relay took it.
    let note = s
        .relay
        .wait_record(WAIT, |r| r["event"] == "session_note")
        .unwrap_or_else(|| {
            panic!(
                "no session_note after agent_ended; viewer log:\n{}\nrelay log:\n{}",
                std::fs::read_to_string(s.home.path().join("viewer.log")).unwrap_or_default(),
                s.relay.log_text()
            )
        });
    assert_eq!(note["session"], end["session"]);
    assert!(note["session_ended"]
        .as_str()
        .unwrap_or("")
        .starts_with("Yes"));
    assert!(s
        .viewer
        .wait_timeout(Duration::from_secs(5))
        .map(|st| st.success())
        .unwrap_or(false));
    assert!(assent_audit::verify(&s.relay.audit_path()).is_ok());
}
