//! Groups 2, 3, 4 and 6: the real relay and agent processes on loopback,
//! with the real headless viewer (bandwidth, CPU and memory) or the
//! programmatic one (input→photon, consent→first frame).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use assent_proto::session_msg::{InputEvent, Key};
use assent_proto::wire::Scope;

use crate::desktop::{Desktop, Workload, FLIP_COLOURS, FLIP_RECT};
use crate::procs::{self, ProcUsage as _};
use crate::pviewer::{self, Agent};
use crate::relay::BenchRelay;
use crate::report::{Better, Figure, Target};

const MB: f64 = 1e6;

/// One second of the headless viewer's statistics.
#[derive(Debug, Clone, Copy)]
pub struct StatsLine {
    pub frames: u64,
    pub bytes: u64,
}

pub fn parse_stats(line: &str) -> Option<StatsLine> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(StatsLine {
        frames: v["frames"].as_u64()?,
        bytes: v["bytes"].as_u64()?,
    })
}

/// Groups 2 and 6: each workload through the real relay to the real
/// headless viewer for `duration` after a warm-up; agent and viewer CPU and
/// memory during the office run.
pub async fn bandwidth(duration: Duration, with_processes: bool) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for workload in Workload::ALL {
        figures.extend(bandwidth_one(workload, duration, with_processes).await?);
    }
    figures.extend(crate::own_window::static_with_window(duration).await?);
    Ok(figures)
}

/// Group 6 alone: the office run, for agent and viewer CPU and memory.
pub async fn processes(duration: Duration) -> anyhow::Result<Vec<Figure>> {
    let figures = bandwidth_one(Workload::Office, duration, true).await?;
    Ok(figures
        .into_iter()
        .filter(|f| f.group == "processes")
        .collect())
}

