//! Behaviour of the encoder/decoder pair, and the decoder under hostile input.

#![forbid(unsafe_code)]

use assent_codec::{
    placeholder_frame, CodecError, Decoder, EncodedFrame, Encoder, FrameRef, Rect, FORMAT_VERSION,
    MAX_DIMENSION,
};
use proptest::prelude::*;
use std::sync::OnceLock;

/// Deterministic noise, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn frame(data: &[u8], width: u32, height: u32) -> FrameRef<'_> {
    FrameRef::new(data, width, height, width as usize * 4).unwrap()
}

fn encode(encoder: &mut Encoder, data: &[u8], width: u32, height: u32) -> Option<EncodedFrame> {
    encoder.encode(frame(data, width, height), false).unwrap()
}

/// What the decoder should hold for packed BGRX `data`.
fn expected_rgba(data: &[u8]) -> Vec<u8> {
    data.chunks_exact(4)
        .flat_map(|p| [p[2], p[1], p[0], 255])
        .collect()
}

fn set_pixel(data: &mut [u8], width: u32, x: u32, y: u32, bgrx: [u8; 4]) {
    let at = (y * width + x) as usize * 4;
    data[at..at + 4].copy_from_slice(&bgrx);
}

/// A desktop-like frame: flat colours with some noisy text-like detail,
/// so a tile costs what it would on a real screen.
fn desktop(width: u32, height: u32, rng: &mut Rng) -> Vec<u8> {
    let mut data = vec![0; (width * height * 4) as usize];
    for y in 0..height {
        for x in 0..width {
            let text = y % 16 < 10 && rng.next().is_multiple_of(3);
            let shade = if text { 0x20 } else { 0xe0 - (y / 100) as u8 };
            set_pixel(
                &mut data,
                width,
                x,
                y,
                [shade, shade, shade.wrapping_add(8), 0],
            );
        }
    }
    data
}

#[test]
fn random_frames_round_trip_exactly() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for (width, height) in [(1, 1), (64, 64), (65, 63), (100, 70), (300, 200)] {
        let mut encoder = Encoder::new();
        let mut decoder = Decoder::new();
        let mut data = rng.bytes((width * height * 4) as usize);
        set_pixel(
            &mut data,
            width,
            width - 1,
            height - 1,
            [0xff, 0x00, 0x80, 0x00],
        );
        set_pixel(&mut data, width, 0, 0, [10, 20, 30, 99]);

        let update = decoder
            .decode(&encode(&mut encoder, &data, width, height).unwrap().bytes)
            .unwrap();
        assert!(update.keyframe);
        assert_eq!((update.width, update.height), (width, height));
        assert_eq!((decoder.width(), decoder.height()), (width, height));
        // BGRX -> RGBA: channels swapped, the X byte replaced by opaque alpha.
        assert_eq!(decoder.pixels()[..4], [30, 20, 10, 255]);
        if width * height > 1 {
            assert_eq!(
                decoder.pixels()[decoder.pixels().len() - 4..],
                [0x80, 0x00, 0xff, 255]
            );
        }
        assert_eq!(decoder.pixels(), expected_rgba(&data));

        // Random edits of random rectangles, decoded one after another.
        for _ in 0..10 {
            let x0 = rng.next() as u32 % width;
            let y0 = rng.next() as u32 % height;
            let x1 = x0 + rng.next() as u32 % (width - x0) + 1;
            let y1 = y0 + rng.next() as u32 % (height - y0) + 1;
            // Half noise, half one colour (sent as a fill).
            let solid = rng.next().is_multiple_of(2);
            let colour = rng.next().to_le_bytes();
            for y in y0..y1 {
                for x in x0..x1 {
                    let px = if solid {
                        colour
                    } else {
                        rng.next().to_le_bytes()
                    };
                    set_pixel(&mut data, width, x, y, [px[0], px[1], px[2], px[3]]);
                }
            }
            if let Some(encoded) = encode(&mut encoder, &data, width, height) {
                assert!(!encoded.keyframe);
                decoder.decode(&encoded.bytes).unwrap();
            }
            assert_eq!(decoder.pixels(), expected_rgba(&data));
        }
    }
}

