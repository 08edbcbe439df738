//! Chat during the session (issue 13 item 1): the real headless viewer and
//! the real `--tty` agent talk both ways, also while the user has paused;
//! the relay records only how many messages each side sent, and neither
//! its log nor any audit holds the text.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use assent_tests::{bin, Proc, TestRelay};

use crate::common::WAIT;
use crate::people::{technician, user};

const TO_USER: &str = "Please type your password now, tell me when done";
const TO_TECH: &str = "Done, the password is entered";
const WHILE_PAUSED: &str = "Still paused, one moment please";

#[test]
fn chat_goes_both_ways_and_only_its_counts_reach_the_relay() {
    let display = assent_xvfb::Xvfb::start_with_size(320, 200);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let (mut viewer, code) = technician(&relay, (home.path(), &key), "T-6001", &[], "trace");
    let mut agent = user(&relay, home.path(), display.display(), &code, "trace");
    agent.say("v");
    agent.hear("Any other line is sent to your technician");
    viewer.hear("\"fps\"");

    viewer.say(&format!("chat {TO_USER}"));
    let heard = agent.hear(TO_USER);
    assert!(heard.contains("alice: "), "who said it: {heard}");
    agent.say(TO_TECH);
    let line = viewer.hear(TO_TECH);
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["chat"]["from"], "user");
    assert_eq!(json["chat"]["text"], TO_TECH);

    // Paused: the screen is not shared, the chat still works.
    agent.say("p");
    agent.hear("Session paused");
    viewer.say(&format!("chat {WHILE_PAUSED}"));
    agent.hear(WHILE_PAUSED);
    agent.say("r");

    agent.say("e");
    let end = relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    assert_eq!(end["reason"], "agent_ended", "{end}");
    assert_eq!(end["chat_from_viewer"], 2, "{end}");
    assert_eq!(end["chat_from_agent"], 1, "{end}");
    std::thread::sleep(Duration::from_millis(500));
    let relay_text = std::fs::read_to_string(relay.audit_path()).unwrap() + &relay.log_text();
    let viewer_audit =
        std::fs::read_to_string(home.path().join("data/assent/audit.jsonl")).unwrap_or_default();
    let viewer_log = std::fs::read_to_string(home.path().join("viewer-T-6001.log")).unwrap();
    for text in [TO_USER, TO_TECH, WHILE_PAUSED] {
        for (name, haystack) in [
            ("relay audit and log", &relay_text),
            ("viewer audit", &viewer_audit),
            ("viewer log (trace)", &viewer_log),
        ] {
            assert!(!haystack.contains(text), "{name} holds chat text {text:?}");
        }
    }
    assert!(viewer_audit.contains("\"chat_sent\":2"), "{viewer_audit}");
}

/// A terminal that goes away (the agent's stderr closed) must not end the
/// session with a panic: the user's `e` still ends it as theirs.
#[test]
fn a_closed_terminal_does_not_take_the_session_down() {
    use std::io::{BufRead as _, BufReader};
    let display = assent_xvfb::Xvfb::start_with_size(320, 200);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let (mut viewer, code) = technician(&relay, (home.path(), &key), "T-6002", &[], "info");
    let mut agent = Command::new(bin("assent-agent"))
        .args(["join", "--tty", "--relay", &relay.addr, "--ca"])
        .arg(relay.ca())
        .arg(&code)
        .env("XDG_CONFIG_HOME", home.path().join("agent"))
        .env("DISPLAY", display.display())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut agent_stdin = agent.stdin.take().unwrap();
    let mut terminal = BufReader::new(agent.stderr.take().unwrap());
    let _agent = Proc::new(agent);
    let mut line = String::new();
    while !line.contains("d or Escape = deny") {
        line.clear();
        assert!(terminal.read_line(&mut line).unwrap() > 0, "no prompt");
    }
    writeln!(agent_stdin, "v").unwrap();
    viewer.hear("\"fps\"");
    // The terminal goes away; the technician's chat lines now have nowhere
    // to be printed.
    drop(terminal);
    viewer.say(&format!("chat {TO_USER}"));
    viewer.say(&format!("chat {WHILE_PAUSED}"));
    std::thread::sleep(Duration::from_millis(500));
    writeln!(agent_stdin, "e").unwrap();
    let end = relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    assert_eq!(end["reason"], "agent_ended", "{end}");
}

