//! Scripted, reproducible desktops on a private 1920x1080 Xvfb: office
//! work (typing into a terminal, a window moved and resized, a page
//! scrolled with the wheel), a video-like screen (all of it moving every
//! frame), and a static one; plus a window that flips colour on each key
//! press, for input→photon.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use assent_xvfb::{eventually_every, Xvfb};
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{
    ChangeWindowAttributesAux, ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask,
    ImageFormat, WindowClass,
};
use x11rb::protocol::Event;
use x11rb::wrapper::ConnectionExt as _;

use crate::procs::{self, Proc};

pub const WIDTH: u32 = 1920;
pub const HEIGHT: u32 = 1080;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    Office,
    Video,
    Static,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::Office, Workload::Video, Workload::Static];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Office => "office",
            Workload::Video => "video",
            Workload::Static => "static",
        }
    }
}

/// The tools the desktops need, with the Debian package of each.
pub const TOOLS: [(&str, &str); 3] = [("Xvfb", "xvfb"), ("xterm", "xterm"), ("xdotool", "xdotool")];

/// How long each office activity lasts before the next one.
pub const PHASE: Duration = Duration::from_secs(4);

/// The office activities, in the order the driver does them.
pub const OFFICE_PHASES: [&str; 3] = ["typing", "window drag", "scrolling"];

fn office_phase_index(since_start: Duration) -> usize {
    (since_start.as_secs_f64() / PHASE.as_secs_f64()) as usize % 3
}

/// Window titles of the office desktop.
const TYPE_TITLE: &str = "bench-type";
const PAGE_TITLE: &str = "bench-page";
const MOVE_TITLE: &str = "bench-move";

/// Where the key-flip window sits, and the colours it alternates.
pub const FLIP_RECT: (u32, u32, u32, u32) = (860, 440, 200, 200);
pub const FLIP_COLOURS: [u32; 2] = [0xd03020, 0x2040d0];

/// A running desktop. Dropping it stops the driver, the X clients and
/// then the X server, each by PID.
pub struct Desktop {
    driver: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// When the office driver started: its phases are counted from here.
    driver_started: Option<Instant>,
    clients: Vec<Proc>,
    tmp: tempfile::TempDir,
    // Last: the server outlives its clients.
    xvfb: Xvfb,
}

impl Desktop {
    /// A 1920x1080 server with the windows of `workload` on it (office and
    /// static share the same windows; only office moves them). Nothing
    /// changes until [`Desktop::start_driver`].
    pub fn start(workload: Workload) -> anyhow::Result<Desktop> {
        crate::procs::require_tools(&TOOLS)?;
        let xvfb = Xvfb::start_with_size(WIDTH, HEIGHT);
        let tmp = tempfile::tempdir().context("temporary directory")?;
        let mut desktop = Desktop {
            driver: None,
            driver_started: None,
            clients: Vec::new(),
            tmp,
            xvfb,
        };
        paint_root(desktop.display(), 0x3a_6e_a5)?;
        if workload != Workload::Video {
            desktop.office_windows()?;
        }
        Ok(desktop)
    }

    pub fn display(&self) -> &str {
        self.xvfb.display()
    }