#[test]
fn one_changed_pixel_sends_one_pixel() {
    let (width, height) = (1280, 720);
    let mut data = desktop(width, height, &mut Rng(7));
    let mut encoder = Encoder::new();
    let mut decoder = Decoder::new();
    let key = encode(&mut encoder, &data, width, height).unwrap();
    // Every tile, merged back into one rectangle.
    assert_eq!(key.rects, 1);
    decoder.decode(&key.bytes).unwrap();

    set_pixel(&mut data, width, 700, 300, [1, 2, 3, 0]);
    let delta = encode(&mut encoder, &data, width, height).unwrap();
    assert!(!delta.keyframe);
    assert_eq!(delta.rects, 1);
    assert_eq!(delta.seq, key.seq + 1);
    assert!(delta.bytes.len() < 48, "delta {} bytes", delta.bytes.len());

    let update = decoder.decode(&delta.bytes).unwrap();
    assert_eq!(
        update.dirty,
        [Rect {
            x: 700,
            y: 300,
            width: 1,
            height: 1
        }]
    );
    assert_eq!(decoder.pixels(), expected_rgba(&data));
}

#[test]
fn a_typed_glyph_costs_its_own_pixels_and_a_screen_of_one_colour_one_fill() {
    let (width, height) = (1920, 1080);
    let mut data = desktop(width, height, &mut Rng(14));
    let mut encoder = Encoder::new();
    let mut decoder = Decoder::new();
    decoder
        .decode(&encode(&mut encoder, &data, width, height).unwrap().bytes)
        .unwrap();
    // A 9x17 glyph straddling a tile edge, and the text cursor beside it.
    let mut rng = Rng(15);
    for y in 120..137 {
        for x in 60..69 {
            // Ink or paper, like a glyph.
            let v = if rng.next().is_multiple_of(3) {
                0x20
            } else {
                0xf0
            };
            set_pixel(&mut data, width, x, y, [v, v, v, 0]);
        }
        for x in 69..78 {
            set_pixel(&mut data, width, x, y, [0, 0, 0, 0]);
        }
    }
    let delta = encode(&mut encoder, &data, width, height).unwrap();
    let update = decoder.decode(&delta.bytes).unwrap();
    assert_eq!(
        update.dirty,
        [Rect {
            x: 60,
            y: 120,
            width: 18,
            height: 17
        }]
    );
    assert_eq!(decoder.pixels(), expected_rgba(&data));
    assert!(delta.bytes.len() < 200, "{} bytes", delta.bytes.len());

    let blue: Vec<u8> = [200, 40, 10, 0].repeat((width * height) as usize);
    let delta = encode(&mut encoder, &blue, width, height).unwrap();
    assert_eq!(delta.rects, 1);
    assert!(delta.bytes.len() < 40, "{} bytes", delta.bytes.len());
    decoder.decode(&delta.bytes).unwrap();
    assert_eq!(decoder.pixels(), expected_rgba(&blue));
}

#[test]
fn pixels_sent_before_cost_little_the_next_time() {
    let (width, height) = (640, 480);
    let blank = vec![0xff; (width * height * 4) as usize];
    let patch = Rng(16).bytes(40 * 40 * 4);
    let with_patch_at = |x0: u32, y0: u32| {
        let mut data = blank.clone();
        for y in 0..40 {
            for x in 0..40 {
                let at = ((y * 40 + x) * 4) as usize;
                let px = [patch[at], patch[at + 1], patch[at + 2], 0];
                set_pixel(&mut data, width, x0 + x, y0 + y, px);
            }
        }
        data
    };
    let mut encoder = Encoder::new();
    let mut decoder = Decoder::new();
    let mut sizes = Vec::new();
    for data in [
        blank.clone(),
        with_patch_at(10, 10),
        blank.clone(),
        with_patch_at(10, 10),
    ] {
        let update = encode(&mut encoder, &data, width, height).unwrap();
        sizes.push(update.bytes.len());
        decoder.decode(&update.bytes).unwrap();
        assert_eq!(decoder.pixels(), expected_rgba(&data));
    }
    // Noise does not compress (4.8 KB), but the second time it is a match
    // in the session's stream.
    assert!(sizes[1] > 4000, "{sizes:?}");
    assert!(sizes[3] * 10 < sizes[1], "{sizes:?}");
}

#[test]
fn encode_within_compares_only_the_given_areas() {
    let (width, height) = (300, 200);
    let mut data = desktop(width, height, &mut Rng(17));
    let mut encoder = Encoder::new();
    let mut decoder = Decoder::new();
    decoder
        .decode(&encode(&mut encoder, &data, width, height).unwrap().bytes)
        .unwrap();
    set_pixel(&mut data, width, 10, 10, [1, 2, 3, 0]);
    set_pixel(&mut data, width, 250, 150, [4, 5, 6, 0]);
    let area = Rect {
        x: 200,
        y: 100,
        width: 500, // past the edge: clipped
        height: 60,
    };
    let update = encoder
        .encode_within(frame(&data, width, height), false, &[area])
        .unwrap()
        .unwrap();
    let dirty = decoder.decode(&update.bytes).unwrap().dirty;
    assert_eq!(
        dirty,
        [Rect {
            x: 250,
            y: 150,
            width: 1,
            height: 1
        }]
    );
    // Nothing in the areas: nothing to send; a whole look finds the rest.
    assert_eq!(
        encoder
            .encode_within(frame(&data, width, height), false, &[])
            .unwrap(),
        None
    );
    let update = encode(&mut encoder, &data, width, height).unwrap();
    decoder.decode(&update.bytes).unwrap();
    assert_eq!(decoder.pixels(), expected_rgba(&data));
}

