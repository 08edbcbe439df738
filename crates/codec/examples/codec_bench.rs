//! Encode/decode timings and sizes on synthetic 1920x1080 workloads.
//!
//! Run with `cargo run --release -p assent-codec --example codec_bench`
//! (add `taskset -c 0` in front to pin it to one core; it is single-threaded
//! either way). Prints, per workload, median and p95 milliseconds per frame
//! for encode and decode, the median update size, and the frame rate the
//! encode + decode pipeline would sustain on one core. A second table
//! compares payload layouts on the same content, which is why the format
//! packs all changed tiles as RGB into one zstd stream at level 1.

#![forbid(unsafe_code)]

use assent_codec::{Decoder, Encoder, FrameRef, TILE_SIZE};
use std::time::{Duration, Instant};

const WIDTH: usize = 1920;
const HEIGHT: usize = 1080;

/// Deterministic noise.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A packed 1920x1080 BGRX canvas with a few drawing primitives.
#[derive(Clone)]
struct Canvas(Vec<u8>);

impl Canvas {
    fn new() -> Self {
        Self(vec![0; WIDTH * HEIGHT * 4])
    }

    fn put(&mut self, x: usize, y: usize, rgb: [u8; 3]) {
        if x < WIDTH && y < HEIGHT {
            let at = (y * WIDTH + x) * 4;
            self.0[at..at + 4].copy_from_slice(&[rgb[2], rgb[1], rgb[0], 0]);
        }
    }

    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, rgb: [u8; 3]) {
        for yy in y..(y + h).min(HEIGHT) {
            for xx in x..(x + w).min(WIDTH) {
                self.put(xx, yy, rgb);
            }
        }
    }

    /// An 8x16 pseudo-glyph: a 6x10 bit pattern derived from `code`, so
    /// "text" has the irregular detail of real text.
    fn glyph(&mut self, x: usize, y: usize, code: u32, fg: [u8; 3]) {
        let mut bits = u64::from(code.wrapping_mul(2_654_435_761)) | 1;
        bits = bits.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for row in 0..10 {
            for col in 0..6 {
                if bits >> ((row * 6 + col) % 64) & 1 == 1 {
                    self.put(x + 1 + col, y + 3 + row, fg);
                }
            }
        }
    }

    fn text(&mut self, x: usize, y: usize, w: usize, h: usize, seed: u32, fg: [u8; 3]) {
        for line in 0..h / 16 {
            let len = (seed.wrapping_mul(line as u32 + 7) % (w as u32 / 8)) as usize;
            for i in 0..len {
                let code = seed ^ (line * 131 + i * 7) as u32;
                if !code.is_multiple_of(7) {
                    self.glyph(x + i * 8, y + line * 16, code, fg);
                }
            }
        }
    }

    /// A window: title bar, light body with text.
    fn window(&mut self, x: usize, y: usize, w: usize, h: usize, seed: u32) {
        self.fill(x, y, w, h, [0x50, 0x50, 0x58]);
        self.fill(x + 1, y + 1, w - 2, 26, [0x2b, 0x57, 0x9a]);
        self.text(x + 8, y + 6, w / 2, 16, seed, [0xff, 0xff, 0xff]);
        self.fill(x + 1, y + 28, w - 2, h - 29, [0xf4, 0xf4, 0xf0]);
        self.text(x + 10, y + 36, w - 20, h - 46, seed + 1, [0x20, 0x20, 0x20]);
    }
}

/// A desktop: gradient wallpaper, a taskbar and a few static windows.
fn desktop() -> Canvas {
    let mut c = Canvas::new();
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            c.put(x, y, [0x20, (0x40 + y / 12) as u8, (0x60 + x / 20) as u8]);
        }
    }
    c.fill(0, HEIGHT - 40, WIDTH, 40, [0x18, 0x18, 0x20]);
    c.text(10, HEIGHT - 32, 600, 16, 99, [0xdd, 0xdd, 0xdd]);
    c.window(60, 60, 900, 640, 1);
    c.window(1000, 120, 840, 500, 2);
    c
}

/// Office work: a terminal gets one character per frame, and a window
/// is dragged across the desktop (or, for "typing", only the former).
struct Office {
    base: Canvas,
    mover: Canvas,
}

