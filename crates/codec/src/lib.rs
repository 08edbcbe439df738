//! Screen codec: exact changed regions, solid fills, copies, one zstd
//! stream per session, and JPEG for photographic regions, refined to
//! lossless once they stop changing.
//!
//! The agent captures BGRX frames; the [`Encoder`] keeps the previous frame,
//! finds what changed (within [`TILE_SIZE`]-pixel tiles, each trimmed to the
//! rows and columns that changed, neighbours merged back into larger
//! rectangles), and sends each changed rectangle either as a solid colour
//! or as filtered RGB pixels. The pixels of all updates of a session go
//! through one zstd stream, flushed at the end of every update, so an
//! update can refer to anything sent in the last [`ZSTD_WINDOW_LOG`] bits'
//! worth of earlier updates (a glyph typed again, a window shown again)
//! instead of starting cold. The viewer's [`Decoder`] keeps the matching
//! decompression context, applies updates to an RGBA screen and reports the
//! dirty rectangles so only those need uploading.
//!
//! With [`Encoder::set_jpeg_quality`], changed rectangles with many colours
//! (photos, video; never text, which JPEG codes worse and blurs) go as
//! JPEG at that quality; each tile they touch is sent again losslessly
//! [`REFINE_AFTER`] after it last changed, so what stops moving becomes
//! exact (the encoder is told the time, [`Encoder::encode_at`], and says
//! when it next needs a call, [`Encoder::refine_due`]).
//!
//! Pure Rust API, no I/O. The decoder treats its input as hostile: every
//! length is checked, sizes are capped by [`MAX_DIMENSION`], rectangles
//! must lie inside the screen and cover at most the screen's area in
//! pixels (so decompression is bounded by the rectangle list, and the work
//! of fills by a few screens), the zstd window by [`MAX_WINDOW_LOG`].
//!
//! # Wire format (version 4)
//!
//! All integers little-endian; "varint" is LEB128 (at most 10 bytes).
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | version, [`FORMAT_VERSION`]; anything else is refused |
//! | 1 | flags: bit 0 = keyframe; bit 1 = a view follows the header (keyframes only); other bits must be zero |
//! | var | varint width in pixels, 1..=[`MAX_DIMENSION`] (formats 2 and 3: 4 bytes) |
//! | var | varint height in pixels, 1..=[`MAX_DIMENSION`] (formats 2 and 3: 4 bytes) |
//! | var | varint sequence number (formats 2 and 3: 8 bytes) |
//! | var | with bit 1 only, the [`View`]: varint screen width, height (each 1..=[`MAX_DIMENSION`]), the frame's x, y on that screen (the frame inside it), monitor count (0..=[`MAX_MONITORS`]), then each monitor's varint x, y, width, height (inside the screen) |
//! | var | varint rectangle count, 1..=[`MAX_RECTS`] |
//! | var | that many rectangles: varint x, y, width, height (each side at least 1, inside the screen), then a kind byte: 0 = pixels (in the payload), 1 = fill (3 bytes R, G, B follow), 2 = copy (varint source x, y follow: the same size from there, inside the screen), 3 = JPEG (varint length follows, at least 1: the next that many bytes of the JPEG section) |
//! | var | the JPEG section: the JPEG rectangles' baseline or progressive JPEGs, one after another, each a colour image of exactly its rectangle's size |
//! | rest | zstd payload: the next part of the session's stream, ending in a flush; empty when no rectangle is "pixels" |
//!
//! Rectangles apply in order. A copy reads the screen as the rectangles
//! before it left it (source and destination may overlap). The payload
//! decompresses to the "pixels" rectangles' pixels in list order, each row by
//! row, 3 bytes (R, G, B) per pixel: the X byte carries nothing and dropping
//! it saves a quarter of the work for zstd. Each byte holds the difference
//! (mod 256) from the same channel of the pixel to its left in the
//! rectangle's row, the first pixel of a row from 0 (PNG's "sub" filter).
//! "Pixels" and JPEG rectangles together cover at most width x height
//! pixels, and all rectangles at most four times that; a JPEG's headers
//! must give its rectangle's size before any of it is decoded.
//!
//! A keyframe restarts the zstd stream (the encoder's and the decoder's
//! contexts are reset) and its rectangles cover the whole screen; every other
//! update continues the stream, so it must follow the previous update
//! exactly (sequence number + 1, same size) and the decoder refuses any
//! delta after an error until the next keyframe.
//!
//! Format 3 is format 2 plus the view: where the frame sits on the agent's
//! screen and the monitors there, so frames follow a resolution change or
//! a second monitor (a keyframe of the new size, with its view) and the
//! technician can pick one monitor or all. A keyframe without a view
//! leaves the viewer knowing only the frame's size. Format 4 is format 3
//! plus JPEG rectangles (kind 3 and the JPEG section), with the header's
//! sizes and sequence number as varints (9 bytes less an update).

