//! Painting over what the user keeps private, in a captured frame before it
//! is encoded. [`Cover::plan`] turns the windows seen before and after a
//! capture (and every place they were configured to in between) into the
//! rectangles to paint, always erring on the side of painting more: a hidden
//! window is covered at the union of all its places; with "share only this
//! window" only the intersection of that window's places is kept, minus any
//! place of a window above it. The agent's own windows (its prompt and
//! "session live" window) are covered too, with a label of their own
//! ([`Cover::add_own`]): they change while the screen does not (a clock,
//! the window list), and the technician has everything they show already.

use std::collections::HashMap;

use crate::mask_text::{self, Label};
use crate::windows::{TopWindow, WinRect};

/// Which windows to cover.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Choice {
    /// Cover these windows (by id), show the rest.
    #[default]
    Show,
    /// Cover everything but this window (by id).
    Only(u32),
}

/// What to paint over in one frame, in root-window coordinates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cover {
    /// Paint the whole frame except this rectangle (`Some(None)`: all of it).
    pub all_but: Option<Option<WinRect>>,
    /// Paint these too.
    pub rects: Vec<WinRect>,
    /// The agent's own windows: painted last, with their own label.
    pub own: Vec<WinRect>,
}

/// Windows and their places around one capture.
pub struct Around<'a> {
    pub before: &'a [TopWindow],
    pub after: &'a [TopWindow],
    pub moves: &'a HashMap<u32, Vec<WinRect>>,
    /// Some window moved too often to track: cover as if it were anywhere.
    pub overflowed: bool,
}

impl Around<'_> {
    /// Every place window `id` held: before, after and in between.
    fn places(&self, id: u32) -> Vec<WinRect> {
        let listed = self.before.iter().chain(self.after).filter(|w| w.id == id);
        let moved = self.moves.get(&id).into_iter().flatten().copied();
        listed.map(|w| w.rect).chain(moved).collect()
    }
}

impl Cover {
    /// What to paint, given which windows are hidden (`hidden(window)`).
    pub fn plan(
        around: &Around<'_>,
        choice: &Choice,
        hidden: &dyn Fn(&TopWindow) -> bool,
    ) -> Cover {
        match *choice {
            Choice::Show => {
                let mut ids: Vec<u32> = around
                    .before
                    .iter()
                    .chain(around.after)
                    .filter(|w| hidden(w))
                    .map(|w| w.id)
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                if around.overflowed && !ids.is_empty() {
                    return Cover::everything();
                }
                let rects = ids.into_iter().flat_map(|id| around.places(id)).collect();
                Cover {
                    all_but: None,
                    rects,
                    own: Vec::new(),
                }
            }
            Choice::Only(id) => Self::only(around, id),
        }
    }

    fn only(around: &Around<'_>, id: u32) -> Cover {
        let in_both =
            around.before.iter().any(|w| w.id == id) && around.after.iter().any(|w| w.id == id);
        if !in_both || around.overflowed {
            return Cover::everything();
        }
        let keep = around
            .places(id)
            .into_iter()
            .try_fold(None::<WinRect>, |acc, r| {
                let next = match acc {
                    None => r,
                    Some(a) => intersect(a, r)?,
                };
                Some(Some(next))
            })
            .flatten();
        // Anything above the window in either list, and anything that
        // moved without being listed below it in both, is covered.
        let below = |list: &[TopWindow], other: u32| {
            let at = |w: u32| list.iter().position(|x| x.id == w);
            matches!((at(other), at(id)), (Some(o), Some(me)) if o < me)
        };
        let mut others: Vec<u32> = around
            .before
            .iter()
            .chain(around.after)
            .map(|w| w.id)
            .chain(around.moves.keys().copied())
            .filter(|&w| w != id && !(below(around.before, w) && below(around.after, w)))
            .collect();
        others.sort_unstable();
        others.dedup();
        Cover {
            all_but: Some(keep),
            rects: others.into_iter().flat_map(|w| around.places(w)).collect(),
            own: Vec::new(),
        }
    }

