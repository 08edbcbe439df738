//! The screen with the user's private windows painted over: wraps the real
//! source in the capture thread, so no frame reaches the encoder unmasked.
//!
//! Around each capture the top-level windows are listed before and after
//! (each list a round trip, which also collects every ConfigureNotify the
//! server sent in between), and the mask covers the union of every place a
//! hidden window held. Parts of the frame that the source did not re-read
//! (it keeps earlier reads where X DAMAGE reported nothing) stay covered
//! where they were covered before, until they are read again.
//!
//! The agent's own windows are covered the same way, always, with a label
//! of their own ([`Cover::add_own`]): the technician never sees the user's
//! window list (which names hidden windows) or the indicator's redraws,
//! and a static screen with the indicator up sends nothing.

use std::sync::Arc;

use assent_capture::mask::{Around, Choice, Cover};
use assent_capture::windows::{TopWindow, WinRect, WindowWatch};
use assent_capture::{Area, CaptureError, CapturedFrame, MaskReport, ScreenSource};

use super::Privacy;

/// Most remembered covered areas awaiting a re-read before they merge.
const MAX_STALE: usize = 64;

pub struct MaskedSource {
    inner: Box<dyn ScreenSource>,
    mask: Mask,
    /// The masked frame, BGRX, stride `width * 4`, only for a source
    /// that does not lend its own buffer to paint in (see `painted`).
    frame: Vec<u8>,
    /// Where the last capture painted covers into the source's own
    /// buffer (frame coordinates): the next capture has the source read
    /// it again, so a cover taken away shows the screen at once.
    painted: Option<Area>,
    /// Whether `frame` is the last capture, masked (so a capture that
    /// re-read only part of the screen needs only that part copied).
    frame_current: bool,
    seen_version: u64,
}

/// Everything that decides the cover, apart from the source (so it can
/// be planned while the source's frame is borrowed).
struct Mask {
    watch: WindowWatch,
    privacy: Arc<Privacy>,
    covers: Covers,
    reported: Option<MaskReport>,
    pending: Option<MaskReport>,
}

/// A capture's geometry and where it may differ from the last.
#[derive(Clone, Copy)]
struct Shape {
    width: u32,
    height: u32,
    origin: (i32, i32),
    changed: Option<Area>,
}

impl Shape {
    fn of(f: &CapturedFrame<'_>) -> Shape {
        Shape {
            width: f.width,
            height: f.height,
            origin: f.origin,
            changed: f.changed,
        }
    }
}

/// One capture's cover, its bounds in the frame, and where the masked
/// frame may differ from the last one.
struct Planned {
    cover: Cover,
    bounds: Option<WinRect>,
    changed: Option<Area>,
}

/// What the mask remembers from one capture to the next.
#[derive(Default)]
struct Covers {
    /// Covered areas (frame coordinates) the source has not re-read since.
    stale: Vec<WinRect>,
    /// The same for the agent's own windows.
    stale_own: Vec<WinRect>,
    /// The kept window's area in the last "share only" frame.
    last_keep: Option<WinRect>,
    /// Whether the last frame shared only one window.
    last_only: bool,
    /// The covered bounds of the last frame.
    last_bounds: Option<WinRect>,
}

impl MaskedSource {
    pub fn new(inner: Box<dyn ScreenSource>, privacy: Arc<Privacy>) -> Result<Self, CaptureError> {
        let watch = WindowWatch::open(None)?;
        privacy.set_live();
        Ok(MaskedSource {
            inner,
            mask: Mask {
                watch,
                privacy,
                covers: Covers::default(),
                reported: None,
                pending: None,
            },
            frame: Vec::new(),
            painted: None,
            frame_current: false,
            seen_version: u64::MAX,
        })
    }