impl Office {
    const TERM: (usize, usize, usize, usize) = (1000, 660, 840, 360);
    const MOVER: (usize, usize) = (480, 320);

    fn new() -> Self {
        let mut base = desktop();
        let (x, y, w, h) = Self::TERM;
        base.fill(x, y, w, h, [0x10, 0x10, 0x10]);
        // A small canvas holding only the moving window's pixels.
        let mut mover = Canvas::new();
        mover.window(0, 0, Self::MOVER.0, Self::MOVER.1, 3);
        Self { base, mover }
    }

    fn render(&self, t: usize, out: &mut Canvas) {
        self.render_typing(t, out);
        // The window moves 6 px right, 3 px down per frame, wrapping.
        let (mw, mh) = Self::MOVER;
        let mx = (80 + 6 * t) % (WIDTH - mw);
        let my = (300 + 3 * t) % (HEIGHT - 40 - mh);
        for y in 0..mh {
            let src = &self.mover.0[y * WIDTH * 4..][..mw * 4];
            let dst = ((my + y) * WIDTH + mx) * 4;
            out.0[dst..dst + mw * 4].copy_from_slice(src);
        }
    }

    /// The desktop with `t` characters typed into the terminal.
    fn render_typing(&self, t: usize, out: &mut Canvas) {
        out.0.copy_from_slice(&self.base.0);
        let (tx, ty, tw, th) = Self::TERM;
        let cols = tw / 8 - 2;
        let rows = th / 16 - 1;
        for i in 0..t {
            let (row, col) = ((i / cols) % rows, i % cols);
            out.glyph(
                tx + 8 + col * 8,
                ty + 4 + row * 16,
                i as u32,
                [0x30, 0xe0, 0x30],
            );
        }
    }
}

/// Video: a moving gradient with moving bright discs and per-pixel noise,
/// all changing every frame.
fn video(t: usize, rng: &mut Rng, out: &mut Canvas) {
    let discs: Vec<(i64, i64)> = (0..4)
        .map(|i| {
            let i = i as i64;
            let t = t as i64;
            (
                (300 + 400 * i + 9 * t) % 1920,
                (200 + 150 * i + 5 * t) % 1080,
            )
        })
        .collect();
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let noise = rng.next();
            let n = |s: u32| ((noise >> s) & 7) as u8;
            let mut r = ((x + 3 * t) / 8) as u8;
            let mut g = ((y + 2 * t) / 5) as u8;
            let mut b = ((x + y) / 2 + 5 * t) as u8;
            for &(cx, cy) in &discs {
                let (dx, dy) = (x as i64 - cx, y as i64 - cy);
                if dx * dx + dy * dy < 120 * 120 {
                    (r, g, b) = (0xf0, 0xc0, g / 2);
                }
            }
            out.put(
                x,
                y,
                [
                    r.wrapping_add(n(0)),
                    g.wrapping_add(n(8)),
                    b.wrapping_add(n(16)),
                ],
            );
        }
    }
}