    fn everything() -> Cover {
        Cover {
            all_but: Some(None),
            ..Cover::default()
        }
    }

    /// Covers every place the agent's own windows (`own(window)`) held
    /// around the capture, whatever else is covered. Unlike a hidden
    /// window, moving too often to track does not cover the whole screen:
    /// the agent's windows are not the user's secrets, only a cost.
    pub fn add_own(&mut self, around: &Around<'_>, own: &dyn Fn(&TopWindow) -> bool) {
        let mut ids: Vec<u32> = around
            .before
            .iter()
            .chain(around.after)
            .filter(|w| own(w))
            .map(|w| w.id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        self.own
            .extend(ids.into_iter().flat_map(|id| around.places(id)));
    }

    /// Whether this paints nothing.
    pub fn is_empty(&self) -> bool {
        self.all_but.is_none() && self.rects.is_empty() && self.own.is_empty()
    }

    /// The smallest frame rectangle holding everything painted, for a frame
    /// at `origin` on the root of `width`×`height`.
    pub fn bounds(&self, origin: (i32, i32), width: u32, height: u32) -> Option<WinRect> {
        if self.all_but.is_some() {
            return Some(WinRect {
                x: 0,
                y: 0,
                width,
                height,
            });
        }
        self.rects
            .iter()
            .chain(&self.own)
            .filter_map(|r| clip(*r, origin, width, height))
            .reduce(WinRect::union)
    }

    /// Paints the cover into a BGRX frame at `origin` on the root.
    pub fn paint(
        &self,
        data: &mut [u8],
        width: u32,
        height: u32,
        stride: usize,
        origin: (i32, i32),
    ) {
        let whole = WinRect {
            x: 0,
            y: 0,
            width,
            height,
        };
        if let Some(keep) = self.all_but {
            let keep = keep.and_then(|k| clip(k, origin, width, height));
            fill_outside(data, stride, whole, keep);
        }
        for (rects, look) in [(&self.rects, &HIDDEN), (&self.own, &OWN)] {
            for r in rects {
                if let Some(c) = clip(*r, origin, width, height) {
                    fill(data, stride, c, look);
                }
            }
        }
    }
}

fn intersect(a: WinRect, b: WinRect) -> Option<WinRect> {
    let x0 = a.x.max(b.x);
    let y0 = a.y.max(b.y);
    let x1 = (a.x + a.width as i32).min(b.x + b.width as i32);
    let y1 = (a.y + a.height as i32).min(b.y + b.height as i32);
    (x1 > x0 && y1 > y0).then(|| WinRect {
        x: x0,
        y: y0,
        width: (x1 - x0) as u32,
        height: (y1 - y0) as u32,
    })
}

/// A root rectangle's part of the frame, in frame coordinates.
fn clip(r: WinRect, origin: (i32, i32), width: u32, height: u32) -> Option<WinRect> {
    let moved = WinRect {
        x: r.x - origin.0,
        y: r.y - origin.1,
        ..r
    };
    intersect(
        moved,
        WinRect {
            x: 0,
            y: 0,
            width,
            height,
        },
    )
}

/// How one kind of cover looks: diagonal stripes of two colours (BGRX)
/// with words written across them.
pub struct Look {
    label: Label,
    stripes: [[u8; 4]; 2],
}

/// The user's hidden windows: grey stripes, "HIDDEN BY THE USER".
pub const HIDDEN: Look = Look {
    label: mask_text::HIDDEN,
    stripes: [[0x58, 0x58, 0x58, 0xff], [0x48, 0x48, 0x48, 0xff]],
};

/// The agent's own windows: blue stripes, "ASSENT / THE USER'S OWN WINDOW".
pub const OWN: Look = Look {
    label: mask_text::OWN,
    stripes: [[0x70, 0x48, 0x30, 0xff], [0x60, 0x3c, 0x28, 0xff]],
};

/// The text's colour on every cover.
pub const INK: [u8; 4] = [0xf0, 0xf0, 0xf0, 0xff];

impl Look {
    /// The pattern at (`x`, `y`) from a covered rectangle's corner.
    pub fn pattern(&self, x: u32, y: u32) -> [u8; 4] {
        if self.label.ink(x, y) {
            return INK;
        }
        self.stripes[((x + y) / 12 % 2) as usize]
    }

