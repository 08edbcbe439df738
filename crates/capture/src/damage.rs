//! Change hints from the X DAMAGE extension: whether, and where, the screen
//! may have changed since the last look, so a still screen costs no capture
//! and a typed character costs a read of a few glyphs, not of the screen.
//!
//! One `RawRectangles` damage object on the root window: the server sends a
//! notify with the bounds of every drawing operation, on its own child
//! windows' too, once it has drawn it. An image read that is requested after
//! the notify was received (on any connection) therefore shows the change;
//! anything drawn later raises a later notify. Damage is a hint, not a
//! proof (a GL client or a broken server may draw without reporting), so a
//! full check every [`FULL_CHECK`] reads the whole screen regardless: the
//! tile diff then finds what, if anything, changed.

use std::time::{Duration, Instant};

use x11rb::connection::{Connection as _, RequestConnection as _};
use x11rb::protocol::damage::{self, ConnectionExt as _, ReportLevel};
use x11rb::protocol::xfixes::ConnectionExt as _;
use x11rb::protocol::xproto::Window;
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

/// How often the whole screen is read even without damage.
pub const FULL_CHECK: Duration = Duration::from_secs(2);

/// A rectangle in pixels (root-window or frame coordinates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rect {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub const EMPTY: Rect = Rect {
        x: 0,
        y: 0,
        width: 0,
        height: 0,
    };

    /// The smallest rectangle holding both (an empty one adds nothing).
    pub fn union(self, other: Rect) -> Rect {
        if other.width == 0 || other.height == 0 {
            return self;
        }
        if self.width == 0 || self.height == 0 {
            return other;
        }
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        let right = (self.x + self.width as i32).max(other.x + other.width as i32);
        let bottom = (self.y + self.height as i32).max(other.y + other.height as i32);
        Rect {
            x,
            y,
            width: (right - x) as u32,
            height: (bottom - y) as u32,
        }
    }
}

/// What changed since the last poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hint {
    Nothing,
    /// At most this part of the root window.
    Area(Rect),
    /// Anything may have: read the whole screen.
    Everything,
}

/// The root window's damage object.
pub(crate) struct DamageWatch {
    next_full: Instant,
    full_every: Duration,
}

impl DamageWatch {
    /// Starts watching `root`, or `None` when the server has no DAMAGE (the
    /// caller then reads the whole screen on every request).
    pub fn new(conn: &RustConnection, root: Window) -> Option<DamageWatch> {
        conn.extension_information(damage::X11_EXTENSION_NAME)
            .ok()??;
        // Both versions must be negotiated before DAMAGE requests are used.
        conn.xfixes_query_version(5, 0).ok()?.reply().ok()?;
        conn.damage_query_version(1, 1).ok()?.reply().ok()?;
        let id = conn.generate_id().ok()?;
        conn.damage_create(id, root, ReportLevel::RAW_RECTANGLES)
            .ok()?
            .check()
            .ok()?;
        Some(DamageWatch {
            next_full: Instant::now() + FULL_CHECK,
            full_every: FULL_CHECK,
        })
    }

    pub fn set_full_check(&mut self, every: Duration) {
        self.full_every = every;
        self.next_full = Instant::now() + every;
    }

    /// What the notifies received so far say changed; `Everything` when the
    /// full check is due or the connection failed.
    pub fn poll(&mut self, conn: &RustConnection, now: Instant) -> Hint {
        let mut area = Rect::EMPTY;
        loop {
            match conn.poll_for_event() {
                Ok(Some(Event::DamageNotify(ev))) => {
                    area = area.union(Rect {
                        x: ev.area.x.into(),
                        y: ev.area.y.into(),
                        width: ev.area.width.into(),
                        height: ev.area.height.into(),
                    });
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return Hint::Everything,
            }
        }
        if now >= self.next_full {
            self.next_full = now + self.full_every;
            return Hint::Everything;
        }
        if area.width == 0 || area.height == 0 {
            Hint::Nothing
        } else {
            Hint::Area(area)
        }
    }
}
