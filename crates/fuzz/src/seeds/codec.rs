//! Seeds of `codec_frame`: real encoder output, headers, rectangle lists
//! (fills, copies, out of bounds, too many), zstd bombs and windows, JPEG
//! rectangles (real, lying about their size, grey, cut short).

use assent_codec::{Encoder, FrameRef, Rect, View, FORMAT_VERSION};
use assent_proto::session_msg::{Control, SessionMsg};

use crate::codec::join_updates;

/// Packed BGRX pixels: a gradient with a moving square, like a desktop.
fn screen(width: u32, height: u32, step: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity((width * height * 4) as usize);
    for y in 0..height {
        for x in 0..width {
            let inside = x.abs_diff(step * 9) < 12 && y.abs_diff(step * 5) < 12;
            let v = if inside { 250 } else { (x * 3 + y * 5) as u8 };
            out.extend_from_slice(&[v, (x as u8) ^ (y as u8), (y * 2) as u8, 0]);
        }
    }
    out
}

/// A keyframe and `deltas` updates of a `width` x `height` screen.
fn encoded_stream(width: u32, height: u32, deltas: u32) -> Vec<Vec<u8>> {
    let mut encoder = Encoder::new();
    let mut out = Vec::new();
    for step in 0..=deltas {
        let pixels = screen(width, height, step);
        let frame = FrameRef::new(&pixels, width, height, width as usize * 4).expect("valid");
        if let Some(update) = encoder.encode(frame, false).expect("encodes") {
            out.push(update.bytes);
        }
    }
    out
}

/// An update header (see the codec's wire format).
fn header(keyframe: bool, width: u32, height: u32, seq: u64) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION, u8::from(keyframe)];
    out.extend(varints(&[width.into(), height.into(), seq]));
    out
}

/// Format 3's fixed header (4-byte sizes, 8-byte sequence number).
fn fixed_header(keyframe: bool, width: u32, height: u32, seq: u64) -> Vec<u8> {
    let mut out = vec![3, u8::from(keyframe)];
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out
}

/// A zstd frame (RFC 8878) that decompresses to `blocks` x 128 KiB of one
/// byte, from 4 bytes per block: 128 KiB RLE blocks. With `declared`, the
/// frame header states the size; otherwise the decoder only finds out by
/// decompressing. 8192 blocks make a 32 KiB input worth 1 GiB.
pub fn zstd_bomb(blocks: u32, declared: bool) -> Vec<u8> {
    const BLOCK: u32 = 128 * 1024;
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd];
    if declared {
        // Frame_Header_Descriptor: 8-byte content size, window descriptor.
        out.push(0b1100_0000);
        out.push(7 << 3); // window 2^17 = one block
        out.extend_from_slice(&(u64::from(blocks) * u64::from(BLOCK)).to_le_bytes());
    } else {
        out.push(0);
        out.push(7 << 3);
    }
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        let rle_block = 1 << 1;
        let header = last | rle_block | BLOCK << 3;
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.push(0x5a);
    }
    out
}

/// A zstd frame header asking for a 2^`log` window (no content size).
fn zstd_window(log: u8) -> Vec<u8> {
    vec![0x28, 0xb5, 0x2f, 0xfd, 0, (log - 10) << 3, 1, 0, 0]
}

/// A list of `count` identical rectangles of one kind (see the wire format).
fn rects(count: u8, rect: &[u8]) -> Vec<u8> {
    [vec![count], rect.repeat(count.into())].concat()
}

