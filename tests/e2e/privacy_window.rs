//! The window list in the agent's real consent window (issue 14 item 1):
//! the user's windows with their application, the policy's ticked for
//! good; "Hide" clicked with xdotool hides a window from the first frame;
//! a screenshot of the prompt is left in target/test-artifacts.

use std::future::ready;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assent_proto::wire::Scope;
use assent_tests::viewer::{self, Pairing};
use assent_tests::{bin, eventually_every_async, Proc, TestRelay};
use assent_xvfb::Xvfb;

use crate::common::WAIT;
const FRESH: u32 = 0xa02080;

use crate::privacy::{count, Windows, H, NOTES, ROOT, SECRET, W};

fn xdotool(xvfb: &Xvfb, args: &[&str]) -> String {
    let out = xvfb
        .command("xdotool")
        .args(args)
        .output()
        .expect("xdotool");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn wait_window(xvfb: &Xvfb, title: &str) -> String {
    eventually_every_async(Duration::from_secs(30), Duration::from_millis(100), || {
        let id = xdotool(xvfb, &["search", "--name", title]);
        ready(
            id.lines()
                .next()
                .filter(|l| !l.is_empty())
                .map(String::from),
        )
    })
    .await
    .unwrap_or_else(|| panic!("no window titled {title:?}"))
}

/// The screen as packed RGB.
fn screenshot(xvfb: &Xvfb) -> Vec<u8> {
    let out = xvfb
        .command("import")
        .args(["-window", "root", "-depth", "8", "rgb:-"])
        .output()
        .expect("import");
    out.stdout
}

/// How many light (text) pixels the screenshot has inside (x, y, w, h).
fn light_in(shot: &[u8], (x, y, w, h): (u32, u32, u32, u32)) -> usize {
    let mut n = 0;
    for yy in y..(y + h).min(H) {
        for xx in x..(x + w).min(W) {
            let i = ((yy * W + xx) * 3) as usize;
            n += usize::from(
                shot.get(i..i + 3)
                    .is_some_and(|p| p.iter().all(|c| *c > 120)),
            );
        }
    }
    n
}

/// Where the prompt draws the "Hide" box of its second window row once it
/// is armed (the layout in agent/src/ui.rs and ui/privacy.rs; see
/// privacy-prompt-hidden.png).
const SECOND_ROW_HIDE: (&str, &str) = ("15", "259");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_lists_windows_hides_from_the_first_frame_and_offers_hide_for_new_ones() {
    let xvfb = Xvfb::start_with_size(W, H);
    assent_tests::x11::paint_root(xvfb.display(), ROOT);
    let wins = Windows::new(xvfb.display());
    wins.open(
        "My Bank — accounts",
        "Firefox",
        0x5050a0,
        (560, 20, 200, 120),
    );
    wins.open("Secret ledger", "Ledger", SECRET, (560, 180, 200, 150));
    wins.open("Notes", "Notes", NOTES, (560, 380, 200, 150));
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let dir = assent_tests::tempdir();
    let v = viewer::connect(&relay.addr, &relay.ca(), &key, Scope::View)
        .await
        .unwrap();
    let code = v.invite.code.clone();
    let pairing = tokio::spawn(async move { viewer::pair(v, &key).await });
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let mut cmd = Command::new(bin("assent-agent"));
    cmd.args(["join", "--relay", &relay.addr, "--hide", "*bank*", "--ca"])
        .arg(relay.ca())
        .arg(&code)
        .env("DISPLAY", xvfb.display())
        .env("XDG_CONFIG_HOME", dir.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let mut agent = Proc::new(cmd.spawn().expect("spawn assent-agent"));
    let prompt = wait_window(&xvfb, "Assent — support request").await;
    // The list is drawn once the window has listed the desktop.
    let artifacts = crate::desktop::artifacts();
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("privacy-prompt.png");
    // The rows are drawn once the agent has listed the desktop (light
    // text on the dark theme, in the third row).
    let drawn = eventually_every_async(WAIT, Duration::from_millis(200), || {
        ready((light_in(&screenshot(&xvfb), (0, 292, 300, 16)) > 20).then_some(()))
    });
    drawn.await.expect("the window list is drawn");
    let _ = xvfb
        .command("import")
        .args(["-window", "root"])
        .arg(&png)
        .status();
    // Hide "Secret ledger" with its box, then allow view.
    xdotool(&xvfb, &["mousemove", "--window", &prompt, "40", "20"]);
    xdotool(&xvfb, &["windowfocus", &prompt]);
    tokio::time::sleep(assent_agent::ui::ARM_DELAY + Duration::from_millis(300)).await;
    let (bx, by) = SECOND_ROW_HIDE;
    xdotool(&xvfb, &["mousemove", "--window", &prompt, bx, by]);
    xdotool(&xvfb, &["click", "1"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = xvfb
        .command("import")
        .args(["-window", "root"])
        .arg(artifacts.join("privacy-prompt-hidden.png"))
        .status();
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
    let mut frames = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if v.next_frame(Duration::from_millis(300)).await.unwrap() {
            frames += 1;
            assert_eq!(
                count(&v, SECRET),
                0,
                "frame {frames} shows the window hidden at the prompt"
            );
            assert_eq!(
                count(&v, 0x5050a0),
                0,
                "frame {frames} shows the policy's window"
            );
        }
    }
    assert!(frames >= 1 && count(&v, NOTES) > 0);
    assert_eq!(v.privacy, Some((2, false)));
    // A window opened during the session is shared, and the indicator
    // says so with a one-click Hide.
    wins.open("Fresh window", "Fresh", FRESH, (300, 470, 120, 100));
    v.read_until(WAIT, |v| count(v, FRESH) > 0).await.unwrap();
    assert!(count(&v, FRESH) > 0, "a new window is shared");
    let live = wait_window(&xvfb, "Assent — session live").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _ = xvfb
        .command("import")
        .args(["-window", "root"])
        .arg(artifacts.join("privacy-live.png"))
        .status();
    // "Hide it" beside the notice (see privacy-live.png).
    xdotool(&xvfb, &["mousemove", "--window", &live, "246", "235"]);
    xdotool(&xvfb, &["click", "1"]);
    v.read_until(WAIT, |v| {
        v.privacy == Some((3, false)) && count(v, FRESH) == 0
    })
    .await
    .unwrap();
    assert_eq!(count(&v, FRESH), 0, "hidden with one click");
    assert_eq!(v.privacy, Some((3, false)));
    // SIGTERM ends the session; a second skips the question after it.
    agent.signal(libc::SIGTERM);
    relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    agent.signal(libc::SIGTERM);
    agent
        .wait_timeout(Duration::from_secs(10))
        .expect("agent exits");
}

/// The real programs end to end: the technician's headless viewer reports
/// how many windows the user keeps private (the window's status bar shows
/// the same count), and nothing of them reaches its audit, log or note.
#[test]
fn the_technicians_viewer_counts_hidden_windows_and_never_names_them() {
    let xvfb = Xvfb::start_with_size(W, H);
    assent_tests::x11::paint_root(xvfb.display(), ROOT);
    let wins = Windows::new(xvfb.display());
    wins.open(
        "My Bank — accounts",
        "Firefox",
        0x5050a0,
        (560, 20, 200, 120),
    );
    wins.open("Notes", "Notes", NOTES, (560, 380, 200, 150));
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    std::fs::create_dir_all(home.path().join("agent/assent")).unwrap();
    std::fs::write(
        home.path().join("agent/assent/agent.toml"),
        "# the organisation's policy\nhide = [\"*bank*\"]\n",
    )
    .unwrap();
    let (mut viewer, code) =
        crate::people::technician(&relay, (home.path(), &key), "T-7001", &[], "trace");
    let mut user = crate::people::user(&relay, home.path(), xvfb.display(), &code, "warn");
    std::thread::sleep(assent_agent::ui::ARM_DELAY);
    user.say("v");
    let stats = viewer.hear("\"hidden_windows\":1");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["only_one_window"], false, "{stats}");
    user.say("only 2");
    viewer.hear("\"only_one_window\":true");
    user.say("e");
    relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    viewer.hang_up();
    let _ = viewer.proc.wait_timeout(Duration::from_secs(10));
    let mut seen = relay.log_text() + &std::fs::read_to_string(relay.audit_path()).unwrap();
    for file in ["data/assent/audit.jsonl", "viewer-T-7001.log"] {
        seen += &std::fs::read_to_string(home.path().join(file)).unwrap_or_default();
    }
    for dir in ["data/assent/notes"] {
        for note in std::fs::read_dir(home.path().join(dir))
            .into_iter()
            .flatten()
        {
            seen += &std::fs::read_to_string(note.unwrap().path()).unwrap_or_default();
        }
    }
    assert!(seen.contains("privacy_changed"), "the relay audited it");
    for title in ["Bank", "Notes —", "Firefox"] {
        assert!(
            !seen.contains(title),
            "{title:?} reached a log, audit or note"
        );
    }
}

/// The technician's window: the user's screen with the policy's window
/// painted over, and the status bar's count (privacy-viewer.png).
#[test]
fn the_viewer_window_shows_the_cover_and_the_count() {
    let display_a = Xvfb::start_with_size(W, H);
    let display_b = Xvfb::start_with_size(1280, 900);
    assent_tests::x11::paint_root(display_a.display(), ROOT);
    let wins = Windows::new(display_a.display());
    wins.open(
        "My Bank — accounts",
        "Firefox",
        SECRET,
        (100, 100, 300, 200),
    );
    wins.open("Notes", "Notes", NOTES, (450, 300, 200, 150));
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let mut viewer = Command::new(bin("assent-viewer"))
        .args(["connect", "--relay", &relay.addr, "--ca"])
        .arg(relay.ca())
        .args([
            "--ticket",
            "T-7002",
            "--identity-check",
            "phone-callback",
            "--key",
        ])
        .arg(&key)
        .env("DISPLAY", display_b.display())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(home.path().join("viewer.log")).unwrap())
        .spawn()
        .unwrap();
    let out = assent_tests::lines(viewer.stdout.take().unwrap());
    let _viewer = Proc::new(viewer);
    let code = assent_tests::wait_line(&out, |l| l.starts_with("Invite code: "), "code")
        .trim_start_matches("Invite code: ")
        .to_string();
    std::fs::create_dir_all(home.path().join("agent/assent")).unwrap();
    std::fs::write(
        home.path().join("agent/assent/agent.toml"),
        "hide = [\"*bank*\"]\n",
    )
    .unwrap();
    let mut user = crate::people::user(&relay, home.path(), display_a.display(), &code, "warn");
    std::thread::sleep(assent_agent::ui::ARM_DELAY);
    user.say("v");
    // The user's screen in the technician's window: Notes, never the bank.
    let shown = assent_tests::eventually_every(WAIT, Duration::from_millis(300), || {
        let shot = screenshot_of(&display_b, 1280, 900);
        let has = |rgb: u32| {
            let want = [(rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8];
            shot.chunks_exact(3).filter(|p| *p == want).count()
        };
        (has(NOTES) > 5000).then(|| has(SECRET))
    });
    std::thread::sleep(Duration::from_millis(500));
    let png = crate::desktop::artifacts().join("privacy-viewer.png");
    let _ = display_b
        .command("import")
        .args(["-window", "root"])
        .arg(&png)
        .status();
    assert_eq!(
        shown,
        Some(0),
        "the viewer window shows the bank's colour, or nothing"
    );
    user.say("e");
    relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
}

fn screenshot_of(x: &Xvfb, w: u32, h: u32) -> Vec<u8> {
    let out = x
        .command("import")
        .args(["-window", "root", "-depth", "8", "rgb:-"])
        .output()
        .expect("import");
    assert_eq!(out.stdout.len(), (w * h * 3) as usize);
    out.stdout
}
