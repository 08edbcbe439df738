//! Header and rectangle-list encoding (see the crate docs' "Wire format").

// A decoder of untrusted bytes: no panicking shortcuts (its tests may).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::{check_dimensions, CodecError, Rect, Result, FORMAT_VERSION, MAX_RECTS};

/// Bytes of the header at most (format 4: version, flags, varint width,
/// height and sequence number); formats 2 and 3 take exactly 18.
pub(crate) const HEADER_LEN: usize = 18;
/// The fixed header of formats 2 and 3: widths and sequence numbers as
/// 4 and 8 bytes (format 4 saves 9 of these 18 bytes on every update, a
/// tenth of a typed key's).
const FIXED_HEADER_LEN: usize = 18;

const FLAG_KEYFRAME: u8 = 1;
/// Format 3: a [`crate::View`] follows the header (keyframes only).
const FLAG_VIEW: u8 = 2;
/// The formats before JPEG rectangles (3) and before the view (2), read
/// (never written) for old recordings.
const FORMAT_3: u8 = 3;
const FORMAT_2: u8 = 2;

/// Largest decompressed size one zstd block can produce, and the fewest
/// input bytes such a block takes (3-byte header + 1 RLE byte, RFC 8878).
/// A payload shorter than `MIN_BLOCK_BYTES` per `MAX_BLOCK_OUTPUT` of the
/// expected size cannot be genuine, so it is refused before the decoder
/// allocates anything for it.
const MAX_BLOCK_OUTPUT: usize = 128 * 1024;
const MIN_BLOCK_BYTES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub keyframe: bool,
    /// A view follows the header.
    pub view: bool,
    pub width: u32,
    pub height: u32,
    pub seq: u64,
    /// Its version may carry JPEG rectangles (format 4 on); always true
    /// for what this encoder writes.
    pub lossy: bool,
}

impl Header {
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(FORMAT_VERSION);
        let view = if self.view { FLAG_VIEW } else { 0 };
        out.push(if self.keyframe { FLAG_KEYFRAME } else { 0 } | view);
        write_varint(u64::from(self.width), out);
        write_varint(u64::from(self.height), out);
        write_varint(self.seq, out);
    }

    /// Parses and checks the header; returns it and the bytes after it.
    pub fn read(bytes: &[u8]) -> Result<(Self, &[u8])> {
        let (&[version, flags], rest) = bytes
            .split_first_chunk::<2>()
            .ok_or(CodecError::Truncated)?;
        // Format 3 is format 4 without JPEG and with a fixed header, 2 is
        // 3 without the view: still read, so that older recordings replay
        // (sessions agree on 4).
        let known = match version {
            FORMAT_VERSION | FORMAT_3 => FLAG_KEYFRAME | FLAG_VIEW,
            FORMAT_2 => FLAG_KEYFRAME,
            _ => return Err(CodecError::UnsupportedVersion(version)),
        };
        if flags & !known != 0 {
            return Err(CodecError::UnknownFlags(flags));
        }
        let keyframe = flags & FLAG_KEYFRAME != 0;
        let view = flags & FLAG_VIEW != 0;
        if view && !keyframe {
            return Err(CodecError::BadView("a view on a delta"));
        }
        let ((width, height, seq), rest) = match version {
            FORMAT_VERSION => read_sizes(rest)?,
            _ => read_fixed_sizes(rest)?,
        };
        check_dimensions(width, height)?;
        let header = Self {
            keyframe,
            view,
            width,
            height,
            seq,
            lossy: version >= 4,
        };
        Ok((header, rest))
    }
}

/// A header's width, height and sequence number.
type Sizes = (u32, u32, u64);

/// Format 4's width, height and sequence number: varints (a width beyond
/// u32 is refused as out of range).
fn read_sizes(bytes: &[u8]) -> Result<(Sizes, &[u8])> {
    let (w, rest) = read_varint(bytes).map_err(truncated_header)?;
    let (h, rest) = read_varint(rest).map_err(truncated_header)?;
    let (seq, rest) = read_varint(rest).map_err(truncated_header)?;
    let side = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(((side(w), side(h), seq), rest))
}

/// A header cut short is "truncated", whichever number it ends in.
fn truncated_header(e: CodecError) -> CodecError {
    match e {
        CodecError::Truncated => CodecError::Truncated,
        _ => CodecError::BadDimensions {
            width: u32::MAX,
            height: u32::MAX,
        },
    }
}

/// Formats 2 and 3: 4-byte width and height, 8-byte sequence number.
fn read_fixed_sizes(bytes: &[u8]) -> Result<(Sizes, &[u8])> {
    let (head, rest) = bytes
        .split_first_chunk::<{ FIXED_HEADER_LEN - 2 }>()
        .ok_or(CodecError::Truncated)?;
    let [w0, w1, w2, w3, h0, h1, h2, h3, seq @ ..] = *head;
    let (w, h) = (
        u32::from_le_bytes([w0, w1, w2, w3]),
        u32::from_le_bytes([h0, h1, h2, h3]),
    );
    Ok(((w, h, u64::from_le_bytes(seq)), rest))
}