#![forbid(unsafe_code)]

mod decoder;
mod encoder;
mod lossy;
mod moves;
pub mod recording;
mod refine;
mod regions;
mod scroll;
mod view;
mod wire;

pub use decoder::{DecodedUpdate, Decoder};
pub use encoder::{EncodedFrame, Encoder};
pub use refine::REFINE_AFTER;
pub use view::{View, MAX_MONITORS};

/// Side of the square tiles frames are diffed in; edge tiles are smaller.
pub const TILE_SIZE: u32 = 64;

/// Largest width or height either side accepts (bounds decoder memory).
pub const MAX_DIMENSION: u32 = 8192;

/// Version byte at the start of every encoded frame. Agent and viewer agree
/// on it when the session starts; version 1 (whole 64x64 tiles, each update
/// compressed cold) is no longer read or written, versions 2 (3 without the
/// view) and 3 (4 without JPEG) are only read, so older recordings replay.
pub const FORMAT_VERSION: u8 = 4;

/// zstd level the encoder uses: level 1 keeps a full 1080p frame near
/// 3 ms on one core while compressing far better than lz4.
pub const ZSTD_LEVEL: i32 = 1;

/// The encoder's zstd window (2^21 = 2 MiB): how far back in the session's
/// pixel stream an update can find a match: a third of a 1080p keyframe,
/// a photo moved across the screen, hours of typing. Each side holds one
/// window in memory: 2 MiB measured 1–2 MB less of the agent's memory
/// than 4 MiB, for the same bytes on every benchmark screen
/// (BENCHMARKS.md, issue 20).
pub const ZSTD_WINDOW_LOG: u32 = 21;

/// The largest zstd window the decoder accepts (2^23 = 8 MiB), so a hostile
/// stream cannot make it allocate more.
pub const MAX_WINDOW_LOG: u32 = 23;

/// The most rectangles one update may carry (a 1080p screen has 510 tiles;
/// an 8192x8192 one 16 384).
pub const MAX_RECTS: u64 = 1 << 16;

/// Result of this crate's operations.
pub type Result<T> = std::result::Result<T, CodecError>;

/// Everything that can go wrong encoding a frame or decoding an update.
///
/// Any decode error leaves the decoder's screen unchanged; the viewer
/// should then ask the agent for a keyframe.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Zero, or larger than [`MAX_DIMENSION`].
    #[error("bad frame size {width}x{height} (each must be 1..={MAX_DIMENSION})")]
    BadDimensions { width: u32, height: u32 },
    /// The stride cannot hold a row of `width` BGRX pixels.
    #[error("stride {stride} is shorter than a row of {width} pixels")]
    BadStride { stride: usize, width: u32 },
    /// The frame's buffer is shorter than its size and stride require.
    #[error("frame data is {got} bytes, {needed} needed")]
    FrameTooShort { needed: usize, got: usize },
    /// The encoded update ends before its header or rectangle list does.
    #[error("encoded update is truncated")]
    Truncated,
    /// Written by a newer (or unknown) encoder.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// Flag bits this version does not define.
    #[error("unknown flags {0:#04x}")]
    UnknownFlags(u8),
    /// The view is malformed, outside its limits, or does not hold the
    /// frame.
    #[error("bad view: {0}")]
    BadView(&'static str),
    /// A non-keyframe arrived before any keyframe.
    #[error("update needs a keyframe first")]
    NoKeyframe,
    /// A non-keyframe for a screen size other than the current one.
    #[error("update is {got_width}x{got_height}, screen is {width}x{height}")]
    ResolutionMismatch {
        width: u32,
        height: u32,
        got_width: u32,
        got_height: u32,
    },
    /// A non-keyframe that does not follow the last applied update: one was
    /// lost, so applying this one would show a wrong picture.
    #[error("expected update {expected}, got {got}")]
    SequenceGap { expected: u64, got: u64 },
    /// The rectangle list is empty, too long, out of range or malformed.
    #[error("bad rectangle list: {0}")]
    BadRects(&'static str),
    /// The payload is not the size the rectangle list implies.
    #[error("payload does not match the rectangle list: {0}")]
    BadPayload(&'static str),
    /// An earlier update failed, so the zstd stream this delta continues is
    /// lost: a keyframe must come first.
    #[error("update needs a keyframe after an earlier error")]
    NotInSync,
    /// zstd failed (corrupt stream, or it would exceed the expected size).
    #[error("zstd: {0}")]
    Zstd(#[source] std::io::Error),
    /// A JPEG rectangle could not be encoded or decoded.
    #[error("JPEG: {0}")]
    Jpeg(String),
}

/// A rectangle in pixels, for the viewer's partial texture uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// A borrowed BGRX frame (4 bytes per pixel: blue, green, red, unused).
///
/// Row `y` starts at `data[y * stride]`; `stride` may exceed `width * 4`
/// and the last row may omit its padding.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    pub data: &'a [u8],
    pub width: u32,
    pub height: u32,
    pub stride: usize,
}

impl<'a> FrameRef<'a> {
    /// A checked frame: see [`FrameRef::validate`].
    pub fn new(data: &'a [u8], width: u32, height: u32, stride: usize) -> Result<Self> {
        let frame = Self {
            data,
            width,
            height,
            stride,
        };
        frame.validate()?;
        Ok(frame)
    }

    /// Checks the size is within limits and `data` holds every row.
    pub fn validate(&self) -> Result<()> {
        check_dimensions(self.width, self.height)?;
        let row = self.width as usize * 4;
        if self.stride < row {
            return Err(CodecError::BadStride {
                stride: self.stride,
                width: self.width,
            });
        }
        let needed = self
            .stride
            .checked_mul(self.height as usize - 1)
            .and_then(|n| n.checked_add(row))
            .ok_or(CodecError::FrameTooShort {
                needed: usize::MAX,
                got: self.data.len(),
            })?;
        if self.data.len() < needed {
            return Err(CodecError::FrameTooShort {
                needed,
                got: self.data.len(),
            });
        }
        Ok(())
    }

    /// The pixels of row `y`, without padding. `y` must be in range of a
    /// validated frame.
    fn row(&self, y: usize) -> &'a [u8] {
        let start = y * self.stride;
        &self.data[start..start + self.width as usize * 4]
    }
}

fn check_dimensions(width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(CodecError::BadDimensions { width, height });
    }
    Ok(())
}

