//! The agent's own windows are not part of the stream (issue 15 item 5):
//! with the real agent's window on a real (virtual) X display, the "session
//! live" window is covered by the agent's own label in every frame the
//! technician decodes, wherever it moves, it is not counted as a window
//! the user hid, and a pixel change inside it (a hovered button) sends no
//! frame: on a static screen only messages that are not frames flow.

use std::future::ready;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assent_capture::mask::OWN;
use assent_proto::wire::Scope;
use assent_tests::viewer::{self, LiveViewer, Pairing};
use assent_tests::{bin, eventually_every_async, Proc, TestRelay};
use assent_xvfb::Xvfb;

use crate::common::WAIT;
use crate::privacy::{count, Windows, H, NOTES, ROOT, W};

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

/// A window's place on the root: (x, y, width, height).
fn geometry(xvfb: &Xvfb, id: &str) -> (u32, u32, u32, u32) {
    let shell = xdotool(xvfb, &["getwindowgeometry", "--shell", id]);
    let field = |name: &str| -> u32 {
        shell
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(0, |v| v.max(0) as u32)
    };
    (field("X"), field("Y"), field("WIDTH"), field("HEIGHT"))
}

/// The real screen's pixels inside `rect`, as RGB.
fn real_pixels(xvfb: &Xvfb, (x, y, w, h): (u32, u32, u32, u32)) -> Vec<[u8; 3]> {
    let out = xvfb
        .command("import")
        .args(["-window", "root", "-depth", "8", "rgb:-"])
        .output()
        .expect("import");
    let mut px = Vec::new();
    for yy in y..(y + h).min(H) {
        for xx in x..(x + w).min(W) {
            let i = ((yy * W + xx) * 3) as usize;
            if let Some(p) = out.stdout.get(i..i + 3) {
                px.push([p[0], p[1], p[2]]);
            }
        }
    }
    px
}

/// Pixels inside `rect` of the technician's screen that are not the
/// agent's own cover.
fn uncovered(v: &LiveViewer, (x, y, w, h): (u32, u32, u32, u32)) -> usize {
    let mut n = 0;
    for yy in y..(y + h).min(v.decoder.height()) {
        for xx in x..(x + w).min(v.decoder.width()) {
            let Some([r, g, b, _]) = v.pixel(xx, yy) else {
                continue;
            };
            n += usize::from(!OWN.has_colour([b, g, r, 0xff]));
        }
    }
    n
}

fn rgb(v: &LiveViewer, x: u32, y: u32) -> Option<u32> {
    let [r, g, b, _] = v.pixel(x, y)?;
    Some(u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b))
}

/// The colour the window paints most, from a screenshot (egui's panel).
fn main_colour(px: &[[u8; 3]]) -> u32 {
    let mut counts = std::collections::HashMap::<[u8; 3], usize>::new();
    for p in px {
        *counts.entry(*p).or_default() += 1;
    }
    let (p, _) = counts.into_iter().max_by_key(|(_, n)| *n).expect("pixels");
    u32::from(p[0]) << 16 | u32::from(p[1]) << 8 | u32::from(p[2])
}

