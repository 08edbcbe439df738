//! egui's tessellated triangles drawn into a 0RGB pixel buffer, with the
//! arithmetic egui_glow's shader and blending use (premultiplied colours in
//! gamma space, vertex colour × texel, then `src + dst × (1 − src_a)`), so
//! the window looks as it did when drawn with OpenGL.

use std::collections::HashMap;

use egui::epaint::{ClippedPrimitive, Primitive, Vertex};
use egui::{Color32, TextureFilter, TextureId, TexturesDelta};

/// An image egui uploaded (the font atlas, mostly), premultiplied RGBA.
struct Texture {
    width: usize,
    height: usize,
    pixels: Vec<Color32>,
    linear: bool,
}

/// Where to draw: `width × height` pixels, row by row, `0x00RRGGBB`.
pub struct Target<'a> {
    pub pixels: &'a mut [u32],
    pub width: usize,
    pub height: usize,
}

/// The textures egui keeps on the "GPU", here in memory.
#[derive(Default)]
pub struct Painter {
    textures: HashMap<TextureId, Texture>,
}

impl Painter {
    /// Applies `delta`'s uploads, fills `target` with `clear`, draws
    /// `primitives`, then frees what `delta` frees (after drawing, as egui
    /// asks).
    pub fn paint(
        &mut self,
        target: &mut Target<'_>,
        clear: Color32,
        primitives: &[ClippedPrimitive],
        delta: TexturesDelta,
        pixels_per_point: f32,
    ) {
        self.upload(&delta);
        target.pixels.fill(pack(clear));
        for p in primitives {
            let Primitive::Mesh(mesh) = &p.primitive else {
                continue; // paint callbacks are GPU code: none in the agent's window
            };
            let Some(texture) = self.textures.get(&mesh.texture_id) else {
                continue;
            };
            let clip = Clip::new(p.clip_rect, pixels_per_point, target);
            if clip.is_empty() {
                continue;
            }
            for t in mesh.indices.chunks_exact(3) {
                let v = |i: u32| mesh.vertices.get(i as usize);
                if let (Some(a), Some(b), Some(c)) = (v(t[0]), v(t[1]), v(t[2])) {
                    triangle(target, &clip, [a, b, c], texture, pixels_per_point);
                }
            }
        }
        self.free(delta);
    }

    /// Keeps `delta`'s changes without drawing (nothing to draw into, e.g.
    /// while minimised): the font atlas must stay whole for later frames.
    pub fn skip(&mut self, delta: TexturesDelta) {
        self.upload(&delta);
        self.free(delta);
    }

    fn upload(&mut self, delta: &TexturesDelta) {
        for (id, images) in &delta.set {
            for image in images {
                self.set_texture(*id, image);
            }
        }
    }

    fn free(&mut self, mut delta: TexturesDelta) {
        for id in &delta.free {
            self.textures.remove(id);
        }
        // Handled: egui asserts (in debug builds) that no delta is dropped
        // unapplied.
        delta.clear();
    }

    fn set_texture(&mut self, id: TextureId, delta: &egui::epaint::ImageDelta) {
        let egui::ImageData::Color(image) = &delta.image;
        let [w, h] = image.size;
        let linear = delta.options.magnification == TextureFilter::Linear;
        match delta.pos {
            None => {
                self.textures.insert(
                    id,
                    Texture {
                        width: w,
                        height: h,
                        pixels: image.pixels.clone(),
                        linear,
                    },
                );
            }
            Some([x0, y0]) => {
                let Some(t) = self.textures.get_mut(&id) else {
                    return;
                };
                for y in 0..h.min(t.height.saturating_sub(y0)) {
                    let n = w.min(t.width.saturating_sub(x0));
                    let to = (y0 + y) * t.width + x0;
                    t.pixels[to..to + n].copy_from_slice(&image.pixels[y * w..y * w + n]);
                }
            }
        }
    }
}

/// The clip rectangle in whole pixels, inside the target (egui_glow's
/// rounding).
struct Clip {
    x0: i32,
    y0: i32,
    x1: i32,
    y1: i32,
}

impl Clip {
    fn new(rect: egui::Rect, ppp: f32, target: &Target<'_>) -> Clip {
        let (w, h) = (target.width as f32, target.height as f32);
        Clip {
            x0: (rect.min.x * ppp).round().clamp(0.0, w) as i32,
            y0: (rect.min.y * ppp).round().clamp(0.0, h) as i32,
            x1: (rect.max.x * ppp).round().clamp(0.0, w) as i32,
            y1: (rect.max.y * ppp).round().clamp(0.0, h) as i32,
        }
    }

