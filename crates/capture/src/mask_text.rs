//! "HIDDEN BY THE USER" in a 5×7 bitmap font, repeated over the cover.

const TEXT: &[u8] = b"HIDDEN BY THE USER";
/// Pixels per font dot.
const SCALE: u32 = 2;
/// The text repeats every `TILE_W`×`TILE_H` pixels.
const TILE_W: u32 = 256;
const TILE_H: u32 = 96;
const LEFT: u32 = 12;
const TOP: u32 = 40;

/// Rows of a glyph, top first; bit 4 is the leftmost dot.
fn glyph(c: u8) -> [u8; 7] {
    match c {
        b'H' => [0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        b'I' => [0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e],
        b'D' => [0x1e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1e],
        b'E' => [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f],
        b'N' => [0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x11],
        b'B' => [0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e],
        b'Y' => [0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04],
        b'T' => [0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        b'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e],
        b'S' => [0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e],
        b'R' => [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11],
        _ => [0; 7],
    }
}

/// Whether frame pixel (`x`, `y`) is a dot of the text.
pub(crate) fn ink(x: u32, y: u32) -> bool {
    let (tx, ty) = (x % TILE_W, y % TILE_H);
    if tx < LEFT || ty < TOP {
        return false;
    }
    let (dx, dy) = ((tx - LEFT) / SCALE, (ty - TOP) / SCALE);
    let (col, row) = ((dx / 6) as usize, dy as usize);
    let within = dx % 6;
    if row >= 7 || within >= 5 {
        return false;
    }
    TEXT.get(col)
        .is_some_and(|c| glyph(*c)[row] & (0x10 >> within) != 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_text_has_ink_and_space() {
        let dots = (0..256)
            .flat_map(|x| (0..96).map(move |y| (x, y)))
            .filter(|&(x, y)| super::ink(x, y))
            .count();
        assert!(dots > 300 && dots < 256 * 96 / 4, "{dots}");
    }
}
