//! Screen geometry changes (issue 15 item 6), with the real `--tty` agent
//! on a real (virtual) X display: a resolution change with `xrandr -s`
//! keeps the session, and the technician's decoded screen follows it in
//! size and pixels; with two RandR monitors (`xrandr --setmonitor`) the
//! technician sees both, and picking one sends only that rectangle, the
//! privacy mask still in place.

use std::time::Duration;

use assent_proto::session_msg::{Control, InputEvent, SessionMsg};
use assent_proto::wire::Scope;
use assent_tests::viewer::{LiveViewer, Pairing};
use assent_tests::TestRelay;
use assent_xvfb::Xvfb;

use crate::common::WAIT;
use crate::privacy::{count, session, Windows, ROOT, SECRET};

/// Only the large screen shows it.
const CORNER: u32 = 0xc04020;
/// On the left monitor.
const LEFT: u32 = 0x30a050;
/// On the right monitor.
const RIGHT: u32 = 0xa030c0;

fn xrandr(xvfb: &Xvfb, args: &[&str]) {
    let out = xvfb.command("xrandr").args(args).output().expect("xrandr");
    assert!(
        out.status.success(),
        "xrandr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rgb(v: &LiveViewer, x: u32, y: u32) -> Option<u32> {
    let [r, g, b, _] = v.pixel(x, y)?;
    Some(u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b))
}

