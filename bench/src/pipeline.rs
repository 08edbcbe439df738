//! Group 1: the frame pipeline on one core, no network. The product's
//! X11 capture, the codec's encoder (which diffs tiles against the previous
//! frame and compresses the changed ones in the same call) and decoder, in
//! one thread pinned to CPU 0, as fast as they go while a workload runs.
//! Photos and video as JPEG at the agent's starting "auto" quality (80),
//! refined to lossless once still, as in a session; the video also as the
//! technician's "sharp" (all lossless) for comparison.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use assent_capture::{ScreenSource as _, X11Source};
use assent_codec::{Decoder, Encoder, FrameRef};

use crate::desktop::{Desktop, Workload};
use crate::footprint::Screen;
use crate::report::{Better, Figure, Target};

const GROUP: &str = "pipeline";

/// Per-iteration stage times in ms; decode is `None` when nothing changed.
struct Iteration {
    capture: f64,
    encode: f64,
    decode: Option<f64>,
    bytes: usize,
}

pub fn run(duration: Duration) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for workload in Workload::ALL {
        let qualities: &[Option<u8>] = match workload {
            Workload::Video => &[AUTO, None],
            _ => &[AUTO],
        };
        for &jpeg in qualities {
            let mut desktop = Desktop::start(workload)?;
            // Faster than the pipeline, so each video iteration sees a change.
            desktop.start_driver(workload, 60)?;
            std::thread::sleep(Duration::from_millis(300));
            let iterations = measure_apart(&desktop, duration, jpeg)?;
            desktop.stop_driver();
            figures.extend(figures_for(workload, jpeg, &iterations));
        }
    }
    figures.extend(per_screen(duration / 2)?);
    Ok(figures)
}

/// [`measure`] on its own thread, so the desktop's drivers keep theirs.
fn measure_apart(
    desktop: &Desktop,
    duration: Duration,
    jpeg: Option<u8>,
) -> anyhow::Result<Vec<Iteration>> {
    let display = desktop.display().to_string();
    std::thread::spawn(move || measure(&display, duration, jpeg))
        .join()
        .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))?
}

/// Encode and decode ms per changed frame on each of the footprint
/// group's seven screens (the ones measured beside x11vnc), JPEG as in
/// "auto".
fn per_screen(duration: Duration) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for screen in Screen::ALL {
        let mut desktop = screen.desktop()?;
        std::thread::sleep(Duration::from_millis(300));
        let its = measure_apart(&desktop, duration, AUTO)?;
        desktop.stop_driver();
        let changed: Vec<&Iteration> = its.iter().filter(|i| i.decode.is_some()).collect();
        let name = |what: &str| format!("{} screen: {what}", screen.name());
        let ms = |label: &str, v: Vec<f64>| {
            Figure::from_samples(GROUP, name(label), "ms", Better::Lower, &v)
        };
        if changed.is_empty() {
            // A still screen: what looking costs, nothing to decode.
            let diff = its.iter().map(|i| i.encode).collect();
            figures.push(ms("diff ms a frame (nothing changed)", diff));
            continue;
        }
        figures.push(ms(
            "diff+encode ms a changed frame",
            changed.iter().map(|i| i.encode).collect(),
        ));
        figures.push(ms(
            "decode ms a changed frame",
            changed.iter().filter_map(|i| i.decode).collect(),
        ));
    }
    Ok(figures)
}

/// The agent's JPEG quality when "auto" starts (agent/src/quality.rs).
const AUTO: Option<u8> = Some(80);

fn measure(display: &str, duration: Duration, jpeg: Option<u8>) -> anyhow::Result<Vec<Iteration>> {
    // Where CPU 0 is not ours to use (a restricted cpuset), measure unpinned
    // rather than not at all; the log says so.
    if let Err(e) = crate::procs::pin_to_cpu(0) {
        tracing::warn!(error = %e, "cannot pin the pipeline thread; measuring unpinned");
    }
    let mut source = X11Source::open(display).context("opening the X11 capture")?;
    let mut encoder = Encoder::new();
    encoder.set_jpeg_quality(jpeg);
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    let mut first = true;
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let t0 = Instant::now();
        let frame = source.capture().context("capturing")?;
        let t1 = Instant::now();
        let encoded = encoder
            .encode(
                FrameRef::new(frame.data, frame.width, frame.height, frame.stride)?,
                false,
            )
            .context("encoding")?;
        let t2 = Instant::now();
        let (decode, bytes) = match &encoded {
            Some(e) => {
                decoder.decode(&e.bytes).context("decoding")?;
                (Some(ms(t2.elapsed())), e.bytes.len())
            }
            None => (None, 0),
        };
        // The first frame is a keyframe: a session's start, not its steady state.
        if !std::mem::take(&mut first) {
            out.push(Iteration {
                capture: ms(t1 - t0),
                encode: ms(t2 - t1),
                decode,
                bytes,
            });
        }
    }
    Ok(out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn figures_for(workload: Workload, jpeg: Option<u8>, its: &[Iteration]) -> Vec<Figure> {
    let name = match jpeg {
        AUTO => workload.name().to_string(),
        _ => format!("{}, sharp (lossless)", workload.name()),
    };
    // Frames that changed are the ones a session sends; on a static screen
    // there are none, and the pipeline's cost is capture plus the diff.
    let changed: Vec<&Iteration> = its.iter().filter(|i| i.decode.is_some()).collect();
    let sel: Vec<&Iteration> = if changed.is_empty() {
        its.iter().collect()
    } else {
        changed
    };
    let total: Vec<f64> = sel
        .iter()
        .map(|i| i.capture + i.encode + i.decode.unwrap_or(0.0))
        .collect();
    let fps: Vec<f64> = total.iter().map(|t| 1000.0 / t.max(1e-6)).collect();
    let mut fps_fig = Figure::from_samples(
        GROUP,
        format!("{name}: fps, capture+diff+encode+decode"),
        "fps",
        Better::Higher,
        &fps,
    );
    // Issue 15's targets: office ≥ 60, a full-screen change ≥ 30.
    match (workload, jpeg) {
        (Workload::Office, _) => fps_fig = fps_fig.target(Target::median(60.0)),
        (Workload::Video, AUTO) => fps_fig = fps_fig.target(Target::median(30.0)),
        _ => {}
    }
    let stage = |label: &str, v: Vec<f64>| {
        Figure::from_samples(GROUP, format!("{name}: {label}"), "ms", Better::Lower, &v)
    };
    let mut out = vec![
        fps_fig,
        stage("capture ms", sel.iter().map(|i| i.capture).collect()),
        stage("diff+encode ms", sel.iter().map(|i| i.encode).collect()),
    ];
    let decodes: Vec<f64> = sel.iter().filter_map(|i| i.decode).collect();
    if !decodes.is_empty() {
        out.push(stage("decode ms", decodes));
        out.push(Figure::from_samples(
            GROUP,
            format!("{name}: bytes per changed frame"),
            "bytes",
            Better::Lower,
            &sel.iter().map(|i| i.bytes as f64).collect::<Vec<_>>(),
        ));
    }
    let share = sel.len() as f64 / its.len().max(1) as f64;
    tracing::info!(
        workload = %name,
        iterations = its.len(),
        measured = sel.len(),
        share_changed = share,
        "pipeline"
    );
    out
}