    /// Whether a BGRX pixel is one of this cover's colours.
    pub fn has_colour(&self, px: [u8; 4]) -> bool {
        let rgb = |p: [u8; 4]| [p[0], p[1], p[2]];
        [INK, self.stripes[0], self.stripes[1]]
            .iter()
            .any(|c| rgb(*c) == rgb(px))
    }
}

fn fill(data: &mut [u8], stride: usize, r: WinRect, look: &Look) {
    for y in r.y as u32..r.y as u32 + r.height {
        let row = y as usize * stride;
        for x in r.x as u32..r.x as u32 + r.width {
            let at = row + x as usize * 4;
            if let Some(px) = data.get_mut(at..at + 4) {
                // Anchored to the rectangle: its text starts at its corner.
                px.copy_from_slice(&look.pattern(x - r.x as u32, y - r.y as u32));
            }
        }
    }
}

fn fill_outside(data: &mut [u8], stride: usize, whole: WinRect, keep: Option<WinRect>) {
    let Some(k) = keep else {
        fill(data, stride, whole, &HIDDEN);
        return;
    };
    let (kx1, ky1) = (k.x + k.width as i32, k.y + k.height as i32);
    let (wx1, wy1) = (whole.width as i32, whole.height as i32);
    let band = |x0: i32, y0: i32, x1: i32, y1: i32| WinRect {
        x: x0,
        y: y0,
        width: (x1 - x0).max(0) as u32,
        height: (y1 - y0).max(0) as u32,
    };
    for r in [
        band(0, 0, wx1, k.y),
        band(0, ky1, wx1, wy1),
        band(0, k.y, k.x, ky1),
        band(kx1, k.y, wx1, ky1),
    ] {
        fill(data, stride, r, &HIDDEN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win(id: u32, x: i32, y: i32, w: u32, h: u32) -> TopWindow {
        TopWindow {
            id,
            rect: WinRect {
                x,
                y,
                width: w,
                height: h,
            },
            title: format!("w{id}"),
            class: String::new(),
            pid: None,
        }
    }

    fn painted(cover: &Cover, w: u32, h: u32) -> Vec<bool> {
        let mut data = vec![0u8; (w * h * 4) as usize];
        cover.paint(&mut data, w, h, w as usize * 4, (0, 0));
        data.chunks(4).map(|p| p != [0, 0, 0, 0]).collect()
    }

    #[test]
    fn a_hidden_window_is_covered_wherever_it_was() {
        let before = [win(1, 0, 0, 10, 10), win(2, 50, 50, 5, 5)];
        let after = [win(1, 30, 0, 10, 10), win(2, 50, 50, 5, 5)];
        let moves = HashMap::from([(
            1,
            vec![WinRect {
                x: 15,
                y: 20,
                width: 10,
                height: 10,
            }],
        )]);
        let around = Around {
            before: &before,
            after: &after,
            moves: &moves,
            overflowed: false,
        };
        let cover = Cover::plan(&around, &Choice::Show, &|w| w.id == 1);
        let px = painted(&cover, 64, 64);
        for (x, y) in [(0, 0), (9, 9), (30, 0), (39, 9), (15, 20), (24, 29)] {
            assert!(px[y * 64 + x], "({x},{y}) must be covered");
        }
        assert!(!px[52 * 64 + 52], "a shown window stays");
        assert!(!px[40 * 64 + 5]);
    }

    #[test]
    fn share_only_keeps_the_window_minus_what_was_above_it() {
        let before = [
            win(1, 10, 10, 20, 20),
            win(2, 0, 0, 5, 5),
            win(3, 25, 25, 10, 10),
        ];
        let after = [
            win(1, 12, 10, 20, 20),
            win(2, 0, 0, 5, 5),
            win(3, 25, 25, 10, 10),
        ];
        let moves = HashMap::new();
        let around = Around {
            before: &before,
            after: &after,
            moves: &moves,
            overflowed: false,
        };
        let cover = Cover::plan(&around, &Choice::Only(1), &|_| false);
        let px = painted(&cover, 64, 64);
        assert!(!px[15 * 64 + 15], "inside both places: kept");
        assert!(px[15 * 64 + 10], "only in the first place: covered");
        assert!(px[27 * 64 + 27], "under the window above it: covered");
        assert!(px[60 * 64 + 60], "outside: covered");
        let gone = Around {
            before: &before,
            after: &after[1..],
            moves: &moves,
            overflowed: false,
        };
        let cover = Cover::plan(&gone, &Choice::Only(1), &|_| false);
        assert!(
            painted(&cover, 64, 64).iter().all(|p| *p),
            "window gone: all covered"
        );
    }

    #[test]
    fn too_many_moves_cover_everything() {
        let before = [win(1, 0, 0, 10, 10)];
        let moves = HashMap::new();
        let around = Around {
            before: &before,
            after: &before,
            moves: &moves,
            overflowed: true,
        };
        let cover = Cover::plan(&around, &Choice::Show, &|_| true);
        assert!(painted(&cover, 32, 32).iter().all(|p| *p));
        let none = Cover::plan(&around, &Choice::Show, &|_| false);
        assert!(none.is_empty());
    }

    #[test]
    fn the_agents_own_windows_get_their_own_label_wherever_they_were() {
        let before = [win(1, 0, 0, 20, 20), win(2, 40, 0, 20, 20)];
        let after = [win(1, 0, 0, 20, 20), win(2, 40, 30, 20, 20)];
        let moves = HashMap::new();
        let around = Around {
            before: &before,
            after: &after,
            moves: &moves,
            overflowed: false,
        };
        let mut cover = Cover::plan(&around, &Choice::Show, &|_| false);
        assert!(cover.is_empty());
        cover.add_own(&around, &|w| w.id == 2);
        assert!(!cover.is_empty());
        assert_eq!(
            cover.bounds((0, 0), 64, 64),
            Some(WinRect {
                x: 40,
                y: 0,
                width: 20,
                height: 50
            })
        );
        let mut data = vec![0u8; 64 * 64 * 4];
        cover.paint(&mut data, 64, 64, 64 * 4, (0, 0));
        let at =
            |x: usize, y: usize| -> [u8; 4] { data[(y * 64 + x) * 4..][..4].try_into().unwrap() };
        for (x, y) in [(40, 0), (59, 19), (45, 35), (59, 49)] {
            assert!(OWN.has_colour(at(x, y)), "({x},{y}) must be covered");
            assert!(!HIDDEN.has_colour(at(x, y)), "with the agent's own look");
        }
        assert_eq!(at(5, 5), [0, 0, 0, 0], "the user's window stays");
        // The same pixels every time: an unchanged window costs nothing.
        let mut again = vec![0u8; 64 * 64 * 4];
        cover.paint(&mut again, 64, 64, 64 * 4, (0, 0));
        assert_eq!(data, again);
        // Sharing only window 1 covers the rest, the agent's with its label.
        let mut only = Cover::plan(&around, &Choice::Only(1), &|_| false);
        only.add_own(&around, &|w| w.id == 2);
        let mut data = vec![0u8; 64 * 64 * 4];
        only.paint(&mut data, 64, 64, 64 * 4, (0, 0));
        let px: [u8; 4] = data[(10 * 64 + 50) * 4..][..4].try_into().unwrap();
        assert!(OWN.has_colour(px));
    }
}
