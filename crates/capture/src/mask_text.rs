//! The words written across a cover in a 5×7 bitmap font, repeated over
//! it: "HIDDEN BY THE USER" over the windows the user hides, and
//! "ASSENT / THE USER'S OWN WINDOW" over the agent's own windows.

/// Words repeated over a covered rectangle, one tile at a time.
pub(crate) struct Label {
    /// The lines of text, top first (only the glyphs in [`glyph`]).
    lines: &'static [&'static [u8]],
    /// The text repeats every `tile_w`×`tile_h` pixels.
    tile_w: u32,
    tile_h: u32,
}

/// Over the windows the user hides.
pub(crate) const HIDDEN: Label = Label {
    lines: &[b"HIDDEN BY THE USER"],
    tile_w: 256,
    tile_h: 96,
};

/// Over the agent's own windows (the prompt, the "session live" window).
pub(crate) const OWN: Label = Label {
    lines: &[b"ASSENT", b"THE USER'S OWN WINDOW"],
    tile_w: 288,
    tile_h: 96,
};

/// Pixels per font dot.
const SCALE: u32 = 2;
const LEFT: u32 = 12;
const TOP: u32 = 40;
/// From the top of one line to the top of the next, in font dots.
const LINE: u32 = 10;

/// Rows of a glyph, top first; bit 4 is the leftmost dot.
fn glyph(c: u8) -> [u8; 7] {
    match c {
        b'A' => [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        b'H' => [0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        b'I' => [0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e],
        b'D' => [0x1e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1e],
        b'E' => [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f],
        b'N' => [0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x11],
        b'B' => [0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e],
        b'O' => [0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e],
        b'Y' => [0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04],
        b'T' => [0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        b'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e],
        b'S' => [0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e],
        b'R' => [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11],
        b'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a],
        b'\'' => [0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00],
        _ => [0; 7],
    }
}

impl Label {
    /// Whether pixel (`x`, `y`) from the covered rectangle's corner is a
    /// dot of the text.
    pub(crate) fn ink(&self, x: u32, y: u32) -> bool {
        let (tx, ty) = (x % self.tile_w, y % self.tile_h);
        if tx < LEFT || ty < TOP {
            return false;
        }
        let (dx, dy) = ((tx - LEFT) / SCALE, (ty - TOP) / SCALE);
        let (col, line, row) = ((dx / 6) as usize, (dy / LINE) as usize, dy % LINE);
        let within = dx % 6;
        if row >= 7 || within >= 5 {
            return false;
        }
        self.lines
            .get(line)
            .and_then(|text| text.get(col))
            .is_some_and(|c| glyph(*c)[row as usize] & (0x10 >> within) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::{Label, HIDDEN, OWN};

    fn dots(label: &Label) -> usize {
        (0..label.tile_w)
            .flat_map(|x| (0..label.tile_h).map(move |y| (x, y)))
            .filter(|&(x, y)| label.ink(x, y))
            .count()
    }

    #[test]
    fn the_text_has_ink_and_space() {
        let n = dots(&HIDDEN);
        assert!(n > 300 && n < 256 * 96 / 4, "{n}");
        // Two lines: more ink.
        let own = dots(&OWN);
        assert!(own > n && own < 288 * 96 / 4, "{own}");
        // Every line fits its tile, in glyphs the font has.
        for label in [&HIDDEN, &OWN] {
            for l in label.lines {
                assert!(super::LEFT + l.len() as u32 * 6 * super::SCALE <= label.tile_w);
                assert!(l.iter().all(|c| *c == b' ' || super::glyph(*c) != [0; 7]));
            }
            let lines = label.lines.len() as u32;
            assert!(super::TOP + lines * super::LINE * super::SCALE <= label.tile_h);
        }
    }
}
