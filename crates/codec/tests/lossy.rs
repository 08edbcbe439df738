//! JPEG for photos, refined to lossless once they stop changing: a
//! scripted desktop (text, a photo window moving across it, then still)
//! through the encoder and decoder, with the time told to the encoder.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use assent_codec::{
    CodecError, Decoder, EncodedFrame, Encoder, FrameRef, FORMAT_VERSION, REFINE_AFTER,
};

const W: u32 = 640;
const H: u32 = 400;
const FRAME: Duration = Duration::from_millis(33);

/// Text-like lines on a light background.
fn desktop() -> Vec<u8> {
    (0..W * H)
        .flat_map(|i| {
            let (x, y) = (i % W, i / W);
            let ink = y % 16 < 10 && (x * 7 + y * 3) % 11 < 4;
            let v = if ink { 0x20 } else { 0xe8 };
            [v, v, v, 0]
        })
        .collect()
}

/// A photo-like picture (smooth colours with grain), `w` x `h`, BGRX;
/// another `seed`, another grain (a video's next frame).
fn photo(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut s = 0x2545_f491u32 ^ seed;
    (0..w * h)
        .flat_map(|i| {
            let (x, y) = (i % w, i / w);
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let n = s & 31;
            [
                (x * 190 / w + n) as u8,
                (y * 170 / h + n) as u8,
                ((x + y) * 110 / (w + h) + n) as u8,
                0,
            ]
        })
        .collect()
}

/// The desktop with the photo's top-left corner at (`px`, `py`).
fn screen_with_photo(background: &[u8], picture: &[u8], pw: u32, px: u32, py: u32) -> Vec<u8> {
    let mut out = background.to_vec();
    let ph = picture.len() as u32 / 4 / pw;
    for y in 0..ph.min(H - py) {
        let src = (y * pw * 4) as usize;
        let dst = (((py + y) * W + px) * 4) as usize;
        let len = (pw.min(W - px) * 4) as usize;
        out[dst..dst + len].copy_from_slice(&picture[src..src + len]);
    }
    out
}

fn rgba(bgrx: &[u8]) -> Vec<u8> {
    bgrx.chunks_exact(4)
        .flat_map(|p| [p[2], p[1], p[0], 255])
        .collect()
}

struct Session {
    encoder: Encoder,
    decoder: Decoder,
    now: Instant,
    jpeg_rects: usize,
    bytes: usize,
}

impl Session {
    fn new(quality: Option<u8>) -> Session {
        let mut encoder = Encoder::new();
        encoder.set_jpeg_quality(quality);
        Session {
            encoder,
            decoder: Decoder::new(),
            now: Instant::now(),
            jpeg_rects: 0,
            bytes: 0,
        }
    }

    /// Encodes `screen` at the session's time, decodes what came out.
    fn show(&mut self, screen: &[u8]) -> Option<EncodedFrame> {
        let frame = FrameRef::new(screen, W, H, W as usize * 4).unwrap();
        let whole = [assent_codec::Rect {
            x: 0,
            y: 0,
            width: W,
            height: H,
        }];
        let update = self
            .encoder
            .encode_at(frame, false, &whole, self.now)
            .unwrap()?;
        let decoded = self.decoder.decode(&update.bytes).unwrap();
        assert_eq!(decoded.jpeg_rects, update.jpeg_rects);
        self.jpeg_rects += update.jpeg_rects;
        self.bytes += update.bytes.len();
        Some(update)
    }

    fn wait(&mut self, d: Duration) {
        self.now += d;
    }
}

/// The photo moves for 20 frames, then stops: returns the last screen.
fn move_photo(s: &mut Session) -> Vec<u8> {
    let (background, picture) = (desktop(), photo(240, 160, 0));
    let mut screen = background.clone();
    for step in 0..20 {
        screen = screen_with_photo(&background, &picture, 240, 20 + step * 17, 30 + step * 9);
        s.show(&screen);
        s.wait(FRAME);
    }
    screen
}

