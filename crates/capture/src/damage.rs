//! Change hints from the X DAMAGE extension: whether the screen may have
//! changed since the last capture, so a still screen costs no capture and
//! no diff.
//!
//! One `NonEmpty` damage object on the root window: the server sends one
//! notify when the accumulated damage goes from empty to not empty, and
//! nothing more until the client subtracts it. [`DamageWatch::changed`]
//! subtracts *before* the capture and waits for the server to have done
//! so: anything drawn before the subtract is in the image the capture
//! then reads (a later request, even on scrap's other connection), and
//! anything drawn after it raises a new notify. Damage is a hint, not a
//! proof (a GL client or a broken server may draw without reporting), so a
//! full check every [`FULL_CHECK`] says "changed" regardless: the tile diff
//! then finds what, if anything, did.

use std::time::{Duration, Instant};

use x11rb::connection::{Connection as _, RequestConnection as _};
use x11rb::protocol::damage::{self, ConnectionExt as _, ReportLevel};
use x11rb::protocol::xfixes::ConnectionExt as _;
use x11rb::protocol::xproto::{ConnectionExt as _, Window};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

/// How often the screen is captured and diffed even without damage.
pub const FULL_CHECK: Duration = Duration::from_secs(2);

/// The root window's damage object and what it reported so far.
pub(crate) struct DamageWatch {
    damage: damage::Damage,
    /// A notify arrived (or nothing was captured yet) and was not yet
    /// subtracted.
    pending: bool,
    next_full: Instant,
    full_every: Duration,
}

impl DamageWatch {
    /// Starts watching `root`, or `None` when the server has no DAMAGE (the
    /// caller then captures on every request, as without hints).
    pub fn new(conn: &RustConnection, root: Window) -> Option<DamageWatch> {
        conn.extension_information(damage::X11_EXTENSION_NAME)
            .ok()??;
        // Both versions must be negotiated before DAMAGE requests are used.
        conn.xfixes_query_version(5, 0).ok()?.reply().ok()?;
        conn.damage_query_version(1, 1).ok()?.reply().ok()?;
        let id = conn.generate_id().ok()?;
        conn.damage_create(id, root, ReportLevel::NON_EMPTY)
            .ok()?
            .check()
            .ok()?;
        Some(DamageWatch {
            damage: id,
            pending: true,
            next_full: Instant::now() + FULL_CHECK,
            full_every: FULL_CHECK,
        })
    }

    pub fn set_full_check(&mut self, every: Duration) {
        self.full_every = every;
        self.next_full = Instant::now() + every;
    }

    /// Whether the screen may have changed since the last call that said
    /// yes. When it says yes, the damage is already subtracted on the
    /// server: capture now. Any error with the connection says yes.
    pub fn changed(&mut self, conn: &RustConnection, now: Instant) -> bool {
        loop {
            match conn.poll_for_event() {
                Ok(Some(Event::DamageNotify(_))) => self.pending = true,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return true,
            }
        }
        let full = now >= self.next_full;
        if !self.pending && !full {
            return false;
        }
        if full {
            self.next_full = now + self.full_every;
        }
        let subtract = conn
            .damage_subtract(self.damage, x11rb::NONE, x11rb::NONE)
            .is_ok();
        // A round trip: the server has applied the subtract before the
        // capture's GetImage (sent later, on another connection) is read.
        let synced = conn
            .get_input_focus()
            .ok()
            .and_then(|c| c.reply().ok())
            .is_some();
        // Should the subtract not have happened, keep saying yes.
        self.pending = !(subtract && synced);
        true
    }
}
