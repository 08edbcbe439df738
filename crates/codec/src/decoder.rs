//! The viewer side: apply updates to an RGBA screen.

// A decoder of untrusted bytes: no panicking shortcuts (its tests may).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use zstd::stream::raw::{DParameter, Decoder as ZstdDecoder, InBuffer, Operation, OutBuffer};

use crate::wire::{self, Header, Kind, Op, OpReader};
use crate::{copy_rect, lossy, CodecError, Rect, Result, View, MAX_WINDOW_LOG};

/// More dirty rectangles than this are reported as their bounding box.
const MAX_DIRTY: usize = 256;

/// What one update changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedUpdate {
    pub seq: u64,
    pub keyframe: bool,
    /// The screen's size after this update.
    pub width: u32,
    pub height: u32,
    /// Areas to re-upload: the whole screen for a keyframe, otherwise the
    /// update's rectangles (their bounding box when there are very many).
    pub dirty: Vec<Rect>,
    /// How many of its rectangles were JPEG (shown inexactly until the
    /// agent resends them losslessly).
    pub jpeg_rects: usize,
}

/// Holds the viewer's copy of the screen (RGBA, A = 255) and applies
/// updates from an [`Encoder`](crate::Encoder).
pub struct Decoder {
    zstd: ZstdDecoder<'static>,
    /// Packed RGBA rows; empty until the first keyframe.
    pixels: Vec<u8>,
    size: Option<(u32, u32)>,
    /// Where the screen sits on the agent's, from the last keyframe.
    view: Option<View>,
    last_seq: u64,
    /// Whether the zstd stream is where the encoder's was after the last
    /// applied update; false after any error, until a keyframe.
    in_sync: bool,
    // Scratch kept between updates: the payload decompressed, and the
    // JPEG rectangles decoded (both RGB).
    raw: Vec<u8>,
    photos: Vec<u8>,
}