/// An 800x600 screen with a 600x480 page of text lines (16 rows each,
/// line `k` the same pixels wherever it is shown) scrolled down by `top`
/// lines, and a scroll bar whose thumb follows.
fn scrolled_page(top: u32) -> Vec<u8> {
    let (width, height) = (800, 600);
    let mut data = [0xd0, 0xd0, 0xd0, 0].repeat((width * height) as usize);
    for y in 0..480 {
        let line = top + y / 16;
        let mut rng = Rng(0x9e37_79b9 ^ u64::from(line) << 8 ^ u64::from(y % 16));
        for x in 0..590 {
            let ink = y % 16 < 12 && rng.next().is_multiple_of(5);
            let v = if ink { 0x10 } else { 0xff };
            set_pixel(&mut data, width, 100 + x, 60 + y, [v, v, v, 0]);
        }
        let thumb = (top * 4..top * 4 + 120).contains(&y);
        for x in 690..700 {
            let v = if thumb { 0x60 } else { 0xa0 };
            set_pixel(&mut data, width, x, 60 + y, [v, v, v, 0]);
        }
    }
    data
}

#[test]
fn a_scroll_is_sent_as_a_copy_and_the_lines_scrolled_in() {
    let (width, height) = (800, 600);
    let mut encoder = Encoder::new();
    let mut decoder = Decoder::new();
    let key = encode(&mut encoder, &scrolled_page(0), width, height).unwrap();
    decoder.decode(&key.bytes).unwrap();
    // Down by 3 lines, then back up by 2, then a jump too far to match.
    for top in [3, 1, 40] {
        let page = scrolled_page(top);
        let delta = encode(&mut encoder, &page, width, height).unwrap();
        let update = decoder.decode(&delta.bytes).unwrap();
        assert_eq!(decoder.pixels(), expected_rgba(&page), "top {top}");
        let tallest = update.dirty.iter().map(|r| r.height).max().unwrap();
        if top == 40 {
            assert!(delta.bytes.len() * 3 > key.bytes.len(), "top {top}");
        } else {
            // The copy covers most of the page; the rest is a few lines.
            assert!(tallest >= 400, "top {top}: {:?}", update.dirty);
            assert!(
                delta.bytes.len() * 4 < key.bytes.len(),
                "top {top}: delta {} bytes, keyframe {}",
                delta.bytes.len(),
                key.bytes.len()
            );
        }
    }
}

#[test]
fn a_moved_window_is_sent_as_a_copy_and_what_it_uncovered() {
    let (width, height) = (800, 600);
    let desk = desktop(width, height, &mut Rng(21));
    // A terminal listing: lines of glyph-like ink on paper, the first 120
    // columns the same on every line ("-rw-r--r-- 1 user user").
    let mut rng = Rng(22);
    let window: Vec<u8> = (0..300 * 200)
        .flat_map(|i| {
            let (x, y) = (i % 300, i / 300);
            let glyph = if x < 120 {
                (x * 7 + (y % 16) * 3) % 5 == 0
            } else {
                rng.next().is_multiple_of(3)
            };
            let ink = y % 16 < 11 && x % 8 < 6 && x < 280 - y % 97 && glyph;
            if ink {
                [0x10, 0x10, 0x10, 0]
            } else {
                [0xf8, 0xf8, 0xf0, 0]
            }
        })
        .collect();
    let with_window_at = |x0: u32, y0: u32| {
        let mut data = desk.clone();
        for y in 0..200 {
            for x in 0..300 {
                let at = ((y * 300 + x) * 4) as usize;
                let px = [window[at], window[at + 1], window[at + 2], 0];
                set_pixel(&mut data, width, x0 + x, y0 + y, px);
            }
        }
        data
    };
    let mut encoder = Encoder::new();
    let mut decoder = Decoder::new();
    let key = encode(&mut encoder, &with_window_at(100, 100), width, height).unwrap();
    decoder.decode(&key.bytes).unwrap();
    // Dragged right and down, then left and up.
    for (x, y) in [(108, 104), (90, 101), (90, 101 + 40)] {
        let data = with_window_at(x, y);
        let delta = encode(&mut encoder, &data, width, height).unwrap();
        let update = decoder.decode(&delta.bytes).unwrap();
        assert_eq!(decoder.pixels(), expected_rgba(&data), "at ({x}, {y})");
        let copy = Rect {
            x,
            y,
            width: 300,
            height: 200,
        };
        assert!(
            update.dirty.contains(&copy),
            "at ({x}, {y}): {:?}",
            update.dirty
        );
        assert!(
            delta.bytes.len() < 30_000,
            "at ({x}, {y}): {} bytes",
            delta.bytes.len()
        );
    }
}