/// What a rectangle of an update holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Its pixels are the next ones in the payload.
    Pixels,
    /// Every pixel is this colour (R, G, B).
    Fill([u8; 3]),
    /// The same-sized rectangle at this position, as the screen is when
    /// this rectangle applies.
    Copy { x: u32, y: u32 },
    /// A JPEG of exactly this size, the next `len` bytes of the update's
    /// JPEG section (format 4 on).
    Jpeg { len: u32 },
}

const KIND_PIXELS: u8 = 0;
const KIND_FILL: u8 = 1;
const KIND_COPY: u8 = 2;
const KIND_JPEG: u8 = 3;

/// One rectangle of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Op {
    pub rect: Rect,
    pub kind: Kind,
}

/// Appends the rectangle count and the rectangles.
pub(crate) fn write_ops(ops: &[Op], out: &mut Vec<u8>) {
    write_varint(ops.len() as u64, out);
    for op in ops {
        let r = op.rect;
        for v in [r.x, r.y, r.width, r.height] {
            write_varint(u64::from(v), out);
        }
        match op.kind {
            Kind::Pixels => out.push(KIND_PIXELS),
            Kind::Fill(rgb) => {
                out.push(KIND_FILL);
                out.extend_from_slice(&rgb);
            }
            Kind::Copy { x, y } => {
                out.push(KIND_COPY);
                write_varint(u64::from(x), out);
                write_varint(u64::from(y), out);
            }
            Kind::Jpeg { len } => {
                out.push(KIND_JPEG);
                write_varint(u64::from(len), out);
            }
        }
    }
}

/// Reads the rectangles of an update on a `width` x `height` screen one by
/// one, each checked to lie inside the screen (a copy's source too). After
/// the last one, [`OpReader::rest`] is the payload.
pub(crate) struct OpReader<'a> {
    bytes: &'a [u8],
    left: u64,
    width: u32,
    height: u32,
    /// Whether JPEG rectangles may appear (the update's format has them).
    lossy: bool,
}

impl<'a> OpReader<'a> {
    /// Reads the count: 1..=[`MAX_RECTS`], and no more than the bytes could
    /// hold (each rectangle takes at least 5).
    pub fn new(bytes: &'a [u8], width: u32, height: u32) -> Result<Self> {
        let (count, bytes) = read_varint(bytes)?;
        if count == 0 {
            return Err(CodecError::BadRects("no rectangles"));
        }
        if count > MAX_RECTS || count > bytes.len() as u64 / 5 {
            return Err(CodecError::BadRects("too many rectangles"));
        }
        Ok(Self {
            bytes,
            left: count,
            width,
            height,
            lossy: false,
        })
    }

    /// Lets JPEG rectangles through (an update of format 4 or later).
    pub fn lossy(mut self, allowed: bool) -> Self {
        self.lossy = allowed;
        self
    }

    /// The bytes after the rectangles read so far.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    fn number(&mut self) -> Result<u64> {
        let (value, rest) = read_varint(self.bytes)?;
        self.bytes = rest;
        Ok(value)
    }

    /// The next rectangle, or `None` after the last.
    pub fn next_op(&mut self) -> Result<Option<Op>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let (x, y, w, h) = (
            self.number()?,
            self.number()?,
            self.number()?,
            self.number()?,
        );
        let (sw, sh) = (u64::from(self.width), u64::from(self.height));
        if w == 0 || h == 0 || x.saturating_add(w) > sw || y.saturating_add(h) > sh {
            return Err(CodecError::BadRects("rectangle outside the screen"));
        }
        let (&kind, rest) = self.bytes.split_first().ok_or(CodecError::Truncated)?;
        self.bytes = rest;
        let kind = match kind {
            KIND_PIXELS => Kind::Pixels,
            KIND_FILL => {
                let (rgb, rest) = self
                    .bytes
                    .split_first_chunk::<3>()
                    .ok_or(CodecError::Truncated)?;
                self.bytes = rest;
                Kind::Fill(*rgb)
            }
            KIND_COPY => {
                let (sx, sy) = (self.number()?, self.number()?);
                if sx.saturating_add(w) > sw || sy.saturating_add(h) > sh {
                    return Err(CodecError::BadRects("copy from outside the screen"));
                }
                // Below the screen's size, so within u32.
                Kind::Copy {
                    x: sx as u32,
                    y: sy as u32,
                }
            }
            KIND_JPEG if self.lossy => {
                let len = self.number()?;
                if len == 0 || len > u64::from(u32::MAX) {
                    return Err(CodecError::BadRects("JPEG length out of range"));
                }
                Kind::Jpeg { len: len as u32 }
            }
            _ => return Err(CodecError::BadRects("unknown rectangle kind")),
        };
        // Each is at most the screen's size (checked above), so within u32.
        let rect = Rect {
            x: x as u32,
            y: y as u32,
            width: w as u32,
            height: h as u32,
        };
        Ok(Some(Op { rect, kind }))
    }
}