/// Reads frames for `limit`; panics if one shows the window's own colour.
async fn no_leak_for(v: &mut LiveViewer, limit: Duration, panel: u32) -> u64 {
    let until = Instant::now() + limit;
    let mut frames = 0;
    while Instant::now() < until {
        if v.next_frame(Duration::from_millis(200)).await.unwrap() {
            frames += 1;
            assert_eq!(count(v, panel), 0, "a frame shows the agent's window");
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_own_window_never_reaches_the_viewer_and_costs_nothing_when_static() {
    let xvfb = Xvfb::start_with_size(W, H);
    assent_tests::x11::paint_root(xvfb.display(), ROOT);
    let wins = Windows::new(xvfb.display());
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
    cmd.args(["join", "--relay", &relay.addr, "--ca"])
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
    xdotool(&xvfb, &["mousemove", "--window", &prompt, "40", "20"]);
    // X refuses the focus until the window is viewable: until it has it.
    let focused = eventually_every_async(WAIT, Duration::from_millis(100), || {
        xdotool(&xvfb, &["windowfocus", &prompt]);
        ready((xdotool(&xvfb, &["getwindowfocus"]) == prompt).then_some(()))
    });
    focused.await.expect("the prompt takes the focus");
    tokio::time::sleep(assent_agent::ui::ARM_DELAY + Duration::from_millis(300)).await;
    // Again until it counts: on a loaded machine the window may arm late,
    // and a key before that answers nothing.
    let mut pairing = pairing;
    let until = Instant::now() + WAIT;
    let paired = loop {
        xdotool(&xvfb, &["key", "v"]);
        match tokio::time::timeout(Duration::from_millis(700), &mut pairing).await {
            Ok(done) => break done,
            Err(_) if Instant::now() < until => continue,
            Err(_) => panic!("the window never took the answer"),
        }
    };
    let mut v = match paired.unwrap().unwrap() {
        Pairing::Live(l) => *l,
        Pairing::Refused(r) => panic!("refused: {r}"),
    };
    let live = wait_window(&xvfb, "Assent — session live").await;
    let place = geometry(&xvfb, &live);
    assert!(place.2 > 100 && place.3 > 100, "{place:?}");
    // The window as the user sees it: its panel colour, which no frame
    // may carry (the desktop has none of it).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let panel = main_colour(&real_pixels(&xvfb, place));
    assert!(![ROOT, NOTES].contains(&panel));
    let covered = v
        .read_until(WAIT, |v| v.frames > 0 && uncovered(v, place) == 0)
        .await
        .unwrap();
    assert!(covered, "the session live window is covered at the viewer");
    assert!(count(&v, NOTES) > 0, "the user's own windows are shared");
    no_leak_for(&mut v, Duration::from_secs(2), panel).await;
    assert_eq!(uncovered(&v, place), 0);
    assert_eq!(v.privacy, Some((0, false)), "not counted as hidden");
    let artifacts = crate::desktop::artifacts();
    std::fs::create_dir_all(&artifacts).unwrap();
    let _ = xvfb
        .command("import")
        .args(["-window", "root"])
        .arg(artifacts.join("own-window-user.png"))
        .status();
    v.save_png(&artifacts.join("own-window-technician.png"));

    // Static: the pointer rests on the window's buttons (egui highlights
    // what it hovers: the window's pixels change on the real screen), yet
    // no frame is sent.
    let before = real_pixels(&xvfb, place);
    let (frames, bytes) = (v.frames, v.frame_bytes);
    let started = Instant::now();
    for (x, y) in [("30", "150"), ("90", "150"), ("30", "150")] {
        xdotool(&xvfb, &["mousemove", "--window", &live, x, y]);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let after = real_pixels(&xvfb, place);
    assert_ne!(before, after, "hovering changed the window's pixels");
    no_leak_for(&mut v, Duration::from_secs(5), panel).await;
    let secs = started.elapsed().as_secs_f64();
    let sent = v.frame_bytes - bytes;
    assert_eq!(
        (v.frames - frames, sent),
        (0, 0),
        "frames sent in {secs:.1} s of a static screen with the agent's window changing"
    );

    // The cover follows the window; where it was shows the desktop again.
    let (to_x, to_y) = ((place.0 + 200).to_string(), (place.1 + 100).to_string());
    xdotool(&xvfb, &["windowmove", &live, &to_x, &to_y]);
    let moved = eventually_every_async(WAIT, Duration::from_millis(100), || {
        ready(Some(geometry(&xvfb, &live)).filter(|g| *g != place))
    })
    .await
    .expect("the window moved");
    let followed = v
        .read_until(WAIT, |v| uncovered(v, moved) == 0)
        .await
        .unwrap();
    assert!(followed, "the cover follows the window to {moved:?}");
    let left_behind = (place.0, place.1, 200, place.3);
    let root_again = v
        .read_until(WAIT, |v| {
            let (x, y, w, h) = left_behind;
            (x..x + w).all(|xx| (y..y + h).all(|yy| rgb(v, xx, yy) == Some(ROOT)))
        })
        .await
        .unwrap();
    assert!(root_again, "where the window was shows the desktop again");
    no_leak_for(&mut v, Duration::from_secs(1), panel).await;
    assert_eq!(uncovered(&v, moved), 0);
    agent.signal(libc::SIGTERM);
    relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    // Another SIGTERM skips the question after the end; sent until it
    // lands after the end, not while the agent is still ending.
    let exited = (0..10).any(|_| {
        agent.signal(libc::SIGTERM);
        agent.wait_timeout(Duration::from_secs(1)).is_some()
    });
    assert!(exited, "the agent exits");
}
