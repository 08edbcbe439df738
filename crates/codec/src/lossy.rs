//! JPEG for photographic rectangles: which ones, and their bytes both ways.
//!
//! Text and UI compress better losslessly (sub filter + zstd beats JPEG
//! on text, FACTS.md), and the technician must read them exactly; a photo
//! or a video costs five to twenty times fewer bytes as JPEG. So only
//! rectangles with many colours go lossy, and [`crate::refine`] sends them
//! again losslessly once they stop changing.

// A decoder of untrusted bytes: no panicking shortcuts (its tests may).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use image::ImageDecoder;

use crate::wire::{Kind, Op};
use crate::{CodecError, Rect, Result};

/// Smallest rectangle worth a JPEG: below this its headers and tables
/// (~600 bytes) outweigh what it saves.
pub(crate) const MIN_AREA: u64 = 48 * 48;
/// Pixels sampled to count colours (a grid over the rectangle, at most a
/// tile: 1024 of a 64x64 tile's 4096).
const SAMPLES: u64 = 1024;
/// Distinct colours among the samples from which a rectangle is a photo.
/// Anti-aliased text in a few colours shows tens to a hundred or two; a
/// photo or a video frame nearly one per sample; a smooth gradient few,
/// and it compresses well losslessly.
const PHOTO_COLOURS: u32 = 256;
/// The colour-count table: hashed colours, one bit each.
const TABLE_BITS: usize = 4096;

/// Whether rectangle `r` of packed BGRX rows (`width` pixels each) looks
/// photographic: many distinct colours in a sample of it.
pub(crate) fn photo_like(bgrx: &[u8], width: u32, r: Rect) -> bool {
    let area = u64::from(r.width) * u64::from(r.height);
    if area < MIN_AREA {
        return false;
    }
    // Every `step`-th pixel along rows, every `step`-th row.
    let step = ((area / SAMPLES) as f64).sqrt().max(1.0) as usize;
    let mut seen = [0u64; TABLE_BITS / 64];
    let mut distinct = 0u32;
    let stride = width as usize * 4;
    for y in (r.y as usize..(r.y + r.height) as usize).step_by(step) {
        let start = y * stride + r.x as usize * 4;
        let Some(row) = bgrx.get(start..start + r.width as usize * 4) else {
            return false;
        };
        let (pixels, _) = row.as_chunks::<4>();
        for &[b, g, r, _] in pixels.iter().step_by(step) {
            let colour = u32::from_le_bytes([b, g, r, 0]);
            // Fibonacci hashing spreads nearby colours over the table.
            let slot = (colour.wrapping_mul(0x9E37_79B9) >> 20) as usize;
            let (word, bit) = (slot / 64, 1u64 << (slot % 64));
            if let Some(w) = seen.get_mut(word) {
                if *w & bit == 0 {
                    *w |= bit;
                    distinct += 1;
                }
            }
        }
        if distinct >= PHOTO_COLOURS {
            return true;
        }
    }
    false
}

/// Rows of a JPEG strip when a large area is coded on several threads (a
/// multiple of 16, 4:2:0's block height, so strips meet on block edges).
const STRIP_ROWS: u32 = 256;
/// From this many JPEG pixels in one update (a quarter of 1080p), strips
/// are coded on up to [`MAX_WORKERS`] threads: a full-screen video frame
/// then keeps up with 30 frames a second on two cores.
pub(crate) const PARALLEL_AREA: u64 = 512 * 1024;
const MAX_WORKERS: usize = 4;

/// The placeholder [`crate::regions::emit`] marks photographic rectangles with.
pub(crate) const MARKED: Kind = Kind::Jpeg { len: 0 };

