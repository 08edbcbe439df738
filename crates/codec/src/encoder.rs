//! The agent side: find the changed rectangles, send fills as colours,
//! photos as JPEG (when allowed) and the rest as filtered pixels through
//! the session's zstd stream; send JPEG'd tiles again exactly once they
//! stop changing.

use std::time::Instant;

use zstd::stream::raw::{CParameter, Encoder as ZstdEncoder, InBuffer, Operation, OutBuffer};

use crate::refine::Refinement;
use crate::regions::{self, Diff, Scratch};
use crate::scroll::{self, Scroll};
use crate::wire::{self, Header, Kind, Op};
use crate::{
    copy_rect, CodecError, FrameRef, Grid, Rect, Result, View, ZSTD_LEVEL, ZSTD_WINDOW_LOG,
};
use crate::{lossy, moves};

/// One encoded update, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// Counts updates from 0; a decoder refuses a gap in non-keyframes.
    pub seq: u64,
    /// Covers the whole screen and restarts the zstd stream, so it can start
    /// (or restart) a decoder.
    pub keyframe: bool,
    /// The self-describing wire form (see the crate docs).
    pub bytes: Vec<u8>,
    /// How many rectangles it carries.
    pub rects: usize,
    /// How many of them are JPEG.
    pub jpeg_rects: usize,
}

/// Turns successive BGRX frames into updates holding only what changed.
///
/// Every update it returns continues one zstd stream, so each must reach
/// the decoder, in order; after a loss the decoder needs a keyframe
/// (`force_keyframe`).
pub struct Encoder {
    zstd: ZstdEncoder<'static>,
    /// The last frame encoded, packed BGRX (`stride = width * 4`), and its
    /// grid; `None` until the first frame or after a failure.
    previous: Vec<u8>,
    grid: Option<Grid>,
    next_seq: u64,
    /// Where frames sit on the screen, sent with every keyframe it fits.
    view: Option<View>,
    /// The view has changed since a keyframe last carried it.
    view_pending: bool,
    /// JPEG quality for photographic rectangles; `None`: all lossless.
    jpeg_quality: Option<u8>,
    /// Tiles the decoder shows inexactly, and when to resend them.
    refinement: Refinement,
    /// This update's JPEG section, and the pixels of the one being coded.
    jpeg: Vec<u8>,
    /// One scratch buffer per thread coding JPEG.
    jpeg_pixels: Vec<Vec<u8>>,
    // Scratch kept between frames to avoid reallocating.
    scratch: Scratch,
    scroll: Scroll,
    ops: Vec<Op>,
    raw: Vec<u8>,
    compressed: Vec<u8>,
    /// Frames in a row that used under a quarter of a large `compressed`.
    slack_frames: u32,
}