#[test]
fn unchanged_frame_encodes_to_nothing() {
    let data = desktop(200, 100, &mut Rng(3));
    let mut encoder = Encoder::new();
    let key = encode(&mut encoder, &data, 200, 100).unwrap();
    assert_eq!(encode(&mut encoder, &data, 200, 100), None);
    assert_eq!(encode(&mut encoder, &data.clone(), 200, 100), None);

    // Skipped frames use no sequence number, so the decoder sees no gap.
    let mut changed = data.clone();
    set_pixel(&mut changed, 200, 0, 0, [9, 9, 9, 0]);
    let delta = encode(&mut encoder, &changed, 200, 100).unwrap();
    assert_eq!(delta.seq, key.seq + 1);
    let mut decoder = Decoder::new();
    decoder.decode(&key.bytes).unwrap();
    decoder.decode(&delta.bytes).unwrap();
}

#[test]
fn forced_keyframe_carries_every_tile_and_restarts_a_decoder() {
    let data = desktop(200, 100, &mut Rng(4));
    let mut encoder = Encoder::new();
    encode(&mut encoder, &data, 200, 100).unwrap();
    let forced = encoder
        .encode(frame(&data, 200, 100), true)
        .unwrap()
        .unwrap();
    assert!(forced.keyframe);
    assert_eq!(forced.rects, 1);
    assert_eq!(forced.seq, 1);

    // A viewer joining late starts from it.
    let mut decoder = Decoder::new();
    let update = decoder.decode(&forced.bytes).unwrap();
    assert!(update.keyframe);
    assert_eq!(
        update.dirty,
        [Rect {
            x: 0,
            y: 0,
            width: 200,
            height: 100
        }]
    );
    assert_eq!(decoder.pixels(), expected_rgba(&data));
}

#[test]
fn resolution_change_is_a_keyframe() {
    let mut rng = Rng(5);
    let small = desktop(200, 100, &mut rng);
    let large = desktop(300, 150, &mut rng);
    let mut encoder = Encoder::new();
    let mut decoder = Decoder::new();
    decoder
        .decode(&encode(&mut encoder, &small, 200, 100).unwrap().bytes)
        .unwrap();

    let resized = encode(&mut encoder, &large, 300, 150).unwrap();
    assert!(resized.keyframe);
    assert_eq!(resized.rects, 1);
    let update = decoder.decode(&resized.bytes).unwrap();
    assert_eq!((update.width, update.height), (300, 150));
    assert_eq!(decoder.pixels(), expected_rgba(&large));

    // A delta for another size is refused, and the screen is kept.
    let mut other = Encoder::new();
    encode(&mut other, &small, 200, 100).unwrap();
    let mut changed = small.clone();
    set_pixel(&mut changed, 200, 5, 5, [0, 0, 0, 0]);
    let mut delta = encode(&mut other, &changed, 200, 100).unwrap().bytes;
    // Version, flags, 200 and 100 as varints, then the sequence number:
    // made the decoder's next.
    assert_eq!(delta[..6], [FORMAT_VERSION, 0, 0xc8, 0x01, 100, 1]);
    delta[5] = 2;
    assert!(matches!(
        decoder.decode(&delta),
        Err(CodecError::ResolutionMismatch {
            width: 300,
            height: 150,
            got_width: 200,
            got_height: 100
        })
    ));
    assert_eq!(decoder.pixels(), expected_rgba(&large));
}

#[test]
fn padded_stride_encodes_like_packed_rows() {
    let (width, height, stride) = (100, 70, 100 * 4 + 36);
    let packed = Rng(6).bytes(width * height * 4);
    let mut padded = Rng(8).bytes(stride * height); // padding is garbage
    for y in 0..height {
        padded[y * stride..y * stride + width * 4]
            .copy_from_slice(&packed[y * width * 4..(y + 1) * width * 4]);
    }
    // The last row may omit its padding.
    padded.truncate(stride * (height - 1) + width * 4);

    let mut a = Encoder::new();
    let mut b = Encoder::new();
    let from_packed = encode(&mut a, &packed, width as u32, height as u32).unwrap();
    let padded_frame = FrameRef::new(&padded, width as u32, height as u32, stride).unwrap();
    let from_padded = b.encode(padded_frame, false).unwrap().unwrap();
    assert_eq!(from_packed, from_padded);

    // Changing only padding changes nothing.
    let mut repadded = padded.clone();
    repadded[width * 4] ^= 0xff;
    let frame = FrameRef::new(&repadded, width as u32, height as u32, stride).unwrap();
    assert_eq!(b.encode(frame, false).unwrap(), None);

    let mut decoder = Decoder::new();
    decoder.decode(&from_padded.bytes).unwrap();
    assert_eq!(decoder.pixels(), expected_rgba(&packed));
}

