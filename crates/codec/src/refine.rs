//! Which tiles the viewer shows inexactly (sent as JPEG, or copied from
//! such a tile), and when each is due to be sent again losslessly.
//!
//! Kept per tile of the diff grid: conservative (a tile partly covered by
//! a JPEG is all inexact), so a refinement re-sends a whole tile, which the
//! session's zstd stream mostly finds in its window anyway. A tile that
//! keeps changing keeps being put off; [`REFINE_AFTER`] after its last
//! change it is due.

use std::time::{Duration, Instant};

use crate::wire::{Kind, Op};
use crate::{Grid, Rect, TILE_SIZE};

/// How long a lossy tile must stay unchanged before it is refined: long
/// enough that a moving photo (a change every frame) stays lossy, short
/// enough that text the technician reads is exact ~100 ms after it stops.
pub const REFINE_AFTER: Duration = Duration::from_millis(80);

#[derive(Debug, Default)]
pub(crate) struct Refinement {
    /// Per tile: when it is due for a lossless resend; `None` = exact.
    due: Vec<Option<Instant>>,
    cols: u32,
    rows: u32,
    /// Everything inexact is due now (lossy coding was turned off).
    all_due: bool,
}

impl Refinement {
    /// Forgets everything: a keyframe or a new grid (all exact so far).
    pub fn reset(&mut self, grid: Grid) {
        self.cols = grid.cols;
        self.rows = grid.rows;
        self.due.clear();
        self.due.resize((grid.cols * grid.rows) as usize, None);
        self.all_due = false;
    }

    /// Makes every inexact tile due at once.
    pub fn hurry(&mut self) {
        self.all_due = true;
    }

    /// When the next refinement is due, if any tile is inexact.
    pub fn next_due(&self) -> Option<Instant> {
        let next = self.due.iter().flatten().min().copied();
        match self.all_due {
            true => next.map(|_| Instant::now()),
            false => next,
        }
    }

    fn any_inexact(&self, grid: Grid, r: Rect) -> bool {
        tiles(grid, r).any(|(i, _)| self.due.get(i).is_some_and(Option::is_some))
    }

    /// Follows one update's operations, in order, as the decoder applies
    /// them: JPEG makes its tiles inexact; a copy from an inexact tile
    /// makes its destination so; exact pixels or a fill covering a tile
    /// make it exact. An inexact tile an operation touches (it is still
    /// changing) is put off.
    pub fn follow(&mut self, grid: Grid, ops: &[Op], now: Instant) {
        let later = now + REFINE_AFTER;
        for op in ops {
            let inexact = match op.kind {
                Kind::Jpeg { .. } => true,
                Kind::Copy { x, y } => {
                    let from = Rect { x, y, ..op.rect };
                    self.any_inexact(grid, from)
                }
                Kind::Pixels | Kind::Fill(_) => false,
            };
            for (i, covers) in tiles(grid, op.rect) {
                let Some(slot) = self.due.get_mut(i) else {
                    continue;
                };
                *slot = match (inexact, covers, *slot) {
                    (true, _, _) => Some(later),
                    (false, true, _) if !matches!(op.kind, Kind::Copy { .. }) => None,
                    (false, _, Some(_)) => Some(later),
                    (false, _, None) => None,
                };
            }
        }
    }

    /// Appends to `ops` the tiles due by `now` as exact pixels (runs of
    /// neighbouring tiles in a row as one rectangle) and marks them exact.
    /// They were not touched by this update (that would have put them
    /// off), so they overlap none of its rectangles.
    pub fn take_due(&mut self, grid: Grid, now: Instant, ops: &mut Vec<Op>) {
        let all = std::mem::take(&mut self.all_due);
        let later = now + REFINE_AFTER;
        for row in 0..self.rows {
            let mut run: Option<Rect> = None;
            for col in 0..self.cols {
                let index = row * self.cols + col;
                let slot = self.due.get_mut(index as usize);
                // Not even when hurried, a tile this update touched (due
                // a whole REFINE_AFTER from now): it would overlap it.
                let ready = |at: Instant| at <= now || (all && at < later);
                let due = match slot {
                    Some(slot) if slot.is_some_and(ready) => {
                        *slot = None;
                        true
                    }
                    _ => false,
                };
                let tile = grid.tile(index);
                run = match (run, due) {
                    (Some(r), true) => Some(Rect {
                        width: r.width + tile.width,
                        ..r
                    }),
                    (None, true) => Some(tile),
                    (Some(r), false) => {
                        ops.push(Op {
                            rect: r,
                            kind: Kind::Pixels,
                        });
                        None
                    }
                    (None, false) => None,
                };
            }
            if let Some(r) = run {
                ops.push(Op {
                    rect: r,
                    kind: Kind::Pixels,
                });
            }
        }
    }
}