/// The tile grid of a frame whose dimensions passed [`check_dimensions`],
/// so no product below can overflow (8192 * 8192 * 4 < 2^32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Grid {
    width: u32,
    height: u32,
    cols: u32,
    rows: u32,
}

impl Grid {
    fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            cols: width.div_ceil(TILE_SIZE),
            rows: height.div_ceil(TILE_SIZE),
        }
    }

    /// The pixels tile `index` covers; `index` must be below `count()`.
    fn tile(&self, index: u32) -> Rect {
        let x = (index % self.cols) * TILE_SIZE;
        let y = (index / self.cols) * TILE_SIZE;
        Rect {
            x,
            y,
            width: TILE_SIZE.min(self.width - x),
            height: TILE_SIZE.min(self.height - y),
        }
    }
}

/// Copies the rectangle at `from` to `r` within packed rows of `row_len`
/// bytes, 4 bytes a pixel (the decoder's RGBA screen, the encoder's BGRX
/// copy of it). They may overlap: rows are taken in the order that reads
/// each before it is overwritten, so both sides get the same result.
fn copy_rect(pixels: &mut [u8], row_len: usize, r: Rect, from: (u32, u32)) -> Result<()> {
    let w = r.width as usize * 4;
    let rows = 0..r.height as usize;
    let down = from.1 < r.y;
    for k in rows {
        let i = if down { r.height as usize - 1 - k } else { k };
        let src = (from.1 as usize + i) * row_len + from.0 as usize * 4;
        let dst = (r.y as usize + i) * row_len + r.x as usize * 4;
        if src.max(dst) + w > pixels.len() {
            return Err(CodecError::BadRects("copy outside the screen"));
        }
        pixels.copy_within(src..src + w, dst);
    }
    Ok(())
}

/// A BGRX "sharing paused" screen to send instead of the real one.
///
/// Generated from nothing but the size, so it cannot leak screen content:
/// dark grey with a lighter pause symbol (two bars) in the middle. Rows are
/// packed (`stride = width * 4`).
///
/// # Panics
///
/// If `width * height * 4` overflows `usize` (impossible on 64-bit targets
/// for sizes the encoder accepts).
pub fn placeholder_frame(width: u32, height: u32) -> Vec<u8> {
    const BACKGROUND: [u8; 4] = [0x30, 0x30, 0x30, 0xff];
    const SYMBOL: [u8; 4] = [0x80, 0x80, 0x80, 0xff];
    let (w, h) = (width as usize, height as usize);
    let len = w
        .checked_mul(h)
        .and_then(|n| n.checked_mul(4))
        .expect("placeholder size overflows usize");
    let mut out = BACKGROUND.repeat(len / 4);
    // Two bars, each a sixteenth of the smaller side wide, a gap of the
    // same between them, a quarter of it tall.
    let unit = (w.min(h) / 16).max(1);
    let bar_h = unit * 4;
    let top = h.saturating_sub(bar_h) / 2;
    let left = w.saturating_sub(unit * 3) / 2;
    for y in top..(top + bar_h).min(h) {
        for x in (left..left + unit).chain(left + 2 * unit..left + 3 * unit) {
            if x < w {
                let at = (y * w + x) * 4;
                out[at..at + 4].copy_from_slice(&SYMBOL);
            }
        }
    }
    out
}
