//! The viewer side: apply updates to an RGBA screen.

// A decoder of untrusted bytes: no panicking shortcuts (its tests may).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::wire::{self, Header};
use crate::{CodecError, Grid, Rect, Result};
use zstd::bulk::Decompressor;

/// What one update changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedUpdate {
    pub seq: u64,
    pub keyframe: bool,
    /// The screen's size after this update.
    pub width: u32,
    pub height: u32,
    /// Areas to re-upload: the whole screen for a keyframe, otherwise runs
    /// of adjacent changed tiles within a tile row.
    pub dirty: Vec<Rect>,
}

/// Holds the viewer's copy of the screen (RGBA, A = 255) and applies
/// updates from an [`Encoder`](crate::Encoder).
pub struct Decoder {
    decompressor: Decompressor<'static>,
    /// Packed RGBA rows; empty until the first keyframe.
    pixels: Vec<u8>,
    grid: Option<Grid>,
    last_seq: u64,
    // Scratch buffers kept between updates.
    tiles: Vec<u32>,
    raw: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder waiting for its first keyframe.
    pub fn new() -> Self {
        Self {
            // Creating a context fails only if zstd cannot allocate.
            decompressor: Decompressor::new().expect("zstd decompression context"),
            pixels: Vec::new(),
            grid: None,
            last_seq: 0,
            tiles: Vec::new(),
            raw: Vec::new(),
        }
    }

    /// The screen as packed RGBA rows (`width() * 4` bytes each); empty
    /// before the first keyframe.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Screen width in pixels (0 before the first keyframe).
    pub fn width(&self) -> u32 {
        self.grid.map_or(0, |g| g.width)
    }

    /// Screen height in pixels (0 before the first keyframe).
    pub fn height(&self) -> u32 {
        self.grid.map_or(0, |g| g.height)
    }

    /// Applies one encoded update.
    ///
    /// `bytes` may be anything: it is fully checked and decompressed
    /// (into at most the size its tile list implies) before the screen is
    /// touched, so on error the screen is as it was. Ask for a keyframe then.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<DecodedUpdate> {
        let (header, grid) = self.check_and_decompress(bytes)?;
        // Valid: apply.
        self.apply(header.seq, grid)?;
        let dirty = if header.keyframe {
            vec![Rect {
                x: 0,
                y: 0,
                width: grid.width,
                height: grid.height,
            }]
        } else {
            dirty_runs(grid, &self.tiles)
        };
        Ok(DecodedUpdate {
            seq: header.seq,
            keyframe: header.keyframe,
            width: grid.width,
            height: grid.height,
            dirty,
        })
    }

    /// Everything that can refuse an update, before the screen is touched:
    /// the header against the current screen, the tile list into `tiles`,
    /// and the payload decompressed into `raw` at exactly the tiles' size.
    fn check_and_decompress(&mut self, bytes: &[u8]) -> Result<(Header, Grid)> {
        let (header, rest) = Header::read(bytes)?;
        let grid = Grid::new(header.width, header.height);
        let payload = self.read_tiles(&header, grid, rest)?;

        // Tiles are distinct and inside the frame, so this sum is at most
        // 8192 * 8192 * 3; checked all the same.
        let expected = self
            .tiles
            .iter()
            .try_fold(0usize, |sum, &index| {
                let tile = grid.tile(index);
                sum.checked_add(tile.width as usize * tile.height as usize * 3)
            })
            .ok_or(CodecError::BadPayload("size overflows"))?;
        wire::check_payload_len(payload, expected)?;
        // zstd writes into the spare capacity and can never grow the Vec,
        // so output is bounded by `expected` (or by a previous, larger
        // frame's size), and nothing is zero-filled in advance.
        self.raw.clear();
        self.raw.reserve_exact(expected);
        let written = self
            .decompressor
            .decompress_to_buffer(payload, &mut self.raw)
            .map_err(CodecError::Zstd)?;
        if written != expected {
            return Err(CodecError::BadPayload("wrong number of pixels"));
        }
        Ok((header, grid))
    }

    /// Fills `tiles` with the tiles the update carries (all of them for a
    /// keyframe) and returns the payload after the tile list. A delta must
    /// follow the previous update on a screen of the same size.
    fn read_tiles<'a>(&mut self, header: &Header, grid: Grid, rest: &'a [u8]) -> Result<&'a [u8]> {
        self.tiles.clear();
        if header.keyframe {
            self.tiles.extend(0..grid.count());
            return Ok(rest);
        }
        let current = self.grid.ok_or(CodecError::NoKeyframe)?;
        if current != grid {
            return Err(CodecError::ResolutionMismatch {
                width: current.width,
                height: current.height,
                got_width: grid.width,
                got_height: grid.height,
            });
        }
        let expected = self.last_seq.wrapping_add(1);
        if header.seq != expected {
            return Err(CodecError::SequenceGap {
                expected,
                got: header.seq,
            });
        }
        wire::read_tile_list(rest, grid, &mut self.tiles)
    }

    /// Writes the checked tiles in `raw` onto the screen.
    fn apply(&mut self, seq: u64, grid: Grid) -> Result<()> {
        let row_len = grid.width as usize * 4;
        if self.grid != Some(grid) {
            // Only a keyframe gets here, and it covers every pixel.
            self.pixels = vec![0; row_len * grid.height as usize];
            self.grid = Some(grid);
        }
        self.last_seq = seq;
        let mut src = &self.raw[..];
        for &index in &self.tiles {
            let tile = grid.tile(index);
            let (x, w) = (tile.x as usize * 4, tile.width as usize);
            for y in tile.y as usize..(tile.y + tile.height) as usize {
                let start = y * row_len + x;
                // Neither fails: the payload was exactly the tiles' size,
                // and every tile lies inside the grid the screen was sized
                // for.
                let (rgb, after) = src
                    .split_at_checked(w * 3)
                    .ok_or(CodecError::BadPayload("wrong number of pixels"))?;
                let row = self
                    .pixels
                    .get_mut(start..start + w * 4)
                    .ok_or(CodecError::BadTileList("tile outside the frame"))?;
                unfilter_rgb_to_rgba(rgb, row);
                src = after;
            }
        }
        Ok(())
    }
}

/// Merges consecutive tiles of one tile row into one rectangle, so a
/// viewer makes a few wide uploads rather than many small ones.
fn dirty_runs(grid: Grid, tiles: &[u32]) -> Vec<Rect> {
    let mut runs: Vec<Rect> = Vec::new();
    let mut last = None;
    for &index in tiles {
        let tile = grid.tile(index);
        match runs.last_mut() {
            Some(run) if last == Some(index.wrapping_sub(1)) && tile.x != 0 => {
                run.width += tile.width
            }
            _ => runs.push(tile),
        }
        last = Some(index);
    }
    runs
}

/// Undoes the encoder's "sub" filter on one row and writes it as RGBA.
fn unfilter_rgb_to_rgba(rgb: &[u8], rgba: &mut [u8]) {
    let (rgb, _) = rgb.as_chunks::<3>();
    let (rgba, _) = rgba.as_chunks_mut::<4>();
    let [mut r, mut g, mut b] = [0u8; 3];
    for (&[dr, dg, db], dst) in rgb.iter().zip(rgba) {
        r = r.wrapping_add(dr);
        g = g.wrapping_add(dg);
        b = b.wrapping_add(db);
        *dst = [r, g, b, 255];
    }
}
