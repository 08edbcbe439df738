//! Recording and screenshots (issue 14 item 4), with the real programs:
//! nothing is recorded or saved before the user's yes; with it, the
//! recording's frames, exported as PNG, equal what the viewer decoded (its
//! own screenshot), the replay window plays it, the relay's
//! `recording_stopped` hash matches the file, `verify-recording` checks it
//! and catches a changed byte; the agent's window shows "Recording" in red
//! while it is allowed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use assent_tests::x11::paint_root;
use assent_tests::{bin, TestRelay};
use assent_xvfb::Xvfb;

use crate::agent_window::{self, shot, window, xdotool};
use crate::common::WAIT;
use crate::people::{technician, user};

fn field(line: &str, key: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["recording"][key].clone()
}

fn rgba_of(png: &Path) -> (u32, u32, Vec<u8>) {
    let img = image::open(png).unwrap().to_rgba8();
    (img.width(), img.height(), img.into_raw())
}

fn viewer_cmd(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("assent-viewer"))
        .args(args)
        .env("XDG_DATA_HOME", home.join("data"))
        .output()
        .unwrap()
}

#[test]
fn recording_needs_the_users_yes_and_replays_what_the_viewer_saw() {
    let desk = Xvfb::start_with_size(320, 200);
    paint_root(desk.display(), 0x204060);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let (mut viewer, code) =
        technician(&relay, (home.path(), &key), "T-7201", &["--record"], "info");
    let mut agent = user(&relay, home.path(), desk.display(), &code, "info");
    agent.say("v");
    viewer.hear("\"fps\"");
    // No yes yet: the technician can neither record nor take a screenshot.
    viewer.say("record start");
    viewer.hear("the user has not allowed recording");
    viewer.say("screenshot");
    viewer.hear("the user has not allowed recording or screenshots");
    let recordings = home.path().join("data/assent/recordings");
    assert!(
        !recordings.exists(),
        "something was saved before the user's yes"
    );

    agent.say("recording on");
    agent.hear("RECORDING: your technician may record the session");
    viewer.hear("{\"recording\":{\"allowed\":true}}");
    viewer.say("record start");
    let started = viewer.hear("\"recording\":true");
    let file = PathBuf::from(field(&started, "path").as_str().unwrap());
    for rgb in [0x802020, 0x208020, 0x2020a0] {
        std::thread::sleep(Duration::from_millis(400));
        paint_root(desk.display(), rgb);
    }
    std::thread::sleep(Duration::from_millis(800));
    viewer.say("screenshot");
    let shot = viewer.hear("\"screenshot\"");
    let shot = PathBuf::from(field(&shot, "screenshot").as_str().unwrap());
    agent.say("recording off");
    let stopped = viewer.hear("\"recording\":false");
    let sha = field(&stopped, "sha256").as_str().unwrap().to_string();
    assert!(
        field(&stopped, "frames").as_u64().unwrap() >= 2,
        "{stopped}"
    );
    viewer.say("record start");
    viewer.hear("the user has not allowed recording");

    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the recording's mode");
    let audited = relay
        .wait_record(WAIT, |r| r["event"] == "recording_stopped")
        .expect("recording_stopped");
    let on_disk = hex::encode(assent_files::sha256_of(&file).unwrap());
    assert_eq!(audited["sha256"], on_disk.as_str(), "{audited}");
    assert_eq!(sha, on_disk);
    let events = relay.events();
    for e in ["recording_started", "screenshot_taken", "recording_stopped"] {
        assert!(events.iter().any(|x| x == e), "{e} missing: {events:?}");
    }

    // Exported, the last frame is the screen the viewer decoded.
    let frames = home.path().join("frames");
    let out = viewer_cmd(
        home.path(),
        &[
            "export",
            file.to_str().unwrap(),
            "--png",
            frames.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut pngs: Vec<PathBuf> = std::fs::read_dir(&frames)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pngs.sort();
    assert!(pngs.len() >= 2, "{pngs:?}");
    let (last, seen) = (rgba_of(pngs.last().unwrap()), rgba_of(&shot));
    assert_eq!((last.0, last.1), (seen.0, seen.1));
    assert!(
        last.2 == seen.2,
        "the last exported frame differs from the viewer's screenshot"
    );
    assert_eq!(&last.2[..3], &[0x20, 0x20, 0xa0], "the last colour painted");

    let verified = viewer_cmd(home.path(), &["verify-recording", file.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && said.contains("matches the audit"),
        "{said}"
    );
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let tampered = viewer_cmd(home.path(), &["verify-recording", file.to_str().unwrap()]);
    assert_eq!(tampered.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&tampered.stderr).contains("does not match the audit"));
    bytes[at] ^= 1;
    std::fs::write(&file, &bytes).unwrap();

    // The replay window plays it to its last frame.
    let screen = Xvfb::start_with_size(1000, 700);
    let replay = Command::new(bin("assent-viewer"))
        .args(["replay", file.to_str().unwrap()])
        .env("DISPLAY", screen.display())
        .spawn()
        .unwrap();
    let _replay = assent_tests::Proc::new(replay);
    let played = assent_tests::eventually(WAIT, || {
        let png = home.path().join("replay.png");
        let _ = screen
            .command("import")
            .args(["-window", "root"])
            .arg(&png)
            .status();
        let (_, _, px) = std::fs::metadata(&png).is_ok().then(|| rgba_of(&png))?;
        px.chunks_exact(4)
            .filter(|p| p[..3] == [0x20, 0x20, 0xa0])
            .nth(1000)
            .map(|_| ())
    });
    let _ = std::fs::copy(
        home.path().join("replay.png"),
        crate::desktop::artifacts().join("replay.png"),
    );
    assert!(
        played.is_some(),
        "the replay window never showed the last frame"
    );
    agent.say("e");
}

/// Pixels of the agent's red "Recording" on the screen now.
fn red_pixels(x: &Xvfb, png: &Path) -> usize {
    let _ = x
        .command("import")
        .args(["-window", "root"])
        .arg(png)
        .status();
    let (_, _, px) = rgba_of(png);
    // Text is anti-aliased: strongly red, not exactly the colour.
    px.chunks_exact(4)
        .filter(|p| p[0] > 150 && p[1] < 80 && p[2] < 80)
        .count()
}

/// The agent's window: recording is a box of its own in the prompt; while
/// allowed, "Recording" stands in red at the top of the "session live"
/// window, and "Stop allowing recording" takes it away (the viewer is told).
/// Screenshots: target/test-artifacts/recording-live.png, recording-off.png.
#[test]
fn the_agent_window_shows_recording_in_red_while_allowed() {
    let desk = Xvfb::start_with_size(640, 520);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let (mut viewer, code) =
        technician(&relay, (home.path(), &key), "T-7202", &["--record"], "info");
    let _agent = agent_window::spawn(&relay, home.path(), &desk, &code, &[]);
    let prompt = window(&desk, "Assent — support request");
    // The prompt's box "Also allow them to record…", then the answer.
    // Laid out and drawn (a loaded machine takes its time).
    std::thread::sleep(Duration::from_millis(1500));
    shot(&desk, "recording-prompt.png");
    xdotool(&desk, &["mousemove", "--window", &prompt, "15", "160"]);
    xdotool(&desk, &["click", "1"]);
    agent_window::answer_view(&desk, &prompt);
    viewer.hear("{\"recording\":{\"allowed\":true}}");
    let live = window(&desk, "Assent — session live");
    std::thread::sleep(Duration::from_millis(700));
    let artifacts = crate::desktop::artifacts();
    assert!(
        red_pixels(&desk, &artifacts.join("recording-live.png")) > 50,
        "no red Recording"
    );
    // "Stop allowing recording" under the banner (see recording-live.png).
    xdotool(&desk, &["mousemove", "--window", &live, "80", "46"]);
    xdotool(&desk, &["click", "1"]);
    viewer.hear("{\"recording\":{\"allowed\":false}}");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        red_pixels(&desk, &artifacts.join("recording-off.png")),
        0,
        "still red"
    );
    viewer.hang_up();
    relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
}