async fn bandwidth_one(
    workload: Workload,
    duration: Duration,
    with_processes: bool,
) -> anyhow::Result<Vec<Figure>> {
    let name = workload.name();
    let tmp = tempfile::tempdir()?;
    let relay = BenchRelay::start(tmp.path()).await?;
    let mut desktop = Desktop::start(workload)?;
    let (mut viewer, mut out, mut agent) =
        headless_session(&relay, desktop.display(), tmp.path()).await?;
    desktop.start_driver(workload, 30)?;
    // Warm-up: the keyframe and the driver's first steps.
    let warm = Duration::from_secs(2).min(duration / 3);
    tokio::time::sleep(warm).await;
    while out.try_recv().is_ok() {}

    let relay_bytes_0 = relay.bytes_to_viewer()?;
    let started = Instant::now();
    let mut usage_prev = (agent.proc.usage()?, viewer.usage()?, Instant::now());
    let (agent_cpu_0, viewer_cpu_0) = (usage_prev.0.cpu_secs, usage_prev.1.cpu_secs);
    let mut prev: Option<StatsLine> = None;
    let (mut mbps, mut per_frame, mut fps) = (Vec::new(), Vec::new(), Vec::new());
    // Office seconds by activity, each second under the phase at its middle.
    let mut by_phase: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let (mut agent_cpu, mut viewer_cpu) = (Vec::new(), Vec::new());
    while started.elapsed() < duration {
        let line = procs::wait_line(&mut out, Duration::from_secs(5), "viewer stats", |l| {
            parse_stats(l).is_some()
        })
        .await?;
        let Some(s) = parse_stats(&line) else {
            continue;
        };
        // Each line comes a second after the last, but measure the time
        // anyway: a loaded machine delays them.
        let now = (agent.proc.usage()?, viewer.usage()?, Instant::now());
        let dt = (now.2 - usage_prev.2).as_secs_f64().max(1e-3);
        if let Some(p) = prev {
            let (df, db) = (s.frames - p.frames, s.bytes - p.bytes);
            let m = db as f64 * 8.0 / 1e6 / dt;
            mbps.push(m);
            let middle = usage_prev.2 + (now.2 - usage_prev.2) / 2;
            if let Some(phase) = desktop.office_phase(middle) {
                by_phase.entry(phase).or_default().push(m);
            }
            fps.push(df as f64 / dt);
            if df > 0 {
                per_frame.push(db as f64 / df as f64);
            }
            agent_cpu.push((now.0.cpu_secs - usage_prev.0.cpu_secs) / dt);
            viewer_cpu.push((now.1.cpu_secs - usage_prev.1.cpu_secs) / dt);
        }
        prev = Some(s);
        usage_prev = now;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let relay_bytes = relay.bytes_to_viewer()?.saturating_sub(relay_bytes_0);
    let (agent_end, viewer_end) = (agent.proc.usage()?, viewer.usage()?);
    if !agent.proc.alive() || !viewer.alive() {
        bail!("{name}: the agent or the viewer exited during the run");
    }
    desktop.stop_driver();

    tracing::info!(
        workload = name,
        ?mbps,
        ?fps,
        "per-second Mbit/s and frames/s"
    );
    const G: &str = "bandwidth";
    let mut mbps_fig = Figure::from_samples(
        G,
        format!("{name}: Mbit/s to the viewer (frames)"),
        "Mbit/s",
        Better::Lower,
        &mbps,
    );
    match workload {
        Workload::Office => mbps_fig = mbps_fig.target(Target::median(1.0)),
        Workload::Static => mbps_fig = mbps_fig.target(Target::median(0.05)),
        Workload::Video => {}
    }
    let mut figures = vec![
        mbps_fig,
        Figure::single(
            G,
            format!("{name}: Mbit/s through the relay (wire, mean)"),
            "Mbit/s",
            Better::Lower,
            Some(relay_bytes as f64 * 8.0 / 1e6 / elapsed),
        ),
        Figure::from_samples(
            G,
            format!("{name}: bytes per frame"),
            "bytes",
            Better::Lower,
            &per_frame,
        ),
        Figure::from_samples(
            G,
            format!("{name}: frames/s at the viewer"),
            "fps",
            Better::Higher,
            &fps,
        ),
    ];
    for phase in crate::desktop::OFFICE_PHASES {
        if let Some(v) = by_phase.get(phase) {
            figures.push(Figure::from_samples(
                G,
                format!("{name}: Mbit/s while {phase}"),
                "Mbit/s",
                Better::Lower,
                v,
            ));
        }
    }
    if with_processes && workload == Workload::Office {
        const P: &str = "processes";
        let to_mb = |b: u64| Some(b as f64 / MB);
        figures.extend([
            Figure::from_samples(
                P,
                "agent CPU during office",
                "cores",
                Better::Lower,
                &agent_cpu,
            ),
            Figure::single(
                P,
                "agent CPU during office (whole run)",
                "cores",
                Better::Lower,
                Some((agent_end.cpu_secs - agent_cpu_0) / elapsed),
            ),
            Figure::single(
                P,
                "agent RSS (end)",
                "MB",
                Better::Lower,
                to_mb(agent_end.rss),
            ),
            Figure::single(
                P,
                "agent peak RSS",
                "MB",
                Better::Lower,
                to_mb(agent_end.peak_rss),
            ),
            Figure::from_samples(
                P,
                "viewer (headless) CPU during office",
                "cores",
                Better::Lower,
                &viewer_cpu,
            ),
            Figure::single(
                P,
                "viewer CPU during office (whole run)",
                "cores",
                Better::Lower,
                Some((viewer_end.cpu_secs - viewer_cpu_0) / elapsed),
            ),
            Figure::single(
                P,
                "viewer RSS (end)",
                "MB",
                Better::Lower,
                to_mb(viewer_end.rss),
            ),
            Figure::single(
                P,
                "viewer peak RSS",
                "MB",
                Better::Lower,
                to_mb(viewer_end.peak_rss),
            ),
        ]);
    }
    drop(agent);
    drop(viewer);
    Ok(figures)
}

/// The real headless viewer and the real agent (`--tty`, the user answers
/// "view") in a live session through `relay` on `display`, once the
/// viewer's first statistics line is out; with the viewer's stdout lines.
pub async fn headless_session(
    relay: &BenchRelay,
    display: &str,
    home: &std::path::Path,
) -> anyhow::Result<(
    procs::Proc,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    Agent,
)> {
    headless_session_with(relay, display, home, Extras::default()).await
}

/// What a session needs beyond the plain one: flags for each program and
/// lines the user types at the prompt before answering.
#[derive(Default)]
pub struct Extras<'a> {
    pub viewer: &'a [&'a str],
    pub agent: &'a [&'a str],
    pub at_prompt: &'a [&'a str],
    /// The agent asks in its real window (answered with xdotool, and up
    /// while live), not on its terminal.
    pub window: bool,
}

