//! X11 capture: what DAMAGE reports as changed is read with plain
//! GetImage requests (x11rb) into a frame buffer kept for the screen's size;
//! a large change, or a caller that never asks for hints, reads the whole
//! screen through scrap 0.5's MIT-SHM capturer, opened on first use.
//!
//! Frames show the whole screen (every monitor) or one monitor the caller
//! picks. The screen's geometry is looked at again every [`LOOK_EVERY`]
//! and whenever a read fails ([`crate::geometry`]): after a resolution
//! change or a monitor added or removed, the frame buffer and the SHM
//! capturer are made again for the new size, and capture goes on.

use std::ffi::{c_int, c_void, CString, OsString};
use std::rc::Rc;
use std::time::{Duration, Instant};

use scrap::x11::{Capturer, Display, Server};
use x11rb::connection::Connection as _;
use x11rb::errors::ReplyError;
use x11rb::rust_connection::RustConnection;

use crate::damage::{DamageWatch, Hint, Rect};
use crate::geometry;
use crate::{Area, CaptureError, CapturedFrame, Layout, ScreenSource, BYTES_PER_PIXEL};

// libxcb is already linked by scrap; scrap just never asks it whether the
// connection died (its frame() then silently returns the old image).
extern "C" {
    fn xcb_connection_has_error(c: *mut c_void) -> c_int;
}

/// A change larger than this share of the screen is read through SHM.
const SHM_ABOVE: u32 = 4;
/// How often the screen's size and monitors are looked at again.
pub const LOOK_EVERY: Duration = Duration::from_millis(250);

/// What the next capture reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Nothing is known (no hint was asked for): the whole screen, SHM.
    Unknown,
    /// The whole screen, by GetImage (first frame, periodic full check).
    Check,
    /// A large change: the whole screen, SHM.
    Large,
    /// Only this part of the frame (frame coordinates).
    Part(Rect),
}

/// scrap's capturer, opened only when a large read first needs it (its
/// shared segment is twice the screen).
enum Shm {
    Closed(Option<Display>),
    Open(Capturer),
}

