//! Change hints from X DAMAGE against a real Xvfb: a still screen is not
//! captured again, and no change is ever missed: single pixels put at
//! random places and times (XPutImage) are all in the very next capture
//! the hints allow, with the periodic full check pushed out of the way so
//! only the hints can find them.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use assent_capture::{ScreenSource, X11Source};
use assent_xvfb::Xvfb;
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateGCAux, CreateWindowAux, ImageFormat, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

/// The agent's idle poll.
const POLL: Duration = Duration::from_millis(16);

/// Deterministic "random" numbers (xorshift64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n)) as u32
    }
}

/// A window, its graphics context and where it is on the screen.
type Target = (Window, u32, (u32, u32, u32, u32));

/// An X client that puts single pixels on the root window and on a child
/// window (damage on the root must cover what children draw too).
struct Painter {
    conn: RustConnection,
    targets: [Target; 2],
    depth: u8,
}

impl Painter {
    fn new(display: &str) -> Painter {
        let (conn, screen) = x11rb::connect(Some(display)).expect("connect to Xvfb");
        let s = &conn.setup().roots[screen];
        let (root, depth) = (s.root, s.root_depth);
        let child = conn.generate_id().unwrap();
        let area = (100, 80, 300, 200);
        conn.create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            child,
            root,
            area.0 as i16,
            area.1 as i16,
            area.2 as u16,
            area.3 as u16,
            0,
            WindowClass::INPUT_OUTPUT,
            x11rb::COPY_FROM_PARENT,
            &CreateWindowAux::new().background_pixel(0x10_20_30),
        )
        .unwrap();
        conn.map_window(child).unwrap();
        let mut targets = [(root, 0, (0, 0, 640, 480)), (child, 0, area)];
        for t in &mut targets {
            t.1 = conn.generate_id().unwrap();
            conn.create_gc(t.1, t.0, &CreateGCAux::new()).unwrap();
        }
        conn.sync().unwrap();
        Painter {
            conn,
            targets,
            depth,
        }
    }

    /// Puts one pixel of `rgb` at screen position (`x`, `y`) through the
    /// window that shows it; returns once the server has drawn it.
    fn put(&self, x: u32, y: u32, rgb: u32) {
        let inside = |&&(_, _, (ox, oy, w, h)): &&Target| {
            (ox..ox + w).contains(&x) && (oy..oy + h).contains(&y)
        };
        // The child if it holds the pixel, else the root.
        let (win, gc, (ox, oy, ..)) = *self.targets.iter().rev().find(inside).unwrap();
        let px = [rgb as u8, (rgb >> 8) as u8, (rgb >> 16) as u8, 0];
        self.conn
            .put_image(
                ImageFormat::Z_PIXMAP,
                win,
                gc,
                1,
                1,
                (x - ox) as i16,
                (y - oy) as i16,
                0,
                self.depth,
                &px,
            )
            .unwrap();
        self.conn.sync().unwrap();
    }
}

fn damage_source(display: &str) -> X11Source {
    let mut source = X11Source::open(display).expect("open the display");
    assert!(
        source.has_damage(),
        "Xvfb has DAMAGE; the source must use it"
    );
    // Only the hints may find changes here.
    source.set_full_check(Duration::from_secs(3600));
    source
}

#[test]
fn a_still_screen_is_not_captured_again() {
    let xvfb = Xvfb::start();
    let mut source = damage_source(xvfb.display());
    assert!(source.may_have_changed(), "nothing captured yet");
    source.capture().unwrap();
    let yes = (0..30)
        .filter(|_| {
            std::thread::sleep(POLL);
            source.may_have_changed()
        })
        .count();
    assert_eq!(
        yes, 0,
        "a still screen said 'changed' {yes} times in 30 polls"
    );
    Painter::new(xvfb.display()).put(5, 5, 0xff_00_00);
    assert!(
        source.may_have_changed(),
        "a drawn pixel must say 'changed'"
    );
}

#[test]
fn the_full_check_says_changed_without_damage() {
    let xvfb = Xvfb::start();
    let mut source = damage_source(xvfb.display());
    source.set_full_check(Duration::from_millis(300));
    assert!(source.may_have_changed());
    source.capture().unwrap();
    let started = Instant::now();
    while !source.may_have_changed() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no full check within 5 s of a 300 ms period"
        );
        std::thread::sleep(POLL);
    }
    assert!(started.elapsed() >= Duration::from_millis(250));
}

/// One pixel put and not yet seen in a capture.
struct Change {
    x: u32,
    y: u32,
    bgr: [u8; 3],
    drawn: Instant,
}

#[test]
fn no_change_is_missed() {
    const CHANGES: usize = 150;
    let xvfb = Xvfb::start();
    let painter = Painter::new(xvfb.display());
    let mut source = damage_source(xvfb.display());
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut used = std::collections::HashSet::new();
    let (mut done, mut worst) = (0usize, Duration::ZERO);
    let mut pending: Vec<Change> = Vec::new();
    let mut next_poll = Instant::now();
    let mut next_change = Instant::now();
    while done < CHANGES {
        let now = Instant::now();
        if now >= next_change && done + pending.len() < CHANGES {
            let (x, y) = loop {
                let p = (rng.below(640), rng.below(480));
                if used.insert(p) {
                    break p;
                }
            };
            // Never the black or grey backgrounds: every put is a change.
            let rgb = 0x80_00_00 | rng.below(0x80_0000);
            painter.put(x, y, rgb);
            pending.push(Change {
                x,
                y,
                bgr: [rgb as u8, (rgb >> 8) as u8, (rgb >> 16) as u8],
                drawn: Instant::now(),
            });
            // 0-40 ms apart: several between two polls, or none.
            next_change = Instant::now() + Duration::from_millis(u64::from(rng.below(40)));
        }
        if now >= next_poll {
            let polled = Instant::now();
            if source.may_have_changed() {
                let frame = source.capture().unwrap();
                pending.retain(|c| {
                    let seen = frame.pixel(c.x, c.y).is_some_and(|p| p[..3] == c.bgr);
                    // Not in the previous capture, so in the area this one
                    // says it re-read (the encoder compares only there).
                    if let (true, Some(a)) = (seen, frame.changed) {
                        let inside = (a.x..a.x + a.width).contains(&c.x)
                            && (a.y..a.y + a.height).contains(&c.y);
                        assert!(inside, "({}, {}) changed outside {a:?}", c.x, c.y);
                    }
                    if seen {
                        worst = worst.max(polled.elapsed() + (polled - c.drawn));
                        done += 1;
                    }
                    !seen
                });
            }
            // Everything drawn before this poll began must be in it.
            if let Some(c) = pending.iter().find(|c| c.drawn < polled) {
                panic!(
                    "pixel ({}, {}) drawn {:?} before a poll was not seen by it \
                     ({done} of {CHANGES} seen so far)",
                    c.x,
                    c.y,
                    polled - c.drawn
                );
            }
            next_poll = polled + POLL;
        }
        let wake = if done + pending.len() < CHANGES {
            next_poll.min(next_change)
        } else {
            next_poll
        };
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
    eprintln!("{CHANGES} single-pixel changes, each in the next poll's capture; worst {worst:?}");
    // The frame built from partial reads is the screen, byte for byte.
    let mut fresh = X11Source::open(xvfb.display()).unwrap();
    let want = fresh.capture().unwrap().data.to_vec();
    source.may_have_changed();
    let got = source.capture().unwrap();
    assert!(
        got.data == &want[..],
        "the hinted frame differs from a whole read"
    );
    assert!(worst < Duration::from_millis(100), "worst {worst:?}");
}