pub(super) fn codec_frames() -> Vec<(&'static str, Vec<u8>)> {
    let desktop = encoded_stream(150, 90, 4);
    let edges = encoded_stream(130, 65, 2);
    let single = encoded_stream(64, 64, 0);
    let refs = |v: &[Vec<u8>]| join_updates(v.iter().map(Vec::as_slice));
    // A delta whose rectangle count claims 2^63, after a valid keyframe.
    let huge_count = [
        header(false, 150, 90, 1),
        vec![0xff; 8],
        vec![0x7f],
        vec![0; 8],
    ]
    .concat();
    let whole_64 = rects(1, &[0, 0, 64, 64, 0]);
    let mut seeds = vec![
        ("desktop-keyframe-and-deltas", refs(&desktop)),
        ("edge-tiles", refs(&edges)),
        ("single-tile", refs(&single)),
        (
            "deltas-out-of-order",
            join_updates([&desktop[0][..], &desktop[2], &desktop[1]]),
        ),
        ("delta-without-keyframe", refs(&desktop[1..])),
        (
            "bomb-1gib-in-64x64",
            join_updates([&[
                header(true, 64, 64, 0),
                whole_64.clone(),
                zstd_bomb(8192, false),
            ]
            .concat()[..]]),
        ),
        (
            "bomb-1gib-declared",
            join_updates([&[
                header(true, 64, 64, 0),
                whole_64.clone(),
                zstd_bomb(8192, true),
            ]
            .concat()[..]]),
        ),
        (
            "bomb-16mib-delta",
            join_updates([
                &desktop[0][..],
                &[
                    header(false, 150, 90, 1),
                    whole_64.clone(),
                    zstd_bomb(128, false),
                ]
                .concat(),
            ]),
        ),
        (
            "max-size-tiny-payload",
            join_updates([&[
                header(true, 8192, 8192, 0),
                rects(1, &[0, 0, 0x80, 0x40, 0x80, 0x40, 0]),
                vec![0; 12],
            ]
            .concat()[..]]),
        ),
        (
            "tile-count-2-63",
            join_updates([&desktop[0][..], &huge_count]),
        ),
        ("truncated-header", desktop[0][..10].to_vec()),
        (
            "header-width-overlong",
            join_updates([&[vec![FORMAT_VERSION, 1], vec![0xff; 10], vec![1, 0]].concat()[..]]),
        ),
    ];
    seeds.extend(hostile_rects(&desktop[0]));
    seeds.extend(views());
    seeds.extend(jpegs());
    seeds
}

/// A photo-like 96x64 BGRX picture; `step` moves its grain.
fn photo(step: u32) -> Vec<u8> {
    let mut s = 0x9e37_79b9u32 ^ step;
    (0..96 * 64)
        .flat_map(|i| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let (x, y, n) = (i % 96, i / 96, s & 31);
            [(x * 2 + n) as u8, (y * 3 + n) as u8, (x + y + n) as u8, 0]
        })
        .collect()
}

/// A session with JPEG on: a keyframe, changing photos, then the lossless
/// refinement once they are still.
fn jpeg_stream() -> Vec<Vec<u8>> {
    let mut encoder = Encoder::new();
    encoder.set_jpeg_quality(Some(40));
    let mut now = std::time::Instant::now();
    let mut out = Vec::new();
    for step in [0, 1, 2, 2, 2] {
        let pixels = photo(step);
        let frame = FrameRef::new(&pixels, 96, 64, 96 * 4).expect("valid");
        let whole = [Rect {
            x: 0,
            y: 0,
            width: 96,
            height: 64,
        }];
        if let Some(u) = encoder
            .encode_at(frame, false, &whole, now)
            .expect("encodes")
        {
            out.push(u.bytes);
        }
        now += assent_codec::REFINE_AFTER;
    }
    out
}

/// A keyframe of `w` x 64 whose only rectangle is a `w` x 64 JPEG.
fn jpeg_key(version: u8, w: u8, len: usize, jpeg: &[u8]) -> Vec<u8> {
    let mut out = match version {
        3 => fixed_header(true, u32::from(w), 64, 0),
        _ => header(true, u32::from(w), 64, 0),
    };
    out.extend([1, 0, 0, w, 64, 3]);
    out.extend(varints(&[len as u64]));
    out.extend_from_slice(jpeg);
    out
}

