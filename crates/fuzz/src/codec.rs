//! Target for `assent-codec`: the viewer's decoder fed a hostile stream of
//! screen updates (as a malicious agent would send them).

use assent_codec::{CodecError, DecodedUpdate, Decoder, Encoder, FrameRef, View, MAX_DIMENSION};

use crate::alloc::Meter;
use crate::{outcome, Outcome};

/// Screens up to this many pixels get the expensive checks (unchanged
/// pixels after an error, lossless re-encoding).
const SMALL_SCREEN: usize = 256 * 256;

/// Splits the input into updates: each is a 3-byte little-endian length and
/// that many bytes (the last one takes whatever is left).
pub fn split_updates(mut data: &[u8]) -> Vec<&[u8]> {
    let mut updates = Vec::new();
    while !data.is_empty() {
        let Some((len, rest)) = data.split_first_chunk::<3>() else {
            updates.push(data);
            break;
        };
        let len = usize::from(len[0]) | usize::from(len[1]) << 8 | usize::from(len[2]) << 16;
        let (update, after) = rest.split_at(len.min(rest.len()));
        updates.push(update);
        data = after;
    }
    updates
}

/// The inverse of [`split_updates`], for building seeds.
pub fn join_updates<'a>(updates: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for u in updates {
        let len = u.len() as u32;
        out.extend_from_slice(&len.to_le_bytes()[..3]);
        out.extend_from_slice(u);
    }
    out
}

/// Width and height the header claims, if they are within the codec's
/// limits: format 4's varints, or formats 2 and 3's 4-byte fields.
fn declared_size(update: &[u8]) -> Option<(usize, usize)> {
    let (w, h) = match *update.first()? {
        4 => {
            let (w, rest) = varint(update.get(2..)?)?;
            (w, varint(rest)?.0)
        }
        _ => (
            u64::from(u32::from_le_bytes(update.get(2..6)?.try_into().ok()?)),
            u64::from(u32::from_le_bytes(update.get(6..10)?.try_into().ok()?)),
        ),
    };
    let fits = |v: u64| (1..=u64::from(MAX_DIMENSION)).contains(&v);
    (fits(w) && fits(h)).then_some((w as usize, h as usize))
}

/// LEB128 as the codec reads it (at most 10 bytes), for the oracle.
fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// What decoding one update may allocate: the RGBA screen (4 bytes a pixel)
/// and the decompressed RGB rectangles (3) for the size the header claims, and
/// no more, however far the payload would decompress.
fn budget(update: &[u8]) -> usize {
    let screen = declared_size(update).map_or(0, |(w, h)| 8 * w * h);
    screen + 2 * update.len() + 256 * 1024
}

pub fn codec_frame(data: &[u8]) -> Outcome {
    let mut decoder = Decoder::new();
    let mut label = String::new();
    for update in split_updates(data) {
        let before = Snapshot::of(&decoder);
        let meter = Meter::start();
        let result = decoder.decode(update);
        meter.check("codec_frame", budget(update));
        match &result {
            Ok(done) => check_applied(&decoder, done, update),
            Err(_) => assert!(
                before.matches(&decoder),
                "codec_frame: a refused update changed the screen"
            ),
        }
        label.push_str(&match result {
            Ok(u) if u.keyframe => "key ".to_string(),
            Ok(_) => "delta ".to_string(),
            Err(e) => error_kind(&e),
        });
    }
    outcome(&label)
}

/// A recording file (the viewer's, replayed and exported by
/// `assent-viewer`): the container read as the reader does, each update
/// through the decoder under the same memory budget as `codec_frame`.
pub fn recording(data: &[u8]) -> Outcome {
    use assent_codec::recording::RecordingReader;
    let mut reader = match RecordingReader::new(data) {
        Ok(r) => r,
        Err(e) => return outcome(&format!("{e}")),
    };
    let mut decoder = Decoder::new();
    let mut label = String::new();
    loop {
        let meter = Meter::start();
        let next = reader.next_update();
        // What the reader holds grows with what is there, never with what
        // a length field claims.
        meter.check("recording (container)", 4 * data.len() + 64 * 1024);
        let update = match next {
            Ok(Some((_, update))) => update,
            Ok(None) => break,
            Err(e) => {
                label.push_str(&format!("{e:?}").chars().take(12).collect::<String>());
                break;
            }
        };
        let meter = Meter::start();
        let result = decoder.decode(&update);
        meter.check("recording", budget(&update));
        label.push_str(&match result {
            Ok(u) if u.keyframe => "key ".to_string(),
            Ok(_) => "delta ".to_string(),
            Err(e) => error_kind(&e),
        });
    }
    outcome(&label)
}

fn error_kind(e: &CodecError) -> String {
    // Variant name only: zstd's messages vary with the input.
    let debug = format!("{e:?}");
    debug
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or("")
        .to_string()
        + " "
}

/// The decoder's visible state, to check an error leaves it alone.
struct Snapshot {
    width: u32,
    height: u32,
    view: Option<View>,
    pixels: Option<Vec<u8>>,
}

impl Snapshot {
    fn of(d: &Decoder) -> Snapshot {
        let small = (d.width() as usize) * (d.height() as usize) <= SMALL_SCREEN;
        Snapshot {
            width: d.width(),
            height: d.height(),
            view: d.view().cloned(),
            pixels: small.then(|| d.pixels().to_vec()),
        }
    }

    fn matches(&self, d: &Decoder) -> bool {
        self.width == d.width()
            && self.height == d.height()
            && self.view.as_ref() == d.view()
            && self.pixels.as_deref().is_none_or(|p| p == d.pixels())
    }
}

fn check_applied(d: &Decoder, u: &DecodedUpdate, update: &[u8]) {
    assert_eq!((u.width, u.height), (d.width(), d.height()));
    assert_eq!(
        Some((u.width as usize, u.height as usize)),
        declared_size(update)
    );
    let (w, h) = (u.width as usize, u.height as usize);
    assert_eq!(d.pixels().len(), w * h * 4);
    if let Some(v) = d.view() {
        assert!(
            v.check(u.width, u.height).is_ok(),
            "codec_frame: bad view kept"
        );
        assert!(v.monitors.len() <= assent_codec::MAX_MONITORS);
    }
    assert!(
        !u.dirty.is_empty(),
        "codec_frame: an update changed nothing"
    );
    for r in &u.dirty {
        assert!(r.width > 0 && r.height > 0);
        assert!(r.x + r.width <= u.width && r.y + r.height <= u.height);
    }
    if u.keyframe {
        assert_eq!(u.dirty.len(), 1);
        assert_eq!((u.dirty[0].width, u.dirty[0].height), (u.width, u.height));
    }
    if w * h > SMALL_SCREEN {
        return;
    }
    assert!(d.pixels().chunks_exact(4).all(|p| p[3] == 255));
    // Lossless: what the viewer shows, encoded again as the agent would,
    // decodes to exactly the same pixels.
    let bgrx: Vec<u8> = d
        .pixels()
        .chunks_exact(4)
        .flat_map(|p| [p[2], p[1], p[0], 0])
        .collect();
    let frame = FrameRef::new(&bgrx, u.width, u.height, w * 4).expect("valid frame");
    let encoded = Encoder::new()
        .encode(frame, true)
        .expect("encodes")
        .expect("a keyframe");
    let mut fresh = Decoder::new();
    fresh.decode(&encoded.bytes).expect("own keyframe decodes");
    assert!(fresh.pixels() == d.pixels(), "codec_frame: not lossless");
}
