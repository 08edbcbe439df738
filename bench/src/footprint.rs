//! Group 7: the agent's footprint on the user's machine beside x11vnc's, on
//! the same screens in the same run: a static desktop, typing into a
//! terminal, a photo dragged around, and (for the bytes, issue 15) a window
//! dragged, a page scrolled, the desktop changing colour, and the video
//! pattern. Each program serves one connected
//! client: the agent a live view-only session to the real headless viewer
//! through the relay, x11vnc our minimal Tight client ([`crate::rfb`]).
//! After a settle, `window` seconds: CPU (utime+stime from /proc, per
//! second and over the whole window), RSS and peak RSS, and updates a
//! second at the client, with the bytes they carried (the agent's frame
//! payload at the viewer; x11vnc's RFB messages at our client).
//! On the static screen the agent is measured twice: with `--tty` (as on
//! every screen) and in its default window mode, its consent prompt
//! answered in the window and its "session live" window up (issue 20: the
//! window's renderer was most of the agent's memory).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::desktop::{Desktop, Workload};
use crate::procs::{self, Proc, ProcUsage as _};
use crate::relay::BenchRelay;
use crate::report::{Better, Figure, Target};
use crate::rfb::RfbClient;
use crate::session::{headless_session_with, parse_stats, Extras};

const G: &str = "footprint";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Static,
    Typing,
    Photo,
    Drag,
    Scrolling,
    Colour,
    Video,
}

impl Screen {
    pub const ALL: [Screen; 7] = [
        Screen::Static,
        Screen::Typing,
        Screen::Photo,
        Screen::Drag,
        Screen::Scrolling,
        Screen::Colour,
        Screen::Video,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Screen::Static => "static",
            Screen::Typing => "typing",
            Screen::Photo => "moving photo",
            Screen::Drag => "window drag",
            Screen::Scrolling => "scrolling",
            Screen::Colour => "colour change",
            Screen::Video => "video",
        }
    }

    /// The office windows, then this screen's activity (the office
    /// script's phases one at a time; the desktop behind the windows
    /// changing colour twice a second; the video pattern at 30 Hz).
    pub fn desktop(self) -> anyhow::Result<Desktop> {
        if self == Screen::Video {
            let mut d = Desktop::start(Workload::Video)?;
            d.start_driver(Workload::Video, 30)?;
            return Ok(d);
        }
        let mut d = Desktop::start(Workload::Static)?;
        match self {
            Screen::Static | Screen::Video => {}
            Screen::Typing => d.start_typing()?,
            Screen::Photo => d.start_photo(20)?,
            Screen::Drag => d.start_phase(1)?,
            Screen::Scrolling => d.start_phase(2)?,
            Screen::Colour => d.start_colours(2)?,
        }
        Ok(d)
    }
}

/// One program's figures over the window.
#[derive(Debug, Default)]
struct Measured {
    cpu_per_sec: Vec<f64>,
    cpu_whole: f64,
    updates_per_sec: Vec<f64>,
    mbit_per_sec: Vec<f64>,
    /// Over the whole window.
    updates: u64,
    bytes: u64,
    rss: u64,
    peak_rss: u64,
    /// RssAnon, RssFile, RssShmem at the end, bytes.
    parts: [u64; 3],
}

/// Where a process's resident memory is: anonymous (heap, buffers), file
/// (program and libraries), shared memory (e.g. an MIT-SHM segment).
fn rss_parts(pid: u32) -> [u64; 3] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    ["RssAnon:", "RssFile:", "RssShmem:"].map(|key| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    })
}

/// Samples `proc` once a second for `window`; `updates` is the client's
/// running count of updates and of the bytes they carried.
async fn sample(
    proc: &Proc,
    window: Duration,
    mut updates: impl FnMut() -> anyhow::Result<(u64, u64)>,
) -> anyhow::Result<Measured> {
    let start = (proc.usage()?, updates()?, Instant::now());
    let mut prev = start;
    let mut m = Measured::default();
    while start.2.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = (proc.usage()?, updates()?, Instant::now());
        let dt = (now.2 - prev.2).as_secs_f64().max(1e-3);
        m.cpu_per_sec.push((now.0.cpu_secs - prev.0.cpu_secs) / dt);
        m.updates_per_sec.push((now.1 .0 - prev.1 .0) as f64 / dt);
        m.mbit_per_sec
            .push((now.1 .1 - prev.1 .1) as f64 * 8.0 / 1e6 / dt);
        prev = now;
    }
    m.updates = prev.1 .0 - start.1 .0;
    m.bytes = prev.1 .1 - start.1 .1;
    let secs = (prev.2 - start.2).as_secs_f64().max(1e-3);
    m.cpu_whole = (prev.0.cpu_secs - start.0.cpu_secs) / secs;
    (m.rss, m.peak_rss) = (prev.0.rss, prev.0.peak_rss);
    m.parts = rss_parts(proc.pid());
    Ok(m)
}

