//! What changed between two frames, as few exact rectangles as possible.
//!
//! The frame is diffed in bands of [`TILE_SIZE`] rows, row by row (one
//! comparison per row while nothing changed), and within a changed row tile
//! by tile, keeping per tile the smallest box around the changed pixels:
//! a typed glyph costs its own pixels, not a whole 64x64 tile. A box of one
//! colour becomes a fill; with lossy coding on, a photographic box is
//! marked for JPEG (judged per tile, so a photo on a page of text is found
//! even when the whole screen changed). Boxes that touch across a tile edge are merged
//! back (side by side within a band, stacked across bands when they line
//! up), so a full-screen change is a handful of rectangles, and a screen of
//! one colour one fill. Rectangles never overlap.

use crate::lossy;
use crate::wire::{Kind, Op};
use crate::{FrameRef, Grid, Rect, TILE_SIZE};

/// Bytes per BGRX pixel.
const PX: usize = 4;

/// A changed box inside one tile: columns `x0..x1`, rows `y0..y1`.
#[derive(Debug, Clone, Copy)]
struct Box {
    x0: u32,
    x1: u32,
    y0: u32,
    y1: u32,
}

/// Reused between frames.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    boxes: Vec<Option<Box>>,
    /// The boxes [`find`] found, with their band.
    found: Vec<(u32, Box)>,
    /// Indices in the output of rectangles reaching the current band's
    /// bottom edge, for merging with the band below.
    open: Vec<usize>,
    next_open: Vec<usize>,
}

/// Everything [`find`] needs besides the frames.
pub(crate) struct Diff<'a> {
    pub grid: Grid,
    /// Where pixels may differ (the rest is known to be unchanged); on a
    /// keyframe every tile is taken whole without comparing.
    pub areas: &'a [Rect],
    pub keyframe: bool,
}

/// Finds, per tile, the box around the pixels where `frame` differs from
/// `previous` (packed BGRX of the same size) within `d.areas`, into
/// `s.found` (in band order), without changing anything.
pub(crate) fn find(d: &Diff<'_>, frame: &FrameRef<'_>, previous: &[u8], s: &mut Scratch) {
    let grid = d.grid;
    s.found.clear();
    for band in 0..grid.rows {
        let y0 = band * TILE_SIZE;
        let y1 = (y0 + TILE_SIZE).min(grid.height);
        let Some((x0, x1)) = span(d, y0, y1) else {
            continue;
        };
        s.boxes.clear();
        s.boxes.resize(grid.cols as usize, None);
        if d.keyframe {
            for c in x0 / TILE_SIZE..x1.div_ceil(TILE_SIZE) {
                let tile = grid.tile(band * grid.cols + c);
                s.boxes[c as usize] = Some(Box {
                    x0: tile.x,
                    x1: tile.x + tile.width,
                    y0,
                    y1,
                });
            }
        } else {
            let (xs, ys) = ((x0, x1), (y0, y1));
            find_boxes(frame, previous, grid.width, xs, ys, &mut s.boxes);
        }
        s.found.extend(s.boxes.iter().flatten().map(|b| (band, *b)));
    }
}

/// What [`find`] found: how many pixels changed, and the rectangle
/// around them all.
pub(crate) fn found_extent(s: &Scratch) -> (u64, Option<Rect>) {
    let mut area = 0u64;
    let mut bounds: Option<Box> = None;
    for &(_, b) in &s.found {
        area += u64::from(b.x1 - b.x0) * u64::from(b.y1 - b.y0);
        bounds = Some(match bounds {
            None => b,
            Some(o) => Box {
                x0: o.x0.min(b.x0),
                x1: o.x1.max(b.x1),
                y0: o.y0.min(b.y0),
                y1: o.y1.max(b.y1),
            },
        });
    }
    (area, bounds.map(rect))
}