    /// A capture whose covers are painted into the source's own buffer.
    fn capture_in_place(
        &mut self,
        before: Vec<TopWindow>,
    ) -> Result<CapturedFrame<'_>, CaptureError> {
        let shape = Shape::of(&self.inner.capture()?);
        let planned = self.mask.plan(&before, shape)?;
        // No screen-sized copy of our own from now on.
        (self.frame, self.frame_current) = (Vec::new(), false);
        let Shape {
            width,
            height,
            origin,
            ..
        } = shape;
        let row = width as usize * 4;
        let data = self
            .inner
            .last_frame_mut()
            .filter(|d| d.len() == row * height as usize)
            // Never the frame unpainted.
            .ok_or(CaptureError::Disconnected)?;
        if !planned.cover.is_empty() {
            planned.cover.paint(data, width, height, row, origin);
            self.painted = planned.bounds.map(area_of);
        }
        Ok(CapturedFrame {
            data,
            width,
            height,
            stride: row,
            changed: planned.changed,
            origin,
        })
    }
}

impl Mask {
    /// The cover for a capture bracketed by the window list `before` and
    /// one taken now (which also collects the moves in between).
    fn plan(&mut self, before: &[TopWindow], shape: Shape) -> Result<Planned, CaptureError> {
        let after = self.watch.list_known(before)?;
        let (moves, overflowed) = self.watch.take_moves();
        let (choice, user) = self.privacy.decide();
        let around = Around {
            before,
            after: &after,
            moves: &moves,
            overflowed,
        };
        let privacy = &self.privacy;
        let hidden = |w: &TopWindow| user.contains(&w.id) || privacy.by_policy(w);
        let mut planned = Cover::plan(&around, &choice, &hidden);
        planned.add_own(&around, &|w| privacy.own(w));
        let only = matches!(choice, Choice::Only(_));
        let cover = self.covers.next(planned, only, shape.origin, shape.changed);
        let bounds = cover.bounds(shape.origin, shape.width, shape.height);
        let last = std::mem::replace(&mut self.covers.last_bounds, bounds);
        let changed = shape
            .changed
            .map(|a| widen(a, bounds.into_iter().chain(last)));
        let report = self.privacy.count(&after, &choice, &user);
        if self.reported != Some(report) {
            self.reported = Some(report);
            self.pending = Some(report);
        }
        Ok(Planned {
            cover,
            bounds,
            changed,
        })
    }
}

impl Covers {
    /// Forgets covered areas the capture re-read (`None`: all of it).
    fn refresh_stale(&mut self, changed: Option<Area>) {
        let Some(a) = changed else {
            self.stale.clear();
            self.stale_own.clear();
            return;
        };
        let unread = |r: &WinRect| {
            !(r.x >= a.x as i32
                && r.y >= a.y as i32
                && r.x + r.width as i32 <= (a.x + a.width) as i32
                && r.y + r.height as i32 <= (a.y + a.height) as i32)
        };
        self.stale.retain(unread);
        self.stale_own.retain(unread);
    }

    /// The cover for this capture (root coordinates): the plan, plus what
    /// was covered before and not re-read since. Remembers it for the next.
    fn next(
        &mut self,
        mut cover: Cover,
        only: bool,
        origin: (i32, i32),
        changed: Option<Area>,
    ) -> Cover {
        self.refresh_stale(changed);
        let keep = cover.all_but.flatten();
        if only && keep != self.last_keep {
            self.stale
                .extend(keep.map(|k| shift(k, (-origin.0, -origin.1))));
        }
        self.last_keep = keep;
        self.last_only = only;
        remember(&mut self.stale, &mut cover.rects, origin);
        remember(&mut self.stale_own, &mut cover.own, origin);
        cover
    }
}

/// Adds the stale areas to this capture's `rects` (root coordinates), and
/// this capture's to the stale areas (frame coordinates).
fn remember(stale: &mut Vec<WinRect>, rects: &mut Vec<WinRect>, origin: (i32, i32)) {
    rects.extend(stale.iter().map(|r| shift(*r, origin)));
    for r in rects.iter() {
        let local = shift(*r, (-origin.0, -origin.1));
        if !stale.contains(&local) {
            stale.push(local);
        }
    }
    if stale.len() > MAX_STALE {
        let merged = stale.iter().copied().reduce(WinRect::union);
        *stale = merged.into_iter().collect();
    }
}

fn shift(r: WinRect, by: (i32, i32)) -> WinRect {
    WinRect {
        x: r.x + by.0,
        y: r.y + by.1,
        ..r
    }
}

impl ScreenSource for MaskedSource {
    fn size(&self) -> (u32, u32) {
        self.inner.size()
    }