#[test]
fn edge_tiles_cover_sizes_not_multiple_of_64() {
    let (width, height) = (100, 70); // tiles: 64x64, 36x64, 64x6, 36x6
    let mut data = desktop(width, height, &mut Rng(9));
    let mut encoder = Encoder::new();
    let mut decoder = Decoder::new();
    assert_eq!(encode(&mut encoder, &data, width, height).unwrap().rects, 1);
    decoder
        .decode(
            &encoder
                .encode(frame(&data, width, height), true)
                .unwrap()
                .unwrap()
                .bytes,
        )
        .unwrap();

    set_pixel(&mut data, width, 99, 69, [1, 2, 3, 4]);
    let delta = encode(&mut encoder, &data, width, height).unwrap();
    assert_eq!(delta.rects, 1);
    let update = decoder.decode(&delta.bytes).unwrap();
    assert_eq!(
        update.dirty,
        [Rect {
            x: 99,
            y: 69,
            width: 1,
            height: 1
        }]
    );
    assert_eq!(
        decoder.pixels()[decoder.pixels().len() - 4..],
        [3, 2, 1, 255]
    );

    // Changes in three tiles that do not touch are three rectangles;
    // two that meet across a tile edge are one.
    for (x, y) in [(0, 0), (70, 0), (0, 65)] {
        set_pixel(&mut data, width, x, y, [7, 7, 7, 7]);
    }
    let update = decoder
        .decode(&encode(&mut encoder, &data, width, height).unwrap().bytes)
        .unwrap();
    let rect = |x, y, width, height| Rect {
        x,
        y,
        width,
        height,
    };
    assert_eq!(
        update.dirty,
        [rect(0, 0, 1, 1), rect(70, 0, 1, 1), rect(0, 65, 1, 1)]
    );
    for (x, y) in [(63, 10), (64, 10)] {
        set_pixel(&mut data, width, x, y, [8, 8, 8, 8]);
    }
    let update = decoder
        .decode(&encode(&mut encoder, &data, width, height).unwrap().bytes)
        .unwrap();
    assert_eq!(update.dirty, [rect(63, 10, 2, 1)]);
    assert_eq!(decoder.pixels(), expected_rgba(&data));
}

#[test]
fn delta_before_any_keyframe_is_refused() {
    let mut data = desktop(200, 100, &mut Rng(10));
    let mut encoder = Encoder::new();
    encode(&mut encoder, &data, 200, 100).unwrap();
    set_pixel(&mut data, 200, 1, 1, [0, 0, 0, 0]);
    let delta = encode(&mut encoder, &data, 200, 100).unwrap();
    let mut decoder = Decoder::new();
    assert!(matches!(
        decoder.decode(&delta.bytes),
        Err(CodecError::NoKeyframe)
    ));
    assert!(decoder.pixels().is_empty());
    assert_eq!(decoder.width(), 0);
}

#[test]
fn lost_delta_is_a_sequence_gap() {
    let mut data = desktop(200, 100, &mut Rng(11));
    let mut encoder = Encoder::new();
    let mut decoder = Decoder::new();
    decoder
        .decode(&encode(&mut encoder, &data, 200, 100).unwrap().bytes)
        .unwrap();
    set_pixel(&mut data, 200, 1, 1, [0, 0, 0, 0]);
    encode(&mut encoder, &data, 200, 100).unwrap(); // lost
    set_pixel(&mut data, 200, 150, 1, [0, 0, 0, 0]);
    let next = encode(&mut encoder, &data, 200, 100).unwrap();
    assert!(matches!(
        decoder.decode(&next.bytes),
        Err(CodecError::SequenceGap {
            expected: 1,
            got: 2
        })
    ));
}