/// Captures an X11 display: the whole screen, or one monitor.
///
/// Not `Send` (scrap's capturer holds an `Rc` and raw xcb pointers): create
/// it on the thread that captures, e.g. at the top of the capture thread,
/// and hand encoded tiles, not the source, to other threads.
pub struct X11Source {
    shm: Shm,
    /// scrap's connection, for the monitors and a new SHM capturer.
    server: Rc<Server>,
    /// The screen and its monitors as last looked at, and what is shown.
    layout: Layout,
    /// The monitor asked for (`None`: the whole screen).
    pick: Option<usize>,
    /// When the geometry is looked at again.
    next_look: Instant,
    width: u32,
    height: u32,
    /// Monitor origin on the root window.
    origin: (i32, i32),
    /// A plain X connection for reads, pointer queries and damage hints.
    conn: RustConnection,
    root: u32,
    /// `None` without DAMAGE: then every capture reads the whole screen.
    damage: Option<DamageWatch>,
    /// What the next capture reads, from the hints asked for since the
    /// last one; `None` when none were (then: the whole screen).
    next: Option<Read>,
    /// Whether the frame buffer holds a whole screen read.
    primed: bool,
    /// Whether the last capture's pixels are the frame buffer's (not the
    /// SHM image handed out as it is): only then is it lent.
    lent: bool,
    /// Part of the frame buffer a caller wrote over ([`ScreenSource::reread`]),
    /// read again by the next capture on its own (not merged into the
    /// hinted part, which could then outgrow a part read).
    overwritten: Option<Rect>,
    /// The screen as last read: BGRX, stride `width * 4`.
    frame: Vec<u8>,
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
        let server = Rc::new(
            Server::connect(name.as_ptr().cast())
                .map_err(|e| connect_error(format!("xcb error {e:?}")))?,
        );
        let (conn, screen) =
            x11rb::connect(Some(display)).map_err(|e| connect_error(e.to_string()))?;
        let root = conn
            .setup()
            .roots
            .get(screen)
            .ok_or_else(|| CaptureError::NoScreen(display.to_owned()))?
            .root;
        let layout = geometry::look(&conn, root, &server)?;
        if layout.width == 0 || layout.height == 0 {
            return Err(CaptureError::NoScreen(display.to_owned()));
        }
        let damage = DamageWatch::new(&conn, root);
        let mut source = X11Source {
            shm: Shm::Closed(None),
            server,
            layout: Layout::default(),
            pick: None,
            next_look: Instant::now() + LOOK_EVERY,
            width: 0,
            height: 0,
            origin: (0, 0),
            conn,
            root,
            damage,
            next: None,
            primed: false,
            lent: false,
            overwritten: None,
            frame: Vec::new(),
        };
        source.configure(layout);
        Ok(source)
    }

    /// Captures from now on what `layout` says is shown: a frame buffer
    /// and an SHM capturer (opened on first use) of that size, and a whole
    /// read next.
    fn configure(&mut self, layout: Layout) {
        let shown = layout.shown;
        (self.width, self.height) = (shown.width, shown.height);
        self.origin = (shown.x as i32, shown.y as i32);
        self.frame = vec![0; shown.width as usize * shown.height as usize * BYTES_PER_PIXEL];
        self.primed = false;
        (self.lent, self.overwritten) = (false, None);
        self.next = self.next.map(|_| Read::Check);
        let rect = scrap::x11::Rect {
            x: shown.x as i16,
            y: shown.y as i16,
            w: shown.width as u16,
            h: shown.height as u16,
        };
        // SAFETY: `Display::new` only keeps its arguments: a live
        // connection (shared through the Rc), its screen's root, and a
        // rectangle inside that root as last looked at (a later change is
        // found by the next look, and a read of a stale rectangle fails or
        // reads stale pixels, never memory outside the segment).
        let display = unsafe { Display::new(self.server.clone(), true, rect, self.root) };
        self.shm = Shm::Closed(Some(display));
        self.layout = layout;
    }

    /// Looks at the screen's geometry; when it or the pick changed what
    /// is shown, captures that from now on. Returns whether it did.
    fn follow(&mut self) -> Result<bool, CaptureError> {
        self.next_look = Instant::now() + LOOK_EVERY;
        let mut layout = geometry::look(&self.conn, self.root, &self.server)?;
        if layout.width == 0 || layout.height == 0 {
            return Err(CaptureError::NoScreen(String::new()));
        }
        layout.shown = geometry::shown(&layout, self.pick);
        if layout == self.layout {
            return Ok(false);
        }
        tracing::info!(
            screen = format!("{}x{}", layout.width, layout.height),
            monitors = layout.monitors.len(),
            shown = ?layout.shown,
            "the screen's geometry changed: capture follows"
        );
        self.configure(layout);
        Ok(true)
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

    /// The monitor's part of a root-window rectangle, in frame coordinates.
    fn clip(&self, r: Rect) -> Option<Rect> {
        let x0 = (r.x - self.origin.0).max(0);
        let y0 = (r.y - self.origin.1).max(0);
        let x1 = (r.x + r.width as i32 - self.origin.0).min(self.width as i32);
        let y1 = (r.y + r.height as i32 - self.origin.1).min(self.height as i32);
        (x1 > x0 && y1 > y0).then(|| Rect {
            x: x0,
            y: y0,
            width: (x1 - x0) as u32,
            height: (y1 - y0) as u32,
        })
    }

    /// Reads `r` (frame coordinates) with GetImage into the frame buffer,
    /// in bands, all requests sent before the first reply is awaited.
    /// `Ok(false)` when the server's image format is not 32-bit BGRX.
    fn read_part(&mut self, r: Rect) -> Result<bool, CaptureError> {
        use x11rb::protocol::xproto::{ConnectionExt as _, ImageFormat};
        // About 256 KiB a reply.
        let band = (65_536 / r.width.max(1)).clamp(1, r.height);
        let mut cookies = Vec::with_capacity(r.height.div_ceil(band) as usize);
        for y in (0..r.height).step_by(band as usize) {
            let rows = band.min(r.height - y);
            let cookie = self
                .conn
                .get_image(
                    ImageFormat::Z_PIXMAP,
                    self.root,
                    (r.x + self.origin.0) as i16,
                    (r.y + y as i32 + self.origin.1) as i16,
                    r.width as u16,
                    rows as u16,
                    !0,
                )
                .map_err(|_| CaptureError::Disconnected)?;
            cookies.push((y, rows, cookie));
        }
        let row_len = r.width as usize * BYTES_PER_PIXEL;
        let stride = self.width as usize * BYTES_PER_PIXEL;
        let mut ok = true;
        for (y, rows, cookie) in cookies {
            let reply = cookie.reply().map_err(|e| match e {
                // Outside the screen: it shrank since the last look.
                ReplyError::X11Error(_) => CaptureError::ScreenChanged,
                _ => CaptureError::Disconnected,
            })?;
            if reply.data.len() != row_len * rows as usize {
                ok = false;
                continue;
            }
            for (i, src) in reply.data.chunks_exact(row_len).enumerate() {
                let at = (r.y as usize + y as usize + i) * stride + r.x as usize * BYTES_PER_PIXEL;
                self.frame
                    .get_mut(at..at + row_len)
                    .ok_or(CaptureError::ScreenChanged)?
                    .copy_from_slice(src);
            }
        }
        Ok(ok)
    }

    /// Reads the whole screen through SHM into the frame buffer.
    fn read_shm(&mut self) -> Result<(), CaptureError> {
        let data = shm_image(&mut self.shm)?;
        let stride = data.len() / self.height as usize;
        let row_len = self.width as usize * BYTES_PER_PIXEL;
        for (dst, src) in self
            .frame
            .chunks_exact_mut(row_len)
            .zip(data.chunks(stride))
        {
            dst.copy_from_slice(src.get(..row_len).ok_or(CaptureError::Disconnected)?);
        }
        Ok(())
    }
}