/// [`headless_session`] with extra flags and prompt lines.
pub async fn headless_session_with(
    relay: &BenchRelay,
    display: &str,
    home: &std::path::Path,
    extras: Extras<'_>,
) -> anyhow::Result<(
    procs::Proc,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    Agent,
)> {
    let viewer_home = home.join("viewer");
    let mut cmd = Command::new(procs::product_bin("assent-viewer")?);
    cmd.args(["connect", "--relay", &relay.addr, "--ca"])
        .arg(relay.ca())
        .args([
            "--ticket",
            "T-BENCH",
            "--headless",
            "--scope",
            "view",
            "--key",
        ])
        .arg(&relay.key_file)
        .args(extras.viewer)
        .env("XDG_CONFIG_HOME", viewer_home.join("config"))
        .env("XDG_DATA_HOME", viewer_home.join("data"))
        .env_remove("RUST_LOG")
        // Kept open: stdin EOF ends a headless session.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut viewer = procs::spawn("assent-viewer", &mut cmd)?;
    let mut out = procs::lines(viewer.child.stdout.take().context("viewer stdout")?);
    let code = procs::wait_line(&mut out, Duration::from_secs(30), "invite code", |l| {
        l.starts_with("Invite code: ")
    })
    .await?
    .trim_start_matches("Invite code: ")
    .to_string();
    let agent = if extras.window {
        let agent = Agent::spawn_windowed(relay, display, &home.join("agent"), &code)?;
        pviewer::answer_in_window(display, "v").await?;
        agent
    } else {
        let mut agent =
            Agent::spawn_with(relay, display, &home.join("agent"), &code, extras.agent)?;
        agent.wait_prompt().await?;
        for line in extras.at_prompt {
            agent.answer(line)?;
        }
        if !extras.at_prompt.is_empty() {
            // The answer counts only once the question has been up a second.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        agent.answer("v")?;
        agent
    };
    procs::wait_line(
        &mut out,
        Duration::from_secs(30),
        "the first stats line",
        |l| parse_stats(l).is_some(),
    )
    .await?;
    Ok((viewer, out, agent))
}

/// Starts a programmatic viewer session with the real agent on `desktop`
/// and returns it live, with the moment the user's answer was typed.
async fn live_session(
    relay: &BenchRelay,
    desktop: &Desktop,
    config: &std::path::Path,
    scope: Scope,
) -> anyhow::Result<(pviewer::LiveViewer, Agent, Instant)> {
    live_session_via(relay, &relay.addr, desktop, config, scope).await
}

/// [`live_session`] with the agent reaching the relay at `agent_addr`.
pub async fn live_session_via(
    relay: &BenchRelay,
    agent_addr: &str,
    desktop: &Desktop,
    config: &std::path::Path,
    scope: Scope,
) -> anyhow::Result<(pviewer::LiveViewer, Agent, Instant)> {
    let viewer = assent_client::Viewer::connect(
        &relay.addr,
        &relay.ca(),
        &relay.technician,
        pviewer::request(scope),
    )
    .await
    .context("programmatic viewer")?;
    let args = ["--tty", viewer.invite.code.as_str()];
    let mut agent = Agent::spawn_via(relay, agent_addr, desktop.display(), config, &args)?;
    let pairing = tokio::spawn(pviewer::pair(viewer, relay.technician.clone()));
    agent.wait_prompt().await?;
    let answered = Instant::now();
    agent.answer(if scope == Scope::Control { "c" } else { "v" })?;
    let live = pairing.await.context("pairing task")??;
    Ok((live, agent, answered))
}

/// Group 4: from the user's answer to the first full frame decoded at the
/// viewer, over `runs` fresh sessions.
pub async fn consent(runs: usize) -> anyhow::Result<Vec<Figure>> {
    let tmp = tempfile::tempdir()?;
    let relay = BenchRelay::start(tmp.path()).await?;
    let desktop = Desktop::start(Workload::Static)?;
    let (mut samples, mut to_live) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let config = tmp.path().join(format!("agent{i}"));
        let (mut live, agent, answered) =
            live_session(&relay, &desktop, &config, Scope::View).await?;
        // Where the time goes: the relay's part (signed consent, audit
        // records on disk, data streams) ends here; the rest is the agent
        // starting capture and the first keyframe's way to the viewer.
        to_live.push(answered.elapsed().as_secs_f64() * 1000.0);
        if !live.next_frame(Duration::from_secs(10)).await? {
            bail!("no first frame within 10 s of consent");
        }
        samples.push(answered.elapsed().as_secs_f64() * 1000.0);
        drop(live);
        drop(agent);
    }
    Ok(vec![
        Figure::from_samples(
            "consent",
            "consent accepted → first full frame decoded",
            "ms",
            Better::Lower,
            &samples,
        )
        .target(Target::median(300.0)),
        Figure::from_samples(
            "consent",
            "  of which: consent accepted → viewer's data stream open",
            "ms",
            Better::Lower,
            &to_live,
        ),
    ])
}