/// An update's rectangles, checked.
struct Plan<'a> {
    ops: &'a [u8],
    /// May JPEG rectangles appear (the update's format has them).
    lossy: bool,
    /// The JPEG rectangles' bytes, one after another.
    jpegs: &'a [u8],
    jpeg_rects: usize,
    payload: &'a [u8],
    /// Decompressed size of the payload: 3 bytes per "pixels" pixel.
    expected: usize,
    dirty: Vec<Rect>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder waiting for its first keyframe.
    pub fn new() -> Self {
        // Creating a context fails only if zstd cannot allocate, and the
        // parameter is within zstd's range.
        let mut zstd = ZstdDecoder::new().expect("zstd decompression context");
        zstd.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))
            .expect("zstd window limit is valid");
        Self {
            zstd,
            pixels: Vec::new(),
            size: None,
            view: None,
            last_seq: 0,
            in_sync: false,
            raw: Vec::new(),
            photos: Vec::new(),
        }
    }

    /// The screen as packed RGBA rows (`width() * 4` bytes each); empty
    /// before the first keyframe.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Where the screen shown sits on the agent's whole screen, and its
    /// monitors: from the last keyframe that carried a view (`None` when
    /// it carried none).
    pub fn view(&self) -> Option<&View> {
        self.view.as_ref()
    }

    /// Screen width in pixels (0 before the first keyframe).
    pub fn width(&self) -> u32 {
        self.size.map_or(0, |s| s.0)
    }

    /// Screen height in pixels (0 before the first keyframe).
    pub fn height(&self) -> u32 {
        self.size.map_or(0, |s| s.1)
    }

    /// Applies one encoded update.
    ///
    /// `bytes` may be anything: it is fully checked and decompressed
    /// (into at most the size its rectangles imply) before the screen is
    /// touched, so on error the screen is as it was. Ask for a keyframe
    /// then: deltas are refused until one arrives.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<DecodedUpdate> {
        let result = self.check_and_decompress(bytes);
        let (header, view, plan) = match result {
            Ok(ok) => ok,
            Err(e) => {
                self.in_sync = false;
                return Err(e);
            }
        };
        let (width, height) = (header.width, header.height);
        self.apply(&header, &plan)?;
        if header.keyframe {
            self.view = view;
        }
        let dirty = if header.keyframe {
            vec![Rect {
                x: 0,
                y: 0,
                width,
                height,
            }]
        } else {
            plan.dirty
        };
        Ok(DecodedUpdate {
            seq: header.seq,
            keyframe: header.keyframe,
            width,
            height,
            dirty,
            jpeg_rects: plan.jpeg_rects,
        })
    }

    /// Everything that can refuse an update, before the screen is touched:
    /// the header against the current screen, the rectangles, and the
    /// payload decompressed into `raw` at exactly their size.
    fn check_and_decompress<'a>(
        &mut self,
        bytes: &'a [u8],
    ) -> Result<(Header, Option<View>, Plan<'a>)> {
        let (header, rest) = Header::read(bytes)?;
        let (view, rest) = match header.view {
            true => {
                View::read(rest, header.width, header.height).map(|(v, rest)| (Some(v), rest))?
            }
            false => (None, rest),
        };
        if !header.keyframe {
            self.check_delta(&header)?;
        }
        let plan = plan(rest, &header)?;
        wire::check_payload_len(plan.payload, plan.expected)?;
        if header.keyframe {
            self.zstd.reinit().map_err(CodecError::Zstd)?;
        }
        self.decompress(plan.payload, plan.expected)?;
        self.decode_photos(&plan, (header.width, header.height))?;
        Ok((header, view, plan))
    }

    /// Decodes the update's JPEG rectangles into `photos`, in order.
    fn decode_photos(&mut self, plan: &Plan<'_>, (width, height): (u32, u32)) -> Result<()> {
        self.photos.clear();
        if plan.jpeg_rects == 0 {
            return Ok(());
        }
        let mut reader = OpReader::new(plan.ops, width, height)?.lossy(plan.lossy);
        let mut jpegs = plan.jpegs;
        while let Some(op) = reader.next_op()? {
            if let Kind::Jpeg { len } = op.kind {
                let (jpeg, rest) = jpegs
                    .split_at_checked(len as usize)
                    .ok_or(CodecError::BadPayload("JPEG section too short"))?;
                lossy::decode(jpeg, op.rect, &mut self.photos)?;
                jpegs = rest;
            }
        }
        Ok(())
    }

    /// A delta must follow the previous update, on a screen of the same
    /// size, with the zstd stream intact.
    fn check_delta(&self, header: &Header) -> Result<()> {
        let (width, height) = self.size.ok_or(CodecError::NoKeyframe)?;
        if (width, height) != (header.width, header.height) {
            return Err(CodecError::ResolutionMismatch {
                width,
                height,
                got_width: header.width,
                got_height: header.height,
            });
        }
        if !self.in_sync {
            return Err(CodecError::NotInSync);
        }
        let expected = self.last_seq.wrapping_add(1);
        if header.seq != expected {
            return Err(CodecError::SequenceGap {
                expected,
                got: header.seq,
            });
        }
        Ok(())
    }

    /// Decompresses the stream's next part into `raw`: exactly `expected`
    /// bytes, the whole payload used, nothing left over in zstd.
    fn decompress(&mut self, payload: &[u8], expected: usize) -> Result<()> {
        self.raw.clear();
        if expected == 0 {
            return match payload.is_empty() {
                true => Ok(()),
                false => Err(CodecError::BadPayload("payload without pixels")),
            };
        }
        // zstd writes into the spare capacity and can never grow the Vec,
        // so output is bounded by `expected` (or by a previous, larger
        // update's size), and nothing is zero-filled in advance.
        self.raw.reserve_exact(expected);
        let mut input = InBuffer::around(payload);
        loop {
            let before = (input.pos(), self.raw.len());
            let mut out = OutBuffer::around_pos(&mut self.raw, before.1);
            self.zstd
                .run(&mut input, &mut out)
                .map_err(CodecError::Zstd)?;
            if (input.pos(), self.raw.len()) == before {
                break;
            }
        }
        if self.raw.len() != expected {
            return Err(CodecError::BadPayload("wrong number of pixels"));
        }
        if input.pos() != payload.len() {
            return Err(CodecError::BadPayload("bytes after the pixels"));
        }
        // Anything zstd still holds would be more pixels than listed.
        let mut probe = [0u8; 1];
        let mut out = OutBuffer::around(&mut probe[..]);
        self.zstd
            .run(&mut InBuffer::around(&[]), &mut out)
            .map_err(CodecError::Zstd)?;
        if out.pos() != 0 {
            return Err(CodecError::BadPayload("more pixels than listed"));
        }
        Ok(())
    }

    /// Applies the checked rectangles, with the pixels in `raw`.
    fn apply(&mut self, header: &Header, plan: &Plan<'_>) -> Result<()> {
        let size = (header.width, header.height);
        if self.size != Some(size) {
            // Only a keyframe gets here; opaque black until it is drawn.
            let pixels = size.0 as usize * size.1 as usize;
            self.pixels = [0, 0, 0, 255].repeat(pixels);
            self.size = Some(size);
        }
        self.last_seq = header.seq;
        self.in_sync = true;
        let row_len = size.0 as usize * 4;
        let (mut src, mut photos) = (&self.raw[..], &self.photos[..]);
        let pixels = &mut self.pixels;
        let mut reader = OpReader::new(plan.ops, size.0, size.1)?.lossy(plan.lossy);
        // Checked in `plan`, so none of this fails.
        while let Some(op) = reader.next_op()? {
            match op.kind {
                Kind::Pixels => src = put_pixels(pixels, row_len, op.rect, src, true)?,
                Kind::Jpeg { .. } => photos = put_pixels(pixels, row_len, op.rect, photos, false)?,
                Kind::Fill(rgb) => fill(pixels, row_len, op.rect, rgb)?,
                Kind::Copy { x, y } => copy_rect(pixels, row_len, op.rect, (x, y))?,
            }
        }
        Ok(())
    }
}