#[test]
fn a_moving_photo_goes_as_jpeg_and_is_exact_once_it_stops() {
    let mut s = Session::new(Some(60));
    s.show(&desktop()).expect("first keyframe");
    let screen = move_photo(&mut s);
    // Shown as JPEG, then moved by copies of it (inexact too).
    assert!(s.jpeg_rects >= 1, "no JPEG rectangles");
    assert!(
        s.decoder.pixels() != rgba(&screen).as_slice(),
        "JPEG is lossy: the photo is not yet exact"
    );
    // Still: each tile is due REFINE_AFTER after it last changed, then
    // comes exactly.
    let due = s.encoder.refine_due().expect("a refinement is due later");
    assert!(due > s.now - FRAME && due <= s.now - FRAME + REFINE_AFTER);
    // Tiles last touched before the last frame may be refined first.
    s.wait(REFINE_AFTER / 4);
    s.show(&screen);
    s.wait(REFINE_AFTER);
    s.show(&screen);
    assert!(s.decoder.pixels() == rgba(&screen).as_slice(), "not exact");
    assert_eq!(s.encoder.refine_due(), None);
    s.wait(REFINE_AFTER * 2);
    assert!(s.show(&screen).is_none(), "nothing left to send");
}

/// A video playing in a 320x200 window for 20 frames.
fn play_video(s: &mut Session) {
    let background = desktop();
    for frame in 0..20 {
        let picture = photo(320, 200, frame + 1);
        s.show(&screen_with_photo(&background, &picture, 320, 100, 80));
        s.wait(FRAME);
    }
}

#[test]
fn jpeg_pays_on_video_and_text_stays_lossless() {
    let mut lossless = Session::new(None);
    let mut lossy = Session::new(Some(60));
    for s in [&mut lossless, &mut lossy] {
        s.show(&desktop());
        play_video(s);
    }
    assert_eq!(lossless.jpeg_rects, 0);
    assert!(
        lossy.jpeg_rects >= 20,
        "{} JPEG rectangles",
        lossy.jpeg_rects
    );
    assert!(
        lossy.bytes * 3 < lossless.bytes,
        "JPEG {} bytes, lossless {}",
        lossy.bytes,
        lossless.bytes
    );
    // Typing on the text: never JPEG.
    let mut screen = desktop();
    for i in 0..40usize {
        let at = ((100 + i / 8) * W as usize + 50 + (i % 8) * 9) * 4;
        screen[at..at + 24].fill(0x10);
        let update = lossy.show(&screen).expect("a change");
        assert_eq!(update.jpeg_rects, 0, "text went as JPEG");
        lossy.wait(FRAME);
    }
}

#[test]
fn turning_jpeg_off_refines_at_once_and_every_stage_is_a_valid_stream() {
    let mut s = Session::new(Some(30));
    s.show(&desktop());
    let screen = move_photo(&mut s);
    s.encoder.set_jpeg_quality(None);
    assert_eq!(s.encoder.jpeg_quality(), None);
    let refined = s.show(&screen).expect("refined at once");
    assert_eq!(refined.jpeg_rects, 0);
    assert!(s.decoder.pixels() == rgba(&screen).as_slice());
    // A keyframe with a photo on screen is JPEG too, and refined after.
    s.encoder.set_jpeg_quality(Some(50));
    let frame = FrameRef::new(&screen, W, H, W as usize * 4).unwrap();
    let key = s
        .encoder
        .encode_at(frame, true, &[], s.now)
        .unwrap()
        .unwrap();
    assert!(key.keyframe && key.jpeg_rects > 0);
    let mut fresh = Decoder::new();
    fresh.decode(&key.bytes).unwrap();
    s.wait(REFINE_AFTER);
    let frame = FrameRef::new(&screen, W, H, W as usize * 4).unwrap();
    let refined = s
        .encoder
        .encode_at(frame, false, &[], s.now)
        .unwrap()
        .unwrap();
    fresh.decode(&refined.bytes).unwrap();
    assert!(fresh.pixels() == rgba(&screen).as_slice());
}

