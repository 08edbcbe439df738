//! Adaptation to the link (issue 15 item 4): the real agent behind a
//! shaped uplink (rate limit, a bounded queue of half a second as home
//! routers have, 40 ms round trip; `assent_tests::shaped`) sends a screen
//! that changes faster than the link carries. The frame rate follows the
//! link down and back up when the rate changes mid-run, and the link's
//! queue stays short, so what the technician sees stays fresh.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use assent_tests::shaped::{Shape, ShapedLink};
use assent_tests::TestRelay;
use assent_xvfb::Xvfb;
use tokio::time::Instant;
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{ConnectionExt as _, CreateGCAux, ImageFormat};
use x11rb::wrapper::ConnectionExt as _;

use crate::common::live_tty_session;

const MBIT: u64 = 1_000_000;
/// The noise patch: incompressible, 160x120 (about 58 KB a frame).
const PATCH: (u16, u16) = (160, 120);

/// Paints a new noise patch 25 times a second, with a counter in the
/// top-left pixel, until `stop` says so; notes when each counter was drawn.
fn painter(display: &str, drawn: Arc<Mutex<Vec<Instant>>>, stop: mpsc::Receiver<()>) {
    let (conn, screen) = x11rb::connect(Some(display)).expect("connect to Xvfb");
    let s = &conn.setup().roots[screen];
    let (root, depth) = (s.root, s.root_depth);
    let gc = conn.generate_id().unwrap();
    conn.create_gc(gc, root, &CreateGCAux::new()).unwrap();
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut noise = vec![0u8; PATCH.0 as usize * PATCH.1 as usize * 4];
    for counter in 1u32.. {
        if stop.try_recv().is_ok() {
            return;
        }
        for b in noise.chunks_mut(8) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            b.copy_from_slice(&rng.to_le_bytes()[..b.len()]);
        }
        let put = |w, h, x, y, data: &[u8]| {
            conn.put_image(ImageFormat::Z_PIXMAP, root, gc, w, h, x, y, 0, depth, data)
                .unwrap();
        };
        put(PATCH.0, PATCH.1, 100, 100, &noise);
        put(1, 1, 0, 0, &counter.to_le_bytes());
        conn.sync().unwrap();
        drawn.lock().unwrap().push(Instant::now());
        std::thread::sleep(Duration::from_millis(40));
    }
}

/// What the viewer saw over one stretch of the run.
struct Seen {
    fps: f64,
    /// Paint → viewer, 95th percentile, of the counters seen.
    p95_age: Duration,
}

async fn watch(
    v: &mut assent_tests::viewer::LiveViewer,
    drawn: &Mutex<Vec<Instant>>,
    secs: u64,
) -> Seen {
    let start = Instant::now();
    let (frames_before, mut ages, mut last) = (v.frames, Vec::new(), 0u32);
    while start.elapsed() < Duration::from_secs(secs) {
        if !v.next_frame(Duration::from_millis(50)).await.unwrap() {
            continue;
        }
        let Some(p) = v.pixel(0, 0) else { continue };
        // The viewer's pixels are RGBA; the counter was put as BGRX.
        let counter = u32::from_le_bytes([p[2], p[1], p[0], 0]);
        if counter > last {
            last = counter;
            if let Some(at) = drawn.lock().unwrap().get(counter as usize - 1) {
                ages.push(Instant::now() - *at);
            }
        }
    }
    ages.sort();
    Seen {
        fps: (v.frames - frames_before) as f64 / secs as f64,
        p95_age: ages
            .get(ages.len() * 95 / 100)
            .copied()
            .unwrap_or(Duration::MAX),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frame_rate_follows_the_uplink_down_and_back_and_its_queue_stays_short() {
    let xvfb = Xvfb::start_with_size(1920, 1080);
    assent_tests::x11::paint_root(xvfb.display(), 0x20_20_20);
    let relay = TestRelay::started(&[]);
    let shape = Shape {
        rate_bps: 8 * MBIT,
        one_way: Duration::from_millis(20),
        queue_limit: Duration::from_millis(500),
    };
    let upstream = relay.addr.parse().unwrap();
    let link = ShapedLink::start(upstream, shape).await;
    let (_agent, mut v, _config) = live_tty_session(&xvfb, &relay, &link.addr.to_string()).await;

    let drawn = Arc::new(Mutex::new(Vec::new()));
    let (stop, stopped) = mpsc::channel();
    let display = xvfb.display().to_string();
    let paint = {
        let drawn = drawn.clone();
        std::thread::spawn(move || painter(&display, drawn, stopped))
    };
    let report = |what: &str, seen: &Seen, from: Instant| {
        let wait = link.p95_wait(from, Instant::now()).unwrap_or_default();
        eprintln!(
            "{what}: {:.1} frames/s, p95 paint→viewer {:?}, p95 queue wait {wait:?}",
            seen.fps, seen.p95_age
        );
        wait
    };

    watch(&mut v, &drawn, 3).await;
    let from = Instant::now();
    let fast = watch(&mut v, &drawn, 5).await;
    let fast_wait = report("8 Mbit/s", &fast, from);

    link.set_rate(2 * MBIT);
    watch(&mut v, &drawn, 3).await;
    let from = Instant::now();
    let slow = watch(&mut v, &drawn, 5).await;
    let slow_wait = report("2 Mbit/s", &slow, from);

    link.set_rate(8 * MBIT);
    watch(&mut v, &drawn, 3).await;
    let from = Instant::now();
    let back = watch(&mut v, &drawn, 5).await;
    let back_wait = report("8 Mbit/s again", &back, from);
    stop.send(()).unwrap();
    paint.join().unwrap();

    // 2 Mbit/s carries about 4 of these frames a second, 8 Mbit/s about 17.
    assert!(fast.fps >= 8.0, "8 Mbit/s: {:.1} frames/s", fast.fps);
    assert!(
        slow.fps <= fast.fps * 0.5,
        "the rate did not follow the link down"
    );
    assert!(slow.fps >= 1.5, "2 Mbit/s: {:.1} frames/s", slow.fps);
    assert!(back.fps >= fast.fps * 0.7, "the rate did not come back");
    // The link's queue stays short (it could hold 500 ms, which a sender
    // that does not adapt fills: 470-500 ms measured before the agent's
    // byte budget) ...
    for (what, wait) in [("8", fast_wait), ("2", slow_wait), ("8 again", back_wait)] {
        assert!(
            wait <= Duration::from_millis(300),
            "{what} Mbit/s: p95 queue {wait:?}"
        );
    }
    // ... so the screen the technician sees stays fresh (before: 585 ms
    // at 8 Mbit/s, 3.2 s at 2 Mbit/s).
    for (what, seen, bound) in [
        ("8", &fast, 400),
        ("2", &slow, 800),
        ("8 again", &back, 400),
    ] {
        assert!(
            seen.p95_age <= Duration::from_millis(bound),
            "{what} Mbit/s: p95 paint→viewer {:?}",
            seen.p95_age
        );
    }
}
