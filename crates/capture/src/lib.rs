//! Screen capture for the Assent agent.
//!
//! A [`ScreenSource`] yields BGRX frames (4 bytes per pixel: blue, green,
//! red, unused) that the tile codec diffs and encodes. [`X11Source`] reads
//! the real X11 screen: what X DAMAGE reports as changed by GetImage (x11rb),
//! large changes through scrap's MIT-SHM capturer, and the whole screen every
//! [`FULL_CHECK`] regardless; [`FakeSource`] is a deterministic test double.

#[cfg(all(unix, not(target_os = "macos")))]
mod damage;
mod fake;
#[cfg(all(unix, not(target_os = "macos")))]
mod geometry;
#[cfg(all(unix, not(target_os = "macos")))]
pub mod mask;
#[cfg(all(unix, not(target_os = "macos")))]
mod mask_text;
#[cfg(all(unix, not(target_os = "macos")))]
pub mod windows;
#[cfg(all(unix, not(target_os = "macos")))]
mod x11;

#[cfg(all(unix, not(target_os = "macos")))]
pub use damage::FULL_CHECK;
pub use fake::FakeSource;
#[cfg(all(unix, not(target_os = "macos")))]
pub use x11::{X11Source, LOOK_EVERY};

/// Bytes per BGRX pixel.
pub const BYTES_PER_PIXEL: usize = 4;

/// One captured frame, borrowed from the source until the next capture.
///
/// Row `y` starts at `data[y * stride]`; `stride` may be larger than
/// `width * 4` (padding bytes at the end of each row carry no pixels).
#[derive(Debug, Clone, Copy)]
pub struct CapturedFrame<'a> {
    /// BGRX pixels, `stride * height` bytes (the last row may omit padding).
    pub data: &'a [u8],
    pub width: u32,
    pub height: u32,
    /// Bytes from the start of one row to the start of the next.
    pub stride: usize,
    /// Where this frame may differ from the source's previous capture:
    /// `Some(area)` when the source read only that part of the screen and
    /// kept the rest from earlier reads (an empty area: it read nothing),
    /// `None` when any pixel may have changed. An encoder that saw the
    /// previous capture needs to compare only within it.
    pub changed: Option<Area>,
    /// Where this frame sits on the root window (the source's
    /// [`ScreenSource::origin`] when it was captured: a capture may follow
    /// a new screen geometry).
    pub origin: (i32, i32),
}

/// A rectangle in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Area {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl CapturedFrame<'_> {
    /// The BGRX bytes of pixel (`x`, `y`), or `None` outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 4]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let at = y as usize * self.stride + x as usize * BYTES_PER_PIXEL;
        self.data.get(at..at + BYTES_PER_PIXEL)?.try_into().ok()
    }

    /// The pixels of row `y` without stride padding.
    pub fn row(&self, y: u32) -> Option<&[u8]> {
        if y >= self.height {
            return None;
        }
        let start = y as usize * self.stride;
        self.data
            .get(start..start + self.width as usize * BYTES_PER_PIXEL)
    }
}

/// The most monitors a source lists.
pub const MAX_MONITORS: usize = 16;

/// The whole screen a source captures all or part of.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// The screen (every monitor), in pixels.
    pub width: u32,
    pub height: u32,
    /// Its monitors, inside it, at most [`MAX_MONITORS`] (none: the
    /// screen is one monitor).
    pub monitors: Vec<Area>,
    /// The part of the screen frames show.
    pub shown: Area,
}

/// Something that captures the screen.
pub trait ScreenSource {
    /// Width and height in pixels of every frame this source produces.
    fn size(&self) -> (u32, u32);

    /// Whether the screen may have changed since the last time this said
    /// yes; `false` only when the source knows nothing changed (the X11
    /// source asks DAMAGE, and says yes at least every few seconds anyway).
    /// After a yes, capture: a change made after the answer raises the next
    /// yes, one made before it is in the capture. A source that cannot tell
    /// always says yes.
    fn may_have_changed(&mut self) -> bool {
        true
    }

    /// Captures the screen as it is now (not as it was at some earlier call).
    /// After a [`ScreenSource::may_have_changed`] yes, a source may read only
    /// the parts its hints name and keep the rest from earlier reads.
    fn capture(&mut self) -> Result<CapturedFrame<'_>, CaptureError>;

    /// Where the mouse pointer is, in frame pixels, if the source knows
    /// (captured images carry no cursor, so the viewer draws it).
    fn cursor(&mut self) -> Option<(u32, u32)> {
        None
    }

    /// What the user keeps private in the frames, when it changed since
    /// the last call or `again` (a masking source reports it; others never do).
    fn take_mask_report(&mut self, again: bool) -> Option<MaskReport> {
        let _ = again;
        None
    }

    /// Where this source's frame sits on the root window.
    fn origin(&self) -> (i32, i32) {
        (0, 0)
    }

    /// The whole screen, its monitors and what frames show, when the
    /// source knows more than its frames (the X11 source does). It may
    /// change between captures: a resolution change, a monitor added.
    fn layout(&self) -> Option<Layout> {
        None
    }

    /// Whether the next capture's pixels will sit in a buffer of the
    /// source's own, lent by [`ScreenSource::last_frame_mut`] (asked
    /// before capturing: the capture's frame borrows the source).
    fn lends_next_frame(&self) -> bool {
        false
    }

    /// The last capture's pixels, writable, when they sit in a buffer of
    /// the source's own that later captures re-read only where hints (or
    /// [`ScreenSource::reread`]) say: a masking wrapper paints its covers
    /// there instead of keeping a screen-sized copy. `None` (the default)
    /// when the source cannot lend its frame.
    fn last_frame_mut(&mut self) -> Option<&mut [u8]> {
        None
    }

    /// Says that `area` (frame pixels) of the buffer lent by
    /// [`ScreenSource::last_frame_mut`] no longer holds the screen's
    /// pixels: the next capture reads it again, whatever the hints say.
    fn reread(&mut self, area: Area) {
        let _ = area;
    }

    /// Shows only monitor `monitor` (an index into [`Layout::monitors`])
    /// from the next capture on, or the whole screen (`None`, also when
    /// that monitor goes away). A source without monitors ignores it.
    fn show_monitor(&mut self, monitor: Option<usize>) {
        let _ = monitor;
    }
}

/// Counts of what a masking source covers (never which windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaskReport {
    /// Top-level windows covered.
    pub hidden: u32,
    /// Of those, how many the organisation's policy hides.
    pub by_policy: u32,
    /// Whether only one window is shared.
    pub only_one: bool,
}

/// Why the screen cannot be captured.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("no X display to capture: the DISPLAY environment variable is not set")]
    NoDisplay,
    #[error("cannot open X display {display:?}: {reason}")]
    Connect { display: String, reason: String },
    #[error("X display {0:?} has no screen to capture")]
    NoScreen(String),
    #[error("setting up shared-memory capture failed: {0}")]
    Setup(#[source] std::io::Error),
    #[error("lost the connection to the X server")]
    Disconnected,
    /// A read fell outside the screen: its size changed under the capture
    /// (the X11 source looks again and retries once before reporting it).
    #[error("the screen's size changed during the capture")]
    ScreenChanged,
}