/// A keyframe of `w` x `h` with one JPEG rectangle, built by hand.
fn jpeg_update(version: u8, rect: (u32, u32, u32, u32), len: u32, jpeg: &[u8]) -> Vec<u8> {
    let mut out = vec![version, 1];
    if version >= 4 {
        out.extend([64, 64, 0]); // varints
    } else {
        out.extend(64u32.to_le_bytes());
        out.extend(64u32.to_le_bytes());
        out.extend(0u64.to_le_bytes());
    }
    out.push(1); // one rectangle
    for v in [rect.0, rect.1, rect.2, rect.3] {
        assert!(v < 128);
        out.push(v as u8);
    }
    out.push(3);
    let mut n = len;
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(jpeg);
    out
}

#[test]
fn hostile_jpeg_rectangles_are_refused_and_leave_the_screen_alone() {
    // A real 64x64 JPEG, from the encoder.
    let mut e = Encoder::new();
    e.set_jpeg_quality(Some(50));
    let picture = photo(64, 64, 0);
    let frame = FrameRef::new(&picture, 64, 64, 256).unwrap();
    let key = e.encode(frame, true).unwrap().unwrap();
    assert_eq!(key.jpeg_rects, 1);
    let start = key.bytes.iter().position(|&b| b == 0xff).unwrap();
    let jpeg = &key.bytes[start..];
    let len = jpeg.len() as u32;
    assert_eq!(FORMAT_VERSION, 4);
    let good = jpeg_update(4, (0, 0, 64, 64), len, jpeg);
    assert_eq!(good, key.bytes, "the hand-built update is the encoder's");
    Decoder::new().decode(&good).unwrap();

    let cases: [(&str, Vec<u8>); 5] = [
        (
            "format 3 has no JPEG",
            jpeg_update(3, (0, 0, 64, 64), len, jpeg),
        ),
        (
            "rectangle of another size",
            jpeg_update(4, (0, 0, 32, 64), len, jpeg),
        ),
        (
            "section cut short",
            jpeg_update(4, (0, 0, 64, 64), len + 1, jpeg),
        ),
        (
            "garbage",
            jpeg_update(4, (0, 0, 64, 64), 5, b"\xff\xd8junk"),
        ),
        ("empty", jpeg_update(4, (0, 0, 64, 64), 0, b"")),
    ];
    for (what, bytes) in cases {
        let mut d = Decoder::new();
        let result = d.decode(&bytes);
        assert!(
            matches!(
                result,
                Err(CodecError::BadRects(_) | CodecError::BadPayload(_) | CodecError::Jpeg(_))
            ),
            "{what}: {result:?}"
        );
        assert_eq!(d.width(), 0, "{what}: screen changed");
    }
}

#[test]
fn a_full_screen_picture_is_coded_in_strips_and_refined_exactly() {
    // 1024x768: past the area from which strips are coded in parallel.
    let (w, h) = (1024u32, 768u32);
    let picture = photo(w, h, 3);
    let mut e = Encoder::new();
    e.set_jpeg_quality(Some(70));
    let mut d = Decoder::new();
    let t0 = Instant::now();
    let frame = FrameRef::new(&picture, w, h, w as usize * 4).unwrap();
    let key = e.encode_at(frame, false, &[], t0).unwrap().unwrap();
    // 768 rows in strips of 256: three JPEGs at least, one per strip.
    assert!(key.jpeg_rects >= 3, "{} JPEG rectangles", key.jpeg_rects);
    assert!(
        key.bytes.len() * 4 < picture.len() / 4,
        "{} bytes",
        key.bytes.len()
    );
    d.decode(&key.bytes).unwrap();
    let exact = rgba(&picture);
    let error: u64 = d
        .pixels()
        .iter()
        .zip(&exact)
        .map(|(a, b)| u64::from(a.abs_diff(*b)))
        .sum();
    assert!(
        error / exact.len() as u64 <= 6,
        "mean error {}",
        error / exact.len() as u64
    );
    let refined = e
        .encode_at(frame, false, &[], t0 + REFINE_AFTER)
        .unwrap()
        .unwrap();
    d.decode(&refined.bytes).unwrap();
    assert!(d.pixels() == exact.as_slice());
}
