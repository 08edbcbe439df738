//! Group 5, idle: sessions paired and then quiet (keep-alives only), the
//! relay's memory per session and its CPU for keeping them (issue 16: an
//! idle session ≤ 64 KB, 1000 sessions in 100 MB; 10,000 idle sessions in
//! 700 MB and ≤ 0.1 core).
//!
//! 10,000 idle sessions are not run here: the clients hold one UDP socket
//! per connection (two a session) and this machine's hard limit is 20,000
//! open files; BENCHMARKS.md extrapolates from the largest count run.

use std::time::{Duration, Instant};

use crate::procs::ProcUsage as _;
use crate::relay::BenchRelay;
use crate::relay_load::{pair_all, Plan};
use crate::report::{Better, Figure, Target};

const GROUP: &str = "relay";
const MB: f64 = 1e6;

pub async fn run(n: usize, plan: &Plan) -> anyhow::Result<Vec<Figure>> {
    let tmp = tempfile::tempdir()?;
    let relay = BenchRelay::start(tmp.path()).await?;
    // What the relay holds serving, before any session.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let empty = relay.proc.usage()?.rss;
    let (sessions, _) = pair_all(&relay, n).await?;
    tokio::time::sleep(plan.warmup).await;
    let before = relay.proc.usage()?;
    let t0 = Instant::now();
    tokio::time::sleep(plan.duration).await;
    let after = relay.proc.usage()?;
    let cores = (after.cpu_secs - before.cpu_secs) / t0.elapsed().as_secs_f64();
    let live = live_sessions(&relay)?;
    drop(sessions);
    let label = format!("{n} idle sessions");
    let per_session_kb = after.rss.saturating_sub(empty) as f64 / n as f64 / 1e3;
    let big = n >= 1000;
    let with_target = |f: Figure, t: Target| if big { f.target(t) } else { f };
    Ok(vec![
        with_target(
            Figure::single(
                GROUP,
                format!("{label}: relay RSS"),
                "MB",
                Better::Lower,
                Some(after.rss as f64 / MB),
            ),
            Target::median(100.0 * n as f64 / 1000.0),
        ),
        Figure::single(
            GROUP,
            format!("{label}: relay RSS per session (over an empty relay)"),
            "kB",
            Better::Lower,
            Some(per_session_kb),
        )
        .target(Target::median(64.0)),
        Figure::single(
            GROUP,
            format!("{label}: relay CPU keeping them"),
            "cores",
            Better::Lower,
            Some(cores),
        )
        .target(Target::median(0.1)),
        Figure::single(
            GROUP,
            format!("{label}: sessions lost"),
            "count",
            Better::Lower,
            Some(n.saturating_sub(live) as f64),
        )
        .target(Target::median(0.0)),
    ])
}

/// Sessions the relay lists as live (`assent-relay sessions --json`).
fn live_sessions(relay: &BenchRelay) -> anyhow::Result<usize> {
    let dir = relay.dir.to_str().unwrap_or_default();
    let out = crate::relay::run(&["sessions", "--json", "--data-dir", dir])?;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    Ok(listed.iter().filter(|s| s["state"] == "live").count())
}
