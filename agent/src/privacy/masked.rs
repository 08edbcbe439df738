//! The screen with the user's private windows painted over: wraps the real
//! source in the capture thread, so no frame reaches the encoder unmasked.
//!
//! Around each capture the top-level windows are listed before and after
//! (each list a round trip, which also collects every ConfigureNotify the
//! server sent in between), and the mask covers the union of every place a
//! hidden window held. Parts of the frame that the source did not re-read
//! (it keeps earlier reads where X DAMAGE reported nothing) stay covered
//! where they were covered before, until they are read again.

use std::sync::Arc;

use assent_capture::mask::{Around, Choice, Cover};
use assent_capture::windows::{TopWindow, WinRect, WindowWatch};
use assent_capture::{Area, CaptureError, CapturedFrame, MaskReport, ScreenSource};

use super::Privacy;

/// Most remembered covered areas awaiting a re-read before they merge.
const MAX_STALE: usize = 64;

pub struct MaskedSource {
    inner: Box<dyn ScreenSource>,
    watch: WindowWatch,
    privacy: Arc<Privacy>,
    /// The masked frame: BGRX, stride `width * 4`.
    frame: Vec<u8>,
    covers: Covers,
    seen_version: u64,
    reported: Option<MaskReport>,
    pending: Option<MaskReport>,
}

/// What the mask remembers from one capture to the next.
#[derive(Default)]
struct Covers {
    /// Covered areas (frame coordinates) the source has not re-read since.
    stale: Vec<WinRect>,
    /// The kept window's area in the last "share only" frame.
    last_keep: Option<WinRect>,
    /// The covered bounds of the last frame.
    last_bounds: Option<WinRect>,
}

impl MaskedSource {
    pub fn new(inner: Box<dyn ScreenSource>, privacy: Arc<Privacy>) -> Result<Self, CaptureError> {
        let watch = WindowWatch::open(None)?;
        privacy.set_live();
        Ok(MaskedSource {
            inner,
            watch,
            privacy,
            frame: Vec::new(),
            covers: Covers::default(),
            seen_version: u64::MAX,
            reported: None,
            pending: None,
        })
    }
}

impl Covers {
    /// Forgets covered areas the capture re-read (`None`: all of it).
    fn refresh_stale(&mut self, changed: Option<Area>) {
        let Some(a) = changed else {
            self.stale.clear();
            return;
        };
        self.stale.retain(|r| {
            !(r.x >= a.x as i32
                && r.y >= a.y as i32
                && r.x + r.width as i32 <= (a.x + a.width) as i32
                && r.y + r.height as i32 <= (a.y + a.height) as i32)
        });
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
        cover
            .rects
            .extend(self.stale.iter().map(|r| shift(*r, origin)));
        for r in &cover.rects {
            let local = shift(*r, (-origin.0, -origin.1));
            if !self.stale.contains(&local) {
                self.stale.push(local);
            }
        }
        if self.stale.len() > MAX_STALE {
            let merged = self.stale.iter().copied().reduce(WinRect::union);
            self.stale = merged.into_iter().collect();
        }
        cover
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
        let version = self.privacy.version();
        let choices = std::mem::replace(&mut self.seen_version, version) != version;
        inner || choices
    }

    fn cursor(&mut self) -> Option<(u32, u32)> {
        self.inner.cursor()
    }

    fn take_mask_report(&mut self, again: bool) -> Option<MaskReport> {
        match self.pending.take() {
            None if again => self.reported,
            pending => pending,
        }
    }

    fn capture(&mut self) -> Result<CapturedFrame<'_>, CaptureError> {
        let origin = self.inner.origin();
        let before = self.watch.list()?;
        // Places from before that list are older than it: not needed.
        let _ = self.watch.take_moves();
        let f = self.inner.capture()?;
        let (width, height) = (f.width, f.height);
        let after = self.watch.list_known(&before)?;
        let (moves, overflowed) = self.watch.take_moves();
        let (choice, user) = self.privacy.decide();
        let around = Around {
            before: &before,
            after: &after,
            moves: &moves,
            overflowed,
        };
        let privacy = &self.privacy;
        let hidden = |w: &TopWindow| user.contains(&w.id) || privacy.by_policy(w);
        let planned = Cover::plan(&around, &choice, &hidden);
        let only = matches!(choice, Choice::Only(_));
        let cover = self.covers.next(planned, only, origin, f.changed);
        let bounds = cover.bounds(origin, width, height);
        let last = std::mem::replace(&mut self.covers.last_bounds, bounds);
        let changed = f.changed.map(|a| widen(a, bounds.into_iter().chain(last)));
        let report = self.privacy.count(&after, &choice, &user);
        if self.reported != Some(report) {
            self.reported = Some(report);
            self.pending = Some(report);
        }
        if cover.is_empty() {
            // Nothing to paint: the source's frame as it is, no copy.
            return Ok(CapturedFrame { changed, ..f });
        }
        let row = width as usize * 4;
        self.frame.resize(row * height as usize, 0);
        for (y, dst) in self.frame.chunks_exact_mut(row).enumerate() {
            dst.copy_from_slice(f.row(y as u32).ok_or(CaptureError::Disconnected)?);
        }
        cover.paint(&mut self.frame, width, height, row, origin);
        Ok(CapturedFrame {
            data: &self.frame,
            width,
            height,
            stride: row,
            changed,
        })
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
        Some(r) => Area {
            x: r.x.max(0) as u32,
            y: r.y.max(0) as u32,
            width: r.width,
            height: r.height,
        },
        None => a,
    }
}