    fn is_empty(&self) -> bool {
        self.x0 >= self.x1 || self.y0 >= self.y1
    }
}

fn pack(c: Color32) -> u32 {
    (u32::from(c.r()) << 16) | (u32::from(c.g()) << 8) | u32::from(c.b())
}

/// Twice the signed area of (a, b, p): which side of a→b the point is on.
fn edge(a: [f32; 2], b: [f32; 2], p: [f32; 2]) -> f32 {
    (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
}

/// Whether a pixel centre exactly on the edge a→b belongs to this triangle.
/// Two triangles sharing an edge walk it in opposite directions, so exactly
/// one owns it: egui's anti-aliasing feather meets its fill exactly on pixel
/// centres, and a centre drawn twice would show as a darker seam.
fn owns(a: [f32; 2], b: [f32; 2]) -> bool {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    dy > 0.0 || (dy == 0.0 && dx < 0.0)
}

fn rgba(c: Color32) -> [f32; 4] {
    [c.r(), c.g(), c.b(), c.a()].map(f32::from)
}

fn triangle(target: &mut Target<'_>, clip: &Clip, v: [&Vertex; 3], tex: &Texture, ppp: f32) {
    let mut p = v.map(|v| [v.pos.x * ppp, v.pos.y * ppp]);
    let mut v = v;
    let mut area = edge(p[0], p[1], p[2]);
    if area.abs() < 1e-6 {
        return;
    }
    if area < 0.0 {
        // egui mixes windings; make every triangle positive.
        p.swap(1, 2);
        v.swap(1, 2);
        area = -area;
    }
    let min = |i: usize| p[0][i].min(p[1][i]).min(p[2][i]);
    let max = |i: usize| p[0][i].max(p[1][i]).max(p[2][i]);
    let x0 = (min(0).floor() as i32).max(clip.x0);
    let y0 = (min(1).floor() as i32).max(clip.y0);
    let x1 = (max(0).ceil() as i32).min(clip.x1);
    let y1 = (max(1).ceil() as i32).min(clip.y1);
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    let shade = Shade::new(v, tex);
    let flat = shade.flat();
    let own = [owns(p[1], p[2]), owns(p[2], p[0]), owns(p[0], p[1])];
    let edges = [(p[1], p[2]), (p[2], p[0]), (p[0], p[1])];
    for y in y0..y1 {
        let cy = y as f32 + 0.5;
        let Some((xs, xe)) = span(&edges, cy, x0, x1) else {
            continue;
        };
        let row = y as usize * target.width;
        for x in xs..xe {
            let c = [x as f32 + 0.5, cy];
            let w = [
                edge(p[1], p[2], c),
                edge(p[2], p[0], c),
                edge(p[0], p[1], c),
            ];
            let inside = (0..3).all(|i| w[i] > 0.0 || (w[i] == 0.0 && own[i]));
            if !inside {
                continue;
            }
            let dst = &mut target.pixels[row + x as usize];
            *dst = match flat {
                Some(src) => blend_u8(*dst, src),
                None => blend(*dst, shade.at(w.map(|w| w / area))),
            };
        }
    }
}

/// The pixels of row `cy` (its centres' y) that may be inside the
/// triangle, from where each edge crosses the row, a pixel wider each side
/// than the crossing (the exact test, ties included, is per pixel).
fn span(edges: &[([f32; 2], [f32; 2]); 3], cy: f32, x0: i32, x1: i32) -> Option<(i32, i32)> {
    let (mut lo, mut hi) = (x0 as f32, x1 as f32);
    for (a, b) in edges {
        // edge(a, b, (cx, cy)) = slope × cx + at0, with cx the pixel centre.
        let slope = -(b[1] - a[1]);
        let at0 = (b[0] - a[0]) * (cy - a[1]) + (b[1] - a[1]) * a[0];
        if slope > 0.0 {
            lo = lo.max(-at0 / slope - 1.5);
        } else if slope < 0.0 {
            hi = hi.min(-at0 / slope + 1.5);
        } else if at0 < 0.0 {
            return None;
        }
    }
    let (lo, hi) = ((lo.floor() as i32).max(x0), (hi.ceil() as i32).min(x1));
    (lo < hi).then_some((lo, hi))
}

/// A triangle's colour at a point: its vertices' colours and texels,
/// interpolated (or constant, the common case, computed once).
struct Shade<'a> {
    colour: [[f32; 4]; 3],
    uv: [[f32; 2]; 3],
    flat_colour: Option<[f32; 4]>,
    flat_texel: Option<[f32; 4]>,
    tex: &'a Texture,
}