/// Appends to `ops` the boxes [`find`] found, as fills, pixels or (with
/// `lossy`) JPEG still to be coded (`len` 0), merged, and copies those
/// pixels of `frame` into `previous`.
pub(crate) fn emit(
    grid: Grid,
    frame: &FrameRef<'_>,
    (previous, lossy): (&mut [u8], bool),
    ops: &mut Vec<Op>,
    s: &mut Scratch,
) {
    s.open.clear();
    let mut i = 0;
    while i < s.found.len() {
        let band = s.found[i].0;
        let (y0, y1) = (band * TILE_SIZE, ((band + 1) * TILE_SIZE).min(grid.height));
        s.next_open.clear();
        if !s.open.is_empty() && i > 0 && s.found[i - 1].0 + 1 != band {
            // A band without changes in between: nothing above to join.
            s.open.clear();
        }
        let first = ops.len();
        while let Some(&(_, b)) = s.found.get(i).filter(|f| f.0 == band) {
            copy_box(frame, previous, grid.width, &b);
            let kind = match solid(previous, grid.width, &b) {
                Some(rgb) => Kind::Fill(rgb),
                None if lossy && lossy::photo_like(previous, grid.width, rect(b)) => {
                    Kind::Jpeg { len: 0 }
                }
                None => Kind::Pixels,
            };
            push_beside(ops, first, b, kind);
            i += 1;
        }
        stack(ops, first, y0, y1, s);
    }
}

/// The columns of band `y0..y1` the areas say may have changed.
fn span(d: &Diff<'_>, y0: u32, y1: u32) -> Option<(u32, u32)> {
    let mut out: Option<(u32, u32)> = None;
    for a in d.areas {
        let (ax1, ay1) = (
            a.x.saturating_add(a.width).min(d.grid.width),
            a.y.saturating_add(a.height).min(d.grid.height),
        );
        if a.y >= y1 || ay1 <= y0 || a.x >= ax1 {
            continue;
        }
        out = Some(match out {
            None => (a.x, ax1),
            Some((x0, x1)) => (x0.min(a.x), x1.max(ax1)),
        });
    }
    out
}

/// Compares rows `ys` of the two frames within columns `xs`, growing the
/// box of each tile with the pixels that differ.
fn find_boxes(
    frame: &FrameRef<'_>,
    previous: &[u8],
    width: u32,
    (x0, x1): (u32, u32),
    (y0, y1): (u32, u32),
    boxes: &mut [Option<Box>],
) {
    let stride = width as usize * PX;
    for y in y0..y1 {
        let new = &frame.row(y as usize)[x0 as usize * PX..x1 as usize * PX];
        let old_row = &previous[y as usize * stride..][..stride];
        let old = &old_row[x0 as usize * PX..x1 as usize * PX];
        if new == old {
            continue;
        }
        for c in x0 / TILE_SIZE..x1.div_ceil(TILE_SIZE) {
            let tx0 = (c * TILE_SIZE).max(x0);
            let tx1 = ((c + 1) * TILE_SIZE).min(x1);
            let (a, b) = (
                &new[(tx0 - x0) as usize * PX..(tx1 - x0) as usize * PX],
                &old[(tx0 - x0) as usize * PX..(tx1 - x0) as usize * PX],
            );
            if a == b {
                continue;
            }
            let pixels = || a.chunks_exact(PX).zip(b.chunks_exact(PX));
            // Both exist: the slices differ.
            let first = pixels().position(|(p, q)| p != q).unwrap_or(0) as u32;
            let last = pixels().rposition(|(p, q)| p != q).unwrap_or(0) as u32;
            let (px0, px1) = (tx0 + first, tx0 + last + 1);
            let slot = &mut boxes[c as usize];
            *slot = Some(match *slot {
                None => Box {
                    x0: px0,
                    x1: px1,
                    y0: y,
                    y1: y + 1,
                },
                Some(b) => Box {
                    x0: b.x0.min(px0),
                    x1: b.x1.max(px1),
                    y0: b.y0,
                    y1: y + 1,
                },
            });
        }
    }
}