/// The whole screen through SHM, opening scrap's capturer on first use.
fn shm_image(shm: &mut Shm) -> Result<&[u8], CaptureError> {
    if let Shm::Closed(display) = shm {
        let display = display.take().ok_or(CaptureError::Disconnected)?;
        *shm = Shm::Open(Capturer::new(display).map_err(CaptureError::Setup)?);
    }
    let Shm::Open(capturer) = shm else {
        return Err(CaptureError::Disconnected);
    };
    let raw = capturer.display().server().raw().cast::<c_void>();
    // scrap's frame() returns the image its PREVIOUS call requested and
    // then requests the next one. How stale that image is depends on
    // when libxcb sends the request: libxcb 1.15 buffers it until the
    // next frame() waits for the reply (so it happens to be current),
    // but any earlier flush makes it as old as the previous call. So
    // the first call only collects the pending image and requests a
    // new one, and the second returns that: never older than this call,
    // for one extra SHM GetImage (~0.7 ms at 1080p). The X11 backend
    // blocks for the reply, so there is no WouldBlock to retry.
    capturer.frame();
    let data = capturer.frame();
    // SAFETY: `raw` is the live connection owned (through an Rc) by the
    // capturer, which outlives this call; the function only reads a flag.
    if unsafe { xcb_connection_has_error(raw) } != 0 {
        return Err(CaptureError::Disconnected);
    }
    Ok(data)
}

impl ScreenSource for X11Source {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn origin(&self) -> (i32, i32) {
        self.origin
    }

    fn layout(&self) -> Option<Layout> {
        Some(self.layout.clone())
    }

    fn show_monitor(&mut self, monitor: Option<usize>) {
        self.pick = monitor;
        // Now, not at the next look: the next capture shows the pick.
        self.next_look = Instant::now();
    }

    fn cursor(&mut self) -> Option<(u32, u32)> {
        use x11rb::protocol::xproto::ConnectionExt as _;
        let reply = self.conn.query_pointer(self.root).ok()?.reply().ok()?;
        let x = i32::from(reply.root_x) - self.origin.0;
        let y = i32::from(reply.root_y) - self.origin.1;
        let inside = (0..self.width as i32).contains(&x) && (0..self.height as i32).contains(&y);
        inside.then_some((x as u32, y as u32))
    }

    fn lends_next_frame(&self) -> bool {
        // A hinted read goes into the frame buffer; only a capture without
        // hints hands out the SHM image.
        self.next.is_some()
    }

    fn last_frame_mut(&mut self) -> Option<&mut [u8]> {
        self.lent.then_some(self.frame.as_mut_slice())
    }

    fn reread(&mut self, area: Area) {
        let r = Rect {
            x: area.x as i32,
            y: area.y as i32,
            width: area.width,
            height: area.height,
        };
        let Some(r) = self.clip(Rect {
            x: r.x + self.origin.0,
            y: r.y + self.origin.1,
            ..r
        }) else {
            return;
        };
        self.overwritten = Some(self.overwritten.map_or(r, |o| o.union(r)));
    }

