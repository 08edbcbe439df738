//! X11 capture through scrap 0.5's MIT-SHM capturer.

use std::ffi::{c_int, c_void, CString, OsString};
use std::rc::Rc;
use std::time::{Duration, Instant};

use scrap::x11::{Capturer, Server};

use crate::damage::DamageWatch;
use crate::{CaptureError, CapturedFrame, ScreenSource};

// libxcb is already linked by scrap; scrap just never asks it whether the
// connection died (its frame() then silently returns the old image).
extern "C" {
    fn xcb_connection_has_error(c: *mut c_void) -> c_int;
}

/// Captures the primary monitor of an X11 display.
///
/// Not `Send` (scrap's capturer holds an `Rc` and raw xcb pointers): create
/// it on the thread that captures, e.g. at the top of the capture thread,
/// and hand encoded tiles, not the source, to other threads.
pub struct X11Source {
    capturer: Capturer,
    width: u32,
    height: u32,
    /// Monitor origin on the root window, to turn pointer positions into
    /// frame coordinates.
    origin: (i32, i32),
    /// A plain X connection for pointer queries and damage hints (scrap
    /// exposes neither).
    pointer: Option<(x11rb::rust_connection::RustConnection, u32)>,
    /// `None` without DAMAGE: then every capture reads the screen.
    damage: Option<DamageWatch>,
}

impl X11Source {
    /// Opens the display named by `$DISPLAY`.
    pub fn new() -> Result<Self, CaptureError> {
        Self::open(&display_from_env(std::env::var_os("DISPLAY"))?)
    }

    /// Opens the named display (e.g. `":0"`) without consulting `$DISPLAY`.
    pub fn open(display: &str) -> Result<Self, CaptureError> {
        let connect_error = |reason: String| CaptureError::Connect {
            display: display.to_owned(),
            reason,
        };
        let name = CString::new(display)
            .map_err(|_| connect_error("the name contains a NUL byte".into()))?;
        let server = Server::connect(name.as_ptr().cast())
            .map_err(|e| connect_error(format!("xcb error {e:?}")))?;
        // The same choice as scrap::Display::primary(): the primary
        // monitor, or the first one when none is marked primary.
        let mut displays = Server::displays(Rc::new(server));
        let first = displays
            .next()
            .ok_or_else(|| CaptureError::NoScreen(display.to_owned()))?;
        let chosen = if first.is_default() {
            first
        } else {
            displays.find(|d| d.is_default()).unwrap_or(first)
        };
        let rect = chosen.rect();
        if rect.w == 0 || rect.h == 0 {
            return Err(CaptureError::NoScreen(display.to_owned()));
        }
        let capturer = Capturer::new(chosen).map_err(CaptureError::Setup)?;
        // Without it the viewer just shows no cursor and every request is
        // a capture; capture still works.
        let pointer = x11rb::connect(Some(display))
            .ok()
            .and_then(|(conn, screen)| {
                use x11rb::connection::Connection as _;
                let root = conn.setup().roots.get(screen)?.root;
                Some((conn, root))
            });
        let damage = pointer
            .as_ref()
            .and_then(|(conn, root)| DamageWatch::new(conn, *root));
        Ok(X11Source {
            capturer,
            damage,
            width: rect.w.into(),
            height: rect.h.into(),
            origin: (rect.x.into(), rect.y.into()),
            pointer,
        })
    }

    /// Whether changes are reported by the X DAMAGE extension (otherwise
    /// [`ScreenSource::may_have_changed`] always says yes).
    pub fn has_damage(&self) -> bool {
        self.damage.is_some()
    }

    /// Changes how often the screen is checked in full without damage
    /// ([`crate::FULL_CHECK`] by default); for tests.
    pub fn set_full_check(&mut self, every: Duration) {
        if let Some(d) = &mut self.damage {
            d.set_full_check(every);
        }
    }
}

impl ScreenSource for X11Source {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn cursor(&mut self) -> Option<(u32, u32)> {
        use x11rb::protocol::xproto::ConnectionExt as _;
        let (conn, root) = self.pointer.as_ref()?;
        let reply = conn.query_pointer(*root).ok()?.reply().ok()?;
        let x = i32::from(reply.root_x) - self.origin.0;
        let y = i32::from(reply.root_y) - self.origin.1;
        let inside = (0..self.width as i32).contains(&x) && (0..self.height as i32).contains(&y);
        inside.then_some((x as u32, y as u32))
    }

    fn may_have_changed(&mut self) -> bool {
        match (&mut self.damage, &self.pointer) {
            (Some(damage), Some((conn, _))) => damage.changed(conn, Instant::now()),
            _ => true,
        }
    }

    fn capture(&mut self) -> Result<CapturedFrame<'_>, CaptureError> {
        let raw = self.capturer.display().server().raw().cast::<c_void>();
        // scrap's frame() returns the image its PREVIOUS call requested and
        // then requests the next one. How stale that image is depends on
        // when libxcb sends the request: libxcb 1.15 buffers it until the
        // next frame() waits for the reply (so it happens to be current),
        // but any earlier flush makes it as old as the previous call. So
        // the first call only collects the pending image and requests a
        // new one, and the second returns that: never older than this call,
        // for one extra SHM GetImage (~0.7 ms at 1080p). The X11 backend
        // blocks for the reply, so there is no WouldBlock to retry.
        self.capturer.frame();
        let data = self.capturer.frame();
        // SAFETY: `raw` is the live connection owned (through an Rc) by the
        // capturer, which outlives this call; the function only reads a flag.
        if unsafe { xcb_connection_has_error(raw) } != 0 {
            return Err(CaptureError::Disconnected);
        }
        Ok(CapturedFrame {
            data,
            width: self.width,
            height: self.height,
            stride: data.len() / self.height as usize,
        })
    }
}

/// The display name from the value of `$DISPLAY`.
fn display_from_env(value: Option<OsString>) -> Result<String, CaptureError> {
    match value {
        Some(v) if !v.is_empty() => v.into_string().map_err(|v| CaptureError::Connect {
            display: v.to_string_lossy().into_owned(),
            reason: "the name is not valid UTF-8".into(),
        }),
        _ => Err(CaptureError::NoDisplay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_display_is_a_clear_error() {
        assert!(matches!(
            display_from_env(None),
            Err(CaptureError::NoDisplay)
        ));
        assert!(matches!(
            display_from_env(Some("".into())),
            Err(CaptureError::NoDisplay)
        ));
        assert_eq!(display_from_env(Some(":7".into())).unwrap(), ":7");
        assert!(CaptureError::NoDisplay.to_string().contains("DISPLAY"));
    }

    #[test]
    fn unreachable_display_names_the_display() {
        // No server listens on this socket, so connecting fails at once.
        let err = X11Source::open(":4999").err().expect("connect must fail");
        assert!(matches!(err, CaptureError::Connect { .. }), "{err}");
        assert!(err.to_string().contains(":4999"), "{err}");
    }
}