impl<'a> Shade<'a> {
    fn new(v: [&Vertex; 3], tex: &'a Texture) -> Shade<'a> {
        let uv = v.map(|v| [v.uv.x, v.uv.y]);
        let flat_colour =
            (v[0].color == v[1].color && v[1].color == v[2].color).then(|| rgba(v[0].color));
        let flat_texel = (uv[0] == uv[1] && uv[1] == uv[2]).then(|| sample(tex, uv[0]));
        Shade {
            colour: v.map(|v| rgba(v.color)),
            uv,
            flat_colour,
            flat_texel,
            tex,
        }
    }

    /// The colour everywhere in the triangle when it does not vary (most
    /// of a window: panels, buttons, lines), rounded as the GPU stores it.
    fn flat(&self) -> Option<[u8; 4]> {
        let (c, t) = (self.flat_colour?, self.flat_texel?);
        Some(std::array::from_fn(|i| {
            (c[i] * t[i] / 255.0).round().clamp(0.0, 255.0) as u8
        }))
    }

    fn at(&self, b: [f32; 3]) -> [f32; 4] {
        let mix4 = |a: &[[f32; 4]; 3]| {
            std::array::from_fn::<f32, 4, _>(|i| a[0][i] * b[0] + a[1][i] * b[1] + a[2][i] * b[2])
        };
        let colour = self.flat_colour.unwrap_or_else(|| mix4(&self.colour));
        let texel = self.flat_texel.unwrap_or_else(|| {
            let uv = std::array::from_fn::<f32, 2, _>(|i| {
                self.uv[0][i] * b[0] + self.uv[1][i] * b[1] + self.uv[2][i] * b[2]
            });
            sample(self.tex, uv)
        });
        std::array::from_fn(|i| colour[i] * texel[i] / 255.0)
    }
}

/// The texel at `uv` (0..1), clamped at the edges, bilinear or nearest as
/// the texture asked.
fn sample(t: &Texture, uv: [f32; 2]) -> [f32; 4] {
    if t.width == 0 || t.height == 0 {
        return [0.0; 4];
    }
    let at = |x: isize, y: isize| {
        let x = x.clamp(0, t.width as isize - 1) as usize;
        let y = y.clamp(0, t.height as isize - 1) as usize;
        rgba(t.pixels[y * t.width + x])
    };
    let (u, v) = (uv[0] * t.width as f32, uv[1] * t.height as f32);
    if !t.linear {
        return at(u.floor() as isize, v.floor() as isize);
    }
    let (u, v) = (u - 0.5, v - 0.5);
    let (x, y) = (u.floor(), v.floor());
    let (fx, fy) = (u - x, v - y);
    let (x, y) = (x as isize, y as isize);
    let (a, b, c, d) = (at(x, y), at(x + 1, y), at(x, y + 1), at(x + 1, y + 1));
    std::array::from_fn(|i| {
        let top = a[i] + (b[i] - a[i]) * fx;
        let bottom = c[i] + (d[i] - c[i]) * fx;
        top + (bottom - top) * fy
    })
}

/// [`blend`] in integers, for a colour known once per triangle.
fn blend_u8(dst: u32, src: [u8; 4]) -> u32 {
    let [r, g, b, a] = src.map(u32::from);
    if a == 255 {
        return (r << 16) | (g << 8) | b;
    }
    let keep = 255 - a;
    let channel = |shift: u32, s: u32| {
        let d = (dst >> shift) & 0xff;
        ((s + (d * keep + 127) / 255).min(255)) << shift
    };
    channel(16, r) | channel(8, g) | channel(0, b)
}

/// `src` (premultiplied, 0..255) over the opaque pixel `dst`.
fn blend(dst: u32, src: [f32; 4]) -> u32 {
    let keep = 1.0 - src[3] / 255.0;
    let channel = |shift: u32, s: f32| {
        let d = ((dst >> shift) & 0xff) as f32;
        ((s + d * keep).round().clamp(0.0, 255.0) as u32) << shift
    };
    channel(16, src[0]) | channel(8, src[1]) | channel(0, src[2])
}