    fn may_have_changed(&mut self) -> bool {
        if Instant::now() >= self.next_look {
            // An error is the capture's to report.
            if self.follow().unwrap_or(true) {
                return true;
            }
        }
        let Some(damage) = &mut self.damage else {
            return true;
        };
        let hint = damage.poll(&self.conn, Instant::now());
        // A read already due (a yes not yet followed by a capture) stays.
        let due = match self.next {
            _ if !self.primed => Read::Check,
            Some(read) => read,
            None => Read::Part(Rect::EMPTY),
        };
        let mut next = match (hint, due) {
            (Hint::Nothing, next) => next,
            (Hint::Everything, _) | (_, Read::Unknown | Read::Check) => Read::Check,
            (_, Read::Large) => Read::Large,
            (Hint::Area(r), Read::Part(p)) => match self.clip(r) {
                Some(c) => Read::Part(c.union(p)),
                None => Read::Part(p),
            },
        };
        if let Read::Part(p) = next {
            if p.width * p.height > self.width * self.height / SHM_ABOVE {
                next = Read::Large;
            }
        }
        self.next = Some(next);
        next != Read::Part(Rect::EMPTY)
    }

    fn capture(&mut self) -> Result<CapturedFrame<'_>, CaptureError> {
        if Instant::now() >= self.next_look {
            self.follow()?;
        }
        let read = self.next.take().unwrap_or(Read::Unknown);
        if read == Read::Unknown {
            // No hints: the SHM image as it is, no copy; the frame
            // buffer stays unprimed for any later hinted capture.
            (self.primed, self.lent) = (false, false);
            let data = shm_image(&mut self.shm)?;
            return Ok(CapturedFrame {
                data,
                width: self.width,
                height: self.height,
                stride: data.len() / self.height as usize,
                changed: None,
                origin: self.origin,
            });
        }
        self.lent = false;
        let changed = match self.read(read) {
            Err(CaptureError::ScreenChanged) if self.follow()? => self.read(Read::Check)?,
            other => other?,
        };
        self.lent = true;
        Ok(CapturedFrame {
            data: &self.frame,
            width: self.width,
            height: self.height,
            stride: self.width as usize * BYTES_PER_PIXEL,
            changed,
            origin: self.origin,
        })
    }
}

impl X11Source {
    /// Reads what `read` says into the frame buffer; returns where the
    /// frame may differ from the last capture (`None`: anywhere).
    fn read(&mut self, read: Read) -> Result<Option<Area>, CaptureError> {
        // Only a part read leaves the rest of the buffer as the previous
        // capture had it, and only of a buffer that held a whole read.
        let mut changed = match read {
            Read::Part(r) if self.primed => Some(Area {
                x: r.x as u32,
                y: r.y as u32,
                width: r.width,
                height: r.height,
            }),
            _ => None,
        };
        // Until this read is done, a failure leaves the buffer partly old.
        let primed = std::mem::replace(&mut self.primed, false);
        let whole = Rect {
            x: 0,
            y: 0,
            width: self.width,
            height: self.height,
        };
        // Read on its own after a part (see `overwritten`); a whole read
        // reads it anyway.
        let overwritten = self.overwritten.take().filter(|_| primed);
        match read {
            Read::Unknown | Read::Large => self.read_shm()?,
            Read::Check => {
                if !self.read_part(whole)? {
                    self.read_shm()?;
                }
            }
            Read::Part(r) => {
                for part in [r].into_iter().chain(overwritten) {
                    if part.width > 0 && !self.read_part(part)? {
                        self.read_shm()?;
                        changed = None;
                        break;
                    }
                }
                if let (Some(c), Some(o)) = (changed.as_mut(), overwritten) {
                    *c = area_union(*c, o);
                }
            }
        }
        self.primed = primed || !matches!(read, Read::Part(_));
        Ok(changed)
    }
}

/// The smallest area holding a changed area and a re-read rectangle
/// (both inside the frame).
fn area_union(a: Area, r: Rect) -> Area {
    let r = Rect {
        x: a.x as i32,
        y: a.y as i32,
        width: a.width,
        height: a.height,
    }
    .union(r);
    Area {
        x: r.x as u32,
        y: r.y as u32,
        width: r.width,
        height: r.height,
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