/// Group 3: a key sent by the viewer flips a window's colour on the agent's
/// display; the time until the viewer has decoded the new colour.
pub async fn latency(presses: usize) -> anyhow::Result<Vec<Figure>> {
    let tmp = tempfile::tempdir()?;
    let relay = BenchRelay::start(tmp.path()).await?;
    let desktop = Desktop::start(Workload::Static)?;
    desktop.flip_window()?;
    let (mut live, agent, _) =
        live_session(&relay, &desktop, &tmp.path().join("agent"), Scope::Control).await?;
    live.next_frame(Duration::from_secs(10)).await?;
    let (samples, misses) = key_flips(&mut live, presses).await?;
    if misses > presses / 10 {
        bail!("input→photon: {misses} of {presses} key presses never showed at the viewer");
    }
    drop(live);
    drop(agent);
    let f = |name: &str, t: Target| {
        Figure::from_samples("latency", name, "ms", Better::Lower, &samples).target(t)
    };
    Ok(vec![
        f(
            "input → photon, key to decoded pixels (target on p50)",
            Target::median(30.0),
        ),
        f(
            "input → photon, key to decoded pixels (target on p95)",
            Target::p95(60.0),
        ),
    ])
}

/// Presses a key `presses` times in the flip window (the viewer's input),
/// each time until the viewer has decoded the window's new colour: the
/// input → photon times, in ms, and how many never showed within 2 s.
pub async fn key_flips(
    live: &mut pviewer::LiveViewer,
    presses: usize,
) -> anyhow::Result<(Vec<f64>, usize)> {
    let (x, y, w, h) = FLIP_RECT;
    let (cx, cy) = (x + w / 2, y + h / 2);
    // No window manager: keyboard focus follows the pointer.
    live.input(InputEvent::MouseMove { x: cx, y: cy }).await?;
    live.drain(Duration::from_millis(500)).await?;
    let mut samples = Vec::new();
    let mut misses = 0usize;
    for i in 0..presses {
        let now_colour = live.rgb(cx, cy).context("no decoded screen")?;
        let want = if now_colour == FLIP_COLOURS[0] {
            FLIP_COLOURS[1]
        } else {
            FLIP_COLOURS[0]
        };
        let sent = Instant::now();
        // Again before every press: a driver behind the window (the
        // scrolling page's wheel clicks) moves the pointer, and with it
        // the keyboard focus, away.
        live.input(InputEvent::MouseMove { x: cx, y: cy }).await?;
        live.input(InputEvent::Key {
            key: Key::Char('a'),
            pressed: true,
        })
        .await?;
        live.input(InputEvent::Key {
            key: Key::Char('a'),
            pressed: false,
        })
        .await?;
        let deadline = sent + Duration::from_secs(2);
        let mut seen = false;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if live.next_frame(left).await? && live.rgb(cx, cy) == Some(want) {
                samples.push(sent.elapsed().as_secs_f64() * 1000.0);
                seen = true;
                break;
            }
        }
        if !seen {
            misses += 1;
        }
        // A varying pause, so presses do not lock step with the agent's
        // 16 ms idle poll.
        live.drain(Duration::from_millis(40 + (i as u64 * 37) % 60))
            .await?;
    }
    Ok((samples, misses))
}
