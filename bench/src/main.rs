//! `assent-bench`: measures the frame pipeline, bandwidth, input→photon,
//! consent→first frame, relay throughput and concurrency, agent/viewer
//! CPU and memory, and the agent's footprint beside x11vnc's, on scripted Xvfb desktops with the real programs,
//! and sessions through a fleet of three relays sharing one PostgreSQL; it
//! prints each figure next to its target. Writes `target/bench/results.json`.
//!
//! Nothing here asserts a timing: a missed target is reported, not failed.
//! The exit code is non-zero only when a measurement could not be made.

mod desktop;
mod files;
mod fleet;
mod footprint;
mod link;
mod own_window;
mod path_trace;
mod pipeline;
mod procs;
mod pviewer;
mod relay;
mod relay_idle;
mod relay_load;
mod report;
mod rfb;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use report::Figure;

#[derive(Parser)]
#[command(
    name = "assent-bench",
    about = "Assent benchmarks: pipeline, bandwidth, latency, consent, relay, processes, footprint, fleet.",
    after_help = "Example:\n  cargo run --release -p assent-bench -- all\n  cargo run -p assent-bench -- relay --smoke"
)]
struct Cli {
    /// Which group to run.
    #[arg(value_enum, default_value_t = Group::All)]
    group: Group,
    /// Seconds-long run with small sizes (for CI): checks every
    /// measurement works; the figures are not meant to be quoted.
    #[arg(long, alias = "quick")]
    smoke: bool,
    /// Use the product binaries already built next to this one instead of
    /// running `cargo build` for them first.
    #[arg(long)]
    no_build: bool,
    /// Relay session counts instead of 1,100,1000 (smoke: 1,10).
    #[arg(long, value_delimiter = ',')]
    relay_sessions: Option<Vec<usize>>,
    /// Idle relay session counts instead of the largest relay count and
    /// 10,000 (smoke: the largest relay count); 0 skips the idle scenario.
    #[arg(long, value_delimiter = ',')]
    relay_idle_sessions: Option<Vec<usize>>,
    /// Where to write the results [default: <workspace>/target/bench/results.json].
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Group {
    All,
    /// Capture → diff → encode → decode on one core, per workload.
    Pipeline,
    /// Mbit/s and bytes per frame to the viewer through the relay, per workload.
    Bandwidth,
    /// Input → photon through the relay.
    Latency,
    /// Consent accepted → first full frame decoded.
    Consent,
    /// Relay throughput, CPU, memory and fairness at 1, 100, 1000 sessions.
    Relay,
    /// Agent and viewer CPU and memory during office work.
    Processes,
    /// A file to the user through the relay (MB/s) while the screen changes.
    Files,
    /// Agent CPU, memory, updates/s and bytes beside x11vnc's on static,
    /// typing, moving-photo, window-drag, scrolling, colour-change and video
    /// screens, the static one also with the agent's window up (x11vnc
    /// skipped in smoke runs).
    Footprint,
    /// Input → photon and frames/s through a shaped uplink (8 Mbit/s 40 ms
    /// and 2 Mbit/s 80 ms, a 500 ms queue), typing, with a page scrolling and with a moving photo.
    Link,
    /// Three relays on one PostgreSQL: sessions created and ended through
    /// the fleet (each agent redirected to its technician's relay), then
    /// every relay's local audit log checked against the central one.
    Fleet,
}

/// Sizes of one run.
#[derive(Debug, serde::Serialize)]
struct Sizes {
    pipeline_secs: f64,
    bandwidth_secs: f64,
    latency_presses: usize,
    consent_runs: usize,
    relay_sessions: Vec<usize>,
    /// Idle sessions held beside the largest relay count (issue 16: 10,000).
    relay_idle_extra: Vec<usize>,
    relay_warmup_secs: f64,
    relay_secs: f64,
    /// The overload scenario's window (issue 16: 60 s).
    relay_overload_secs: f64,
    footprint_settle_secs: f64,
    footprint_secs: f64,
    file_mb: u64,
    /// Workers cycling sessions through the fleet at once, and for how long.
    fleet_sessions: usize,
    fleet_secs: f64,
}

impl Sizes {
    fn new(smoke: bool) -> Sizes {
        if smoke {
            Sizes {
                pipeline_secs: 1.0,
                bandwidth_secs: 3.0,
                latency_presses: 5,
                consent_runs: 2,
                relay_sessions: vec![1, 10],
                relay_idle_extra: vec![],
                relay_warmup_secs: 0.5,
                relay_secs: 1.5,
                relay_overload_secs: 3.0,
                footprint_settle_secs: 0.5,
                footprint_secs: 2.0,
                file_mb: 8,
                fleet_sessions: 10,
                fleet_secs: 5.0,
            }
        } else {
            Sizes {
                // Whole cycles of the office script's three phases.
                pipeline_secs: 12.0,
                bandwidth_secs: 24.0,
                latency_presses: 100,
                consent_runs: 10,
                relay_sessions: vec![1, 100, 1000],
                relay_idle_extra: vec![10_000],
                relay_warmup_secs: 2.0,
                relay_secs: 8.0,
                relay_overload_secs: 60.0,
                footprint_settle_secs: 3.0,
                footprint_secs: 10.0,
                file_mb: 200,
                fleet_sessions: 300,
                fleet_secs: 60.0,
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs the selected groups; `Ok(false)` when one could not be measured.
fn run(cli: Cli) -> anyhow::Result<bool> {
    if !cli.no_build {
        procs::build_product_bins()?;
    }
    for b in procs::PRODUCT_BINS {
        procs::product_bin(b)?;
    }
    let loadavg_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fds = procs::raise_fd_limit()?;
    tracing::info!(open_files = fds, "file limit");
    let mut sizes = Sizes::new(cli.smoke);
    if let Some(n) = &cli.relay_sessions {
        sizes.relay_sessions = n.clone();
    }
    let secs = Duration::from_secs_f64;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let wants = |g: Group| cli.group == Group::All || cli.group == g;

    let mut figures: Vec<Figure> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut record = |group: &str, result: anyhow::Result<Vec<Figure>>| match result {
        Ok(f) => figures.extend(f),
        Err(e) => {
            tracing::error!(group, error = format!("{e:#}"), "group failed");
            errors.push(format!("{group}: {e:#}"));
        }
    };
    if wants(Group::Pipeline) {
        tracing::info!("group 1: frame pipeline");
        record("pipeline", pipeline::run(secs(sizes.pipeline_secs)));
    }
    if wants(Group::Bandwidth) {
        tracing::info!("group 2 (and 6): bandwidth through the relay");
        let with_processes = wants(Group::Processes);
        record(
            "bandwidth",
            runtime.block_on(session::bandwidth(
                secs(sizes.bandwidth_secs),
                with_processes,
            )),
        );
    } else if wants(Group::Processes) {
        tracing::info!("group 6: agent and viewer during office work");
        record(
            "processes",
            runtime.block_on(session::processes(secs(sizes.bandwidth_secs))),
        );
    }
    if wants(Group::Latency) {
        tracing::info!("group 3: input → photon");
        record(
            "latency",
            runtime.block_on(session::latency(sizes.latency_presses)),
        );
    }
    if wants(Group::Consent) {
        tracing::info!("group 4: consent → first frame");
        record(
            "consent",
            runtime.block_on(session::consent(sizes.consent_runs)),
        );
    }
    if wants(Group::Relay) {
        tracing::info!("group 5: relay throughput and concurrency");
        let plan = relay_load::Plan {
            sessions: sizes.relay_sessions.clone(),
            warmup: secs(sizes.relay_warmup_secs),
            duration: secs(sizes.relay_secs),
            overload: secs(sizes.relay_overload_secs),
            sample: secs(if cli.smoke { 0.5 } else { 1.0 }),
        };
        record("relay", runtime.block_on(relay_load::run(&plan)));
        let most = plan.sessions.iter().copied().max().unwrap_or(1);
        let idle = cli.relay_idle_sessions.clone().unwrap_or_else(|| {
            let mut counts = vec![most];
            counts.extend(sizes.relay_idle_extra.iter().filter(|&&n| n != most));
            counts
        });
        for n in idle.into_iter().filter(|&n| n > 0) {
            record("relay", runtime.block_on(relay_idle::run(n, &plan)));
        }
    }
    if wants(Group::Files) {
        tracing::info!("group 8: a file to the user");
        record("files", runtime.block_on(files::run(sizes.file_mb)));
    }
    if wants(Group::Footprint) {
        tracing::info!("group 7: the agent's footprint beside x11vnc's");
        record(
            "footprint",
            runtime.block_on(footprint::run(
                secs(sizes.footprint_settle_secs),
                secs(sizes.footprint_secs),
                cli.smoke,
            )),
        );
    }
    if wants(Group::Link) {
        tracing::info!("group 9: the session over a shaped uplink");
        record(
            "link",
            runtime.block_on(link::run(sizes.latency_presses.min(60))),
        );
    }
    if wants(Group::Fleet) {
        tracing::info!("group 9: sessions through a fleet of three relays");
        let plan = fleet::Plan {
            workers: sizes.fleet_sessions,
            duration: secs(sizes.fleet_secs),
        };
        record("fleet", runtime.block_on(fleet::run(&plan)));
    }
    runtime.shutdown_timeout(Duration::from_secs(2));

    let title = if cli.smoke {
        "Assent benchmarks (SMOKE run: small sizes, figures not for quoting)"
    } else {
        "Assent benchmarks"
    };
    println!("\n{title}\n");
    print!("{}", report::table(&figures));
    let met = figures.iter().filter(|f| f.met == Some(true)).count();
    let targets = figures.iter().filter(|f| f.target.is_some()).count();
    println!("\ntargets met: {met} of {targets}");
    for e in &errors {
        println!("NOT MEASURED: {e}");
    }

    let out = cli
        .out
        .unwrap_or_else(|| procs::workspace_root().join("target/bench/results.json"));
    let json = serde_json::json!({
        "date": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "smoke": cli.smoke,
        "group": cli.group,
        "machine": machine(),
        "loadavg_at_start": loadavg_at_start.trim(),
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "sizes": sizes,
        "figures": figures,
        "errors": errors,
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!("results: {}", out.display());
    Ok(errors.is_empty())
}

/// What the figures were measured on.
fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    serde_json::json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu": model,
        "memory_gib": mem_kb.map(|k| (k as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
        "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_string()),
    })
}
