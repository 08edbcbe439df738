//! The real agent process on a real (virtual) X display: its consent window
//! driven with xdotool, screen capture checked pixel for pixel against a
//! screenshot, and input checked at a real X client (xev).

use std::future::ready;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assent_proto::session_msg::{InputEvent, MouseButton};
use assent_proto::wire::Scope;
use assent_tests::viewer::{self, LiveViewer, Pairing};
use assent_tests::{bin, eventually_every_async, Proc, TestRelay};
use assent_xvfb::Xvfb;

use crate::common::WAIT;

const W: u32 = 800;
const H: u32 = 600;

fn spawn_agent(xvfb: &Xvfb, relay: &TestRelay, config: &Path, code: &str, tty: bool) -> Proc {
    let mut cmd = Command::new(bin("assent-agent"));
    cmd.args([
        "join",
        "--relay",
        &relay.addr,
        "--ca",
        relay.ca().to_str().unwrap(),
    ]);
    if tty {
        cmd.arg("--tty");
    }
    cmd.arg(code)
        .env("DISPLAY", xvfb.display())
        .env("XDG_CONFIG_HOME", config)
        .env("RUST_LOG", "warn")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(if tty { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null());
    if tty {
        cmd.stderr(Stdio::piped());
    } else {
        cmd.stderr(std::fs::File::create(config.join("agent.log")).unwrap());
    }
    Proc::new(cmd.spawn().expect("spawn assent-agent"))
}

/// Where desktop tests leave screenshots for people to look at.
/// Where screenshots for people go; created here, because on a clean clone
/// the first test to take one may run before any other made the directory.
pub(crate) fn artifacts() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn xdotool(xvfb: &Xvfb, args: &[&str]) -> String {
    let out = xvfb
        .command("xdotool")
        .args(args)
        .output()
        .expect("xdotool");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits for a window without blocking the runtime (the viewer's tasks
/// must keep running meanwhile).
async fn wait_window(xvfb: &Xvfb, title: &str) -> String {
    let found = eventually_every_async(Duration::from_secs(30), XDOTOOL_POLL, || {
        let id = xdotool(xvfb, &["search", "--name", title]);
        ready(
            id.lines()
                .next()
                .filter(|l| !l.is_empty())
                .map(String::from),
        )
    });
    found
        .await
        .unwrap_or_else(|| panic!("no window titled {title:?}"))
}

/// How often a wait that runs xdotool (a process each time) looks again.
const XDOTOOL_POLL: Duration = Duration::from_millis(100);

/// (x, y, width, height) of a window.
fn geometry(xvfb: &Xvfb, window: &str) -> (u32, u32, u32, u32) {
    let shell = xdotool(xvfb, &["getwindowgeometry", "--shell", window]);
    let get = |k: &str| -> u32 {
        shell
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {shell}"))
    };
    (get("X"), get("Y"), get("WIDTH"), get("HEIGHT"))
}

/// The whole screen as packed RGB.
fn screenshot(xvfb: &Xvfb) -> Vec<u8> {
    let out = xvfb
        .command("import")
        .args(["-window", "root", "-depth", "8", "rgb:-"])
        .output()
        .expect("import");
    assert_eq!(out.stdout.len(), (W * H * 3) as usize, "screenshot size");
    out.stdout
}

/// Compares the viewer's decoded screen to a screenshot, outside `skip`.
fn mismatches(v: &LiveViewer, shot: &[u8], skip: (u32, u32, u32, u32)) -> usize {
    let (sx, sy, sw, sh) = skip;
    let rgba = v.decoder.pixels();
    let mut bad = 0;
    for y in 0..H {
        for x in 0..W {
            if x >= sx && x < sx + sw && y >= sy && y < sy + sh {
                continue;
            }
            let i = (y * W + x) as usize;
            if rgba[i * 4..i * 4 + 3] != shot[i * 3..i * 3 + 3] {
                bad += 1;
            }
        }
    }
    bad
}

/// A real X client that prints the events it receives.
struct Xev {
    _proc: Proc,
    log: std::path::PathBuf,
}

impl Xev {
    fn start(xvfb: &Xvfb, dir: &Path) -> Xev {
        let log = dir.join("xev.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = xvfb
            .command("xev")
            .args([
                "-geometry",
                "200x150+560+420",
                "-event",
                "keyboard",
                "-event",
                "button",
            ])
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("xev (x11-utils)");
        Xev {
            _proc: Proc::new(child),
            log,
        }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

async fn drive_input(v: &mut LiveViewer) {
    v.input(InputEvent::MouseMove { x: 640, y: 480 })
        .await
        .unwrap();
    v.input(InputEvent::MouseButton {
        button: MouseButton::Left,
        pressed: true,
    })
    .await
    .unwrap();
    v.input(InputEvent::MouseButton {
        button: MouseButton::Left,
        pressed: false,
    })
    .await
    .unwrap();
    v.input(InputEvent::Text("hi".into())).await.unwrap();
    // Keep frames flowing (and acknowledged) while the events land. A fixed
    // window on purpose: in view-only the test then checks that nothing
    // arrived during it.
    let until = Instant::now() + Duration::from_millis(800);
    while Instant::now() < until {
        v.next_frame(Duration::from_millis(100)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_window_by_xdotool_then_exact_pixels_and_view_only_input_dropped() {
    let xvfb = Xvfb::start_with_size(W, H);
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let dir = assent_tests::tempdir();
    let xev = Xev::start(&xvfb, dir.path());
    let xev_window = wait_window(&xvfb, "Event Tester").await;
    let v = viewer::connect(&relay.addr, &relay.ca(), &key, Scope::Control)
        .await
        .unwrap();
    let code = v.invite.code.clone();
    let pairing = tokio::spawn(async move { viewer::pair(v, &key).await });
    let mut agent = spawn_agent(&xvfb, &relay, dir.path(), &code, false);

    // The prompt: a real window, with content, answered with the `v` key.
    let log = dir.path().join("agent.log");
    let window = match tokio::time::timeout(
        Duration::from_secs(30),
        wait_window(&xvfb, "Assent — support request"),
    )
    .await
    {
        Ok(w) => w,
        Err(_) => panic!(
            "no prompt window; agent log:\n{}\nrelay log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            relay.log_text()
        ),
    };
    // Its size and how many colours it shows, once it has drawn itself.
    let drawn = || {
        let (x, y, w, h) = geometry(&xvfb, &window);
        let shot = screenshot(&xvfb);
        let mut colours = std::collections::HashSet::new();
        for yy in y..(y + h).min(H) {
            for xx in x..(x + w).min(W) {
                let i = ((yy * W + xx) * 3) as usize;
                colours.insert([shot[i], shot[i + 1], shot[i + 2]]);
            }
        }
        ((w, h), colours.len())
    };
    let content = eventually_every_async(WAIT, XDOTOOL_POLL, || {
        let ((w, h), colours) = drawn();
        ready((w >= 300 && h >= 150 && colours > 4).then_some(((w, h), colours)))
    });
    let ((w, h), colours) = content.await.unwrap_or_else(drawn);
    assert!(w >= 300 && h >= 150, "window {w}x{h}");
    assert!(
        colours > 4,
        "the consent window looks blank ({colours} colours)"
    );
    let png = dir.path().join("consent.png");
    let _ = xvfb
        .command("import")
        .args(["-window", "root"])
        .arg(&png)
        .status();
    std::fs::create_dir_all(artifacts()).unwrap();
    let _ = std::fs::copy(&png, artifacts().join("consent.png"));
    // No window manager: focus follows the pointer, so point at the window
    // (and click its text, which does nothing) before typing.
    xdotool(&xvfb, &["mousemove", "--window", &window, "40", "20"]);
    xdotool(&xvfb, &["windowfocus", &window]);
    xdotool(&xvfb, &["click", "1"]);
    // The prompt takes answers only once it has been visible and focused
    // for `ARM_DELAY` (so a key typed elsewhere as it appears answers
    // nothing, see prompt.rs); this pause is the user reading it.
    tokio::time::sleep(assent_agent::ui::ARM_DELAY + Duration::from_millis(300)).await;
    xdotool(&xvfb, &["key", "v"]);

    let mut v = match tokio::time::timeout(WAIT, pairing)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        Pairing::Live(l) => *l,
        Pairing::Refused(r) => panic!("refused: {r}"),
    };
    assert_eq!(v.scope, Scope::View);
    // Frames decode to exactly what is on the X screen (outside the agent's
    // own window, which redraws its elapsed-time counter).
    let live_window = wait_window(&xvfb, "Assent — session live").await;
    let skip = geometry(&xvfb, &live_window);
    let _ = xvfb
        .command("import")
        .args(["-window", "root"])
        .arg(artifacts().join("live.png"))
        .status();
    let mut best = usize::MAX;
    for _ in 0..20 {
        v.next_frame(WAIT).await.unwrap();
        // Let any in-flight update land, then compare.
        while v.next_frame(Duration::from_millis(150)).await.unwrap() {}
        let shot = screenshot(&xvfb);
        best = best.min(mismatches(&v, &shot, skip));
        if best == 0 {
            break;
        }
    }
    assert_eq!(
        best, 0,
        "decoded frame differs from the screenshot in {best} pixels"
    );

    // The pointer is not in captured images; its position travels apart.
    xdotool(&xvfb, &["mousemove", "700", "500"]);
    v.read_until(WAIT, |v| v.cursor == Some((700, 500)))
        .await
        .unwrap();
    assert_eq!(v.cursor, Some((700, 500)), "pointer position not reported");

    // View only: the technician's click and typing reach nobody.
    drive_input(&mut v).await;
    let events = xev.text();
    assert!(
        !events.contains("ButtonPress") && !events.contains("KeyPress"),
        "view-only input arrived:\n{events}"
    );

    // The indicator's buttons, clicked for real. Their places come from the
    // layout in agent/src/ui.rs (see target/test-artifacts/live.png).
    let click = |x: &str, y: &str| {
        xdotool(&xvfb, &["mousemove", "--window", &live_window, x, y]);
        xdotool(&xvfb, &["click", "1"]);
    };
    click("33", "150"); // Pause
    v.read_until(WAIT, |v| v.paused).await.unwrap();
    assert!(v.paused, "Pause did not reach the viewer");
    click("33", "150"); // the same button now says Resume
    v.read_until(WAIT, |v| !v.paused).await.unwrap();
    assert!(!v.paused, "Resume did not reach the viewer");

    // The technician asks for control: the same window asks the user again
    // (its title says so), and the user's `c` grants it.
    let replies = v.scope_replies;
    v.request_scope(Scope::Control).await.unwrap();
    let asked = tokio::time::timeout(WAIT, wait_window(&xvfb, "Assent — support request"))
        .await
        .expect("the user was not asked again");
    assert_eq!(asked, live_window, "the indicator window itself asks");
    // The title changes before the new content is drawn; the screenshot is
    // for people (target/test-artifacts), and the key below goes to the
    // prompt once it shows. A pause, not a wait: nothing outside the window
    // says when it has drawn.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = xvfb
        .command("import")
        .args(["-window", "root"])
        .arg(artifacts().join("scope-request.png"))
        .status();
    xdotool(&xvfb, &["mousemove", "--window", &asked, "40", "20"]);
    xdotool(&xvfb, &["windowfocus", &asked]);
    // A mid-session question arms like the first one: the user reads it.
    tokio::time::sleep(assent_agent::ui::ARM_DELAY + Duration::from_millis(300)).await;
    xdotool(&xvfb, &["key", "c"]);
    assert!(v.wait_scope_replies(replies + 1, WAIT).await.unwrap());
    assert_eq!(v.scope, Scope::Control, "control after the user's yes");
    wait_window(&xvfb, "Assent — session live").await;
    // Now the technician's click and typing reach the X client (the focus
    // goes back to it: without a window manager it stays where it was set).
    xdotool(&xvfb, &["windowfocus", &xev_window]);
    drive_input(&mut v).await;
    v.read_until(WAIT, |_| {
        xev.text().contains("ButtonPress") && xev.text().contains("KeyPress")
    })
    .await
    .unwrap();
    let events = xev.text();
    assert!(
        events.contains("ButtonPress") && events.contains("KeyPress"),
        "input after the scope change did not arrive:\n{events}"
    );
    let change = relay
        .wait_record(WAIT, |r| r["event"] == "scope_changed")
        .expect("scope change audited");
    assert_eq!(change["scope"], "control");

    // End: the relay records agent_ended within 200 ms of the click
    // (looked for every 5 ms, so the measurement is that fine).
    let clicked = Instant::now();
    click("85", "150");
    let took = eventually_every_async(Duration::from_secs(5), Duration::from_millis(5), || {
        let ended = relay
            .records()
            .iter()
            .any(|r| r["event"] == "session_end" && r["reason"] == "agent_ended");
        ready(ended.then(|| clicked.elapsed()))
    })
    .await;
    let took = took.expect("agent_ended recorded after End");
    assert!(
        took < Duration::from_millis(200),
        "agent_ended {took:?} after the click"
    );
    // The window turns into the end and "Was your problem solved?",
    // answered with a key once the question is armed.
    let ended = wait_window(&xvfb, "Assent — session ended").await;
    xdotool(&xvfb, &["mousemove", "--window", &ended, "40", "20"]);
    xdotool(&xvfb, &["windowfocus", &ended]);
    tokio::time::sleep(assent_agent::ui::ARM_DELAY + Duration::from_millis(300)).await;
    let _ = xvfb
        .command("import")
        .args(["-window", "root"])
        .arg(artifacts().join("session-ended.png"))
        .status();
    xdotool(&xvfb, &["key", "y"]);
    let confirmed = relay
        .wait_record(WAIT, |r| r["event"] == "user_confirmation")
        .expect("user_confirmation from the window");
    assert_eq!(confirmed["answer"], "yes");
    let status = agent
        .wait_timeout(Duration::from_secs(10))
        .expect("agent exits once answered");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_consent_then_control_click_and_text_reach_an_x_client() {
    let xvfb = Xvfb::start_with_size(W, H);
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let dir = assent_tests::tempdir();
    let xev = Xev::start(&xvfb, dir.path());
    wait_window(&xvfb, "Event Tester").await;
    let v = viewer::connect(&relay.addr, &relay.ca(), &key, Scope::Control)
        .await
        .unwrap();
    let code = v.invite.code.clone();
    let pairing = tokio::spawn(async move { viewer::pair(v, &key).await });
    let mut agent = spawn_agent(&xvfb, &relay, dir.path(), &code, true);
    // Wait for the prompt on the terminal, then answer `c`.
    let stderr = agent.child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let prompt = tokio::task::spawn_blocking(move || {
        let mut prompt = String::new();
        while !prompt.contains("c = allow control") {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("prompt on the terminal");
            prompt.push_str(&line);
            prompt.push('\n');
        }
        prompt
    })
    .await
    .unwrap();
    assert!(
        prompt.contains("alice asks to see your screen and use your mouse and keyboard"),
        "{prompt}"
    );
    assert!(prompt.contains("T-2001"), "{prompt}");
    let mut stdin = agent.child.stdin.take().unwrap();
    stdin.write_all(b"c\n").unwrap();
    let mut v = match tokio::time::timeout(WAIT, pairing)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        Pairing::Live(l) => *l,
        Pairing::Refused(r) => panic!("refused: {r}"),
    };
    assert_eq!(v.scope, Scope::Control);
    assert!(
        prompt.contains(&v.verification_code),
        "the prompt shows the verification code"
    );
    assert!(v.next_frame(WAIT).await.unwrap());
    drive_input(&mut v).await;
    eventually_every_async(Duration::from_secs(5), Duration::from_millis(100), || {
        let events = xev.text();
        ready((events.contains("keysym 0x69, i") && events.contains("ButtonPress")).then_some(()))
    })
    .await;
    let events = xev.text();
    assert!(
        events.contains("ButtonPress"),
        "no click at the X client:\n{events}"
    );
    assert!(
        events.contains("keysym 0x68, h") && events.contains("keysym 0x69, i"),
        "typed text missing:\n{events}"
    );
    // SIGTERM ends the session cleanly: the relay records agent_ended.
    drop(stdin);
    agent.signal(libc::SIGTERM);
    let status = agent
        .wait_timeout(Duration::from_secs(10))
        .expect("agent exits");
    assert!(status.success());
    let end = relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    assert_eq!(end["reason"], "agent_ended");
}