/// Codes every rectangle of `ops` marked for JPEG ([`MARKED`]) from
/// packed BGRX rows, into `out` one after another, and sets their
/// lengths; a large area is cut into strips coded in parallel, using one
/// scratch buffer of `scratch` per thread. Returns the pixels coded.
pub(crate) fn encode_marked(
    bgrx: &[u8],
    width: u32,
    (ops, quality): (&mut Vec<Op>, u8),
    scratch: &mut Vec<Vec<u8>>,
    out: &mut Vec<u8>,
) -> Result<u64> {
    let area: u64 = ops
        .iter()
        .filter(|op| op.kind == MARKED)
        .map(|op| u64::from(op.rect.width) * u64::from(op.rect.height))
        .sum();
    if area == 0 {
        return Ok(0);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = if area >= PARALLEL_AREA {
        cores.min(MAX_WORKERS)
    } else {
        1
    };
    if workers > 1 {
        cut_into_strips(ops);
    }
    let rects: Vec<Rect> = ops
        .iter()
        .filter(|op| op.kind == MARKED)
        .map(|op| op.rect)
        .collect();
    let mut coded = vec![Vec::new(); rects.len()];
    scratch.resize_with(workers, Vec::new);
    let per = rects.len().div_ceil(workers);
    let code = |rects: &[Rect], coded: &mut [Vec<u8>], pixels: &mut Vec<u8>| {
        rects
            .iter()
            .zip(coded)
            .try_for_each(|(&r, jpeg)| encode(bgrx, width, r, quality, pixels, jpeg))
    };
    match scratch.first_mut() {
        // Most updates (a moving photo, a video window): no thread spawned.
        Some(pixels) if workers == 1 => code(&rects, &mut coded, pixels)?,
        _ => std::thread::scope(|s| {
            let jobs = rects
                .chunks(per)
                .zip(coded.chunks_mut(per))
                .zip(scratch.iter_mut());
            let running: Vec<_> = jobs
                .map(|((rects, coded), pixels)| s.spawn(move || code(rects, coded, pixels)))
                .collect();
            running.into_iter().try_for_each(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(CodecError::Jpeg("the JPEG coder failed".into())))
            })
        })?,
    }
    let mut coded = coded.into_iter();
    for op in ops.iter_mut().filter(|op| op.kind == MARKED) {
        let jpeg = coded.next().unwrap_or_default();
        out.extend_from_slice(&jpeg);
        op.kind = Kind::Jpeg {
            len: jpeg.len() as u32,
        };
    }
    Ok(area)
}

/// Replaces each marked rectangle taller than [`STRIP_ROWS`] with strips
/// of it, in its place.
fn cut_into_strips(ops: &mut Vec<Op>) {
    let tall = |op: &Op| op.kind == MARKED && op.rect.height > STRIP_ROWS;
    if !ops.iter().any(tall) {
        return;
    }
    let mut out = Vec::with_capacity(ops.len() + 16);
    for op in ops.drain(..) {
        if !tall(&op) {
            out.push(op);
            continue;
        }
        let r = op.rect;
        for y in (r.y..r.y + r.height).step_by(STRIP_ROWS as usize) {
            let height = STRIP_ROWS.min(r.y + r.height - y);
            out.push(Op {
                rect: Rect { y, height, ..r },
                kind: MARKED,
            });
        }
    }
    *ops = out;
}