/// The agent serving the headless viewer on `screen`, asking on its
/// terminal (`--tty`) or, with `window_mode`, in its window (left up, as a
/// user has it during a session).
async fn agent(
    screen: Screen,
    settle: Duration,
    window: Duration,
    window_mode: bool,
) -> anyhow::Result<Measured> {
    let tmp = tempfile::tempdir()?;
    let relay = BenchRelay::start(tmp.path()).await?;
    let desktop = screen.desktop()?;
    let extras = Extras {
        window: window_mode,
        ..Extras::default()
    };
    let (mut viewer, mut out, mut agent) =
        headless_session_with(&relay, desktop.display(), tmp.path(), extras).await?;
    tokio::time::sleep(settle).await;
    // The viewer prints its running totals once a second; the sampler
    // reads the latest.
    let mut totals = (0u64, 0u64);
    let m = sample(&agent.proc, window, || {
        while let Ok(line) = out.try_recv() {
            if let Some(s) = parse_stats(&line) {
                totals = (s.frames, s.bytes);
            }
        }
        Ok(totals)
    })
    .await?;
    if !agent.proc.alive() || !viewer.alive() {
        bail!("{}: the agent or the viewer exited", screen.name());
    }
    drop(desktop);
    Ok(m)
}

/// x11vnc serving our Tight client on `screen`.
async fn x11vnc(screen: Screen, settle: Duration, window: Duration) -> anyhow::Result<Measured> {
    let desktop = screen.desktop()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cmd = Command::new("x11vnc");
    // One client, no password, loopback only; no client-side caching (it
    // needs a viewer that hides the extra framebuffer area, as ours does
    // not). Everything else default, XDAMAGE hints included.
    cmd.args(["-display", desktop.display(), "-rfbport"])
        .arg(port.to_string())
        .args([
            "-localhost",
            "-nopw",
            "-forever",
            "-shared",
            "-quiet",
            "-nonc",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut vnc = procs::spawn("x11vnc", &mut cmd)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        match RfbClient::connect(port) {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => return Err(e.context("x11vnc never served")),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    tokio::time::sleep(settle).await;
    let (updates, bytes) = (client.updates.clone(), client.bytes.clone());
    let m = sample(&vnc, window, || {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        Ok((load(&updates), load(&bytes)))
    })
    .await?;
    if !vnc.alive() {
        bail!("{}: x11vnc exited", screen.name());
    }
    drop(client);
    drop(desktop);
    Ok(m)
}

/// Whether x11vnc can be run.
fn have_x11vnc() -> bool {
    procs::require_tools(&[("x11vnc", "x11vnc")]).is_ok()
}

/// Group 7. Without x11vnc on PATH (or with `skip_x11vnc`) the agent's
/// column alone, and a line saying why.
pub async fn run(
    settle: Duration,
    window: Duration,
    skip_x11vnc: bool,
) -> anyhow::Result<Vec<Figure>> {
    let with_vnc = !skip_x11vnc && have_x11vnc();
    if !with_vnc {
        let why = if skip_x11vnc {
            "skipped (smoke run)"
        } else {
            "not installed (apt-get install x11vnc)"
        };
        println!("footprint: x11vnc {why}: agent figures only, no comparison");
    }
    let mut figures = Vec::new();
    for screen in Screen::ALL {
        tracing::info!(screen = screen.name(), "footprint: agent");
        let a = agent(screen, settle, window, false)
            .await
            .with_context(|| format!("agent on the {} screen", screen.name()))?;
        let v = if with_vnc {
            tracing::info!(screen = screen.name(), "footprint: x11vnc");
            Some(
                x11vnc(screen, settle, window)
                    .await
                    .with_context(|| format!("x11vnc on the {} screen", screen.name()))?,
            )
        } else {
            None
        };
        figures.extend(figures_for(screen, &a, v.as_ref()));
        figures.extend(bytes_for(screen, &a, v.as_ref()));
        if screen == Screen::Static {
            tracing::info!("footprint: agent in window mode, static screen");
            let w = agent(screen, settle, window, true)
                .await
                .context("the agent in window mode on the static screen")?;
            figures.extend(window_mode_figures(&w, v.as_ref()));
        }
    }
    Ok(figures)
}

/// The agent in window mode on the static screen (issue 20's targets hold
/// for it too: ≤ 0.02 cores, ≤ 40 MB), with its ratios to x11vnc's
/// figures on the same screen.
fn window_mode_figures(a: &Measured, v: Option<&Measured>) -> Vec<Figure> {
    let n = "static, window mode";
    let mb = |b: u64| Some(b as f64 / 1e6);
    let one = |what: &str, unit: &'static str, x: Option<f64>| {
        Figure::single(G, format!("{n}: {what}"), unit, Better::Lower, x)
    };
    let mut out = vec![
        one("agent CPU (whole window)", "cores", Some(a.cpu_whole)).target(Target::median(0.02)),
        Figure::from_samples(
            G,
            format!("{n}: agent CPU per second"),
            "cores",
            Better::Lower,
            &a.cpu_per_sec,
        ),
        one("agent RSS", "MB", mb(a.rss)).target(Target::median(40.0)),
        one("agent peak RSS", "MB", mb(a.peak_rss)),
        one("agent RSS anon (heap, buffers)", "MB", mb(a.parts[0])),
        one("agent RSS file + shmem", "MB", mb(a.parts[1] + a.parts[2])),
    ];
    if let Some(v) = v {
        let ratio = |x: f64, y: f64| (y > 0.0).then(|| x / y);
        out.extend([
            one("agent/x11vnc CPU", "x", ratio(a.cpu_whole, v.cpu_whole)),
            one("agent/x11vnc RSS", "x", ratio(a.rss as f64, v.rss as f64)),
        ]);
    }
    out
}

fn figures_for(screen: Screen, a: &Measured, v: Option<&Measured>) -> Vec<Figure> {
    let n = screen.name();
    let mb = |b: u64| Some(b as f64 / 1e6);
    let mut out = Vec::new();
    let mut cpu = Figure::single(
        G,
        format!("{n}: agent CPU (whole window)"),
        "cores",
        Better::Lower,
        Some(a.cpu_whole),
    );
    let mut ups = Figure::from_samples(
        G,
        format!("{n}: agent updates/s at the viewer"),
        "upd/s",
        Better::Higher,
        &a.updates_per_sec,
    );
    let mut rss = Figure::single(G, format!("{n}: agent RSS"), "MB", Better::Lower, mb(a.rss));
    match (screen, v) {
        (Screen::Static, _) => {
            cpu = cpu.target(Target::median(0.02));
            rss = rss.target(Target::median(40.0));
        }
        (Screen::Typing, Some(v)) => {
            cpu = cpu.target(Target::median(v.cpu_whole));
            // Both show every key the driver types (10 a second); 1 % off
            // is the once-a-second sampling's jitter, not a lost update.
            if let Some(m) = crate::report::quantile(&v.updates_per_sec, 0.5) {
                ups = ups.target(Target::median(m * 0.99));
            }
        }
        _ => {}
    }
    out.extend([
        cpu,
        Figure::from_samples(
            G,
            format!("{n}: agent CPU per second"),
            "cores",
            Better::Lower,
            &a.cpu_per_sec,
        ),
        rss,
        Figure::single(
            G,
            format!("{n}: agent peak RSS"),
            "MB",
            Better::Lower,
            mb(a.peak_rss),
        ),
        Figure::single(
            G,
            format!("{n}: agent RSS anon (heap, buffers)"),
            "MB",
            Better::Lower,
            mb(a.parts[0]),
        ),
        Figure::single(
            G,
            format!("{n}: agent RSS file + shmem"),
            "MB",
            Better::Lower,
            mb(a.parts[1] + a.parts[2]),
        ),
        ups,
    ]);
    if let Some(v) = v {
        let ratio = |x: f64, y: f64| (y > 0.0).then(|| x / y);
        out.extend([
            Figure::single(
                G,
                format!("{n}: x11vnc CPU (whole window)"),
                "cores",
                Better::Lower,
                Some(v.cpu_whole),
            ),
            Figure::from_samples(
                G,
                format!("{n}: x11vnc CPU per second"),
                "cores",
                Better::Lower,
                &v.cpu_per_sec,
            ),
            Figure::single(
                G,
                format!("{n}: x11vnc RSS"),
                "MB",
                Better::Lower,
                mb(v.rss),
            ),
            Figure::single(
                G,
                format!("{n}: x11vnc peak RSS"),
                "MB",
                Better::Lower,
                mb(v.peak_rss),
            ),
            Figure::from_samples(
                G,
                format!("{n}: x11vnc updates/s at the client"),
                "upd/s",
                Better::Higher,
                &v.updates_per_sec,
            ),
            Figure::single(
                G,
                format!("{n}: agent/x11vnc CPU"),
                "x",
                Better::Lower,
                ratio(a.cpu_whole, v.cpu_whole),
            ),
            Figure::single(
                G,
                format!("{n}: agent/x11vnc RSS"),
                "x",
                Better::Lower,
                ratio(a.rss as f64, v.rss as f64),
            ),
        ]);
    }
    out
}

/// Mbit/s and bytes per update of both, and the ratio of their bytes.
fn bytes_for(screen: Screen, a: &Measured, v: Option<&Measured>) -> Vec<Figure> {
    let n = screen.name();
    let per_update = |m: &Measured| (m.updates > 0).then(|| m.bytes as f64 / m.updates as f64);
    let mut out = Vec::new();
    for (who, m) in [("agent", Some(a)), ("x11vnc", v)] {
        let Some(m) = m else { continue };
        out.extend([
            Figure::from_samples(
                G,
                format!("{n}: {who} Mbit/s"),
                "Mbit/s",
                Better::Lower,
                &m.mbit_per_sec,
            ),
            Figure::single(
                G,
                format!("{n}: {who} bytes per update"),
                "B",
                Better::Lower,
                per_update(m),
            ),
        ]);
    }
    if let Some(v) = v {
        let ratio = (v.bytes > 0).then(|| a.bytes as f64 / v.bytes as f64);
        out.push(Figure::single(
            G,
            format!("{n}: agent/x11vnc bytes"),
            "x",
            Better::Lower,
            ratio,
        ));
    }
    out
}
