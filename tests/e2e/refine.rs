//! Lossy where it pays, lossless where it matters (issue 15 item 3): the
//! real agent on a real X screen where a video-like picture plays, then
//! stops. While it plays it reaches the viewer as JPEG; 200 ms after it
//! stops, the viewer's pixels equal a screenshot of the X screen exactly.
//! The technician's quality choice holds: "sharp" sends no JPEG at all,
//! "smooth" does again.

use std::time::Duration;

use assent_proto::session_msg::{Control, ScreenQuality, SessionMsg};
use assent_tests::viewer::LiveViewer;
use assent_tests::TestRelay;
use assent_xvfb::Xvfb;
use tokio::time::Instant;
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{ConnectionExt as _, CreateGCAux, ImageFormat};
use x11rb::wrapper::ConnectionExt as _;

use crate::common::live_tty_session;

const W: u32 = 640;
const H: u32 = 400;
/// The picture: 256x160, a smooth gradient with grain (photo-like).
const PICTURE: (u16, u16) = (256, 160);

/// Paints `frames` pictures, each with new grain and a little further
/// right, 30 ms apart, as a video in a moving window would; returns when
/// the last one is on the screen.
fn play(display: &str, frames: u32, seed: u64) {
    let (conn, screen) = x11rb::connect(Some(display)).expect("connect to Xvfb");
    let s = &conn.setup().roots[screen];
    let (root, depth) = (s.root, s.root_depth);
    let gc = conn.generate_id().unwrap();
    conn.create_gc(gc, root, &CreateGCAux::new()).unwrap();
    let mut rng = seed | 1;
    let (pw, ph) = (u32::from(PICTURE.0), u32::from(PICTURE.1));
    for f in 0..frames {
        let mut data = Vec::with_capacity((pw * ph * 4) as usize);
        for i in 0..pw * ph {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let (x, y, n) = (i % pw, i / pw, (rng & 31) as u32);
            data.extend([
                (x * 200 / pw + n) as u8,
                (y * 180 / ph + n) as u8,
                ((x + y) * 100 / (pw + ph) + n) as u8,
                0,
            ]);
        }
        let (x, y) = (40 + f as i16 * 6, 60 + f as i16 * 3);
        conn.put_image(
            ImageFormat::Z_PIXMAP,
            root,
            gc,
            PICTURE.0,
            PICTURE.1,
            x,
            y,
            0,
            depth,
            &data,
        )
        .unwrap();
        conn.sync().unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// The whole X screen as packed RGB.
fn screenshot(xvfb: &Xvfb) -> Vec<u8> {
    let out = xvfb
        .command("import")
        .args(["-window", "root", "-depth", "8", "rgb:-"])
        .output()
        .expect("import");
    assert_eq!(out.stdout.len(), (W * H * 3) as usize, "screenshot size");
    out.stdout
}

/// Pixels where the viewer's screen differs from `shot`.
fn mismatches(v: &LiveViewer, shot: &[u8]) -> usize {
    let rgba = v.decoder.pixels();
    assert_eq!(rgba.len(), (W * H * 4) as usize, "viewer screen size");
    rgba.chunks_exact(4)
        .zip(shot.chunks_exact(3))
        .filter(|(a, b)| a[..3] != b[..])
        .count()
}

/// Plays on the X screen while the viewer decodes; returns the JPEG
/// rectangles that arrived, with the viewer's screen as it is 200 ms
/// after the last picture was painted (frames already received by then
/// are decoded, none waited for).
async fn play_and_stop(xvfb: &Xvfb, v: &mut LiveViewer, frames: u32, seed: u64) -> usize {
    let before = v.jpeg_rects;
    let display = xvfb.display().to_string();
    let mut playing = tokio::task::spawn_blocking(move || play(&display, frames, seed));
    loop {
        tokio::select! {
            done = &mut playing => { done.unwrap(); break; }
            got = v.next_frame(Duration::from_millis(50)) => { got.unwrap(); }
        }
    }
    let deadline = Instant::now() + Duration::from_millis(200);
    while Instant::now() < deadline {
        v.next_frame(deadline - Instant::now()).await.unwrap();
    }
    while v.next_frame(Duration::from_millis(1)).await.unwrap() {}
    v.jpeg_rects - before
}

async fn choose(v: &mut LiveViewer, quality: ScreenQuality) {
    v.tx.send(&SessionMsg::Control(Control::Quality(quality)))
        .await
        .unwrap();
    // Frames the agent coded before it read the choice still arrive.
    while v.next_frame(Duration::from_millis(300)).await.unwrap() {}
}

#[tokio::test(flavor = "multi_thread")]
async fn a_playing_picture_goes_as_jpeg_and_is_exact_200_ms_after_it_stops() {
    let xvfb = Xvfb::start_with_size(W, H);
    let relay = TestRelay::started(&[]);
    let (_agent, mut v, _config) = live_tty_session(&xvfb, &relay, &relay.addr).await;

    // Auto (the default): JPEG while it plays, exact 200 ms after.
    let jpeg = play_and_stop(&xvfb, &mut v, 15, 7).await;
    let bad = mismatches(&v, &screenshot(&xvfb));
    assert!(jpeg > 0, "the playing picture never went as JPEG");
    assert_eq!(
        bad, 0,
        "{bad} pixels differ 200 ms after the picture stopped"
    );

    // Sharp: never JPEG, and exact all along.
    choose(&mut v, ScreenQuality::Sharp).await;
    let jpeg = play_and_stop(&xvfb, &mut v, 10, 11).await;
    assert_eq!(jpeg, 0, "JPEG sent though the technician chose sharp");
    assert_eq!(mismatches(&v, &screenshot(&xvfb)), 0);

    // Smooth: JPEG again, refined again.
    choose(&mut v, ScreenQuality::Smooth).await;
    let jpeg = play_and_stop(&xvfb, &mut v, 10, 13).await;
    let bad = mismatches(&v, &screenshot(&xvfb));
    assert!(jpeg > 0, "smooth sent no JPEG");
    assert_eq!(bad, 0, "{bad} pixels differ 200 ms after (smooth)");
}