/// Appends rectangle `r` of packed BGRX rows as a baseline JPEG (4:2:0)
/// at `quality` (1..=100) to `out`, using `scratch` for its pixels.
pub(crate) fn encode(
    bgrx: &[u8],
    width: u32,
    r: Rect,
    quality: u8,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<()> {
    scratch.clear();
    let stride = width as usize * 4;
    for y in r.y as usize..(r.y + r.height) as usize {
        let start = y * stride + r.x as usize * 4;
        let row = bgrx
            .get(start..start + r.width as usize * 4)
            .ok_or(CodecError::BadRects("rectangle outside the screen"))?;
        scratch.extend_from_slice(row);
    }
    // The X byte is read as alpha, which JPEG drops.
    let mut encoder = jpeg_encoder::Encoder::new(&mut *out, quality.clamp(1, 100));
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    // Rectangles are inside a screen of at most MAX_DIMENSION (8192) a side.
    let (w, h) = (r.width as u16, r.height as u16);
    encoder
        .encode(scratch, w, h, jpeg_encoder::ColorType::Bgra)
        .map_err(|e| CodecError::Jpeg(e.to_string()))
}

/// Decodes `jpeg` into `out` as RGB rows of rectangle `r`: refused unless
/// it is a colour JPEG of exactly the rectangle's size, checked from its
/// headers before any pixel is decoded, so its memory is bounded by the
/// rectangle (which is inside the screen) whatever the bytes claim.
pub(crate) fn decode(jpeg: &[u8], r: Rect, out: &mut Vec<u8>) -> Result<()> {
    let bad = |e: image::ImageError| CodecError::Jpeg(e.to_string());
    let decoder = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(jpeg)).map_err(bad)?;
    if decoder.dimensions() != (r.width, r.height) {
        return Err(CodecError::BadPayload(
            "JPEG size differs from its rectangle",
        ));
    }
    if decoder.color_type() != image::ColorType::Rgb8 {
        return Err(CodecError::BadPayload("JPEG is not in colour"));
    }
    let len = r.width as usize * r.height as usize * 3;
    let start = out.len();
    out.resize(start + len, 0);
    let target = out
        .get_mut(start..)
        .ok_or(CodecError::BadPayload("JPEG output"))?;
    let result = decoder.read_image(target).map_err(bad);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn rect(x: u32, y: u32, width: u32, height: u32) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    /// A smooth gradient with noise, like a photo.
    pub(crate) fn photo(w: u32, h: u32) -> Vec<u8> {
        let mut s = 1u32;
        let mut out = Vec::new();
        for y in 0..h {
            for x in 0..w {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let n = s & 15;
                out.extend([
                    ((x * 200 / w) + n) as u8,
                    ((y * 180 / h) + n) as u8,
                    (((x + y) * 120 / (w + h)) + n) as u8,
                    0,
                ]);
            }
        }
        out
    }

    /// Black text-like strokes in a few greys on white.
    fn text(w: u32, h: u32) -> Vec<u8> {
        (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                let v = match (x % 7, y % 12) {
                    (0..=1, 2..=9) => 0,
                    (2, 2..=9) => 90,
                    (3, 5) => 170,
                    _ => 255,
                };
                [v, v, v, 0]
            })
            .collect()
    }

    #[test]
    fn photos_are_photo_like_and_text_and_small_rectangles_are_not() {
        let (w, h) = (320, 240);
        assert!(photo_like(&photo(w, h), w, rect(0, 0, w, h)));
        assert!(!photo_like(&text(w, h), w, rect(0, 0, w, h)));
        assert!(!photo_like(&photo(w, h), w, rect(0, 0, 40, 40)));
        // A rectangle reaching past the rows given is not (nor a panic).
        let rows = &photo(w, h)[..(w * 4 * 10) as usize];
        assert!(!photo_like(rows, w, rect(0, 0, w, h)));
    }

    #[test]
    fn a_rectangle_round_trips_close_and_a_wrong_size_is_refused() {
        let (w, h) = (200, 120);
        let bgrx = photo(w, h);
        let r = rect(20, 10, 100, 60);
        let (mut scratch, mut jpeg) = (Vec::new(), Vec::new());
        encode(&bgrx, w, r, 80, &mut scratch, &mut jpeg).unwrap();
        let mut rgb = Vec::new();
        decode(&jpeg, r, &mut rgb).unwrap();
        assert_eq!(rgb.len(), 100 * 60 * 3);
        // Close to the original: mean absolute error of a few levels.
        let mut error = 0u64;
        for y in 0..60 {
            for x in 0..100 {
                let s = (((y + 10) * w + x + 20) * 4) as usize;
                let d = ((y * 100 + x) * 3) as usize;
                for (c, o) in [(0, 2), (1, 1), (2, 0)] {
                    error += u64::from(rgb[d + c].abs_diff(bgrx[s + o]));
                }
            }
        }
        assert!(error / (100 * 60 * 3) < 8, "mean error {}", error / 18000);
        let wrong = rect(0, 0, 100, 61);
        let mut out = vec![7];
        assert!(matches!(
            decode(&jpeg, wrong, &mut out),
            Err(CodecError::BadPayload(_))
        ));
        assert_eq!(out, [7], "nothing appended on refusal");
        // Cut short: decoded as far as it goes (zune-jpeg is lenient), or
        // refused; either way no more than the rectangle.
        let _ = decode(&jpeg[..jpeg.len() / 2], r, &mut out);
        assert!(out.len() == 1 || out.len() == 1 + 100 * 60 * 3);
        out.truncate(1);
        assert!(matches!(
            decode(b"not a jpeg", r, &mut out),
            Err(CodecError::Jpeg(_))
        ));
        assert_eq!(out, [7]);
    }
}