/// The tiles `r` touches (an index into the grid's tiles), and whether
/// `r` covers each whole.
fn tiles(grid: Grid, r: Rect) -> impl Iterator<Item = (usize, bool)> {
    let (c0, c1) = (r.x / TILE_SIZE, (r.x + r.width).div_ceil(TILE_SIZE));
    let (r0, r1) = (r.y / TILE_SIZE, (r.y + r.height).div_ceil(TILE_SIZE));
    (r0..r1.min(grid.rows)).flat_map(move |row| {
        (c0..c1.min(grid.cols)).map(move |col| {
            let index = row * grid.cols + col;
            let t = grid.tile(index);
            let covers = r.x <= t.x
                && r.y <= t.y
                && r.x + r.width >= t.x + t.width
                && r.y + r.height >= t.y + t.height;
            (index as usize, covers)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: u32, y: u32, width: u32, height: u32) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    fn op(rect: Rect, kind: Kind) -> Op {
        Op { rect, kind }
    }

    #[test]
    fn jpeg_tiles_are_due_after_they_stop_changing_and_copies_carry_inexactness() {
        let grid = Grid::new(256, 128); // 4 x 2 tiles
        let mut r = Refinement::default();
        r.reset(grid);
        let t0 = Instant::now();
        // A JPEG over the first two tiles of row 0 (and part of row 1).
        r.follow(grid, &[op(rect(0, 0, 128, 70), Kind::Jpeg { len: 1 })], t0);
        assert_eq!(r.next_due(), Some(t0 + REFINE_AFTER));
        // Copied to the right: its destination is inexact too.
        let copy = op(rect(128, 0, 64, 64), Kind::Copy { x: 0, y: 0 });
        let t1 = t0 + Duration::from_millis(50);
        r.follow(grid, &[copy], t1);
        // Exact pixels covering tile (1, 0) whole make it exact.
        r.follow(grid, &[op(rect(64, 0, 64, 64), Kind::Pixels)], t1);
        let mut ops = Vec::new();
        r.take_due(grid, t0 + REFINE_AFTER, &mut ops);
        // Due at t0 + 80: tile (0,0) and row 1's (0,1), (1,1); not the copy.
        let rects: Vec<Rect> = ops.iter().map(|o| o.rect).collect();
        assert_eq!(rects, [rect(0, 0, 64, 64), rect(0, 64, 128, 64)]);
        assert_eq!(r.next_due(), Some(t1 + REFINE_AFTER));
        ops.clear();
        r.take_due(grid, t1 + REFINE_AFTER, &mut ops);
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].rect, rect(128, 0, 64, 64));
        assert_eq!(r.next_due(), None);
    }

    #[test]
    fn a_change_puts_an_inexact_tile_off_and_hurry_makes_all_due() {
        let grid = Grid::new(128, 64);
        let mut r = Refinement::default();
        r.reset(grid);
        let t0 = Instant::now();
        r.follow(grid, &[op(rect(0, 0, 128, 64), Kind::Jpeg { len: 1 })], t0);
        // A small exact change inside tile 0 puts it off, not tile 1.
        let t1 = t0 + Duration::from_millis(60);
        r.follow(grid, &[op(rect(3, 3, 5, 5), Kind::Pixels)], t1);
        let mut ops = Vec::new();
        r.take_due(grid, t0 + REFINE_AFTER, &mut ops);
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].rect, rect(64, 0, 64, 64));
        r.hurry();
        ops.clear();
        // Hurried: due at once, though put off until t1 + REFINE_AFTER
        // (but not within the update that touched it, at t1 itself).
        r.take_due(grid, t1, &mut ops);
        assert!(ops.is_empty());
        r.hurry();
        r.take_due(grid, t1 + Duration::from_millis(1), &mut ops);
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].rect, rect(0, 0, 64, 64));
        assert_eq!(r.next_due(), None);
    }
}
