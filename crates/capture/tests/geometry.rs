//! The X11 source follows the screen's geometry against a real Xvfb: a
//! resolution change (`xrandr -s`) and RandR monitors (`xrandr
//! --setmonitor`), one of which can be shown alone.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use assent_capture::{Area, ScreenSource, X11Source, LOOK_EVERY};
use assent_xvfb::Xvfb;

fn xrandr(xvfb: &Xvfb, args: &[&str]) {
    let out = xvfb.command("xrandr").args(args).output().expect("xrandr");
    assert!(out.status.success(), "xrandr {args:?}: {out:?}");
}

/// Captures (as the agent does: hints first) until the frame is `size`,
/// for at most a few looks; returns the frame's size and origin.
fn capture_until(source: &mut X11Source, size: (u32, u32)) -> ((u32, u32), (i32, i32)) {
    let until = Instant::now() + LOOK_EVERY * 8;
    loop {
        source.may_have_changed();
        let f = source.capture().expect("capture");
        let got = ((f.width, f.height), f.origin);
        assert_eq!(f.data.len(), f.stride * f.height as usize);
        if got.0 == size || Instant::now() > until {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_capture_follows_a_resolution_change_and_shows_one_monitor_on_request() {
    let xvfb = Xvfb::start_with_size(1280, 800);
    let mode = ["1024x768", "60", "1024", "1048", "1184", "1344"];
    xrandr(
        &xvfb,
        &[&["--newmode"], &mode[..], &["768", "771", "777", "806"]].concat(),
    );
    xrandr(&xvfb, &["--addmode", "screen", "1024x768"]);
    let mut source = X11Source::open(xvfb.display()).expect("open");
    assert_eq!(source.size(), (1280, 800));
    xrandr(&xvfb, &["-s", "1024x768"]);
    assert_eq!(
        capture_until(&mut source, (1024, 768)),
        ((1024, 768), (0, 0))
    );
    xrandr(&xvfb, &["-s", "1280x800"]);
    assert_eq!(
        capture_until(&mut source, (1280, 800)),
        ((1280, 800), (0, 0))
    );
    // Two monitors: listed, the whole screen shown until one is asked for.
    xrandr(
        &xvfb,
        &["--setmonitor", "left", "640/169x800/212+0+0", "screen"],
    );
    xrandr(
        &xvfb,
        &["--setmonitor", "right", "640/169x800/212+640+0", "none"],
    );
    std::thread::sleep(LOOK_EVERY * 2);
    capture_until(&mut source, (1280, 800));
    let layout = source.layout().expect("a layout");
    let right = Area {
        x: 640,
        y: 0,
        width: 640,
        height: 800,
    };
    assert_eq!(layout.monitors.len(), 2, "{layout:?}");
    assert_eq!(layout.monitors[1], right);
    source.show_monitor(Some(1));
    assert_eq!(
        capture_until(&mut source, (640, 800)),
        ((640, 800), (640, 0))
    );
    assert_eq!(source.layout().map(|l| l.shown), Some(right));
    // A monitor that goes away: the whole screen again.
    xrandr(&xvfb, &["--delmonitor", "right"]);
    assert_eq!(
        capture_until(&mut source, (1280, 800)),
        ((1280, 800), (0, 0))
    );
}