#[test]
fn bad_frames_are_errors() {
    let data = vec![0; 100 * 4 * 10];
    assert!(matches!(
        FrameRef::new(&data, 0, 10, 400),
        Err(CodecError::BadDimensions { .. })
    ));
    assert!(matches!(
        FrameRef::new(&data, MAX_DIMENSION + 1, 1, 40_000),
        Err(CodecError::BadDimensions { .. })
    ));
    assert!(matches!(
        FrameRef::new(&data, 100, 10, 399),
        Err(CodecError::BadStride { .. })
    ));
    assert!(matches!(
        FrameRef::new(&data, 100, 11, 400),
        Err(CodecError::FrameTooShort { .. })
    ));
    assert!(matches!(
        FrameRef::new(&data, 100, 10, usize::MAX),
        Err(CodecError::FrameTooShort { .. })
    ));
    // The encoder checks frames built without `new` too.
    let unchecked = FrameRef {
        data: &data,
        width: 100,
        height: 20,
        stride: 400,
    };
    assert!(matches!(
        Encoder::new().encode(unchecked, false),
        Err(CodecError::FrameTooShort { .. })
    ));
}

/// A hand-built update: header, rectangle list bytes, payload.
fn update_bytes(
    keyframe: bool,
    width: u32,
    height: u32,
    seq: u64,
    list: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION, u8::from(keyframe)];
    for mut v in [u64::from(width), u64::from(height), seq] {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    out.extend_from_slice(list);
    out.extend_from_slice(payload);
    out
}

#[test]
fn huge_header_with_tiny_payload_is_refused_before_allocating() {
    let mut decoder = Decoder::new();
    let payload = zstd::bulk::compress(&[0; 300], 1).unwrap();
    // One "pixels" rectangle over the whole 8192x8192 screen.
    let list = [1, 0, 0, 0x80, 0x40, 0x80, 0x40, 0];
    let bytes = update_bytes(true, MAX_DIMENSION, MAX_DIMENSION, 0, &list, &payload);
    // Refused by the length check, before the 200 MB buffer this would need.
    let err = decoder.decode(&bytes).unwrap_err();
    assert!(
        matches!(err, CodecError::BadPayload(why) if why.contains("too short")),
        "{err}"
    );
    assert!(decoder.pixels().is_empty());
    let too_big = update_bytes(true, MAX_DIMENSION + 1, 1, 0, &[], &payload);
    assert!(matches!(
        decoder.decode(&too_big),
        Err(CodecError::BadDimensions { .. })
    ));
}

/// One "pixels" rectangle at (x, y), w x h.
fn pixels_rect(x: u8, y: u8, w: u8, h: u8) -> [u8; 6] {
    [1, x, y, w, h, 0]
}

#[test]
fn payload_must_be_exactly_the_rectangles() {
    let mut decoder = Decoder::new();
    let whole = pixels_rect(0, 0, 10, 10);
    let pixels = 10 * 10 * 3;
    let short = zstd::bulk::compress(&vec![7; pixels - 1], 1).unwrap();
    let long = zstd::bulk::compress(&vec![7; pixels + 1], 1).unwrap();
    let exact = zstd::bulk::compress(&vec![7; pixels], 1).unwrap();
    assert!(matches!(
        decoder.decode(&update_bytes(true, 10, 10, 0, &whole, &short)),
        Err(CodecError::BadPayload(_))
    ));
    // Refused by zstd (no room) or after it (more than expected).
    assert!(matches!(
        decoder.decode(&update_bytes(true, 10, 10, 0, &whole, &long)),
        Err(CodecError::Zstd(_) | CodecError::BadPayload(_))
    ));
    decoder
        .decode(&update_bytes(true, 10, 10, 0, &whole, &exact))
        .unwrap();
    assert_eq!(decoder.pixels()[..4], [7, 7, 7, 255]);

    // Deltas: an empty list, a count the bytes cannot hold, a rectangle
    // outside the screen, "pixels" covering more than the screen.
    let ones = zstd::bulk::compress(&vec![1; pixels], 1).unwrap();
    for list in [
        &[0][..],
        &[2, 0, 0],
        &pixels_rect(5, 5, 10, 10),
        &[2, 0, 0, 10, 10, 0, 0, 0, 10, 10, 0],
        &[1, 0, 0, 10, 10, 9],
    ] {
        let mut decoder = Decoder::new();
        decoder
            .decode(&update_bytes(true, 10, 10, 0, &whole, &exact))
            .unwrap();
        assert!(matches!(
            decoder.decode(&update_bytes(false, 10, 10, 1, list, &ones)),
            Err(CodecError::BadRects(_))
        ));
        assert_eq!(decoder.pixels()[..4], [7, 7, 7, 255]);
    }
    decoder
        .decode(&update_bytes(false, 10, 10, 1, &whole, &ones))
        .unwrap();
    assert_eq!(decoder.pixels()[..4], [1, 1, 1, 255]);
    // Fills and copies carry no payload.
    assert!(matches!(
        decoder.decode(&update_bytes(
            false,
            10,
            10,
            2,
            &[1, 0, 0, 1, 1, 1, 9, 9, 9],
            &[0]
        )),
        Err(CodecError::BadPayload(_))
    ));
}

