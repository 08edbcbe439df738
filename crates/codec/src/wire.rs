//! Header and tile-list encoding (see the crate docs' "Wire format").

// A decoder of untrusted bytes: no panicking shortcuts (its tests may).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::{check_dimensions, CodecError, Grid, Result, FORMAT_VERSION};

/// Bytes before the tile list.
pub(crate) const HEADER_LEN: usize = 18;

const FLAG_KEYFRAME: u8 = 1;

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
    pub width: u32,
    pub height: u32,
    pub seq: u64,
}

impl Header {
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(FORMAT_VERSION);
        out.push(if self.keyframe { FLAG_KEYFRAME } else { 0 });
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
    }

    /// Parses and checks the header; returns it and the bytes after it.
    pub fn read(bytes: &[u8]) -> Result<(Self, &[u8])> {
        let (head, rest) = bytes
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(CodecError::Truncated)?;
        let [version, flags, w0, w1, w2, w3, h0, h1, h2, h3, seq @ ..] = *head;
        if version != FORMAT_VERSION {
            return Err(CodecError::UnsupportedVersion(version));
        }
        if flags & !FLAG_KEYFRAME != 0 {
            return Err(CodecError::UnknownFlags(flags));
        }
        let header = Self {
            keyframe: flags & FLAG_KEYFRAME != 0,
            width: u32::from_le_bytes([w0, w1, w2, w3]),
            height: u32::from_le_bytes([h0, h1, h2, h3]),
            seq: u64::from_le_bytes(seq),
        };
        check_dimensions(header.width, header.height)?;
        Ok((header, rest))
    }
}

/// Appends strictly increasing tile indices as a count and gaps.
pub(crate) fn write_tile_list(tiles: &[u32], out: &mut Vec<u8>) {
    write_varint(tiles.len() as u64, out);
    let mut next = 0;
    for &index in tiles {
        write_varint(u64::from(index - next), out);
        next = index + 1;
    }
}

/// Reads a tile list into `tiles` (cleared first); returns the bytes after
/// it. Every index is below `grid.count()` and larger than the one before.
pub(crate) fn read_tile_list<'a>(
    bytes: &'a [u8],
    grid: Grid,
    tiles: &mut Vec<u32>,
) -> Result<&'a [u8]> {
    tiles.clear();
    let total = u64::from(grid.count());
    let (count, mut rest) = read_varint(bytes)?;
    if count == 0 {
        return Err(CodecError::BadTileList("no tiles"));
    }
    if count > total {
        return Err(CodecError::BadTileList("more tiles than the frame has"));
    }
    let mut next = 0u64;
    for _ in 0..count {
        let (gap, after) = read_varint(rest)?;
        rest = after;
        let index = next
            .checked_add(gap)
            .filter(|&index| index < total)
            .ok_or(CodecError::BadTileList("tile outside the frame"))?;
        // `index < total <= u32::MAX`, so neither conversion nor `+ 1` overflows.
        tiles.push(index as u32);
        next = index + 1;
    }
    Ok(rest)
}

/// Refuses a payload too short to decompress to `expected` bytes.
pub(crate) fn check_payload_len(payload: &[u8], expected: usize) -> Result<()> {
    let min_len = expected.div_ceil(MAX_BLOCK_OUTPUT) * MIN_BLOCK_BYTES;
    if payload.len() < min_len {
        return Err(CodecError::BadPayload("too short for the tile list"));
    }
    Ok(())
}

fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// LEB128, at most 10 bytes; bits beyond 64 are an error, not wrapped.
fn read_varint(bytes: &[u8]) -> Result<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        if shift == 63 && bits > 1 {
            return Err(CodecError::BadTileList("number too large"));
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            // `i` indexes `bytes`, so the split is in range.
            let (_, rest) = bytes.split_at_checked(i + 1).ok_or(CodecError::Truncated)?;
            return Ok((value, rest));
        }
    }
    if bytes.len() >= 10 {
        Err(CodecError::BadTileList("number too large"))
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
            Err(CodecError::BadTileList(_))
        ));
        assert!(matches!(
            read_varint(&[0xff; 9]),
            Err(CodecError::Truncated)
        ));
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert!(matches!(
            read_varint(&too_big),
            Err(CodecError::BadTileList(_))
        ));
    }

    #[test]
    fn tile_list_round_trips_and_rejects_out_of_range() {
        let grid = Grid::new(200, 100); // 4 x 2 tiles
        let mut out = Vec::new();
        write_tile_list(&[0, 3, 7], &mut out);
        let mut tiles = Vec::new();
        assert!(read_tile_list(&out, grid, &mut tiles).unwrap().is_empty());
        assert_eq!(tiles, [0, 3, 7]);

        out.clear();
        write_tile_list(&[8], &mut out);
        assert!(matches!(
            read_tile_list(&out, grid, &mut tiles),
            Err(CodecError::BadTileList(_))
        ));
        assert!(matches!(
            read_tile_list(&[9], grid, &mut tiles),
            Err(CodecError::BadTileList(_))
        ));
        assert!(matches!(
            read_tile_list(&[0], grid, &mut tiles),
            Err(CodecError::BadTileList(_))
        ));
    }
}
