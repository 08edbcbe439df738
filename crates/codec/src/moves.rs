//! Moved rectangles (a dragged window) found from the pixels, when no
//! vertical scroll was: a few probes of the new frame (runs of
//! [`PROBE`] pixels, not all one colour, that changed) are looked for in
//! the previous frame near where they are now; the offset most probes agree
//! on is grown, from one of them, into the rectangle around it that moved
//! whole. As with scrolls, the copy goes first and the diff sends the
//! residual, so a wrong guess costs bytes, never pixels.

use crate::wire::{Kind, Op};
use crate::{FrameRef, Rect};

/// Pixels in one probe.
const PROBE: u32 = 32;
/// How far, each way, a probe is looked for (a drag moves a window a few
/// pixels to a few dozen between two frames).
const REACH: u32 = 96;
/// Probes on a grid of this many rows by columns over the changed area.
const PROBE_ROWS: u32 = 8;
const PROBE_COLS: u32 = 3;
/// Places one probe may be found in before it says nothing.
const MAX_HITS: usize = 16;
/// Probes that must agree on an offset.
const MIN_VOTES: u32 = 3;
/// The smallest copy worth sending, each side.
const MIN_SIDE: u32 = 32;

/// The two frames, for pixel lookups.
struct Frames<'a> {
    new: &'a FrameRef<'a>,
    old: &'a [u8],
    stride: usize,
}

impl Frames<'_> {
    /// `n` pixels of row `y` from column `x`, new or old; callers keep
    /// them inside the frame.
    fn run(&self, new: bool, x: u32, y: u32, n: u32) -> &[u8] {
        let (x, n) = (x as usize * 4, n as usize * 4);
        if new {
            &self.new.row(y as usize)[x..x + n]
        } else {
            &self.old[y as usize * self.stride + x..][..n]
        }
    }

    /// Whether pixel (x, y) now is pixel (x - dx, y - dy) before, both
    /// inside the frame.
    fn moved(&self, x: i64, y: i64, (dx, dy): (i64, i64)) -> bool {
        let (w, h) = (i64::from(self.new.width), i64::from(self.new.height));
        let inside = |x: i64, y: i64| (0..w).contains(&x) && (0..h).contains(&y);
        inside(x, y)
            && inside(x - dx, y - dy)
            && self.run(true, x as u32, y as u32, 1)
                == self.run(false, (x - dx) as u32, (y - dy) as u32, 1)
    }

    /// Whether row `y`'s columns `x0..x1` now are the same run before,
    /// moved by (dx, dy).
    fn row_moved(&self, y: i64, (x0, x1): (i64, i64), (dx, dy): (i64, i64)) -> bool {
        let h = i64::from(self.new.height);
        if !(0..h).contains(&y) || !(0..h).contains(&(y - dy)) {
            return false;
        }
        let n = (x1 - x0) as u32;
        self.run(true, x0 as u32, y as u32, n)
            == self.run(false, (x0 - dx) as u32, (y - dy) as u32, n)
    }
}

/// A copy that moves a rectangle of `previous` (packed BGRX, as wide as
/// `frame`) to where `frame` shows it, within the changed area `r`.
pub(crate) fn detect(frame: &FrameRef<'_>, previous: &[u8], r: Rect) -> Option<Op> {
    if r.width < PROBE * 2 || r.height < MIN_SIDE {
        return None;
    }
    let f = Frames {
        new: frame,
        old: previous,
        stride: frame.width as usize * 4,
    };
    let mut found: Vec<((i64, i64), (u32, u32))> = Vec::new();
    for i in 0..PROBE_ROWS {
        let y = r.y + (2 * i + 1) * r.height / (2 * PROBE_ROWS);
        for j in 0..PROBE_COLS {
            let x = (r.x + (2 * j + 1) * r.width / (2 * PROBE_COLS)).saturating_sub(PROBE / 2);
            if x < r.x || x + PROBE > r.x + r.width {
                continue;
            }
            for d in locate(&f, x, y, r) {
                found.push((d, (x, y)));
            }
        }
    }
    let (best, votes) = found
        .iter()
        .map(|(d, _)| (*d, found.iter().filter(|(e, _)| e == d).count() as u32))
        .max_by_key(|(_, n)| *n)?;
    if votes < MIN_VOTES {
        return None;
    }
    let &(_, (x, y)) = found.iter().find(|(d, _)| *d == best)?;
    grow(&f, (i64::from(x), i64::from(y)), best)
}

/// Where the probe at (x, y) may have been before, as the offsets it may
/// have moved by: the places within [`REACH`] (inside `r`) holding the
/// same pixels. Text repeats (a listing's columns), so each place votes;
/// the true offset is the one most probes share. None when the probe is
/// one colour, unchanged, or found in more than [`MAX_HITS`] places.
fn locate(f: &Frames<'_>, x: u32, y: u32, r: Rect) -> Vec<(i64, i64)> {
    let mut hits = Vec::new();
    let probe = f.run(true, x, y, PROBE);
    let Some(first) = probe.get(..4) else {
        return hits;
    };
    if probe.chunks_exact(4).all(|p| p == first) || probe == f.run(false, x, y, PROBE) {
        return hits;
    }
    let (y0, y1) = (
        y.saturating_sub(REACH).max(r.y),
        (y + REACH + 1).min(r.y + r.height),
    );
    let (x0, x1) = (
        x.saturating_sub(REACH).max(r.x),
        (x + REACH + 1).min(r.x + r.width - PROBE + 1),
    );
    for oy in y0..y1 {
        let row = f.run(false, x0, oy, x1 - x0 + PROBE - 1);
        for ox in x0..x1 {
            let at = (ox - x0) as usize * 4;
            // The first pixel alone rules out nearly every place.
            if &row[at..at + 4] != first || &row[at..at + PROBE as usize * 4] != probe {
                continue;
            }
            if hits.len() == MAX_HITS {
                hits.clear();
                return hits;
            }
            hits.push((i64::from(x) - i64::from(ox), i64::from(y) - i64::from(oy)));
        }
    }
    hits
}

/// The rectangle around the probe at (x, y) that moved whole by `d`: the
/// rows above and below whose probe columns moved, then the columns left
/// and right that moved in all those rows.
fn grow(f: &Frames<'_>, (x, y): (i64, i64), d: (i64, i64)) -> Option<Op> {
    let probe = (x, x + i64::from(PROBE));
    let (mut y0, mut y1) = (y, y + 1);
    while f.row_moved(y0 - 1, probe, d) {
        y0 -= 1;
    }
    while f.row_moved(y1, probe, d) {
        y1 += 1;
    }
    if y1 - y0 < i64::from(MIN_SIDE) {
        return None;
    }
    let column_moved = |c: i64| (y0..y1).all(|row| f.moved(c, row, d));
    let (mut x0, mut x1) = probe;
    while column_moved(x0 - 1) {
        x0 -= 1;
    }
    while column_moved(x1) {
        x1 += 1;
    }
    // Every coordinate was checked to lie inside the frame, before and
    // after the move.
    Some(Op {
        rect: Rect {
            x: x0 as u32,
            y: y0 as u32,
            width: (x1 - x0) as u32,
            height: (y1 - y0) as u32,
        },
        kind: Kind::Copy {
            x: (x0 - d.0) as u32,
            y: (y0 - d.1) as u32,
        },
    })
}