#[test]
fn after_an_error_deltas_wait_for_a_keyframe() {
    let mut data = desktop(200, 100, &mut Rng(13));
    let mut encoder = Encoder::new();
    let mut decoder = Decoder::new();
    let key = encode(&mut encoder, &data, 200, 100).unwrap();
    decoder.decode(&key.bytes).unwrap();
    set_pixel(&mut data, 200, 9, 9, [1, 1, 1, 1]);
    let delta = encode(&mut encoder, &data, 200, 100).unwrap();
    let mut broken = delta.bytes.clone();
    let last = broken.len() - 1;
    broken[last] ^= 0x55;
    broken.truncate(last - 1);
    assert!(decoder.decode(&broken).is_err());
    // The genuine delta now continues a stream the decoder has lost.
    assert!(matches!(
        decoder.decode(&delta.bytes),
        Err(CodecError::NotInSync)
    ));
    let key = encoder
        .encode(frame(&data, 200, 100), true)
        .unwrap()
        .unwrap();
    decoder.decode(&key.bytes).unwrap();
    assert_eq!(decoder.pixels(), expected_rgba(&data));
}

#[test]
fn copies_apply_in_order_and_may_overlap() {
    let (width, height) = (8u8, 8u8);
    let mut decoder = Decoder::new();
    // Row y has the colour (y, y, y).
    let raw: Vec<u8> = (0..height)
        .flat_map(|y| [y, y, y].into_iter().chain([0; 3 * 7]))
        .collect();
    let key = update_bytes(
        true,
        8,
        8,
        0,
        &pixels_rect(0, 0, width, height),
        &zstd::bulk::compress(&raw, 1).unwrap(),
    );
    decoder.decode(&key).unwrap();
    // Scroll up by 2 (copy rows 2..8 to 0..6), then fill the two new rows.
    let list = [
        2, 0, 0, 8, 6, 2, 0, 2, // copy from (0, 2)
        0, 6, 8, 2, 1, 0xff, 0, 0, // fill red
    ];
    let update = decoder
        .decode(&update_bytes(false, 8, 8, 1, &list, &[]))
        .unwrap();
    assert_eq!(update.dirty.len(), 2);
    let row = |d: &Decoder, y: usize| d.pixels()[y * 32..y * 32 + 4].to_vec();
    for y in 0..6 {
        assert_eq!(
            row(&decoder, y),
            [y as u8 + 2, y as u8 + 2, y as u8 + 2, 255]
        );
    }
    assert_eq!(row(&decoder, 7), [0xff, 0, 0, 255]);
    // Down by 3, overlapping the other way.
    let list = [1, 0, 3, 8, 5, 2, 0, 0];
    decoder
        .decode(&update_bytes(false, 8, 8, 2, &list, &[]))
        .unwrap();
    assert_eq!(row(&decoder, 3), [2, 2, 2, 255]);
    assert_eq!(row(&decoder, 7), [6, 6, 6, 255]);
    // A copy from outside the screen is refused.
    let list = [1, 0, 0, 8, 5, 2, 0, 4];
    assert!(matches!(
        decoder.decode(&update_bytes(false, 8, 8, 3, &list, &[])),
        Err(CodecError::BadRects(_))
    ));
}

#[test]
fn unknown_versions_and_flags_are_refused() {
    let mut bytes = update_bytes(true, 10, 10, 0, &[], &[]);
    for version in [0, 1, FORMAT_VERSION + 1] {
        bytes[0] = version;
        assert!(matches!(
            Decoder::new().decode(&bytes),
            Err(CodecError::UnsupportedVersion(v)) if v == version
        ));
    }
    bytes[0] = FORMAT_VERSION;
    bytes[1] = 0x83;
    assert!(matches!(
        Decoder::new().decode(&bytes),
        Err(CodecError::UnknownFlags(0x83))
    ));
    bytes[1] = 1;
    for cut in [1, 2, 3, 4] {
        assert!(matches!(
            Decoder::new().decode(&bytes[..cut]),
            Err(CodecError::Truncated)
        ));
    }
    // Formats 2 (a recording from before the view) and 3 (before JPEG),
    // with their fixed 18-byte header, are read; format 2 with format 3's
    // view flag is not.
    let data = vec![7u8; 8 * 8 * 4];
    let key = Encoder::new()
        .encode(frame(&data, 8, 8), true)
        .unwrap()
        .unwrap()
        .bytes;
    // Version, flags, then 8, 8, 0 as one byte each.
    assert_eq!(key[..5], [FORMAT_VERSION, 1, 8, 8, 0]);
    for version in [2, 3] {
        let mut old = vec![version, 1];
        old.extend(8u32.to_le_bytes());
        old.extend(8u32.to_le_bytes());
        old.extend(0u64.to_le_bytes());
        old.extend_from_slice(&key[5..]);
        assert!(Decoder::new().decode(&old).is_ok(), "format {version}");
        if version == 2 {
            old[1] |= 2;
            let flags = Decoder::new().decode(&old);
            assert!(matches!(flags, Err(CodecError::UnknownFlags(3))));
            old[1] = 1;
        }
        assert!(matches!(
            Decoder::new().decode(&old[..17]),
            Err(CodecError::Truncated)
        ));
    }
}

