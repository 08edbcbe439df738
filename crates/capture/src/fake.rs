//! A deterministic synthetic screen: a test double, not a capture backend.

use crate::{CaptureError, CapturedFrame, ScreenSource, BYTES_PER_PIXEL};

/// Test double: produces known frames without a display.
///
/// Every frame is a fixed gradient (`[x as u8, y as u8, 0x80, 0xff]` in
/// BGRX) with one white [`FakeSource::MARKER`]-sized square that moves one
/// slot per capture, left to right then top to bottom. Consecutive frames
/// therefore differ in at most two small regions, like a desktop does, and
/// [`FakeSource::expected_pixel`] tells tests the exact value of any pixel
/// of any frame. Optional row padding exercises codecs on `stride >
/// width * 4`.
#[derive(Debug, Clone)]
pub struct FakeSource {
    width: u32,
    height: u32,
    stride: usize,
    frames: u64,
    buf: Vec<u8>,
}

impl FakeSource {
    /// Side of the moving marker square, in pixels.
    pub const MARKER: u32 = 16;
    /// Value of the padding bytes at the end of each row.
    pub const PADDING_BYTE: u8 = 0xab;
    const WHITE: [u8; 4] = [0xff; 4];

    /// A source of `width` x `height` frames with no row padding.
    ///
    /// # Panics
    /// If either side is zero.
    pub fn new(width: u32, height: u32) -> Self {
        Self::with_row_padding(width, height, 0)
    }

    /// Like [`FakeSource::new`], with `padding` extra bytes after each row.
    pub fn with_row_padding(width: u32, height: u32, padding: usize) -> Self {
        assert!(
            width > 0 && height > 0,
            "FakeSource needs a non-empty frame"
        );
        let stride = width as usize * BYTES_PER_PIXEL + padding;
        let mut source = FakeSource {
            width,
            height,
            stride,
            frames: 0,
            buf: vec![Self::PADDING_BYTE; stride * height as usize],
        };
        source.paint(0, 0, width, height, None);
        source
    }

    /// How many frames [`ScreenSource::capture`] has returned so far.
    pub fn frames_captured(&self) -> u64 {
        self.frames
    }

    /// The BGRX value of pixel (`x`, `y`) in frame number `frame` (the
    /// first capture returns frame 0) of a `width` x `height` source.
    pub fn expected_pixel(width: u32, height: u32, frame: u64, x: u32, y: u32) -> [u8; 4] {
        let (mx, my) = Self::marker_at(width, height, frame);
        if (mx..mx + Self::MARKER).contains(&x) && (my..my + Self::MARKER).contains(&y) {
            Self::WHITE
        } else {
            [x as u8, y as u8, 0x80, 0xff]
        }
    }

    /// Top-left corner of the marker in frame `frame`.
    fn marker_at(width: u32, height: u32, frame: u64) -> (u32, u32) {
        let columns = u64::from((width / Self::MARKER).max(1));
        let rows = u64::from((height / Self::MARKER).max(1));
        let column = frame % columns;
        let row = (frame / columns) % rows;
        ((column as u32) * Self::MARKER, (row as u32) * Self::MARKER)
    }

    /// Repaints the given rectangle (clipped to the frame) as in `frame`,
    /// or as plain gradient when `frame` is `None`.
    fn paint(&mut self, x0: u32, y0: u32, w: u32, h: u32, frame: Option<u64>) {
        for y in y0..(y0 + h).min(self.height) {
            for x in x0..(x0 + w).min(self.width) {
                let value = match frame {
                    Some(f) => Self::expected_pixel(self.width, self.height, f, x, y),
                    None => [x as u8, y as u8, 0x80, 0xff],
                };
                let at = y as usize * self.stride + x as usize * BYTES_PER_PIXEL;
                self.buf[at..at + BYTES_PER_PIXEL].copy_from_slice(&value);
            }
        }
    }
}

impl ScreenSource for FakeSource {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn capture(&mut self) -> Result<CapturedFrame<'_>, CaptureError> {
        let frame = self.frames;
        let m = Self::MARKER;
        if let Some(previous) = frame.checked_sub(1) {
            let (px, py) = Self::marker_at(self.width, self.height, previous);
            self.paint(px, py, m, m, None);
        }
        let (mx, my) = Self::marker_at(self.width, self.height, frame);
        self.paint(mx, my, m, m, Some(frame));
        self.frames += 1;
        Ok(CapturedFrame {
            data: &self.buf,
            width: self.width,
            height: self.height,
            stride: self.stride,
            // It redraws the whole frame each time.
            changed: None,
            origin: (0, 0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_matches_expected(source: &mut FakeSource) {
        let (w, h) = source.size();
        let n = source.frames_captured();
        let frame = source.capture().unwrap();
        for y in 0..h {
            for x in 0..w {
                assert_eq!(
                    frame.pixel(x, y).unwrap(),
                    FakeSource::expected_pixel(w, h, n, x, y),
                    "frame {n} pixel ({x}, {y})"
                );
            }
        }
    }

    #[test]
    fn frames_follow_the_documented_pattern() {
        let mut source = FakeSource::new(70, 40);
        for _ in 0..12 {
            assert_matches_expected(&mut source);
        }
        assert_eq!(source.frames_captured(), 12);
    }

    #[test]
    fn marker_moves_and_consecutive_frames_differ_only_around_it() {
        let mut source = FakeSource::new(64, 32);
        let first = source.capture().unwrap().data.to_vec();
        let second = source.capture().unwrap().data.to_vec();
        let changed: Vec<usize> = (0..first.len())
            .filter(|&i| first[i] != second[i])
            .collect();
        // Two 16x16 squares of 4-byte pixels, minus bytes equal in both.
        assert!(!changed.is_empty() && changed.len() <= 2 * 16 * 16 * 4);
        let frame = source.capture().unwrap();
        assert_eq!(frame.pixel(32, 0), Some([0xff; 4]), "marker in slot 2");
        assert_eq!(frame.pixel(0, 0), Some([0, 0, 0x80, 0xff]));
        // 4 columns x 2 rows of slots: frame 4 wraps to the second row.
        source.capture().unwrap();
        assert_eq!(source.capture().unwrap().pixel(0, 16), Some([0xff; 4]));
    }

    #[test]
    fn padded_rows_keep_pixels_and_mark_padding() {
        let mut source = FakeSource::with_row_padding(20, 10, 12);
        let frame = source.capture().unwrap();
        assert_eq!(frame.stride, 20 * 4 + 12);
        assert_eq!(frame.data.len(), frame.stride * 10);
        assert_eq!(frame.row(3).unwrap().len(), 80);
        assert_eq!(frame.pixel(19, 9), Some([19, 9, 0x80, 0xff]));
        assert_eq!(frame.pixel(20, 0), None);
        assert_eq!(frame.data[80..92], [FakeSource::PADDING_BYTE; 12]);
        assert_matches_expected(&mut source);
    }

    #[test]
    fn tiny_frames_clip_the_marker() {
        let mut source = FakeSource::new(5, 3);
        for _ in 0..3 {
            assert_matches_expected(&mut source);
        }
    }
}