    fn office_windows(&mut self) -> anyhow::Result<()> {
        // A long page for the wheel to scroll through xterm's scrollback.
        let page = self.tmp.path().join("page.txt");
        let mut text = String::new();
        for i in 0..3000u32 {
            let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
            let n = (i * 7 % 11) as usize + 2;
            let body: Vec<&str> = (0..n)
                .map(|k| words[(i as usize + k) % words.len()])
                .collect();
            text.push_str(&format!("{i:5}  {}\n", body.join(" ")));
        }
        std::fs::write(&page, text).context("writing the page file")?;
        let page = page
            .to_str()
            .context("temporary path is not UTF-8")?
            .to_string();
        let clients: [(&str, &str, String); 3] = [
            // `cat` echoes what is typed and repeats each line: a terminal
            // receiving text, with nothing interpreting it.
            (TYPE_TITLE, "100x30+40+40", "exec cat".to_string()),
            (
                PAGE_TITLE,
                "110x56+900+40",
                format!("cat {page}; exec sleep 100000"),
            ),
            (
                MOVE_TITLE,
                "70x20+200+620",
                "ls -la /usr/bin | head -n 60; exec sleep 100000".to_string(),
            ),
        ];
        for (title, geometry, script) in clients {
            let mut cmd = self.xvfb.command("xterm");
            cmd.args(["-T", title, "-geometry", geometry, "-sl", "5000"])
                .args(["-e", "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            self.clients.push(procs::spawn("xterm", &mut cmd)?);
        }
        for title in [TYPE_TITLE, PAGE_TITLE, MOVE_TITLE] {
            self.window(title)?;
        }
        // Let the page finish printing before anything is measured.
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }

    /// The X id of the window titled exactly `title` (waits for it).
    pub fn window(&self, title: &str) -> anyhow::Result<String> {
        let pattern = format!("^{title}$");
        eventually_every(Duration::from_secs(15), Duration::from_millis(50), || {
            let out = self
                .xdotool(&["search", "--name", &pattern])
                .unwrap_or_default();
            out.lines()
                .next()
                .filter(|l| !l.is_empty())
                .map(String::from)
        })
        .with_context(|| format!("no window titled {title:?} appeared on {}", self.display()))
    }

    fn xdotool(&self, args: &[&str]) -> anyhow::Result<String> {
        xdotool(self.display(), args)
    }

    /// Starts changing the screen: office work, or a video-like pattern
    /// drawn `video_hz` times a second. Static: nothing.
    pub fn start_driver(&mut self, workload: Workload, video_hz: u32) -> anyhow::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let display = self.display().to_string();
        let started = Instant::now();
        let thread = match workload {
            Workload::Static => return Ok(()),
            Workload::Office => {
                let windows = [
                    self.window(TYPE_TITLE)?,
                    self.window(PAGE_TITLE)?,
                    self.window(MOVE_TITLE)?,
                ];
                let stop = stop.clone();
                std::thread::spawn(move || {
                    if let Err(e) = office_driver(&display, &windows, started, None, &stop) {
                        tracing::warn!(error = %e, "office driver stopped");
                    }
                })
            }
            Workload::Video => {
                let video = VideoPattern::new(&display)?;
                let stop = stop.clone();
                std::thread::spawn(move || {
                    if let Err(e) = video.run(video_hz, &stop) {
                        tracing::warn!(error = %e, "video drawer stopped");
                    }
                })
            }
        };
        self.driver = Some((stop, thread));
        self.driver_started = (workload == Workload::Office).then_some(started);
        Ok(())
    }

    /// Starts typing into the terminal, as the office driver's typing
    /// phase does, without the other phases.
    pub fn start_typing(&mut self) -> anyhow::Result<()> {
        self.start_phase(0)
    }

    /// Starts one phase of the office driver alone, for good: 0 typing,
    /// 1 dragging a window, 2 scrolling the page.
    pub fn start_phase(&mut self, phase: usize) -> anyhow::Result<()> {
        let windows = [
            self.window(TYPE_TITLE)?,
            self.window(PAGE_TITLE)?,
            self.window(MOVE_TITLE)?,
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let (display, flag) = (self.display().to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            // A failed step (e.g. a loaded machine refusing a fork) only
            // restarts the typing, so the run measures what it says.
            while let Err(e) = office_driver(&display, &windows, Instant::now(), Some(phase), &flag)
            {
                tracing::warn!(error = format!("{e:#}"), "office driver step failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        self.driver = Some((stop, thread));
        Ok(())
    }

    /// Starts moving a photo-like 640x400 window over the desktop, `hz`
    /// moves a second (8 px each, along a loop), as when a user drags a
    /// picture around.
    pub fn start_photo(&mut self, hz: u32) -> anyhow::Result<()> {
        let photo = MovingPhoto::new(self.display())?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            if let Err(e) = photo.run(hz, &flag) {
                tracing::warn!(error = %e, "photo mover stopped");
            }
        });
        self.driver = Some((stop, thread));
        Ok(())
    }

    /// Turns the root window (the desktop behind the office windows) from
    /// one colour to another `hz` times a second: most of the screen
    /// changes at once, to one colour.
    pub fn start_colours(&mut self, hz: u32) -> anyhow::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let (display, flag) = (self.display().to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            let step = Duration::from_secs(1) / hz.max(1);
            let mut n = 0u32;
            while !flag.load(Ordering::Relaxed) {
                let rgb = if n.is_multiple_of(2) {
                    0x20_40_80
                } else {
                    0x80_40_20
                };
                if let Err(e) = paint_root(&display, rgb) {
                    tracing::warn!(error = %e, "colour changer stopped");
                    return;
                }
                n += 1;
                std::thread::sleep(step);
            }
        });
        self.driver = Some((stop, thread));
        Ok(())
    }

    /// The office activity at `t`, or `None` when no office driver runs.
    pub fn office_phase(&self, t: Instant) -> Option<&'static str> {
        let since = t.checked_duration_since(self.driver_started?)?;
        Some(OFFICE_PHASES[office_phase_index(since)])
    }