/// Copies box `b` of `frame` into `previous`.
fn copy_box(frame: &FrameRef<'_>, previous: &mut [u8], width: u32, b: &Box) {
    let stride = width as usize * PX;
    let (c0, c1) = (b.x0 as usize * PX, b.x1 as usize * PX);
    for y in b.y0 as usize..b.y1 as usize {
        previous[y * stride + c0..y * stride + c1].copy_from_slice(&frame.row(y)[c0..c1]);
    }
}

/// The box's colour as R, G, B if every pixel has it (the X byte ignored).
fn solid(pixels: &[u8], width: u32, b: &Box) -> Option<[u8; 3]> {
    let stride = width as usize * PX;
    let (c0, c1) = (b.x0 as usize * PX, b.x1 as usize * PX);
    let first = &pixels[b.y0 as usize * stride + c0..][..3];
    let (blue, green, red) = (first[0], first[1], first[2]);
    let same = (b.y0 as usize..b.y1 as usize).all(|y| {
        pixels[y * stride + c0..y * stride + c1]
            .chunks_exact(PX)
            .all(|p| p[0] == blue && p[1] == green && p[2] == red)
    });
    same.then_some([red, green, blue])
}

fn rect(b: Box) -> Rect {
    Rect {
        x: b.x0,
        y: b.y0,
        width: b.x1 - b.x0,
        height: b.y1 - b.y0,
    }
}

/// Appends box `b`, merged into the band's last rectangle (from `first`
/// on) when that one ends where `b` starts, on a tile edge: fills of one
/// colour with the same rows, or pixels whose union costs at most half
/// again their own area (the rows between are unchanged, so sending them
/// is correct, just not free).
fn push_beside(ops: &mut Vec<Op>, first: usize, b: Box, kind: Kind) {
    if ops.len() > first {
        if let Some(last) = ops.last_mut() {
            let r = last.rect;
            let touches = r.x + r.width == b.x0 && b.x0.is_multiple_of(TILE_SIZE);
            let (y0, y1) = (r.y.min(b.y0), (r.y + r.height).max(b.y1));
            let union = u64::from(b.x1 - r.x) * u64::from(y1 - y0);
            let own = u64::from(r.width) * u64::from(r.height)
                + u64::from(b.x1 - b.x0) * u64::from(b.y1 - b.y0);
            let merge = touches
                && match (last.kind, kind) {
                    (Kind::Fill(a), Kind::Fill(c)) => a == c && r.y == b.y0 && y1 == b.y1,
                    (Kind::Pixels, Kind::Pixels) | (Kind::Jpeg { .. }, Kind::Jpeg { .. }) => {
                        union * 2 <= own * 3
                    }
                    _ => false,
                };
            if merge {
                last.rect = Rect {
                    x: r.x,
                    y: y0,
                    width: b.x1 - r.x,
                    height: y1 - y0,
                };
                return;
            }
        }
    }
    ops.push(Op {
        rect: rect(b),
        kind,
    });
}

/// Merges each rectangle of the band (`ops[first..]`) that starts at its
/// top into a rectangle of the band above with the same columns and kind
/// that reaches down to it; remembers which reach the band's bottom.
fn stack(ops: &mut Vec<Op>, first: usize, y0: u32, y1: u32, s: &mut Scratch) {
    let mut i = first;
    while i < ops.len() {
        let op = ops[i];
        let above = (op.rect.y == y0)
            .then(|| {
                s.open.iter().copied().find(|&j| {
                    let a = ops[j];
                    a.rect.x == op.rect.x && a.rect.width == op.rect.width && a.kind == op.kind
                })
            })
            .flatten();
        let bottom = op.rect.y + op.rect.height == y1;
        match above {
            Some(j) => {
                ops[j].rect.height += op.rect.height;
                ops.remove(i);
                if bottom {
                    s.next_open.push(j);
                }
            }
            None => {
                if bottom {
                    s.next_open.push(i);
                }
                i += 1;
            }
        }
    }
    std::mem::swap(&mut s.open, &mut s.next_open);
}
