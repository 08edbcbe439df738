//! The CPU rasteriser against what egui_glow would draw: coverage by pixel
//! centre, each pixel once where triangles meet, premultiplied blending,
//! textures (whole and patched) and clip rectangles.

use assent_softwindow::egui::epaint::{ClippedPrimitive, ImageDelta, Mesh, Primitive};
use assent_softwindow::egui::{
    pos2, Color32, ColorImage, Rect, TextureId, TextureOptions, TexturesDelta,
};
use assent_softwindow::raster::{Painter, Target};

const W: usize = 16;
const H: usize = 12;
const FONT: TextureId = TextureId::Managed(0);

fn upload(id: TextureId, image: ColorImage, pos: Option<[usize; 2]>) -> TexturesDelta {
    let image = std::sync::Arc::new(image);
    let delta = match pos {
        None => ImageDelta::full(image, TextureOptions::NEAREST),
        Some(p) => ImageDelta::partial(p, image, TextureOptions::NEAREST),
    };
    let mut d = TexturesDelta::default();
    d.push(id, delta);
    d
}

fn white() -> TexturesDelta {
    upload(FONT, ColorImage::new([1, 1], vec![Color32::WHITE]), None)
}

fn draw(painter: &mut Painter, delta: TexturesDelta, prims: &[ClippedPrimitive]) -> Vec<u32> {
    let mut pixels = vec![0xdead; W * H];
    let mut target = Target {
        pixels: &mut pixels,
        width: W,
        height: H,
    };
    painter.paint(&mut target, Color32::BLACK, prims, delta, 1.0);
    pixels
}

fn mesh(mesh: Mesh, clip: Rect) -> ClippedPrimitive {
    ClippedPrimitive {
        clip_rect: clip,
        primitive: Primitive::Mesh(mesh),
    }
}

fn everywhere() -> Rect {
    Rect::from_min_max(pos2(-100.0, -100.0), pos2(100.0, 100.0))
}

#[test]
fn a_translucent_rectangle_covers_its_pixels_once_each() {
    let mut m = Mesh::default();
    let half = Color32::from_rgba_premultiplied(128, 128, 128, 128);
    m.add_colored_rect(Rect::from_min_max(pos2(2.0, 3.0), pos2(10.0, 9.0)), half);
    // The diagonal of its two triangles crosses pixel centres: drawn twice
    // they would be 192, not 128.
    let px = draw(&mut Painter::default(), white(), &[mesh(m, everywhere())]);
    for y in 0..H {
        for x in 0..W {
            let inside = (2..10).contains(&x) && (3..9).contains(&y);
            let want = if inside { 0x808080 } else { 0 };
            assert_eq!(px[y * W + x], want, "pixel {x},{y}");
        }
    }
}

#[test]
fn the_clip_rectangle_bounds_what_is_drawn() {
    let mut m = Mesh::default();
    m.add_colored_rect(everywhere(), Color32::RED);
    let clip = Rect::from_min_max(pos2(4.0, 4.0), pos2(6.0, 5.0));
    let px = draw(&mut Painter::default(), white(), &[mesh(m, clip)]);
    let red: Vec<usize> = (0..W * H).filter(|&i| px[i] == 0xff0000).collect();
    assert_eq!(red, vec![4 * W + 4, 4 * W + 5]);
}

#[test]
fn textures_are_sampled_and_patched() {
    let id = TextureId::Managed(7);
    let colours = vec![Color32::RED, Color32::GREEN, Color32::BLUE, Color32::WHITE];
    let mut painter = Painter::default();
    let quad = || {
        let mut m = Mesh::with_texture(id);
        let uv = Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0));
        m.add_rect_with_uv(
            Rect::from_min_max(pos2(0.0, 0.0), pos2(4.0, 4.0)),
            uv,
            Color32::WHITE,
        );
        mesh(m, everywhere())
    };
    let px = draw(
        &mut painter,
        upload(id, ColorImage::new([2, 2], colours), None),
        &[quad()],
    );
    assert_eq!(
        [px[0], px[3], px[3 * W], px[3 * W + 3]],
        [0xff0000, 0x00ff00, 0x0000ff, 0xffffff]
    );
    let patch = upload(
        id,
        ColorImage::new([1, 1], vec![Color32::BLACK]),
        Some([1, 1]),
    );
    let px = draw(&mut painter, patch, &[quad()]);
    assert_eq!([px[0], px[3 * W + 3]], [0xff0000, 0x000000]);
}

#[test]
fn a_freed_texture_is_not_drawn_again() {
    let mut painter = Painter::default();
    let mut delta = white();
    delta.free.insert(FONT);
    let mut m = Mesh::default();
    m.add_colored_rect(everywhere(), Color32::RED);
    let prims = [mesh(m, everywhere())];
    assert_eq!(draw(&mut painter, delta, &prims)[0], 0xff0000);
    assert_eq!(draw(&mut painter, TexturesDelta::default(), &prims)[0], 0);
}