/// Compressed bytes up to this size are kept between frames whatever
/// they need.
const KEEP_SCRATCH: usize = 1 << 20;
/// Packed rows fed to zstd at a time.
const PACK_CHUNK: usize = 256 * 1024;
/// Large scratch is given back after this many frames in a row that
/// used under a quarter of it (the end of a burst of big changes).
const SLACK_FRAMES: u32 = 64;

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An encoder whose first frame will be a keyframe.
    pub fn new() -> Self {
        // Both fail only on invalid parameters, and these are valid.
        let mut zstd = ZstdEncoder::new(ZSTD_LEVEL).expect("zstd level is valid");
        zstd.set_parameter(CParameter::WindowLog(ZSTD_WINDOW_LOG))
            .expect("zstd window is valid");
        Self {
            zstd,
            previous: Vec::new(),
            grid: None,
            next_seq: 0,
            view: None,
            view_pending: false,
            jpeg_quality: None,
            refinement: Refinement::default(),
            jpeg: Vec::new(),
            jpeg_pixels: Vec::new(),
            scratch: Scratch::default(),
            scroll: Scroll::default(),
            ops: Vec::new(),
            raw: Vec::new(),
            compressed: Vec::new(),
            slack_frames: 0,
        }
    }

    /// Says where the frames from now on sit on the screen ([`View`]). A
    /// change makes the next frame it fits a keyframe carrying it (a
    /// frame of another size than the view says is sent without it, and
    /// the view waits for one that fits).
    pub fn set_view(&mut self, view: Option<View>) {
        if view != self.view {
            self.view = view;
            self.view_pending = true;
        }
    }

    /// Codes photographic rectangles as JPEG at `quality` (1..=100), or
    /// (`None`, the default) everything losslessly; turning JPEG off makes
    /// every inexact tile due for its lossless resend at once.
    pub fn set_jpeg_quality(&mut self, quality: Option<u8>) {
        self.jpeg_quality = quality.map(|q| q.clamp(1, 100));
        if quality.is_none() {
            self.refinement.hurry();
        }
    }

    /// The JPEG quality in use (`None`: lossless only).
    pub fn jpeg_quality(&self) -> Option<u8> {
        self.jpeg_quality
    }

    /// When some tile the viewer shows inexactly is due for its lossless
    /// resend: call [`Encoder::encode_at`] then, even if nothing changed.
    /// `None` while the viewer's screen is exact.
    pub fn refine_due(&self) -> Option<Instant> {
        self.grid.and(self.refinement.next_due())
    }

    /// Whether `view` holds a `width`×`height` frame.
    fn view_fits(&self, width: u32, height: u32) -> bool {
        self.view
            .as_ref()
            .is_some_and(|v| v.check(width, height).is_ok())
    }

    /// Encodes `frame` against the previous one, looking everywhere.
    ///
    /// Returns `None` when no pixel changed and no keyframe is due. A
    /// keyframe is sent for the first frame, on `force_keyframe` (e.g. a
    /// viewer joined or hit a decode error), and when the size changes.
    pub fn encode(
        &mut self,
        frame: FrameRef<'_>,
        force_keyframe: bool,
    ) -> Result<Option<EncodedFrame>> {
        let whole = Rect {
            x: 0,
            y: 0,
            width: frame.width,
            height: frame.height,
        };
        self.encode_within(frame, force_keyframe, &[whole])
    }

    /// Like [`Encoder::encode`], but compares only within `changed`: the
    /// caller promises that no pixel outside these rectangles differs from
    /// the previous frame given to this encoder (a capture that knows what
    /// it re-read). Rectangles may reach past the frame; they are clipped.
    pub fn encode_within(
        &mut self,
        frame: FrameRef<'_>,
        force_keyframe: bool,
        changed: &[Rect],
    ) -> Result<Option<EncodedFrame>> {
        self.encode_at(frame, force_keyframe, changed, Instant::now())
    }

    /// [`Encoder::encode_within`] at time `now`, which decides which
    /// inexact tiles are due for their lossless resend (those are sent
    /// even when nothing changed).
    pub fn encode_at(
        &mut self,
        frame: FrameRef<'_>,
        force_keyframe: bool,
        changed: &[Rect],
        now: Instant,
    ) -> Result<Option<EncodedFrame>> {
        frame.validate()?;
        let grid = Grid::new(frame.width, frame.height);
        let view = self.view_fits(frame.width, frame.height);
        let keyframe = force_keyframe || self.grid != Some(grid) || (self.view_pending && view);
        let whole = [Rect {
            x: 0,
            y: 0,
            width: frame.width,
            height: frame.height,
        }];
        if keyframe {
            let len = frame.width as usize * 4 * frame.height as usize;
            self.previous.resize(len, 0);
            self.grid = Some(grid);
            self.refinement.reset(grid);
        }
        let diff = Diff {
            grid,
            areas: if keyframe { &whole } else { changed },
            keyframe,
        };
        self.ops.clear();
        regions::find(&diff, &frame, &self.previous, &mut self.scratch);
        if !keyframe {
            self.find_scroll(grid, &frame);
        }
        let lossy = self.jpeg_quality.is_some();
        regions::emit(
            grid,
            &frame,
            (&mut self.previous, lossy),
            &mut self.ops,
            &mut self.scratch,
        );
        if let Err(e) = self.code_ops(grid, keyframe, now) {
            // `previous` already holds changes that will never be sent,
            // and the stream may be broken: start over with a keyframe.
            self.grid = None;
            return Err(e);
        }
        if self.ops.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.write_update(&frame, keyframe, keyframe && view)))
    }

    /// The update's wire form: header, view, rectangles, JPEG section,
    /// zstd payload.
    fn write_update(
        &mut self,
        frame: &FrameRef<'_>,
        keyframe: bool,
        with_view: bool,
    ) -> EncodedFrame {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        if with_view {
            self.view_pending = false;
        }
        let header = Header {
            keyframe,
            view: with_view,
            width: frame.width,
            height: frame.height,
            seq,
            lossy: true,
        };
        let sections = self.jpeg.len() + self.compressed.len();
        let mut bytes = Vec::with_capacity(wire::HEADER_LEN + 12 * self.ops.len() + sections + 8);
        header.write(&mut bytes);
        if let Some(v) = self.view.as_ref().filter(|_| with_view) {
            v.write(&mut bytes);
        }
        wire::write_ops(&self.ops, &mut bytes);
        bytes.extend_from_slice(&self.jpeg);
        bytes.extend_from_slice(&self.compressed);
        self.give_back_scratch(keyframe);
        let jpeg_rects = self
            .ops
            .iter()
            .filter(|op| matches!(op.kind, Kind::Jpeg { .. }))
            .count();
        EncodedFrame {
            seq,
            keyframe,
            bytes,
            rects: self.ops.len(),
            jpeg_rects,
        }
    }

    /// Turns the found rectangles into this update's operations: photos
    /// as JPEG (when allowed), the tiles due for refinement added as
    /// exact pixels, and the pixels compressed.
    fn code_ops(&mut self, grid: Grid, keyframe: bool, now: Instant) -> Result<()> {
        self.jpeg.clear();
        if let Some(quality) = self.jpeg_quality {
            self.code_photos(grid.width, quality)?;
        }
        self.refinement.follow(grid, &self.ops, now);
        self.refinement.take_due(grid, now, &mut self.ops);
        if self.ops.is_empty() {
            return Ok(());
        }
        self.pack_and_compress(grid.width, keyframe)
            .map_err(CodecError::Zstd)
    }

    /// Codes each rectangle marked for JPEG (a photographic one) into the
    /// update's JPEG section.
    fn code_photos(&mut self, width: u32, quality: u8) -> Result<()> {
        let ops = (&mut self.ops, quality);
        let scratch = &mut self.jpeg_pixels;
        let area = lossy::encode_marked(&self.previous, width, ops, scratch, &mut self.jpeg)?;
        // Kept while large areas keep coming (video); given back at the
        // first update without one (a refinement follows every JPEG).
        let kept: usize = self.jpeg_pixels.iter().map(Vec::capacity).sum();
        if kept > KEEP_SCRATCH && area < lossy::PARALLEL_AREA {
            self.jpeg_pixels.clear();
        }
        Ok(())
    }

    /// When much changed, looks for a vertical scroll in it, or else a
    /// moved rectangle: the copies go first in `ops` and into `previous`,
    /// and the diff is redone against that, leaving only the residual.
    fn find_scroll(&mut self, grid: Grid, frame: &FrameRef<'_>) {
        let (area, Some(around)) = regions::found_extent(&self.scratch) else {
            return;
        };
        if area < scroll::MIN_AREA {
            return;
        }
        let mut copies = self.scroll.detect(frame, &self.previous, around);
        // Not a scroll: perhaps a moved window (never looked for in a change
        // of most of the screen, which a drag is not, so video pays nothing).
        let screen = u64::from(grid.width) * u64::from(grid.height);
        if copies.is_empty() && area * 2 <= screen {
            copies.extend(moves::detect(frame, &self.previous, around));
        }
        if copies.is_empty() {
            return;
        }
        let row_len = grid.width as usize * 4;
        for op in &copies {
            if let Kind::Copy { x, y } = op.kind {
                // Inside the frame by construction.
                let _ = copy_rect(&mut self.previous, row_len, op.rect, (x, y));
            }
        }
        self.ops.extend(copies);
        let diff = Diff {
            grid,
            areas: &[around],
            keyframe: false,
        };
        regions::find(&diff, frame, &self.previous, &mut self.scratch);
    }

    /// A keyframe's compressed bytes (up to a few MB of a photo) are
    /// followed by small updates for minutes: given back at once after a
    /// keyframe, and after a burst of big changes once it has been quiet
    /// for a while.
    fn give_back_scratch(&mut self, keyframe: bool) {
        let cap = self.compressed.capacity();
        if cap <= KEEP_SCRATCH {
            self.slack_frames = 0;
            return;
        }
        if self.compressed.len() < cap / 4 {
            self.slack_frames += 1;
        } else {
            self.slack_frames = 0;
        }
        if keyframe || self.slack_frames >= SLACK_FRAMES {
            self.compressed = Vec::new();
            self.slack_frames = 0;
        }
    }

    /// Packs the "pixels" rectangles, as filtered RGB, one after another,
    /// into the stream's next part, flushed so the decoder can decode it
    /// all now; a keyframe starts a new stream. Rows go to zstd
    /// [`PACK_CHUNK`] bytes at a time, so no update needs a packing buffer
    /// of its own size (6 MB for a 1080p keyframe, which stayed resident
    /// in the capture thread's malloc arena after it was freed).
    fn pack_and_compress(&mut self, width: u32, keyframe: bool) -> std::io::Result<()> {
        if keyframe {
            self.zstd.reinit()?;
        }
        self.compressed.clear();
        self.raw.clear();
        let stride = width as usize * 4;
        let mut fed = false;
        for op in self.ops.iter().filter(|op| op.kind == Kind::Pixels) {
            let r = op.rect;
            let (x, w) = (r.x as usize * 4, r.width as usize * 4);
            for y in r.y as usize..(r.y + r.height) as usize {
                let start = y * stride + x;
                bgrx_to_rgb_sub(&self.previous[start..start + w], &mut self.raw);
                if self.raw.len() >= PACK_CHUNK {
                    feed(&mut self.zstd, &self.raw, &mut self.compressed)?;
                    self.raw.clear();
                    fed = true;
                }
            }
        }
        if !self.raw.is_empty() {
            feed(&mut self.zstd, &self.raw, &mut self.compressed)?;
            fed = true;
        }
        if fed {
            flush(&mut self.zstd, &mut self.compressed)?;
        }
        Ok(())
    }
}