struct Stats {
    encode: Vec<Duration>,
    decode: Vec<Duration>,
    bytes: Vec<usize>,
    tiles: Vec<usize>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile<T: Copy + Ord>(values: &[T], p: f64) -> T {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Encodes and decodes `frames` frames produced by `render`, excluding the
/// first (keyframe) from the figures. Frames with no update count as
/// encode-only with 0 bytes.
fn run(
    frames: usize,
    force: bool,
    mut render: impl FnMut(usize, &mut Canvas),
) -> (Stats, usize, Duration, Duration) {
    let mut encoder = Encoder::new();
    let mut decoder = Decoder::new();
    let mut canvas = Canvas::new();
    let mut stats = Stats {
        encode: Vec::new(),
        decode: Vec::new(),
        bytes: Vec::new(),
        tiles: Vec::new(),
    };
    let mut key = (0, Duration::ZERO, Duration::ZERO);
    for t in 0..=frames {
        render(t, &mut canvas);
        let frame = FrameRef::new(&canvas.0, WIDTH as u32, HEIGHT as u32, WIDTH * 4).unwrap();
        let start = Instant::now();
        let encoded = encoder.encode(frame, force).unwrap();
        let encode = start.elapsed();
        let (decode, bytes, tiles) = match &encoded {
            Some(e) => {
                let start = Instant::now();
                decoder.decode(&e.bytes).unwrap();
                (start.elapsed(), e.bytes.len(), e.rects)
            }
            None => (Duration::ZERO, 0, 0),
        };
        if t == 0 {
            key = (bytes, encode, decode);
            continue;
        }
        stats.encode.push(encode);
        stats.decode.push(decode);
        stats.bytes.push(bytes);
        stats.tiles.push(tiles);
    }
    // The decoder must hold exactly the last frame.
    let last = &canvas.0;
    assert!(decoder
        .pixels()
        .chunks_exact(4)
        .zip(last.chunks_exact(4))
        .all(|(rgba, bgrx)| rgba[..3] == [bgrx[2], bgrx[1], bgrx[0]]));
    (stats, key.0, key.1, key.2)
}

fn report(name: &str, frames: usize, force: bool, render: impl FnMut(usize, &mut Canvas)) {
    let (s, key_bytes, key_enc, key_dec) = run(frames, force, render);
    let enc_med = ms(percentile(&s.encode, 0.5));
    let dec_med = ms(percentile(&s.decode, 0.5));
    let enc_p95 = ms(percentile(&s.encode, 0.95));
    let dec_p95 = ms(percentile(&s.decode, 0.95));
    println!(
        "{name:<7} {frames:>6} {enc_med:>8.2} {enc_p95:>8.2} {dec_med:>8.2} {dec_p95:>8.2} {:>10} {:>6} {:>8.0} {:>8.0}   keyframe {} B, {:.2} + {:.2} ms",
        percentile(&s.bytes, 0.5),
        percentile(&s.tiles, 0.5),
        1e3 / (enc_med + dec_med),
        1e3 / (enc_p95 + dec_p95),
        key_bytes,
        ms(key_enc),
        ms(key_dec),
    );
}

/// The tiles that differ between two packed BGRX frames, as
/// (x, y, width, height) in pixels.
fn changed_tiles(prev: &[u8], cur: &[u8]) -> Vec<(usize, usize, usize, usize)> {
    let t = TILE_SIZE as usize;
    let mut out = Vec::new();
    for ty in (0..HEIGHT).step_by(t) {
        for tx in (0..WIDTH).step_by(t) {
            let (w, h) = (t.min(WIDTH - tx), t.min(HEIGHT - ty));
            let differs = (ty..ty + h).any(|y| {
                let s = (y * WIDTH + tx) * 4;
                prev[s..s + w * 4] != cur[s..s + w * 4]
            });
            if differs {
                out.push((tx, ty, w, h));
            }
        }
    }
    out
}

/// How a layout stores a tile's pixels.
#[derive(Clone, Copy)]
enum Pixels {
    /// 4 bytes per pixel, as captured.
    Bgrx,
    /// 3 bytes per pixel, R G B.
    Rgb,
    /// RGB minus the pixel to its left (PNG's "sub" filter): the format's
    /// choice.
    RgbSub,
}

/// One tile's pixels, row by row.
fn tile_bytes(frame: &[u8], tile: (usize, usize, usize, usize), pixels: Pixels) -> Vec<u8> {
    let (x, y, w, h) = tile;
    let mut out = Vec::with_capacity(w * h * 4);
    for row in y..y + h {
        let s = (row * WIDTH + x) * 4;
        let mut left = [0u8; 3];
        for px in frame[s..s + w * 4].chunks_exact(4) {
            let rgb = [px[2], px[1], px[0]];
            match pixels {
                Pixels::Bgrx => out.extend_from_slice(px),
                Pixels::Rgb => out.extend_from_slice(&rgb),
                Pixels::RgbSub => out.extend((0..3).map(|i| rgb[i].wrapping_sub(left[i]))),
            }
            left = rgb;
        }
    }
    out
}

/// Median compress + decompress time and size of one layout over `cases`
/// (previous frame, frame) pairs.
fn layout(name: &str, cases: &[(Canvas, Canvas)], pixels: Pixels, per_tile: bool, level: i32) {
    let mut compressor = zstd::bulk::Compressor::new(level).unwrap();
    let mut decompressor = zstd::bulk::Decompressor::new().unwrap();
    let (mut times, mut dtimes, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for (prev, cur) in cases {
        let tiles: Vec<Vec<u8>> = changed_tiles(&prev.0, &cur.0)
            .into_iter()
            .map(|t| tile_bytes(&cur.0, t, pixels))
            .collect();
        let chunks: Vec<Vec<u8>> = if per_tile {
            tiles
        } else {
            vec![tiles.concat()]
        };
        let start = Instant::now();
        let compressed: Vec<Vec<u8>> = chunks
            .iter()
            .map(|c| compressor.compress(c).unwrap())
            .collect();
        times.push(start.elapsed());
        let start = Instant::now();
        for (c, raw) in compressed.iter().zip(&chunks) {
            decompressor.decompress(c, raw.len()).unwrap();
        }
        dtimes.push(start.elapsed());
        sizes.push(compressed.iter().map(Vec::len).sum::<usize>());
    }
    println!(
        "  {name:<38} {:>10} B {:>8.2} ms {:>8.2} ms",
        percentile(&sizes, 0.5),
        ms(percentile(&times, 0.5)),
        ms(percentile(&dtimes, 0.5)),
    );
}

/// Payload layouts compared: (label, pixels, one stream per tile, level).
const LAYOUTS: [(&str, Pixels, bool, i32); 6] = [
    (
        "sub RGB, one stream, level 1 (chosen)",
        Pixels::RgbSub,
        false,
        1,
    ),
    ("raw RGB, one stream, level 1", Pixels::Rgb, false, 1),
    ("raw BGRX, one stream, level 1", Pixels::Bgrx, false, 1),
    ("sub RGB, stream per tile, level 1", Pixels::RgbSub, true, 1),
    ("sub RGB, one stream, level 3", Pixels::RgbSub, false, 3),
    ("sub RGB, one stream, level -1", Pixels::RgbSub, false, -1),
];

fn main() {
    println!(
        "1920x1080 BGRX, zstd level {}, one thread. Times in ms per frame; fps = 1000 / (encode + decode);\n\
         figures exclude each run's first frame, shown after it as \"keyframe\" (cold buffers).\n",
        assent_codec::ZSTD_LEVEL
    );
    println!(
        "{:<7} {:>6} {:>8} {:>8} {:>8} {:>8} {:>10} {:>6} {:>8} {:>8}",
        "load",
        "frames",
        "enc med",
        "enc p95",
        "dec med",
        "dec p95",
        "bytes med",
        "tiles",
        "fps med",
        "fps p95"
    );
    let office = Office::new();
    report("office", 300, false, |t, c| office.render(t, c));
    report("typing", 300, false, |t, c| office.render_typing(t, c));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    report("video", 60, false, |t, c| video(t, &mut rng, c));
    report("static", 300, false, |_, c| {
        c.0.copy_from_slice(&office.base.0)
    });
    // Every frame a keyframe: what a viewer joining or recovering costs.
    report("keyfr.", 60, true, |t, c| office.render(t, c));

    // Payload layouts on the same content (compress / decompress only).
    let office_cases: Vec<(Canvas, Canvas)> = (10..30)
        .map(|t| {
            let (mut a, mut b) = (Canvas::new(), Canvas::new());
            office.render(t, &mut a);
            office.render(t + 1, &mut b);
            (a, b)
        })
        .collect();
    let typing_cases: Vec<(Canvas, Canvas)> = (10..30)
        .map(|t| {
            let (mut a, mut b) = (Canvas::new(), Canvas::new());
            office.render_typing(t, &mut a);
            office.render_typing(t + 1, &mut b);
            (a, b)
        })
        .collect();
    let key_cases: Vec<(Canvas, Canvas)> = office_cases[..5]
        .iter()
        .map(|(_, b)| (Canvas::new(), b.clone()))
        .collect();
    let video_cases: Vec<(Canvas, Canvas)> = (0..5)
        .map(|t| {
            let mut b = Canvas::new();
            video(t, &mut rng, &mut b);
            (Canvas::new(), b)
        })
        .collect();
    for (title, cases) in [
        ("office delta", &office_cases),
        ("typing delta", &typing_cases),
        ("office keyframe", &key_cases),
        ("video frame", &video_cases),
    ] {
        println!(
            "\n{title:<38} {:>12} {:>11} {:>11}",
            "size", "compress", "decompress"
        );
        for (name, pixels, per_tile, level) in LAYOUTS {
            layout(name, cases, pixels, per_tile, level);
        }
    }
}