fn size(v: &LiveViewer) -> (u32, u32) {
    (v.decoder.width(), v.decoder.height())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_change_keeps_the_session_and_the_viewer_follows() {
    // Xvfb's screen can shrink and grow back up to its starting size; a
    // second mode, as a real display has several.
    let xvfb = Xvfb::start_with_size(1280, 800);
    let mode = ["1024x768", "60", "1024", "1048", "1184", "1344"];
    xrandr(
        &xvfb,
        &[&["--newmode"], &mode[..], &["768", "771", "777", "806"]].concat(),
    );
    xrandr(&xvfb, &["--addmode", "screen", "1024x768"]);
    xrandr(&xvfb, &["-s", "1024x768"]);
    assent_tests::x11::paint_root(xvfb.display(), ROOT);
    let wins = Windows::new(xvfb.display());
    wins.open("Left", "Left", LEFT, (100, 100, 200, 150));
    wins.open("Corner", "Corner", CORNER, (1100, 700, 150, 80));
    let relay = TestRelay::started(&[]);
    let dir = assent_tests::tempdir();
    let (mut v, _agent, _stdin, _rx) = session(&xvfb, &relay, dir.path(), &[], |_| vec![]).await;
    let small = v
        .read_until(WAIT, |v| {
            size(v) == (1024, 768) && rgb(v, 150, 150) == Some(LEFT)
        })
        .await
        .unwrap();
    assert!(small, "first the small screen: {:?}", size(&v));
    assert_eq!(count(&v, CORNER), 0, "off the small screen");
    // Larger: the session goes on, the viewer's screen grows, and shows
    // what only the larger screen has.
    xrandr(&xvfb, &["-s", "1280x800"]);
    let big = v
        .read_until(WAIT, |v| {
            size(v) == (1280, 800)
                && rgb(v, 1150, 740) == Some(CORNER)
                && rgb(v, 150, 150) == Some(LEFT)
                && rgb(v, 1050, 50) == Some(ROOT)
        })
        .await
        .unwrap();
    assert!(big, "the viewer follows to 1280x800: {:?}", size(&v));
    let view = v.decoder.view().cloned().expect("a view with the keyframe");
    assert_eq!((view.screen_width, view.screen_height), (1280, 800));
    // And back.
    xrandr(&xvfb, &["-s", "1024x768"]);
    let back = v
        .read_until(WAIT, |v| {
            size(v) == (1024, 768) && rgb(v, 150, 150) == Some(LEFT)
        })
        .await
        .unwrap();
    assert!(back, "and back to 1024x768: {:?}", size(&v));
    assert_eq!(count(&v, CORNER), 0);
    // Still the same live session: frames keep coming, nothing ended.
    wins.open("Later", "Later", RIGHT, (500, 500, 100, 100));
    let later = v
        .read_until(WAIT, |v| rgb(v, 550, 550) == Some(RIGHT))
        .await
        .unwrap();
    assert!(later, "the session goes on after the changes");
    let ended = relay.wait_record(Duration::from_millis(200), |r| r["event"] == "session_end");
    assert!(ended.is_none(), "the session ended: {ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_monitors_picking_one_sends_only_that_rectangle() {
    let (xvfb, wins) = two_monitors();
    wins.open("Secret ledger", "Ledger", SECRET, (1000, 500, 200, 150));
    let relay = TestRelay::started(&[]);
    let dir = assent_tests::tempdir();
    let (mut v, _agent, _stdin, _rx) =
        session(&xvfb, &relay, dir.path(), &["Secret*"], |_| vec![]).await;
    let all = v
        .read_until(WAIT, |v| {
            size(v) == (1280, 800) && count(v, LEFT) > 0 && count(v, RIGHT) > 0
        })
        .await
        .unwrap();
    assert!(all, "both monitors at first: {:?}", size(&v));
    let view = v.decoder.view().cloned().expect("a view");
    assert_eq!(view.monitors.len(), 2, "{view:?}");
    assert_eq!((view.monitors[1].x, view.monitors[1].width), (640, 640));
    assert_eq!(count(&v, SECRET), 0);
    // The right one: 640x800 from x = 640, nothing of the left.
    let pick = SessionMsg::Control(Control::ShowMonitor(Some(1)));
    v.tx.send(&pick).await.unwrap();
    let right = v
        .read_until(WAIT, |v| {
            size(v) == (640, 800) && rgb(v, 800 - 640 + 50, 250) == Some(RIGHT)
        })
        .await
        .unwrap();
    assert!(right, "only the right monitor: {:?}", size(&v));
    assert_eq!(count(&v, LEFT), 0, "nothing of the left monitor");
    assert_eq!(
        count(&v, SECRET),
        0,
        "the mask still covers the hidden window"
    );
    assert_ne!(
        rgb(&v, 1000 - 640 + 50, 550),
        Some(ROOT),
        "covered where it is"
    );
    assert_eq!(v.decoder.view().map(|w| w.x), Some(640));
    let artifacts = crate::desktop::artifacts();
    std::fs::create_dir_all(&artifacts).unwrap();
    v.save_png(&artifacts.join("geometry-right-monitor.png"));
    // All again.
    let all = SessionMsg::Control(Control::ShowMonitor(None));
    v.tx.send(&all).await.unwrap();
    let both = v
        .read_until(WAIT, |v| {
            size(v) == (1280, 800) && count(v, LEFT) > 0 && count(v, RIGHT) > 0
        })
        .await
        .unwrap();
    assert!(both, "both again: {:?}", size(&v));
    assert_eq!(count(&v, SECRET), 0);
}

/// Display A with two monitors side by side and a window of its own colour
/// on each.
fn two_monitors() -> (Xvfb, Windows) {
    let xvfb = Xvfb::start_with_size(1280, 800);
    xrandr(
        &xvfb,
        &["--setmonitor", "left", "640/169x800/212+0+0", "screen"],
    );
    xrandr(
        &xvfb,
        &["--setmonitor", "right", "640/169x800/212+640+0", "none"],
    );
    assent_tests::x11::paint_root(xvfb.display(), ROOT);
    let wins = Windows::new(xvfb.display());
    wins.open("Left", "Left", LEFT, (100, 100, 200, 150));
    wins.open("Right", "Right", RIGHT, (800, 200, 200, 150));
    (xvfb, wins)
}

/// The real headless viewer: its statistics list the monitors, and a
/// stdin line `monitor 2` shows only the second; `quality sharp` sets the
/// screen quality its statistics report.
#[test]
fn the_headless_viewer_lists_the_monitors_and_picks_one_by_a_line() {
    let (xvfb, _wins) = two_monitors();
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let (mut viewer, code) =
        crate::people::technician(&relay, (home.path(), &key), "T-7015", &[], "info");
    let mut user = crate::people::user(&relay, home.path(), xvfb.display(), &code, "warn");
    std::thread::sleep(assent_agent::ui::ARM_DELAY);
    user.say("v");
    let stats = viewer.hear("\"monitors\":[[0,0,640,800],[640,0,640,800]]");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["screen"], serde_json::json!([1280, 800]), "{stats}");
    assert_eq!(stats["monitor"], serde_json::Value::Null, "all at first");
    viewer.say("monitor 2");
    let picked = viewer.hear("\"monitor\":1");
    assert!(picked.contains("\"screen\":[1280,800]"), "{picked}");
    viewer.say("monitor all");
    viewer.hear("\"monitor\":null");
    // The screen quality, by a line too (issue 15): auto until changed.
    assert!(picked.contains("\"quality\":\"auto\""), "{picked}");
    viewer.say("quality sharp");
    viewer.hear("\"quality\":\"sharp\"");
    viewer.hang_up();
    relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
}

/// The technician's window on display B: the user's two monitors, and the
/// row above them, "Show: All 1 2" (geometry-viewer.png); a click on 2.
#[test]
fn the_viewer_window_shows_both_monitors_and_offers_the_pick() {
    let (display_a, _wins) = two_monitors();
    let display_b = Xvfb::start_with_size(1280, 900);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let mut viewer = std::process::Command::new(assent_tests::bin("assent-viewer"))
        .args(["connect", "--relay", &relay.addr, "--ca"])
        .arg(relay.ca())
        .args(["--ticket", "T-7016", "--identity-check", "phone-callback"])
        .arg("--key")
        .arg(&key)
        .env("DISPLAY", display_b.display())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(home.path().join("viewer.log")).unwrap())
        .spawn()
        .unwrap();
    let out = assent_tests::lines(viewer.stdout.take().unwrap());
    let _viewer = assent_tests::Proc::new(viewer);
    let code = assent_tests::wait_line(&out, |l| l.starts_with("Invite code: "), "code")
        .trim_start_matches("Invite code: ")
        .to_string();
    let mut user = crate::people::user(&relay, home.path(), display_a.display(), &code, "warn");
    std::thread::sleep(assent_agent::ui::ARM_DELAY);
    user.say("v");
    let both = assent_tests::eventually_every(WAIT, Duration::from_millis(300), || {
        let out = display_b
            .command("import")
            .args(["-window", "root", "-depth", "8", "rgb:-"])
            .output()
            .ok()?;
        let has = |rgb: u32| {
            let want = [(rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8];
            out.stdout.chunks_exact(3).any(|p| p == want)
        };
        (has(LEFT) && has(RIGHT)).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let png = crate::desktop::artifacts().join("geometry-viewer.png");
    let _ = display_b
        .command("import")
        .args(["-window", "root"])
        .arg(&png)
        .status();
    assert!(both.is_some(), "the window shows both monitors");
    // Click "2": right of the selected "All" (egui's selection colour, in
    // the row above the screen), past "1".
    let (w, _, shot) = rgb_shot(&display_b);
    let all = (0..w)
        .filter(|&x| (0..60).any(|y| pixel(&shot, w, x, y) == SELECTED))
        .max()
        .expect("the selected \"All\" above the screen");
    let y = (0..60)
        .find(|&y| pixel(&shot, w, all, y) == SELECTED)
        .unwrap_or(10);
    let (x, y) = ((all + 51).to_string(), (y + 6).to_string());
    let xdotool = |args: &[&str]| display_b.command("xdotool").args(args).status();
    let _ = xdotool(&["mousemove", &x, &y]);
    let _ = xdotool(&["click", "1"]);
    let right = assent_tests::eventually_every(WAIT, Duration::from_millis(300), || {
        let (_, _, shot) = rgb_shot(&display_b);
        let has = |rgb: u32| shot.chunks_exact(3).any(|p| p == rgb_bytes(rgb));
        (has(RIGHT) && !has(LEFT)).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let _ = display_b
        .command("import")
        .args(["-window", "root"])
        .arg(crate::desktop::artifacts().join("geometry-viewer-picked.png"))
        .status();
    assert!(
        right.is_some(),
        "after a click on 2 the window shows only the right monitor"
    );
    user.say("e");
    relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
}

/// egui's selection colour (the picked monitor's button).
const SELECTED: [u8; 3] = [0x00, 0x5c, 0x80];

fn rgb_bytes(rgb: u32) -> [u8; 3] {
    [(rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8]
}

/// A screenshot of the 1280x900 display B as (width, height, RGB).
fn rgb_shot(x: &Xvfb) -> (u32, u32, Vec<u8>) {
    let out = x
        .command("import")
        .args(["-window", "root", "-depth", "8", "rgb:-"])
        .output()
        .expect("import");
    (1280, 900, out.stdout)
}

fn pixel(shot: &[u8], w: u32, x: u32, y: u32) -> [u8; 3] {
    let i = ((y * w + x) * 3) as usize;
    shot.get(i..i + 3)
        .and_then(|p| p.try_into().ok())
        .unwrap_or_default()
}

/// With control and the right monitor picked, a pointer position on the
/// technician's screen lands on that monitor of the user's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pointer_input_lands_on_the_monitor_shown() {
    let (xvfb, _wins) = two_monitors();
    let relay = TestRelay::started(&[]);
    let dir = assent_tests::tempdir();
    let key = relay.enrol("alice");
    let v = assent_tests::viewer::connect(&relay.addr, &relay.ca(), &key, Scope::Control)
        .await
        .unwrap();
    let code = v.invite.code.clone();
    let pairing = tokio::spawn(async move { assent_tests::viewer::pair(v, &key).await });
    let mut agent = crate::privacy::spawn_agent(&xvfb, &relay, dir.path(), &code, &[]);
    let rx = assent_tests::lines(agent.child.stderr.take().unwrap());
    let mut stdin = agent.child.stdin.take().unwrap();
    assent_tests::wait_line(&rx, |l| l.contains("Type your answer"), "the prompt");
    tokio::time::sleep(assent_agent::ui::ARM_DELAY + Duration::from_millis(200)).await;
    std::io::Write::write_all(&mut stdin, b"c\n").unwrap();
    let mut v = match tokio::time::timeout(WAIT, pairing)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        Pairing::Live(l) => *l,
        Pairing::Refused(r) => panic!("refused: {r}"),
    };
    let pick = SessionMsg::Control(Control::ShowMonitor(Some(1)));
    v.tx.send(&pick).await.unwrap();
    let right = v.read_until(WAIT, |v| size(v) == (640, 800)).await.unwrap();
    assert!(right, "the right monitor: {:?}", size(&v));
    v.input(InputEvent::MouseMove { x: 100, y: 50 })
        .await
        .unwrap();
    let at = assent_tests::eventually_every(WAIT, Duration::from_millis(100), || {
        let out = xvfb
            .command("xdotool")
            .arg("getmouselocation")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.starts_with("x:740 y:50 ").then_some(text)
    });
    assert!(
        at.is_some(),
        "the pointer is at (740, 50) on the user's screen"
    );
    // The agent says where it is, in the frame's pixels.
    let seen = v
        .read_until(WAIT, |v| v.cursor == Some((100, 50)))
        .await
        .unwrap();
    assert!(seen, "cursor reported on the monitor: {:?}", v.cursor);
}