/// Refuses a payload too short to decompress to `expected` bytes.
pub(crate) fn check_payload_len(payload: &[u8], expected: usize) -> Result<()> {
    let min_len = expected.div_ceil(MAX_BLOCK_OUTPUT) * MIN_BLOCK_BYTES;
    if payload.len() < min_len {
        return Err(CodecError::BadPayload("too short for the rectangles"));
    }
    Ok(())
}

pub(crate) fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// LEB128, at most 10 bytes; bits beyond 64 are an error, not wrapped.
pub(crate) fn read_varint(bytes: &[u8]) -> Result<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        if shift == 63 && bits > 1 {
            return Err(CodecError::BadRects("number too large"));
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            // `i` indexes `bytes`, so the split is in range.
            let (_, rest) = bytes.split_at_checked(i + 1).ok_or(CodecError::Truncated)?;
            return Ok((value, rest));
        }
    }
    if bytes.len() >= 10 {
        Err(CodecError::BadRects("number too large"))
    } else {
        Err(CodecError::Truncated)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_overlong() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            write_varint(value, &mut out);
            out.push(0xaa);
            assert_eq!(read_varint(&out).unwrap(), (value, &[0xaa][..]));
        }
        assert!(matches!(
            read_varint(&[0x80; 11]),
            Err(CodecError::BadRects(_))
        ));
        assert!(matches!(
            read_varint(&[0xff; 9]),
            Err(CodecError::Truncated)
        ));
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert!(matches!(
            read_varint(&too_big),
            Err(CodecError::BadRects(_))
        ));
    }

    #[test]
    fn rectangles_round_trip_and_reject_out_of_range() {
        let rect = |x, y, width, height| Rect {
            x,
            y,
            width,
            height,
        };
        let ops = [
            Op {
                rect: rect(0, 0, 200, 100),
                kind: Kind::Fill([1, 2, 3]),
            },
            Op {
                rect: rect(10, 20, 5, 6),
                kind: Kind::Pixels,
            },
            Op {
                rect: rect(100, 0, 100, 99),
                kind: Kind::Copy { x: 0, y: 1 },
            },
            Op {
                rect: rect(0, 0, 64, 64),
                kind: Kind::Jpeg { len: 300 },
            },
        ];
        let mut out = Vec::new();
        write_ops(&ops, &mut out);
        out.push(0xaa);
        // Before format 4 a JPEG rectangle is an unknown kind.
        let mut old = OpReader::new(&out, 200, 100).unwrap();
        for _ in 0..3 {
            old.next_op().unwrap();
        }
        assert!(matches!(old.next_op(), Err(CodecError::BadRects(_))));
        let mut reader = OpReader::new(&out, 200, 100).unwrap().lossy(true);
        for op in ops {
            assert_eq!(reader.next_op().unwrap(), Some(op));
        }
        assert_eq!(reader.next_op().unwrap(), None);
        assert_eq!(reader.rest(), [0xaa]);

        for (bad, screen) in [
            (rect(0, 0, 201, 1), (200, 100)),
            (rect(199, 99, 1, 2), (200, 100)),
            (rect(0, 0, 0, 1), (200, 100)),
            (rect(u32::MAX, 0, 1, 1), (200, 100)),
        ] {
            let mut out = Vec::new();
            let op = Op {
                rect: bad,
                kind: Kind::Pixels,
            };
            write_ops(&[op, op], &mut out);
            let mut reader = OpReader::new(&out, screen.0, screen.1).unwrap();
            assert!(matches!(reader.next_op(), Err(CodecError::BadRects(_))));
        }
        let mut out = Vec::new();
        let op = Op {
            rect: rect(0, 0, 10, 10),
            kind: Kind::Copy { x: 195, y: 0 },
        };
        write_ops(&[op], &mut out);
        out.extend([0; 8]);
        let mut reader = OpReader::new(&out, 200, 100).unwrap();
        assert!(matches!(reader.next_op(), Err(CodecError::BadRects(_))));
        assert!(matches!(
            OpReader::new(&[0, 0, 0, 0, 0, 0], 200, 100),
            Err(CodecError::BadRects(_))
        ));
        // A count the bytes after it cannot hold.
        assert!(matches!(
            OpReader::new(&[3, 0, 0, 1, 1, 0], 200, 100),
            Err(CodecError::BadRects(_))
        ));
    }
}