#[test]
fn placeholder_is_dark_grey_with_a_pause_symbol() {
    let (width, height) = (320, 200);
    let data = placeholder_frame(width, height);
    assert_eq!(data.len(), (width * height * 4) as usize);
    let at = |x: u32, y: u32| data[((y * width + x) * 4) as usize..][..4].to_vec();
    assert_eq!(at(0, 0), [0x30, 0x30, 0x30, 0xff]);
    assert_eq!(at(width - 1, height - 1), [0x30, 0x30, 0x30, 0xff]);
    // Left bar, gap, right bar across the middle row.
    let middle = height / 2;
    let bars: Vec<bool> = (0..width).map(|x| at(x, middle)[0] > 0x30).collect();
    let edges = bars.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(edges, 4);
    assert!(data
        .chunks_exact(4)
        .all(|p| p == [0x30, 0x30, 0x30, 0xff] || p == [0x80, 0x80, 0x80, 0xff]));

    // It encodes like any frame, and degenerate sizes don't panic.
    let mut decoder = Decoder::new();
    decoder
        .decode(
            &encode(&mut Encoder::new(), &data, width, height)
                .unwrap()
                .bytes,
        )
        .unwrap();
    assert_eq!(placeholder_frame(1, 1).len(), 4);
    assert!(placeholder_frame(0, 5).is_empty());
}

/// A valid keyframe and delta for a small frame, to mutate (built once:
/// proptest runs thousands of cases).
fn valid_stream() -> &'static (Vec<u8>, Vec<u8>) {
    static STREAM: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    STREAM.get_or_init(|| {
        let (width, height) = (130, 70);
        let mut data = desktop(width, height, &mut Rng(12));
        let mut encoder = Encoder::new();
        let key = encode(&mut encoder, &data, width, height).unwrap().bytes;
        for (x, y) in [(3, 3), (129, 69), (70, 5)] {
            set_pixel(&mut data, width, x, y, [1, 2, 3, 0]);
        }
        let delta = encode(&mut encoder, &data, width, height).unwrap().bytes;
        (key, delta)
    })
}

/// Decodes `bytes` with a fresh decoder and with one holding a screen;
/// on error the screen must be untouched.
fn decode_hostile(key: &[u8], bytes: &[u8]) {
    let _ = Decoder::new().decode(bytes);
    let mut decoder = Decoder::new();
    decoder.decode(key).unwrap();
    let before = decoder.pixels().to_vec();
    match decoder.decode(bytes) {
        Ok(update) => {
            assert_eq!(
                decoder.pixels().len(),
                update.width as usize * update.height as usize * 4
            );
            assert!(update
                .dirty
                .iter()
                .all(|r| r.x + r.width <= update.width && r.y + r.height <= update.height));
        }
        Err(_) => assert_eq!(decoder.pixels(), before),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn truncated_updates_never_panic(cut in 0usize..2000, delta in any::<bool>()) {
        let (key, d) = valid_stream();
        let bytes = if delta { d } else { key };
        let cut = cut.min(bytes.len());
        decode_hostile(key, &bytes[..cut]);
    }

    #[test]
    fn bit_flipped_updates_never_panic(flips in prop::collection::vec((any::<usize>(), 0u8..8), 1..6), delta in any::<bool>()) {
        let (key, d) = valid_stream();
        let mut bytes = if delta { d.clone() } else { key.clone() };
        for (at, bit) in flips {
            let len = bytes.len();
            bytes[at % len] ^= 1 << bit;
        }
        decode_hostile(key, &bytes);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        decode_hostile(&valid_stream().0, &bytes);
    }

    #[test]
    fn random_bodies_after_valid_headers_never_panic(
        keyframe in any::<bool>(),
        width in 1u32..=MAX_DIMENSION,
        height in 1u32..=MAX_DIMENSION,
        seq in 0u64..3,
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        decode_hostile(&valid_stream().0, &update_bytes(keyframe, width, height, seq, &[], &body));
    }
}

#[test]
fn encoder_and_decoder_can_move_to_worker_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Encoder>();
    assert_send::<Decoder>();
}
