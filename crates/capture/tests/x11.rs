//! `X11Source` against a real Xvfb: pixels match what was painted, match
//! ImageMagick's screenshot, and always show the screen as it is NOW.

#![forbid(unsafe_code)]

use std::time::Duration;

use assent_capture::{CaptureError, CapturedFrame, ScreenSource, X11Source};
use assent_xvfb::Xvfb;
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{
    ChangeWindowAttributesAux, ConnectionExt as _, CreateWindowAux, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

/// A child window painted in its own colour, to catch position mistakes.
const WIN: (i16, i16, u16, u16) = (200, 100, 160, 120);

/// An X client that paints the root window and one child window.
struct Painter {
    conn: RustConnection,
    root: Window,
    window: Window,
}

impl Painter {
    fn new(display: &str) -> Painter {
        let (conn, screen) = x11rb::connect(Some(display)).expect("connect to Xvfb");
        let root = conn.setup().roots[screen].root;
        let window = conn.generate_id().unwrap();
        let (x, y, w, h) = WIN;
        conn.create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            window,
            root,
            x,
            y,
            w,
            h,
            0,
            WindowClass::INPUT_OUTPUT,
            x11rb::COPY_FROM_PARENT,
            &CreateWindowAux::new().background_pixel(0),
        )
        .unwrap();
        conn.map_window(window).unwrap();
        conn.sync().unwrap();
        Painter { conn, root, window }
    }

    /// Sets both backgrounds (24-bit TrueColor: 0xRRGGBB) and repaints;
    /// returns once the server has done it.
    fn paint(&self, root_rgb: u32, window_rgb: u32) {
        for (w, rgb) in [(self.root, root_rgb), (self.window, window_rgb)] {
            self.conn
                .change_window_attributes(
                    w,
                    &ChangeWindowAttributesAux::new().background_pixel(rgb),
                )
                .unwrap();
            self.conn.clear_area(false, w, 0, 0, 0, 0).unwrap();
        }
        self.conn.sync().unwrap();
    }
}

fn bgr(rgb: u32) -> [u8; 3] {
    [rgb as u8, (rgb >> 8) as u8, (rgb >> 16) as u8]
}

fn assert_colours(frame: &CapturedFrame<'_>, root_rgb: u32, window_rgb: u32, when: &str) {
    let (x, y, w, h) = WIN;
    let (x, y, w, h) = (x as u32, y as u32, u32::from(w), u32::from(h));
    let inside = [(x, y), (x + w - 1, y + h - 1), (x + w / 2, y + h / 2)];
    let outside = [
        (0, 0),
        (639, 0),
        (0, 479),
        (639, 479),
        (x - 1, y),
        (x + w, y + h - 1),
        (x, y - 1),
        (x, y + h),
    ];
    for (points, rgb) in [(&inside[..], window_rgb), (&outside[..], root_rgb)] {
        for &(px, py) in points {
            let pixel = frame.pixel(px, py).expect("point inside the frame");
            assert_eq!(
                pixel[..3],
                bgr(rgb),
                "{when}: pixel ({px}, {py}) is {pixel:02x?}, expected #{rgb:06x}"
            );
        }
    }
}

/// The root window as ImageMagick sees it, as RGB bytes.
fn screenshot(xvfb: &Xvfb) -> Vec<u8> {
    let out = xvfb
        .command("import")
        .args(["-window", "root", "-depth", "8", "rgb:-"])
        .output()
        .expect("run `import` (ImageMagick, scripts/setup installs it)");
    assert!(out.status.success(), "import failed: {out:?}");
    out.stdout
}

#[test]
fn capture_shows_the_current_screen() {
    let xvfb = Xvfb::start();
    let painter = Painter::new(xvfb.display());
    painter.paint(0x3366cc, 0xff8800);

    let mut source = X11Source::open(xvfb.display()).expect("open X11Source");
    // The pointer position comes separately (captured images have no cursor).
    let status = xvfb
        .command("xdotool")
        .args(["mousemove", "123", "45"])
        .status()
        .expect("xdotool");
    assert!(status.success());
    assert_eq!(source.cursor(), Some((123, 45)));
    assert_eq!(source.size(), (640, 480));
    let frame = source.capture().unwrap();
    assert_eq!((frame.width, frame.height), (640, 480));
    assert!(frame.stride >= 640 * 4);
    assert_eq!(frame.data.len(), frame.stride * 480);
    assert_colours(&frame, 0x3366cc, 0xff8800, "first capture");

    // Every pixel agrees with an independent screenshot.
    let shot = screenshot(&xvfb);
    assert_eq!(shot.len(), 640 * 480 * 3);
    for y in 0..480 {
        for x in 0..640 {
            let p = frame.pixel(x, y).unwrap();
            let i = (y as usize * 640 + x as usize) * 3;
            assert_eq!(
                [p[2], p[1], p[0]],
                shot[i..i + 3],
                "pixel ({x}, {y}) differs from `import -window root`"
            );
        }
    }

    // scrap returns the image its previous call requested: each capture
    // right after a repaint must already show the new colours, whether
    // the source was busy or idle before.
    let steps = [
        (0x10e060, 0x202020, Duration::ZERO),
        (0xc02040, 0x00ffff, Duration::ZERO),
        (0x3366cc, 0xff8800, Duration::from_millis(300)),
        (0xffffff, 0x000000, Duration::from_millis(50)),
    ];
    for (i, (root_rgb, window_rgb, idle)) in steps.into_iter().enumerate() {
        std::thread::sleep(idle);
        painter.paint(root_rgb, window_rgb);
        let frame = source.capture().unwrap();
        assert_colours(&frame, root_rgb, window_rgb, &format!("after repaint {i}"));
    }

    // A server that goes away is reported, not papered over with the last
    // image.
    drop(painter);
    drop(xvfb);
    match source.capture() {
        Err(CaptureError::Disconnected) => {}
        Err(e) => panic!("expected Disconnected, got {e}"),
        Ok(_) => panic!("capture succeeded after the X server exited"),
    }
}