fn xdotool(display: &assent_xvfb::Xvfb, args: &[&str]) -> String {
    let out = display.command("xdotool").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn window(display: &assent_xvfb::Xvfb, title: &str) -> String {
    assent_tests::eventually_every(WAIT, Duration::from_millis(100), || {
        let id = xdotool(display, &["search", "--name", title]);
        id.lines()
            .next()
            .filter(|l| !l.is_empty())
            .map(String::from)
    })
    .unwrap_or_else(|| panic!("no window titled {title:?}"))
}

/// The real agent window under Xvfb: a line from the technician raises the
/// unread count in its title while the user works elsewhere; the user types
/// an answer in the window's chat (keyboard only) and the technician gets it.
#[test]
fn the_agent_window_shows_unread_chat_and_sends_what_the_user_types() {
    let display = assent_xvfb::Xvfb::start_with_size(640, 480);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let (mut viewer, code) = technician(&relay, (home.path(), &key), "T-6003", &[], "info");
    // Something else for the user to work in.
    let xev = display
        .command("xev")
        .args(["-geometry", "200x100+420+360"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _xev = Proc::new(xev);
    let agent = Command::new(bin("assent-agent"))
        .args(["join", "--relay", &relay.addr, "--ca"])
        .arg(relay.ca())
        .arg(&code)
        .env("XDG_CONFIG_HOME", home.path().join("agent"))
        .env("DISPLAY", display.display())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _agent = Proc::new(agent);
    let prompt = window(&display, "Assent — support request");
    // A key counts once the prompt has been focused for a second; on a
    // loaded machine the first try may come before it is mapped or armed
    // (an early key answers nothing), so try again until the session is live.
    let mut live = None;
    for _ in 0..5 {
        xdotool(&display, &["mousemove", "--window", &prompt, "40", "20"]);
        xdotool(&display, &["windowfocus", &prompt]);
        std::thread::sleep(assent_agent::ui::ARM_DELAY + Duration::from_millis(500));
        xdotool(&display, &["key", "v"]);
        live = assent_tests::eventually_every(
            Duration::from_secs(3),
            Duration::from_millis(100),
            || {
                let id = xdotool(&display, &["search", "--name", "Assent — session live"]);
                id.lines()
                    .next()
                    .filter(|l| !l.is_empty())
                    .map(String::from)
            },
        );
        if live.is_some() {
            break;
        }
    }
    let live = live.expect("the session never went live");
    viewer.hear("\"fps\"");

    // The user works elsewhere; the technician writes.
    let tester = window(&display, "Event Tester");
    xdotool(&display, &["windowfocus", &tester]);
    std::thread::sleep(Duration::from_millis(300));
    viewer.say(&format!("chat {TO_USER}"));
    let unread = assent_tests::eventually_every(WAIT, Duration::from_millis(100), || {
        let name = xdotool(&display, &["getwindowname", &live]);
        name.contains("(1 new)").then_some(name)
    });
    assert!(unread.is_some(), "the title never showed the unread line");
    let _ = display
        .command("import")
        .args(["-window", "root"])
        .arg(crate::desktop::artifacts().join("agent-chat.png"))
        .status();

    // The user comes back (the count clears) and answers with the keyboard:
    // Tab past Pause and End to the chat line, type, Enter.
    xdotool(&display, &["mousemove", "--window", &live, "300", "10"]);
    xdotool(&display, &["windowfocus", &live]);
    let read = assent_tests::eventually_every(WAIT, Duration::from_millis(100), || {
        let name = xdotool(&display, &["getwindowname", &live]);
        (!name.contains("new")).then_some(())
    });
    assert!(read.is_some(), "the unread count did not clear on focus");
    xdotool(&display, &["key", "Tab", "Tab", "Tab"]);
    xdotool(&display, &["type", "--delay", "30", TO_TECH]);
    xdotool(&display, &["key", "Return"]);
    let line = viewer.hear("\"chat\"");
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["chat"]["text"], TO_TECH, "{json}");
    assert_eq!(json["chat"]["from"], "user");

    // "Please test", answered in the window: Escape leaves the chat line,
    // then Tab past Pause, End and the comment to "It works", Space.
    viewer.say("validate Send yourself a test mail");
    // The window draws it on the next repaint; give a loaded machine time.
    std::thread::sleep(Duration::from_millis(1500));
    let _ = display
        .command("import")
        .args(["-window", "root"])
        .arg(crate::desktop::artifacts().join("agent-please-test.png"))
        .status();
    the_rest_scrolls_under_the_indicator(&display, &live);
    xdotool(
        &display,
        &["key", "Escape", "Tab", "Tab", "Tab", "Tab", "space"],
    );
    let answer = viewer.hear("\"validation\"");
    let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(json["validation"]["answer"], "works", "{json}");
    let rec = relay
        .wait_record(WAIT, |r| r["event"] == "user_validation")
        .expect("user_validation from the window");
    assert_eq!(rec["answer"], "works");
}

/// With a please-test request, a chat and the windows list the live window
/// is taller than its 460 pixels: the wheel scrolls what is below Pause and
/// End (the permissions at the bottom come into view) while the indicator
/// and its buttons stay where they are. Screenshot:
/// target/test-artifacts/agent-please-test-scrolled.png.
fn the_rest_scrolls_under_the_indicator(display: &assent_xvfb::Xvfb, live: &str) {
    let shot = |name: &str| {
        let png = crate::desktop::artifacts().join(name);
        let status = display
            .command("import")
            .args(["-window", live])
            .arg(&png)
            .status()
            .expect("import");
        assert!(status.success(), "import {name}");
        image::open(&png).unwrap().to_rgba8()
    };
    let before = shot("agent-please-test-window.png");
    xdotool(display, &["mousemove", "--window", live, "260", "400"]);
    for _ in 0..6 {
        xdotool(display, &["click", "5"]);
    }
    std::thread::sleep(Duration::from_millis(1000));
    let after = shot("agent-please-test-scrolled.png");
    assert_eq!(before.dimensions(), after.dimensions());
    let (w, h) = before.dimensions();
    let differing = |rows: std::ops::Range<u32>| {
        rows.flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|&(x, y)| before.get_pixel(x, y) != after.get_pixel(x, y))
            .count()
    };
    // The indicator ends with Pause and End at about y = 160.
    assert_eq!(differing(0..160), 0, "the indicator moved");
    assert!(differing(200..h) > 1000, "nothing below it scrolled");
    // Back to the top, where the keyboard's answer below expects it.
    for _ in 0..6 {
        xdotool(display, &["click", "4"]);
    }
    std::thread::sleep(Duration::from_millis(500));
}

/// The technician types in the viewer window's chat (at the bottom of its
/// side panel): the line reaches the user's terminal, and the user's answer
/// reaches the window (counted in the viewer's `session_end`). Screenshot:
/// target/test-artifacts/viewer-chat.png.
#[test]
fn the_viewer_windows_chat_reaches_the_user_and_back() {
    const TYPED: &str = "typed in the viewer window";
    let display_a = assent_xvfb::Xvfb::start_with_size(320, 200);
    let display_b = assent_xvfb::Xvfb::start_with_size(1280, 900);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let mut viewer = Command::new(bin("assent-viewer"))
        .args([
            "connect",
            "--relay",
            &relay.addr,
            "--ticket",
            "T-6004",
            "--ca",
        ])
        .arg(relay.ca())
        .arg("--key")
        .arg(&key)
        .args(["--identity-check", "email"])
        .env("DISPLAY", display_b.display())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = assent_tests::lines(viewer.stdout.take().unwrap());
    let viewer = Proc::new(viewer);
    let code = assent_tests::wait_line(&out, |l| l.starts_with("Invite code: "), "code")
        .trim_start_matches("Invite code: ")
        .to_string();
    let mut agent = user(&relay, home.path(), display_a.display(), &code, "info");
    agent.say("v");
    agent.hear("Any other line is sent to your technician");
    let xdotool = |args: &[&str]| {
        let out = display_b.command("xdotool").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let window = assent_tests::eventually_every(WAIT, Duration::from_millis(100), || {
        xdotool(&["search", "--name", "Assent — "])
            .lines()
            .next()
            .map(String::from)
    })
    .expect("the viewer window");
    let shell = xdotool(&["getwindowgeometry", "--shell", &window]);
    let get = |k: &str| -> i64 {
        shell
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let (w, h) = (get("WIDTH"), get("HEIGHT"));
    // The message field: bottom row of the side panel, above the status bar.
    let (x, y) = ((w - 150).to_string(), (h - 44).to_string());
    // No window manager: focus follows the pointer; give it the window too.
    // On a loaded machine the first click can come before the panel is
    // laid out: type again until the line arrives.
    let mut heard = None;
    for _ in 0..4 {
        xdotool(&["mousemove", "--window", &window, &x, &y]);
        xdotool(&["windowfocus", &window]);
        std::thread::sleep(Duration::from_millis(300));
        xdotool(&["click", "1"]);
        std::thread::sleep(Duration::from_millis(300));
        xdotool(&["type", "--delay", "20", TYPED]);
        xdotool(&["key", "Return"]);
        heard = wait_heard(&agent, TYPED, Duration::from_secs(3));
        if heard.is_some() {
            break;
        }
    }
    let heard = heard.expect("the typed line never reached the user");
    assert!(heard.contains("alice: "), "{heard}");
    assert_eq!(heard.matches(TYPED).count(), 1, "{heard}");
    agent.say("thanks, got it");
    std::thread::sleep(Duration::from_millis(800));
    let dir = crate::desktop::artifacts();
    std::fs::create_dir_all(&dir).unwrap();
    let _ = display_b
        .command("import")
        .args(["-window", "root"])
        .arg(dir.join("viewer-chat.png"))
        .status();
    agent.say("e");
    let end = relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    assert_eq!(end["chat_from_viewer"], 1, "{end}");
    assert_eq!(end["chat_from_agent"], 1, "{end}");
    let audit = home.path().join("data/assent/audit.jsonl");
    let received = assent_tests::eventually_every(WAIT, Duration::from_millis(100), || {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        text.contains("\"chat_received\":1").then_some(())
    });
    assert!(
        received.is_some(),
        "the viewer did not count the user's line"
    );
    drop(viewer);
}

/// The first line of `who` containing `what` within `limit`.
fn wait_heard(who: &crate::people::Person, what: &str, limit: Duration) -> Option<String> {
    let deadline = std::time::Instant::now() + limit;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match who.out.recv_timeout(left) {
            Ok(line) if line.contains(what) => return Some(line),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}