/// Puts one rectangle's RGB rows from `src` onto the screen, undoing the
/// "sub" filter if `filtered`; returns the rest of `src`.
fn put_pixels<'s>(
    pixels: &mut [u8],
    row_len: usize,
    r: Rect,
    mut src: &'s [u8],
    filtered: bool,
) -> Result<&'s [u8]> {
    let (x, w) = (r.x as usize * 4, r.width as usize);
    for y in r.y as usize..(r.y + r.height) as usize {
        let (rgb, after) = src
            .split_at_checked(w * 3)
            .ok_or(CodecError::BadPayload("wrong number of pixels"))?;
        let row = pixels
            .get_mut(y * row_len + x..y * row_len + x + w * 4)
            .ok_or(CodecError::BadRects("rectangle outside the screen"))?;
        match filtered {
            true => unfilter_rgb_to_rgba(rgb, row),
            false => rgb_to_rgba(rgb, row),
        }
        src = after;
    }
    Ok(src)
}

/// Checks every rectangle of an update on a `width` x `height` screen:
/// inside it, "pixels" and JPEG covering at most its area, all of them at
/// most four times that (which bounds the work of fills and copies).
/// Returns the JPEG section and the payload after them, the payload's
/// decompressed size, and the dirty rectangles.
fn plan<'a>(bytes: &'a [u8], header: &Header) -> Result<Plan<'a>> {
    let (width, height) = (header.width, header.height);
    let screen = u64::from(width) * u64::from(height);
    let mut reader = OpReader::new(bytes, width, height)?.lossy(header.lossy);
    let (mut pixels, mut photos, mut total) = (0u64, 0u64, 0u64);
    let (mut jpeg_len, mut jpeg_rects) = (0u64, 0usize);
    let mut dirty: Vec<Rect> = Vec::new();
    let mut bounds: Option<Rect> = None;
    let mut count = 0usize;
    while let Some(Op { rect, kind }) = reader.next_op()? {
        count += 1;
        let area = u64::from(rect.width) * u64::from(rect.height);
        total += area;
        match kind {
            Kind::Pixels => pixels += area,
            Kind::Jpeg { len } => {
                photos += area;
                jpeg_len += u64::from(len);
                jpeg_rects += 1;
            }
            Kind::Fill(_) | Kind::Copy { .. } => {}
        }
        if pixels + photos > screen || total > 4 * screen {
            return Err(CodecError::BadRects("rectangles cover too much"));
        }
        bounds = Some(bounds.map_or(rect, |b| union(b, rect)));
        if dirty.len() < MAX_DIRTY {
            dirty.push(rect);
        }
    }
    if count > MAX_DIRTY {
        // Too many to upload one by one: one box holds them all.
        dirty = bounds.into_iter().collect();
    }
    let ops_len = bytes.len() - reader.rest().len();
    let (jpegs, payload) = usize::try_from(jpeg_len)
        .ok()
        .and_then(|len| reader.rest().split_at_checked(len))
        .ok_or(CodecError::BadPayload("JPEG section too short"))?;
    Ok(Plan {
        ops: bytes.get(..ops_len).unwrap_or_default(),
        lossy: header.lossy,
        jpegs,
        jpeg_rects,
        payload,
        // At most 8192 * 8192 * 3.
        expected: (pixels * 3) as usize,
        dirty,
    })
}

fn union(a: Rect, b: Rect) -> Rect {
    let (x0, y0) = (a.x.min(b.x), a.y.min(b.y));
    let x1 = (a.x + a.width).max(b.x + b.width);
    let y1 = (a.y + a.height).max(b.y + b.height);
    Rect {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    }
}

/// Paints a checked rectangle one colour.
fn fill(pixels: &mut [u8], row_len: usize, r: Rect, [red, green, blue]: [u8; 3]) -> Result<()> {
    let (x, w) = (r.x as usize * 4, r.width as usize * 4);
    for y in r.y as usize..(r.y + r.height) as usize {
        let row = pixels
            .get_mut(y * row_len + x..y * row_len + x + w)
            .ok_or(CodecError::BadRects("rectangle outside the screen"))?;
        let (row, _) = row.as_chunks_mut::<4>();
        row.fill([red, green, blue, 255]);
    }
    Ok(())
}

/// Writes one row of RGB as RGBA.
fn rgb_to_rgba(rgb: &[u8], rgba: &mut [u8]) {
    let (rgb, _) = rgb.as_chunks::<3>();
    let (rgba, _) = rgba.as_chunks_mut::<4>();
    for (&[r, g, b], dst) in rgb.iter().zip(rgba) {
        *dst = [r, g, b, 255];
    }
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
