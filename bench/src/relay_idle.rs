//! Group 5, idle: sessions paired and then quiet (keep-alives only), the
//! relay's memory per session and its CPU for keeping them (issue 16: an
//! idle session ≤ 64 KB, 1000 sessions in 100 MB; 10,000 idle sessions in
//! 700 MB and ≤ 0.1 core).
//!
//! Past 2000 sessions the benchmark's connections share endpoints, 100
//! sessions to a UDP socket: one socket a connection would need 20,000 for
//! 10,000 sessions, this machine's whole limit of open files. The relay
//! sees the same sessions either way.

use std::time::{Duration, Instant};

use crate::procs::ProcUsage as _;
use crate::relay::BenchRelay;
use crate::relay_load::{pair_all_from, Plan, Session};
use crate::report::{Better, Figure, Target};

const GROUP: &str = "relay";
const MB: f64 = 1e6;
/// Up to this many sessions, each connection has its own socket.
const OWN_SOCKETS_UP_TO: usize = 2000;
const SESSIONS_PER_SOCKET: usize = 100;
/// Sessions paired at a time past [`OWN_SOCKETS_UP_TO`].
const STEP: usize = 500;

pub async fn run(n: usize, plan: &Plan) -> anyhow::Result<Vec<Figure>> {
    let tmp = tempfile::tempdir()?;
    let relay = BenchRelay::start(tmp.path()).await?;
    // What the relay holds serving, before any session.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let empty = relay.proc.usage()?.rss;
    let (sessions, refused) = pair_up_to(&relay, n).await?;
    let held = sessions.len();
    if let Some(why) = &refused {
        eprintln!("relay: {held} of {n} idle sessions held; then: {why}");
    }
    tokio::time::sleep(plan.warmup).await;
    let before = relay.proc.usage()?;
    let t0 = Instant::now();
    tokio::time::sleep(plan.duration).await;
    let after = relay.proc.usage()?;
    let cores = (after.cpu_secs - before.cpu_secs) / t0.elapsed().as_secs_f64();
    let live = live_sessions(&relay)?;
    drop(sessions);
    let label = format!("{n} idle sessions");
    let per_session_kb = after.rss.saturating_sub(empty) as f64 / held.max(1) as f64 / 1e3;
    let big = n >= 1000;
    let with_target = |f: Figure, t: Target| if big { f.target(t) } else { f };
    Ok(vec![
        with_target(
            Figure::single(
                GROUP,
                format!("{label}: sessions the relay took (it refuses more when busy)"),
                "count",
                Better::Higher,
                Some(held as f64),
            ),
            Target::median(n as f64),
        ),
        with_target(
            Figure::single(
                GROUP,
                format!("{label}: relay RSS"),
                "MB",
                Better::Lower,
                Some(after.rss as f64 / MB),
            ),
            // Issue 16: 1000 in 100 MB, 10,000 in 700 MB.
            Target::median(if n >= 10_000 {
                700.0
            } else {
                100.0 * n as f64 / 1000.0
            }),
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
            Some(held.saturating_sub(live) as f64),
        )
        .target(Target::median(0.0)),
    ])
}

/// Pairs up to `n` sessions, [`STEP`] at a time where they share sockets;
/// stops at the first step the relay does not take (it refuses new sessions
/// while busy), returning the sessions held and why it stopped.
async fn pair_up_to(
    relay: &BenchRelay,
    n: usize,
) -> anyhow::Result<(Vec<Session>, Option<String>)> {
    if n <= OWN_SOCKETS_UP_TO {
        return Ok((pair_all_from(relay, n, None).await?.0, None));
    }
    let mut sessions = Vec::with_capacity(n);
    while sessions.len() < n {
        let step = STEP.min(n - sessions.len());
        match pair_all_from(relay, step, Some(SESSIONS_PER_SOCKET)).await {
            Ok((mut more, _)) => sessions.append(&mut more),
            Err(e) if !sessions.is_empty() => {
                return Ok((sessions, Some(e.root_cause().to_string())));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((sessions, None))
}

/// Sessions the relay lists as live (`assent-relay sessions --json`).
fn live_sessions(relay: &BenchRelay) -> anyhow::Result<usize> {
    let dir = relay.dir.to_str().unwrap_or_default();
    let out = crate::relay::run(&["sessions", "--json", "--data-dir", dir])?;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    Ok(listed.iter().filter(|s| s["state"] == "live").count())
}
