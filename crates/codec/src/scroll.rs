//! Vertical scrolls found from the pixels: when much changed, the rows of
//! the changed rectangle are hashed in the previous and the new frame,
//! each new row votes for the offset at which the same row was before, and
//! the runs of rows that moved by the winning offset become copies. The
//! encoder applies them to its previous frame (as the decoder will) before
//! diffing, so what is left to send is the residual: the lines scrolled
//! in, a moved scroll bar thumb. A wrong guess costs bytes, never pixels.

use std::collections::HashMap;

use crate::wire::{Kind, Op};
use crate::{FrameRef, Rect};

/// Changes smaller than this many pixels are not worth looking at.
pub(crate) const MIN_AREA: u64 = 64 * 64 * 4;
/// A copy covers at least this many rows.
const MIN_ROWS: u32 = 16;
/// Most copies one scroll becomes (runs split by rows that do not match).
const MAX_RUNS: usize = 8;

/// Rows are hashed in bands of this many columns, so a scroll bar or a
/// cursor in one band does not hide the move of the others.
const BAND: u32 = 64;

/// Reused between frames.
#[derive(Debug, Default)]
pub(crate) struct Scroll {
    /// Hashes of each row's bands, row-major, in the previous and the new
    /// frame.
    old: Vec<u64>,
    new: Vec<u64>,
    /// (band, old hash) → its row, or `u32::MAX` when several rows share
    /// it (blank lines say nothing about an offset).
    rows: HashMap<(usize, u64), u32>,
    votes: HashMap<i64, u32>,
}

impl Scroll {
    /// Copies that turn `previous` (packed BGRX, as wide as `frame`) into
    /// most of `frame` within `r`, in the order they must apply; empty when
    /// no offset wins.
    pub fn detect(&mut self, frame: &FrameRef<'_>, previous: &[u8], r: Rect) -> Vec<Op> {
        let stride = frame.width as usize * 4;
        let bands = r.width.div_ceil(BAND) as usize;
        self.old.clear();
        self.new.clear();
        for y in r.y as usize..(r.y + r.height) as usize {
            let (old, new) = (&previous[y * stride..][..stride], frame.row(y));
            for b in 0..bands as u32 {
                let x0 = (r.x + b * BAND) as usize * 4;
                let x1 = (r.x + ((b + 1) * BAND).min(r.width)) as usize * 4;
                self.old.push(hash(&old[x0..x1]));
                self.new.push(hash(&new[x0..x1]));
            }
        }
        let Some(dy) = self.vote(bands) else {
            return Vec::new();
        };
        let mut runs = self.runs(dy, bands, r);
        // Scrolled down (dy > 0), a copy reads rows above it that a copy
        // further up would overwrite: apply from the bottom then.
        if dy > 0 {
            runs.reverse();
        }
        runs
    }

    /// The offset most changed band rows moved by, if enough did.
    fn vote(&mut self, bands: usize) -> Option<i64> {
        self.rows.clear();
        for (i, &h) in self.old.iter().enumerate() {
            self.rows
                .entry((i % bands, h))
                .and_modify(|row| *row = u32::MAX)
                .or_insert((i / bands) as u32);
        }
        self.votes.clear();
        for (i, (&h, &was)) in self.new.iter().zip(&self.old).enumerate() {
            match self.rows.get(&(i % bands, h)) {
                Some(&from) if h != was && from != u32::MAX => {
                    let dy = (i / bands) as i64 - i64::from(from);
                    *self.votes.entry(dy).or_default() += 1;
                }
                _ => {}
            }
        }
        let (&dy, &votes) = self.votes.iter().max_by_key(|(dy, v)| (**v, -dy.abs()))?;
        (votes >= MIN_ROWS).then_some(dy)
    }

    /// Whether row `i` of the new frame is row `i - dy` of the old in at
    /// least three bands of four.
    fn moved(&self, i: i64, dy: i64, bands: usize) -> bool {
        let rows = (self.new.len() / bands) as i64;
        let from = i - dy;
        if !(0..rows).contains(&i) || !(0..rows).contains(&from) {
            return false;
        }
        let (i, from) = (i as usize * bands, from as usize * bands);
        let same = (0..bands)
            .filter(|b| self.new[i + b] == self.old[from + b])
            .count();
        same * 4 >= bands * 3
    }

    /// Runs of at least [`MIN_ROWS`] rows of `r` that moved by `dy`, top
    /// to bottom, as copies of the whole width of `r`.
    fn runs(&self, dy: i64, bands: usize, r: Rect) -> Vec<Op> {
        let n = (self.new.len() / bands) as i64;
        let mut out = Vec::new();
        let mut start: Option<i64> = None;
        for i in 0..=n {
            match (self.moved(i, dy, bands), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    if i - s >= i64::from(MIN_ROWS) && out.len() < MAX_RUNS {
                        // Rows of `r`, so within u32.
                        out.push(Op {
                            rect: Rect {
                                x: r.x,
                                y: r.y + s as u32,
                                width: r.width,
                                height: (i - s) as u32,
                            },
                            kind: Kind::Copy {
                                x: r.x,
                                y: (i64::from(r.y) + s - dy) as u32,
                            },
                        });
                    }
                    start = None;
                }
                _ => {}
            }
        }
        out
    }
}

/// A fast row hash (not cryptographic: a collision only costs bytes).
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let (words, rest) = bytes.as_chunks::<8>();
    let mut h = bytes.len() as u64;
    for w in words {
        h = (h.rotate_left(23) ^ u64::from_le_bytes(*w)).wrapping_mul(K);
    }
    for &b in rest {
        h = (h.rotate_left(23) ^ u64::from(b)).wrapping_mul(K);
    }
    h ^ (h >> 29)
}