/// A 96x64 JPEG as the agent's encoder makes them.
fn jpeg_of(pixels: &[u8], colour: jpeg_encoder::ColorType) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = jpeg_encoder::Encoder::new(&mut out, 50);
    e.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    e.encode(pixels, 96, 64, colour).expect("a JPEG");
    out
}

fn jpegs() -> Vec<(&'static str, Vec<u8>)> {
    let stream = jpeg_stream();
    let refs = |v: &[Vec<u8>]| join_updates(v.iter().map(Vec::as_slice));
    let jpeg = jpeg_of(&photo(0), jpeg_encoder::ColorType::Bgra);
    // The frame header (SOF0) claims 65535 x 65535.
    let mut huge = jpeg.clone();
    let sof = huge
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .expect("SOF0");
    huge[sof + 5..sof + 9].copy_from_slice(&[0xff; 4]);
    let grey = jpeg_of(&[128; 96 * 64], jpeg_encoder::ColorType::Luma);
    let one = |bytes: Vec<u8>| join_updates([&bytes[..]]);
    vec![
        ("jpeg-stream-refined", refs(&stream)),
        ("jpeg-key", one(jpeg_key(4, 96, jpeg.len(), &jpeg))),
        (
            "jpeg-claims-65535x65535",
            one(jpeg_key(4, 96, huge.len(), &huge)),
        ),
        ("jpeg-other-size", one(jpeg_key(4, 64, jpeg.len(), &jpeg))),
        ("jpeg-grey", one(jpeg_key(4, 96, grey.len(), &grey))),
        ("jpeg-in-format-3", one(jpeg_key(3, 96, jpeg.len(), &jpeg))),
        (
            "jpeg-section-short",
            one(jpeg_key(4, 96, jpeg.len() + 100, &jpeg)),
        ),
        (
            "jpeg-cut-short",
            one(jpeg_key(4, 96, jpeg.len() / 3, &jpeg[..jpeg.len() / 3])),
        ),
    ]
}