    pub fn stop_driver(&mut self) {
        if let Some((stop, thread)) = self.driver.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }

    /// Opens the key-flip window (its own X client on a thread); returns
    /// once it is mapped and painted.
    pub fn flip_window(&self) -> anyhow::Result<()> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let display = self.display().to_string();
        std::thread::spawn(move || {
            // Ends when the server goes away with the desktop.
            let _ = flip_window(&display, ready_tx);
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .context("the key-flip window did not come up")?
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        self.stop_driver();
        self.clients.clear();
    }
}

pub fn xdotool(display: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .stdin(Stdio::null())
        .output()
        .context("running xdotool")?;
    if !out.status.success() {
        bail!(
            "xdotool {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn paint_root(display: &str, rgb: u32) -> anyhow::Result<()> {
    let (conn, screen) = x11rb::connect(Some(display)).context("connecting to Xvfb")?;
    let root = conn.setup().roots[screen].root;
    conn.change_window_attributes(
        root,
        &ChangeWindowAttributesAux::new().background_pixel(rgb),
    )?;
    conn.clear_area(false, root, 0, 0, 0, 0)?;
    conn.sync()?;
    Ok(())
}

/// Office work in three phases of [`PHASE`] each, in turn, the way a person
/// does one thing at a time: typing into the terminal (10 characters a
/// second, Return every 60), dragging a window (20 moves a second along a
/// loop, resized every half second), and scrolling a page with the wheel
/// (5 clicks a second, 40 up then 40 down). One xdotool process per step.
fn office_driver(
    display: &str,
    windows: &[String; 3],
    started: Instant,
    only_phase: Option<usize>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    const TEXT: &str = "the quick brown fox jumps over the lazy dog 0123456789 ";
    let [typed, page, mover] = windows;
    let (mut typed_n, mut moves, mut clicks) = (0usize, 0usize, 0usize);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let phase = only_phase.unwrap_or_else(|| office_phase_index(started.elapsed()));
        let (args, step): (Vec<String>, Duration) = match phase {
            0 => {
                let key = if typed_n % 60 == 59 {
                    "Return".to_string()
                } else {
                    match TEXT.as_bytes()[typed_n % TEXT.len()] {
                        b' ' => "space".to_string(),
                        c => (c as char).to_string(),
                    }
                };
                typed_n += 1;
                (
                    vec!["windowfocus".into(), typed.clone(), "key".into(), key],
                    Duration::from_millis(100),
                )
            }
            1 => {
                // A 400x200 px loop, 8 px per move.
                let p = moves % 100;
                let (dx, dy) = if p < 50 {
                    (p * 8, p * 4)
                } else {
                    ((100 - p) * 8, (100 - p) * 4)
                };
                let mut a = vec![
                    "windowmove".into(),
                    mover.clone(),
                    (200 + dx).to_string(),
                    (620 + dy).to_string(),
                ];
                if moves % 10 == 0 {
                    let (w, h) = if (moves / 10) % 2 == 0 {
                        (640, 360)
                    } else {
                        (520, 300)
                    };
                    a.extend([
                        "windowsize".into(),
                        mover.clone(),
                        w.to_string(),
                        h.to_string(),
                    ]);
                }
                moves += 1;
                (a, Duration::from_millis(50))
            }
            _ => {
                // Up first: the page starts at its end.
                let wheel = if (clicks / 40) % 2 == 0 { "4" } else { "5" };
                clicks += 1;
                (
                    ["mousemove", "--window", page, "300", "400", "click", wheel]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                    Duration::from_millis(200),
                )
            }
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        xdotool(display, &args)?;
        next += step;
        match next.checked_duration_since(Instant::now()) {
            Some(wait) => std::thread::sleep(wait),
            // Fell behind (a loaded machine): do not burst to catch up.
            None => next = Instant::now(),
        }
    }
    Ok(())
}

/// A full-screen pattern, moved a few pixels every frame by a server-side
/// copy from a larger pixmap, so every tile changes each frame. The
/// content is a gradient with 2-bit noise (like a camera's sensor noise):
/// nothing the tile diff can skip, and only moderately compressible.
struct VideoPattern {
    conn: x11rb::rust_connection::RustConnection,
    root: u32,
    pixmap: u32,
    gc: u32,
}

const PATTERN_MARGIN: u32 = 256;

impl VideoPattern {
    fn new(display: &str) -> anyhow::Result<VideoPattern> {
        let (conn, screen) = x11rb::connect(Some(display)).context("connecting to Xvfb")?;
        let root = conn.setup().roots[screen].root;
        let depth = conn.setup().roots[screen].root_depth;
        let (pw, ph) = (WIDTH + PATTERN_MARGIN, HEIGHT + PATTERN_MARGIN);
        let (pixmap, gc) = pattern_pixmap(&conn, root, depth, pw, ph)?;
        conn.sync()?;
        Ok(VideoPattern {
            conn,
            root,
            pixmap,
            gc,
        })
    }

    fn run(&self, hz: u32, stop: &AtomicBool) -> anyhow::Result<()> {
        let period = Duration::from_secs_f64(1.0 / f64::from(hz.max(1)));
        let mut next = Instant::now();
        let mut t = 0u32;
        while !stop.load(Ordering::Relaxed) {
            // A diagonal drift that never repeats within the margin's period.
            let sx = (t * 7) % PATTERN_MARGIN;
            let sy = (t * 3) % PATTERN_MARGIN;
            self.conn.copy_area(
                self.pixmap,
                self.root,
                self.gc,
                sx as i16,
                sy as i16,
                0,
                0,
                WIDTH as u16,
                HEIGHT as u16,
            )?;
            // Wait for the server so frames are drawn, not queued.
            self.conn.sync()?;
            t += 1;
            next += period;
            match next.checked_duration_since(Instant::now()) {
                Some(wait) => std::thread::sleep(wait),
                None => next = Instant::now(),
            }
        }
        Ok(())
    }
}

/// A `pw`x`ph` pixmap holding the video pattern, and a GC for copying it.
fn pattern_pixmap(
    conn: &x11rb::rust_connection::RustConnection,
    root: u32,
    depth: u8,
    pw: u32,
    ph: u32,
) -> anyhow::Result<(u32, u32)> {
    let pixmap = conn.generate_id()?;
    conn.create_pixmap(depth, pixmap, root, pw as u16, ph as u16)?;
    let gc = conn.generate_id()?;
    conn.create_gc(gc, pixmap, &CreateGCAux::new())?;
    // Deterministic noise, so every run draws the same pattern.
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    // Bands small enough for a request without BIG-REQUESTS.
    const BAND: u32 = 16;
    let mut band = vec![0u8; (pw * BAND * 4) as usize];
    for y0 in (0..ph).step_by(BAND as usize) {
        let rows = BAND.min(ph - y0);
        for r in 0..rows {
            let y = y0 + r;
            for x in 0..pw {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let n = |s: u32| ((rng >> s) & 3) as u32;
                let at = ((r * pw + x) * 4) as usize;
                // BGRX: a diagonal gradient plus discs of brightness.
                let wave = (x / 3 + y / 2) % 256;
                let disc = if ((x % 480) as i32 - 240).pow(2) + ((y % 360) as i32 - 180).pow(2)
                    < 120 * 120
                {
                    60
                } else {
                    0
                };
                band[at] = ((wave + n(0)) as u8).wrapping_add(disc);
                band[at + 1] = ((255 - wave) / 2 + n(8) + disc as u32) as u8;
                band[at + 2] = ((x * 255 / pw) + n(16)).min(255) as u8;
                band[at + 3] = 0;
            }
        }
        conn.put_image(
            ImageFormat::Z_PIXMAP,
            pixmap,
            gc,
            pw as u16,
            rows as u16,
            0,
            y0 as i16,
            0,
            depth,
            &band[..(pw * rows * 4) as usize],
        )?;
    }
    Ok((pixmap, gc))
}

/// A photo-like window (the video pattern, still) moved around the screen.
struct MovingPhoto {
    conn: x11rb::rust_connection::RustConnection,
    window: u32,
}

impl MovingPhoto {
    const SIZE: (u32, u32) = (640, 400);

    fn new(display: &str) -> anyhow::Result<MovingPhoto> {
        let (conn, screen) = x11rb::connect(Some(display)).context("connecting to Xvfb")?;
        let s = &conn.setup().roots[screen];
        let (root, depth, visual) = (s.root, s.root_depth, s.root_visual);
        let (w, h) = Self::SIZE;
        let (pixmap, _) = pattern_pixmap(&conn, root, depth, w, h)?;
        let window = conn.generate_id()?;
        conn.create_window(
            depth,
            window,
            root,
            100,
            100,
            w as u16,
            h as u16,
            0,
            WindowClass::INPUT_OUTPUT,
            visual,
            &CreateWindowAux::new()
                .background_pixmap(pixmap)
                .override_redirect(1),
        )?;
        conn.map_window(window)?;
        conn.sync()?;
        Ok(MovingPhoto { conn, window })
    }

    fn run(&self, hz: u32, stop: &AtomicBool) -> anyhow::Result<()> {
        use x11rb::protocol::xproto::ConfigureWindowAux;
        let period = Duration::from_secs_f64(1.0 / f64::from(hz.max(1)));
        let mut next = Instant::now();
        let mut t = 0i32;
        while !stop.load(Ordering::Relaxed) {
            // A 800x400 px loop, 8 px per move.
            let p = t % 200;
            let d = if p < 100 { p } else { 200 - p };
            let aux = ConfigureWindowAux::new().x(100 + d * 8).y(100 + d * 4);
            self.conn.configure_window(self.window, &aux)?;
            self.conn.sync()?;
            t += 1;
            next += period;
            match next.checked_duration_since(Instant::now()) {
                Some(wait) => std::thread::sleep(wait),
                None => next = Instant::now(),
            }
        }
        Ok(())
    }
}

/// A window that swaps between two colours on every key press.
fn flip_window(
    display: &str,
    ready: std::sync::mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let setup = || -> anyhow::Result<_> {
        let (conn, screen) = x11rb::connect(Some(display)).context("connecting to Xvfb")?;
        let s = &conn.setup().roots[screen];
        let (root, depth, visual) = (s.root, s.root_depth, s.root_visual);
        let win = conn.generate_id()?;
        let (x, y, w, h) = FLIP_RECT;
        conn.create_window(
            depth,
            win,
            root,
            x as i16,
            y as i16,
            w as u16,
            h as u16,
            0,
            WindowClass::INPUT_OUTPUT,
            visual,
            &CreateWindowAux::new()
                .background_pixel(FLIP_COLOURS[0])
                .event_mask(EventMask::KEY_PRESS | EventMask::EXPOSURE)
                // No window manager places it; override-redirect says so.
                .override_redirect(1),
        )?;
        conn.map_window(win)?;
        conn.sync()?;
        Ok((conn, win))
    };
    let (conn, win) = match setup() {
        Ok(v) => {
            let _ = ready.send(Ok(()));
            v
        }
        Err(e) => {
            let _ = ready.send(Err(anyhow::anyhow!("{e:#}")));
            return Err(e);
        }
    };
    let mut colour = 0usize;
    loop {
        if let Event::KeyPress(_) = conn.wait_for_event()? {
            colour ^= 1;
            conn.change_window_attributes(
                win,
                &ChangeWindowAttributesAux::new().background_pixel(FLIP_COLOURS[colour]),
            )?;
            conn.clear_area(false, win, 0, 0, 0, 0)?;
            conn.flush()?;
        }
    }
}