    fn may_have_changed(&mut self) -> bool {
        let inner = self.inner.may_have_changed();
        let version = self.mask.privacy.version();
        let choices = std::mem::replace(&mut self.seen_version, version) != version;
        inner || choices
    }

    fn cursor(&mut self) -> Option<(u32, u32)> {
        self.inner.cursor()
    }

    fn origin(&self) -> (i32, i32) {
        self.inner.origin()
    }

    fn layout(&self) -> Option<assent_capture::Layout> {
        self.inner.layout()
    }

    fn show_monitor(&mut self, monitor: Option<usize>) {
        self.inner.show_monitor(monitor);
    }

    fn take_mask_report(&mut self, again: bool) -> Option<MaskReport> {
        match self.mask.pending.take() {
            None if again => self.mask.reported,
            pending => pending,
        }
    }

    fn capture(&mut self) -> Result<CapturedFrame<'_>, CaptureError> {
        // Set again once this capture is painted: an error on the way
        // leaves the masked frame behind the source's.
        let was_current = std::mem::replace(&mut self.frame_current, false);
        if let Some(painted) = self.painted.take() {
            self.inner.reread(painted);
        }
        let before = self.mask.watch.list()?;
        // Places from before that list are older than it: not needed.
        let _ = self.mask.watch.take_moves();
        // Sharing one window covers all the rest: painting that in place
        // would have every capture re-read the whole screen, so that mode
        // keeps its own copy.
        if self.inner.lends_next_frame() && !self.mask.covers.last_only {
            return self.capture_in_place(before);
        }
        let f = self.inner.capture()?;
        let shape = Shape::of(&f);
        let Planned { cover, changed, .. } = self.mask.plan(&before, shape)?;
        if cover.is_empty() {
            // Nothing to paint: the source's frame as it is, no copy.
            return Ok(CapturedFrame { changed, ..f });
        }
        let (width, height, origin) = (shape.width, shape.height, shape.origin);
        let row = width as usize * 4;
        let len = row * height as usize;
        // Outside `changed` (which holds this capture's covers and the
        // last one's) the source's frame and the masked one are as they
        // were: only the part re-read needs copying and painting again.
        let copy = match changed.filter(|_| was_current && self.frame.len() == len) {
            Some(a) => a,
            None => Area {
                x: 0,
                y: 0,
                width,
                height,
            },
        };
        self.frame.resize(len, 0);
        copy_area(&f, &mut self.frame, copy)?;
        self.frame_current = true;
        cover.paint(&mut self.frame, width, height, row, origin);
        Ok(CapturedFrame {
            data: &self.frame,
            width,
            height,
            stride: row,
            changed,
            origin,
        })
    }
}

/// Copies `area` of the source's frame into `dst` (BGRX, stride `width * 4`).
fn copy_area(f: &CapturedFrame<'_>, dst: &mut [u8], area: Area) -> Result<(), CaptureError> {
    let row = f.width as usize * 4;
    let x0 = area.x.min(f.width) as usize * 4;
    let x1 = area.x.saturating_add(area.width).min(f.width) as usize * 4;
    let y1 = area.y.saturating_add(area.height).min(f.height);
    for y in area.y..y1 {
        let src = f.row(y).ok_or(CaptureError::Disconnected)?;
        let at = y as usize * row;
        let (Some(to), Some(from)) = (dst.get_mut(at + x0..at + x1), src.get(x0..x1)) else {
            return Err(CaptureError::Disconnected);
        };
        to.copy_from_slice(from);
    }
    Ok(())
}

/// A rectangle already clipped to the frame, as an area.
fn area_of(r: WinRect) -> Area {
    Area {
        x: r.x.max(0) as u32,
        y: r.y.max(0) as u32,
        width: r.width,
        height: r.height,
    }
}

/// The changed area grown to hold the covers of this frame and the last
/// (frame coordinates, already clipped to the frame).
fn widen(a: Area, covers: impl Iterator<Item = WinRect>) -> Area {
    let start = (a.width > 0 && a.height > 0).then_some(WinRect {
        x: a.x as i32,
        y: a.y as i32,
        width: a.width,
        height: a.height,
    });
    match covers.fold(start, |acc, r| Some(acc.map_or(r, |a| a.union(r)))) {
        Some(r) => area_of(r),
        None => a,
    }
}