/// LEB128, as the codec writes its numbers.
fn varints(values: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in values {
        let mut v = v;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    out
}

/// Format 3's views: a screen of two monitors shown one, then all after a
/// resize, from the encoder; and hostile ones (monitors or the frame
/// outside the screen, a count of 2^32, a view on a delta).
fn views() -> Vec<(&'static str, Vec<u8>)> {
    let monitor = |x| Rect {
        x,
        y: 0,
        width: 64,
        height: 48,
    };
    let mut view = View {
        screen_width: 128,
        screen_height: 48,
        x: 64,
        y: 0,
        monitors: vec![monitor(0), monitor(64)],
    };
    let mut encoder = Encoder::new();
    let mut stream = Vec::new();
    for (w, x, step) in [(64, 64, 0), (64, 64, 1), (128, 0, 2), (128, 0, 3)] {
        view.x = x;
        encoder.set_view(Some(view.clone()));
        let pixels = screen(w, 48, step);
        let frame = FrameRef::new(&pixels, w, 48, w as usize * 4).expect("valid");
        if let Some(update) = encoder.encode(frame, false).expect("encodes") {
            stream.push(update.bytes);
        }
    }
    let keyed = |view: Vec<u8>| {
        let mut h = header(true, 64, 64, 0);
        h[1] |= 2;
        join_updates([&[h, view, rects(1, &[0, 0, 64, 64, 1, 9, 9, 9])].concat()[..]])
    };
    let mut delta = header(false, 64, 48, 1);
    delta[1] |= 2;
    vec![
        (
            "view-monitors-and-resize",
            join_updates(stream.iter().map(Vec::as_slice)),
        ),
        (
            "view-monitor-outside",
            keyed(varints(&[64, 64, 0, 0, 1, 60, 0, 10, 10])),
        ),
        (
            "view-frame-outside",
            keyed(varints(&[8192, 8192, 8190, 0, 0])),
        ),
        ("view-count-2-32", keyed(varints(&[64, 64, 0, 0, 1 << 32]))),
        (
            "view-on-a-delta",
            join_updates([
                &stream[0][..],
                &[delta, varints(&[128, 48, 0, 0, 0])].concat(),
            ]),
        ),
    ]
}

/// Rectangle lists and streams a hostile agent could send after a valid
/// 150x90 keyframe `key`.
fn hostile_rects(key: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let after_key = |list: Vec<u8>, payload: Vec<u8>| {
        join_updates([key, &[header(false, 150, 90, 1), list, payload].concat()])
    };
    // Fill whole screen red; copy the top half down by one row.
    let fill = [0, 0, 150, 90, 1, 0xff, 0, 0];
    let scroll = [0, 1, 150, 45, 2, 0, 0];
    let mut v1 = header(true, 64, 64, 0);
    v1[0] = 1;
    vec![
        (
            "fill-then-copy",
            after_key([&[2][..], &fill, &scroll].concat(), vec![]),
        ),
        ("copy-scroll", after_key(rects(1, &scroll), vec![])),
        (
            "copy-from-outside",
            after_key(rects(1, &[0, 1, 150, 45, 2, 1, 46]), vec![]),
        ),
        (
            "rect-outside",
            after_key(rects(1, &[100, 0, 51, 1, 1, 0, 0, 0]), vec![]),
        ),
        // Five screens of fills: more work than the limit allows.
        ("fills-cover-too-much", after_key(rects(5, &fill), vec![])),
        (
            "unknown-kind",
            after_key(rects(1, &[0, 0, 1, 1, 7]), vec![]),
        ),
        (
            "window-too-large",
            join_updates([&[
                header(true, 64, 64, 0),
                rects(1, &[0, 0, 64, 64, 0]),
                zstd_window(31),
            ]
            .concat()[..]]),
        ),
        (
            "pixels-after-fills-only",
            after_key(rects(1, &fill), vec![0x28, 0xb5, 0x2f, 0xfd]),
        ),
        ("version-1", join_updates([&[v1, vec![0; 12]].concat()[..]])),
    ]
}

/// Recordings: a real one (a keyframe and deltas with their times), one
/// cut short, one whose length field claims 4 GiB, one that is not a
/// recording, and one whose updates are refused by the decoder.
pub(super) fn recordings() -> Vec<(&'static str, Vec<u8>)> {
    use assent_codec::recording::{RecordingWriter, MAGIC};
    let desktop = encoded_stream(150, 90, 4);
    let mut w = RecordingWriter::new(Vec::new()).expect("writing to memory");
    for (i, update) in desktop.iter().enumerate() {
        w.write_update(i as u64 * 40, update)
            .expect("writing to memory");
    }
    let whole = w.into_inner();
    let cut = whole[..whole.len() - 5].to_vec();
    let mut huge = MAGIC.to_vec();
    huge.extend(0u64.to_le_bytes());
    huge.extend(u32::MAX.to_le_bytes());
    huge.extend([0u8; 16]);
    let mut refused = RecordingWriter::new(Vec::new()).expect("writing to memory");
    refused
        .write_update(0, &desktop[1])
        .expect("writing to memory");
    vec![
        ("recording-desktop", whole),
        ("recording-cut-short", cut),
        ("recording-length-4gib", huge),
        ("recording-not-one", b"\x89PNG\r\n\x1a\n".to_vec()),
        ("recording-delta-first", refused.into_inner()),
    ]
}

/// The technician's pick of a monitor (screen format 3).
pub(super) fn monitor_msgs() -> Vec<(&'static str, Vec<u8>)> {
    let enc = |m: SessionMsg| m.encode().expect("small");
    vec![
        (
            "show-monitor",
            enc(SessionMsg::Control(Control::ShowMonitor(Some(1)))),
        ),
        (
            "show-monitor-out-of-range",
            enc(SessionMsg::Control(Control::ShowMonitor(Some(200)))),
        ),
    ]
}