/// Compresses `raw` as more of the stream's current part into `out`.
fn feed(zstd: &mut ZstdEncoder<'static>, raw: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
    let mut input = InBuffer::around(raw);
    while input.pos() < raw.len() {
        let at = out.len();
        let mut o = OutBuffer::around_pos(out, at);
        // Writes into the spare capacity and sets the length.
        zstd.run(&mut input, &mut o)?;
        out.reserve(4096);
    }
    Ok(())
}

/// Ends the stream's current part so the decoder can decode all of it.
fn flush(zstd: &mut ZstdEncoder<'static>, out: &mut Vec<u8>) -> std::io::Result<()> {
    out.reserve(64);
    loop {
        let at = out.len();
        let mut o = OutBuffer::around_pos(out, at);
        let left = zstd.flush(&mut o)?;
        if left == 0 {
            return Ok(());
        }
        out.reserve(left.max(4096));
    }
}

/// Appends one row of BGRX pixels to `out` as RGB differences from the
/// pixel to the left (PNG's "sub" filter; the row's first pixel is kept
/// as is). Smooth or flat areas become runs of small values that zstd
/// codes far more tightly: a quarter smaller keyframes, 40% smaller
/// video-like frames, and faster to decompress (see `codec_bench`).
fn bgrx_to_rgb_sub(bgrx: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + bgrx.len() / 4 * 3, 0);
    let mut left = [0u8; 3];
    for (px, rgb) in bgrx.chunks_exact(4).zip(out[start..].chunks_exact_mut(3)) {
        let cur = [px[2], px[1], px[0]];
        rgb[0] = cur[0].wrapping_sub(left[0]);
        rgb[1] = cur[1].wrapping_sub(left[1]);
        rgb[2] = cur[2].wrapping_sub(left[2]);
        left = cur;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Decoder;

    /// Noise that every tile of a frame changes to (seeded per frame).
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_keyframes_scratch_is_given_back_and_a_bursts_after_it_ends() {
        let (w, h) = (1920u32, 1080u32);
        let len = (w * h * 4) as usize;
        let mut encoder = Encoder::new();
        let mut decoder = Decoder::new();
        let mut send = |encoder: &mut Encoder, data: &[u8], keyframe: bool| {
            let frame = FrameRef::new(data, w, h, w as usize * 4).unwrap();
            let update = encoder.encode(frame, keyframe).unwrap().unwrap();
            decoder.decode(&update.bytes).unwrap();
        };
        // Noise: the compressed keyframe is as large as the screen.
        let mut screen = noise(len, 7);
        send(&mut encoder, &screen, true);
        let packing = 2 * PACK_CHUNK;
        assert!(encoder.raw.capacity() <= packing, "packed in chunks");
        let kept = encoder.compressed.capacity();
        assert!(kept <= KEEP_SCRATCH, "kept after a keyframe");

        // A burst: the whole screen changes twice; the scratch stays.
        for seed in [9, 11] {
            screen = noise(len, seed);
            send(&mut encoder, &screen, false);
        }
        assert!(encoder.raw.capacity() <= packing, "packed in chunks");
        let kept = encoder.compressed.capacity();
        assert!(kept > KEEP_SCRATCH, "a burst keeps its scratch");

        // Then small changes: given back after SLACK_FRAMES of them.
        for i in 0..SLACK_FRAMES {
            screen[i as usize * 4] ^= 0xff;
            send(&mut encoder, &screen, false);
        }
        assert!(
            encoder.compressed.capacity() <= KEEP_SCRATCH,
            "kept after the burst"
        );
        // And the stream is whole: the decoder holds the last screen.
        let rgba: Vec<u8> = screen
            .chunks_exact(4)
            .flat_map(|p| [p[2], p[1], p[0], 255])
            .collect();
        assert!(decoder.pixels() == rgba.as_slice());
    }
}
