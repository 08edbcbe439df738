//! The whole product on two virtual displays: the agent capturing display A,
//! the viewer's window on display B, the relay between them.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assent_tests::{bin, eventually_every, lines, wait_line, Proc, TestRelay};
use assent_xvfb::Xvfb;

use crate::common::WAIT;

const BLUE: [u8; 3] = [0x33, 0x66, 0xcc];

fn xdotool(x: &Xvfb, args: &[&str]) -> String {
    let out = x.command("xdotool").args(args).output().expect("xdotool");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// How often a wait that runs a program (xdotool, import) looks again.
const TOOL_POLL: Duration = Duration::from_millis(100);

fn window_id(x: &Xvfb, title: &str) -> String {
    eventually_every(Duration::from_secs(30), TOOL_POLL, || {
        let out = xdotool(x, &["search", "--name", title]);
        out.lines()
            .next()
            .filter(|l| !l.is_empty())
            .map(String::from)
    })
    .unwrap_or_else(|| panic!("no window {title:?}"))
}

/// Screenshot of a display as (width, height, RGB).
fn shot(x: &Xvfb) -> (u32, u32, Vec<u8>) {
    let geo = String::from_utf8_lossy(&x.command("xdpyinfo").output().unwrap().stdout).to_string();
    let dims = geo.lines().find(|l| l.contains("dimensions:")).unwrap();
    let wh = dims.split_whitespace().nth(1).unwrap();
    let (w, h) = wh.split_once('x').unwrap();
    let (w, h): (u32, u32) = (w.parse().unwrap(), h.parse().unwrap());
    let out = x
        .command("import")
        .args(["-window", "root", "-depth", "8", "rgb:-"])
        .output()
        .unwrap();
    (w, h, out.stdout)
}

/// Bounding box of pixels of `colour`.
fn bbox(w: u32, h: u32, rgb: &[u8], colour: [u8; 3]) -> Option<(u32, u32, u32, u32)> {
    let mut b: Option<(u32, u32, u32, u32)> = None;
    for y in 0..h {
        for x in 0..w {
            let i = ((y * w + x) * 3) as usize;
            if rgb[i..i + 3] == colour {
                b = Some(match b {
                    None => (x, y, x, y),
                    Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
                });
            }
        }
    }
    b
}

#[test]
fn viewer_window_shows_the_agent_screen_types_into_it_and_closing_ends_everywhere() {
    window_session(true);
}

#[test]
fn view_only_window_sends_no_input() {
    window_session(false);
}

/// The whole flow with the viewer window; `control` decides the scope asked
/// for and granted, and so whether typing in the window may reach display A.
fn window_session(control: bool) {
    let scope = if control { "control" } else { "view" };
    let display_a = Xvfb::start_with_size(640, 480);
    let display_b = Xvfb::start_with_size(1280, 900);
    assent_tests::x11::paint_root(display_a.display(), 0x3366cc);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);

    // xev on display A, centred, so the pointer the viewer moves lands on it.
    let xev_log = home.path().join("xev.log");
    let xev = display_a
        .command("xev")
        .args([
            "-geometry",
            "240x180+200+150",
            "-event",
            "keyboard",
            "-event",
            "button",
        ])
        .stdout(std::fs::File::create(&xev_log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _xev = Proc::new(xev);

    let mut viewer = Command::new(bin("assent-viewer"))
        .args([
            "connect",
            "--relay",
            &relay.addr,
            "--ca",
            relay.ca().to_str().unwrap(),
        ])
        .args([
            "--ticket",
            "T-4004",
            "--key",
            key.to_str().unwrap(),
            "--client",
            "Acme Ltd",
            "--scope",
            scope,
        ])
        .env("DISPLAY", display_b.display())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(home.path().join("viewer.log")).unwrap())
        .spawn()
        .unwrap();
    let viewer_out = lines(viewer.stdout.take().unwrap());
    let mut viewer = Proc::new(viewer);
    // Without --identity-check the window first asks how the requester was
    // verified; the first choice (phone call-back, at the top left) is
    // clicked until the invite comes (the window may not have drawn yet).
    let asking = window_id(&display_b, "Assent — waiting for the user — T-4004");
    let mut code = None;
    for _ in 0..10 {
        xdotool(
            &display_b,
            &["mousemove", "--window", &asking, "60", "60", "click", "1"],
        );
        if let Ok(line) = viewer_out.recv_timeout(Duration::from_secs(2)) {
            if let Some(c) = line.strip_prefix("Invite code: ") {
                code = Some(c.to_string());
                break;
            }
        }
    }
    let code = code.expect("no invite after answering the identity question");
    let invite = relay
        .wait_record(WAIT, |r| r["event"] == "invite_created")
        .expect("invite_created");
    assert_eq!(invite["identity_check"], "phone-callback", "{invite}");

    let mut agent = Command::new(bin("assent-agent"))
        .args([
            "join",
            "--relay",
            &relay.addr,
            "--ca",
            relay.ca().to_str().unwrap(),
        ])
        .args(["--tty", "--device-name", "pc-test", &code])
        .env("DISPLAY", display_a.display())
        .env("XDG_CONFIG_HOME", home.path().join("agent"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let agent_err = lines(agent.stderr.take().unwrap());
    wait_line(
        &agent_err,
        |l| l.contains("d or Escape = deny"),
        "consent prompt",
    );
    let answer: &[u8] = if control { b"c\n" } else { b"v\n" };
    agent.stdin.take().unwrap().write_all(answer).unwrap();
    std::thread::spawn(move || for _ in agent_err {});
    let mut agent = Proc::new(agent);

    // The viewer window, titled as promised, shows display A's blue.
    let window = window_id(&display_b, "Assent — pc-test — T-4004");
    let (w, h, rgb, image) = eventually_every(WAIT, Duration::from_millis(200), || {
        let (w, h, rgb) = shot(&display_b);
        let b = bbox(w, h, &rgb, BLUE)?;
        ((b.2 - b.0) > 200 && (b.3 - b.1) > 150).then_some((w, h, rgb, b))
    })
    .expect("the agent's screen never showed in the viewer window");
    let artifacts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let _ = display_b
        .command("import")
        .args(["-window", "root"])
        .arg(artifacts.join("viewer.png"))
        .status();
    let blue = rgb.chunks(3).filter(|p| *p == BLUE).count();
    assert!(
        blue > 50_000,
        "only {blue} blue pixels in a {w}x{h} screenshot"
    );

    // Type into the viewer window: the pointer over the centre of the remote
    // image lands on xev on display A.
    let (cx, cy) = ((image.0 + image.2) / 2, (image.1 + image.3) / 2);
    xdotool(&display_b, &["mousemove", &cx.to_string(), &cy.to_string()]);
    xdotool(&display_b, &["windowfocus", &window]);
    // The window takes the pointer and the focus on its next frame, and
    // nothing outside the process shows when it has: a pause, not a wait.
    std::thread::sleep(Duration::from_millis(300));
    xdotool(&display_b, &["click", "1"]);
    xdotool(&display_b, &["type", "--delay", "50", "hi"]);
    let xev_events = || std::fs::read_to_string(&xev_log).unwrap_or_default();
    if control {
        eventually_every(Duration::from_secs(10), TOOL_POLL, || {
            let events = xev_events();
            (events.contains("keysym 0x69, i") && events.contains("ButtonPress")).then_some(())
        });
        let events = xev_events();
        assert!(
            events.contains("ButtonPress"),
            "the click did not reach display A:\n{events}"
        );
        assert!(
            events.contains("keysym 0x68, h") && events.contains("keysym 0x69, i"),
            "typed text missing:\n{events}"
        );
    } else {
        // What is tested: nothing arrives during this second.
        std::thread::sleep(Duration::from_secs(1));
        let events = xev_events();
        assert!(
            !events.contains("ButtonPress") && !events.contains("KeyPress"),
            "view-only input reached display A:\n{events}\nrelay: {:?}",
            relay
                .records()
                .iter()
                .filter(|r| r["event"] == "session_start" || r["event"] == "consent")
                .collect::<Vec<_>>()
        );
    }

    // Closing the window (WM_DELETE_WINDOW) ends the session everywhere.
    let closed = Instant::now();
    assent_tests::x11::close_window(display_b.display(), window.parse().unwrap());
    let end = relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    assert_eq!(end["reason"], "viewer_closed");
    assert!(
        agent.wait_timeout(Duration::from_secs(3)).is_some(),
        "agent still running"
    );
    // The agent exits as soon as the relay tells it; 3 s is the bound the
    // security suite holds a vanished viewer to, and leaves room for a
    // loaded CI machine.
    assert!(
        closed.elapsed() < Duration::from_secs(3),
        "agent ended {:?} after the close",
        closed.elapsed()
    );
    // The window stays for the note; closing it again without a Result is
    // refused (the window says why) and files nothing.
    std::thread::sleep(Duration::from_millis(500));
    assent_tests::x11::close_window(display_b.display(), window.parse().unwrap());
    std::thread::sleep(Duration::from_millis(700));
    let _ = display_b
        .command("import")
        .args(["-window", "root"])
        .arg(crate::desktop::artifacts().join(format!("viewer-note-{scope}.png")))
        .status();
    assert!(
        viewer.wait_timeout(Duration::from_millis(100)).is_none(),
        "the window closed without a Result"
    );
    assert!(
        !relay.events().iter().any(|e| e == "session_note"),
        "a note without a Result was filed"
    );
}
