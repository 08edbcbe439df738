//! Group 2, one more screen (issue 15 item 5): a static desktop with the
//! agent's own "session live" window up, as a user sees it (the agent
//! without `--tty`, the consent answered in its real window with
//! xdotool). The window's pixels change every second (the pointer rests
//! on one of its buttons, then the other: egui highlights what it hovers,
//! as the old elapsed-time clock redrew once a second); the agent covers
//! its own windows before encoding, so none of that reaches the viewer.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::desktop::{xdotool, Desktop, Workload};
use crate::procs;
use crate::relay::BenchRelay;
use crate::report::{Better, Figure, Target};
use crate::session::{headless_session_with, parse_stats, Extras, StatsLine};

/// Two places in the "session live" window, on its Pause and End buttons
/// (agent/src/ui.rs's layout; tests/e2e/own_window.rs hovers the same).
const HOVER: [(&str, &str); 2] = [("30", "150"), ("90", "150")];

pub async fn static_with_window(duration: Duration) -> anyhow::Result<Vec<Figure>> {
    let tmp = tempfile::tempdir()?;
    let relay = BenchRelay::start(tmp.path()).await?;
    let desktop = Desktop::start(Workload::Static)?;
    let (mut viewer, mut out, mut agent) = headless_session_with(
        &relay,
        desktop.display(),
        tmp.path(),
        Extras {
            window: true,
            ..Extras::default()
        },
    )
    .await?;
    let live = desktop.window("Assent — session live")?;
    tokio::time::sleep(Duration::from_secs(2).min(duration / 3)).await;
    while out.try_recv().is_ok() {}
    let started = Instant::now();
    let (mut prev, mut at): (Option<StatsLine>, Instant) = (None, Instant::now());
    let (mut mbps, mut fps) = (Vec::new(), Vec::new());
    let mut hover = HOVER.iter().cycle();
    while started.elapsed() < duration {
        if let Some((x, y)) = hover.next() {
            xdotool(desktop.display(), &["mousemove", "--window", &live, x, y])?;
        }
        let line = procs::wait_line(&mut out, Duration::from_secs(5), "viewer stats", |l| {
            parse_stats(l).is_some()
        })
        .await?;
        let Some(s) = parse_stats(&line) else {
            continue;
        };
        let now = Instant::now();
        let dt = (now - at).as_secs_f64().max(1e-3);
        if let Some(p) = prev {
            mbps.push((s.bytes - p.bytes) as f64 * 8.0 / 1e6 / dt);
            fps.push((s.frames - p.frames) as f64 / dt);
        }
        (prev, at) = (Some(s), now);
    }
    if !agent.proc.alive() || !viewer.alive() {
        bail!("static with the agent's window: the agent or the viewer exited");
    }
    tracing::info!(?mbps, ?fps, "static with the agent's window");
    const G: &str = "bandwidth";
    let name = "static, agent window up and changing";
    let figures = vec![
        Figure::from_samples(
            G,
            format!("{name}: Mbit/s to the viewer"),
            "Mbit/s",
            Better::Lower,
            &mbps,
        )
        .target(Target::median(0.005)),
        Figure::from_samples(
            G,
            format!("{name}: frames/s at the viewer"),
            "fps",
            Better::Lower,
            &fps,
        ),
    ];
    drop(agent);
    drop(viewer);
    Ok(figures)
}
