//! Group 5: relay throughput and concurrency. Programmatic viewers and
//! agents pair through the real relay (authentication, invite, code,
//! signed consent), then each agent pumps bytes on its data stream and
//! its viewer reads them: the relay forwards opaque bytes, QUIC/TLS on
//! both legs. Unpaced, and paced at a screen session's 180 kB/s.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use assent_client::{AgentLive, AgentPending, DataStream, Viewer, ViewerEvent};
use assent_proto::identity::SecretKey;
use assent_proto::wire::{ConsentDecision, Scope};
use bytes::Bytes;
use tokio::task::JoinSet;

use crate::procs::{ProcUsage as _, Usage};
use crate::relay::BenchRelay;
use crate::report::{quantile, Better, Figure, Target};

const GROUP: &str = "relay";
/// A screen session's budget: 180 kB/s ≈ 1.4 Mbit/s.
pub const PACED_RATE: u64 = 180_000;
/// Each session's offer in the overload scenario: with 1000 sessions, about
/// twice what this machine's relay forwards (~180 MB/s).
const OVERLOAD_RATE: u64 = 400_000;
const MB: f64 = 1e6;
/// Sessions being paired at once while the load is set up.
const SETUP_CONCURRENCY: usize = 16;
/// Failed pairings retried before the run counts as failed.
const MAX_SETUP_RETRIES: usize = 50;

pub struct Plan {
    pub sessions: Vec<usize>,
    pub warmup: Duration,
    pub duration: Duration,
    /// The overload scenario's window: long enough that established
    /// sessions would time out if overload could kill them.
    pub overload: Duration,
    pub sample: Duration,
}

pub async fn run(plan: &Plan) -> anyhow::Result<Vec<Figure>> {
    let largest = plan.sessions.iter().copied().max().unwrap_or(0);
    let mut figures = Vec::new();
    for &n in &plan.sessions {
        for rate in [None, Some(PACED_RATE)] {
            let r = measure(n, rate, plan, false)
                .await
                .with_context(|| format!("relay load with {n} sessions (rate: {rate:?})"))?;
            figures.extend(r.figures(n, rate, n == largest));
        }
    }
    // Overload: the most sessions, each offering more than the relay can
    // forward for all of them, while new sessions keep arriving.
    let overload = Plan {
        sessions: plan.sessions.clone(),
        duration: plan.overload,
        ..*plan
    };
    let r = measure(largest, Some(OVERLOAD_RATE), &overload, true)
        .await
        .with_context(|| format!("relay overload with {largest} sessions"))?;
    figures.extend(r.figures(largest, Some(OVERLOAD_RATE), true));
    Ok(figures)
}

/// Both ends of one live session, kept whole so nothing closes early.
pub(crate) struct Session {
    _viewer: Viewer,
    viewer_data: DataStream,
    agent: AgentLive,
}

pub(crate) async fn open_session(
    addr: Arc<str>,
    ca: Arc<std::path::Path>,
    key: SecretKey,
) -> anyhow::Result<Session> {
    let request = crate::pviewer::request(Scope::View);
    let mut viewer = Viewer::connect(&addr, &ca, &key, request).await?;
    let code = viewer.invite.code.clone();
    let agent = async {
        let pending =
            AgentPending::join(&addr, &ca, SecretKey::generate()?, "bench-load", &code).await?;
        anyhow::Ok(pending.answer(ConsentDecision::View).await?)
    };
    let viewer_side = async {
        loop {
            match viewer.next_event().await? {
                ViewerEvent::Started { .. } => break,
                ViewerEvent::Ended(r) => bail!("session refused: {r:?}"),
                _ => continue,
            }
        }
        anyhow::Ok(viewer.control.accept_data().await?)
    };
    let (agent, viewer_data) = tokio::try_join!(agent, viewer_side)?;
    Ok(Session {
        _viewer: viewer,
        viewer_data,
        agent,
    })
}

struct LoadResult {
    /// Sessions whose stream ended during the run.
    lost: u64,
    /// Per session: whether its stream ended during the run.
    ended: Vec<bool>,
    /// UDP datagrams the kernel dropped for a full receive buffer during
    /// the measured window (system-wide counter).
    udp_drops: Option<u64>,
    /// Of those, the ones at the relay's own socket.
    relay_drops: Option<u64>,
    setup_secs: f64,
    setup_retries: usize,
    /// Aggregate forwarded bytes per second, one sample per interval.
    aggregate: Vec<f64>,
    /// Each session's bytes per second over the whole window.
    per_session: Vec<f64>,
    relay_cpu: f64,
    relay_peak_rss: u64,
    /// CPU of this process (the clients at both ends), for context: on a
    /// shared 2-core machine the clients compete with the relay.
    clients_cpu: f64,
    bytes: u64,
    secs: f64,
    /// Sessions asked for while the load ran (overload only).
    arrivals: Option<Arrivals>,
    datagrams: DatagramSizes,
}

/// Mean UDP datagram size each way, from the clients' own counters: with
/// path MTU discovery working, datagrams grow past 1472 bytes on loopback
/// both ways (see `assent_net::MTU_UPPER_BOUND`).
#[derive(Debug, Default)]
struct DatagramSizes {
    agent_to_relay: Option<f64>,
    relay_to_viewer: Option<f64>,
}

impl DatagramSizes {
    fn of<S, R>(sessions: &[(Viewer, assent_client::Control, S, R)]) -> DatagramSizes {
        let mean =
            |bytes: u64, datagrams: u64| (datagrams > 0).then(|| bytes as f64 / datagrams as f64);
        let (mut up, mut up_n, mut down, mut down_n) = (0, 0, 0, 0);
        for (viewer, agent, _, _) in sessions {
            let a = agent.conn.stats();
            (up, up_n) = (up + a.udp_tx.bytes, up_n + a.udp_tx.datagrams);
            let v = viewer.control.conn.stats();
            (down, down_n) = (down + v.udp_rx.bytes, down_n + v.udp_rx.datagrams);
        }
        DatagramSizes {
            agent_to_relay: mean(up, up_n),
            relay_to_viewer: mean(down, down_n),
        }
    }

    fn figures(&self, label: &str) -> [Figure; 2] {
        let figure = |way: &str, value| {
            Figure::single(
                GROUP,
                format!("{label}: mean datagram {way}"),
                "bytes",
                Better::Higher,
                value,
            )
        };
        [
            figure("agent→relay", self.agent_to_relay),
            figure("relay→viewer", self.relay_to_viewer),
        ]
    }
}

/// What became of new sessions asked for during the run.
#[derive(Debug, Default)]
struct Arrivals {
    started: u64,
    refused_busy: u64,
    /// Neither started nor told "busy" (a timeout or another error).
    failed: u64,
}

impl LoadResult {
    fn figures(&self, n: usize, rate: Option<u64>, largest: bool) -> Vec<Figure> {
        let paced = rate.is_some();
        let overload = rate == Some(OVERLOAD_RATE);
        let label = match rate {
            Some(r) => format!(
                "{n} session{} paced {} kB/s{}",
                if n == 1 { "" } else { "s" },
                r / 1000,
                if overload { " (overload)" } else { "" }
            ),
            None => format!("{n} session{} unpaced", if n == 1 { "" } else { "s" }),
        };
        let mbps: Vec<f64> = self.aggregate.iter().map(|b| b / MB).collect();
        let mut fwd = Figure::from_samples(
            GROUP,
            format!("{label}: forwarded"),
            "MB/s",
            Better::Higher,
            &mbps,
        );
        if n == 1 && !paced {
            fwd = fwd.target(Target::median(400.0));
        }
        let gb = self.bytes as f64 / 1e9;
        let cores = self.relay_cpu / self.secs;
        let median = quantile(&self.per_session, 0.5);
        let slowest = self.per_session.iter().copied().reduce(f64::min);
        let fairness = match (slowest, median) {
            (Some(s), Some(m)) if m > 0.0 => Some(s / m),
            _ => None,
        };
        let mut cpu = Figure::single(
            GROUP,
            format!("{label}: relay CPU"),
            "cores",
            Better::Lower,
            Some(cores),
        );
        let mut rss = Figure::single(
            GROUP,
            format!("{label}: relay peak RSS"),
            "MB",
            Better::Lower,
            Some(self.relay_peak_rss as f64 / MB),
        );
        let mut fair = Figure::single(
            GROUP,
            format!("{label}: fairness slowest/median"),
            "ratio",
            Better::Higher,
            fairness,
        );
        if largest && n > 1 && !overload {
            fair = fair.target(Target::median(0.5));
            rss = rss.target(Target::median(100.0));
            if paced && !overload {
                cpu = cpu.target(Target::median(1.0));
            }
        }
        let mut per_gb = Figure::single(
            GROUP,
            format!("{label}: relay CPU per GB"),
            "core-s/GB",
            Better::Lower,
            (gb > 0.0).then(|| self.relay_cpu / gb),
        );
        if n == 1 && !paced {
            per_gb = per_gb.target(Target::median(2.0));
        } else if largest && n > 1 && !overload {
            per_gb = per_gb.target(Target::median(3.0));
        }
        let mut out = vec![fwd, per_gb, cpu, rss];
        if let (Some(rate), false) = (rate, overload) {
            let offered = (rate * n as u64) as f64 * self.secs;
            let mut delivered = Figure::single(
                GROUP,
                format!("{label}: delivered of offered"),
                "%",
                Better::Higher,
                (offered > 0.0).then(|| 100.0 * self.bytes as f64 / offered),
            );
            if largest && n > 1 {
                delivered = delivered.target(Target::median(99.5));
            }
            out.push(delivered);
        }
        if n > 1 {
            out.push(fair);
            // The same among sessions that stayed up, to tell starvation
            // apart from sessions lost outright (counted below).
            let alive: Vec<f64> = self
                .per_session
                .iter()
                .zip(&self.ended)
                .filter(|(_, ended)| !**ended)
                .map(|(b, _)| *b)
                .collect();
            let m = quantile(&alive, 0.5);
            let s = alive.iter().copied().reduce(f64::min);
            out.push(Figure::single(
                GROUP,
                format!("{label}: fairness among sessions not lost"),
                "ratio",
                Better::Higher,
                match (s, m) {
                    (Some(s), Some(m)) if m > 0.0 => Some(s / m),
                    _ => None,
                },
            ));
        }
        if !paced && n > 1 {
            out.push(Figure::single(
                GROUP,
                format!("{label}: pairing all sessions (setup)"),
                "s",
                Better::Lower,
                Some(self.setup_secs),
            ));
            out.push(Figure::single(
                GROUP,
                format!("{label}: pairings retried after a timeout"),
                "count",
                Better::Lower,
                Some(self.setup_retries as f64),
            ));
        }
        let mut lost = Figure::single(
            GROUP,
            format!("{label}: sessions lost during the run"),
            "count",
            Better::Lower,
            Some(self.lost as f64),
        );
        if largest && n > 1 {
            lost = lost.target(Target::median(0.0));
        }
        out.push(lost);
        if let Some(a) = &self.arrivals {
            out.extend(a.figures(&label));
        }
        out.extend(self.datagrams.figures(&label));
        for (whose, drops) in [
            ("(system)", self.udp_drops),
            ("at the relay's socket", self.relay_drops),
        ] {
            out.push(Figure::single(
                GROUP,
                format!("{label}: UDP receive-buffer drops {whose}"),
                "datagrams",
                Better::Lower,
                drops.map(|d| d as f64),
            ));
        }
        out.push(Figure::single(
            GROUP,
            format!("{label}: benchmark clients' CPU (context)"),
            "cores",
            Better::Lower,
            Some(self.clients_cpu / self.secs),
        ));
        if paced {
            out.push(Figure::from_samples(
                GROUP,
                format!("{label}: per-session delivered"),
                "kB/s",
                Better::Higher,
                &self.per_session.iter().map(|b| b / 1e3).collect::<Vec<_>>(),
            ));
        }
        out
    }
}

async fn measure(
    n: usize,
    rate: Option<u64>,
    plan: &Plan,
    probe_arrivals: bool,
) -> anyhow::Result<LoadResult> {
    let tmp = tempfile::tempdir()?;
    let mut relay = BenchRelay::start(tmp.path()).await?;
    eprintln!("relay: {}", relay.start_facts());
    let addr: Arc<str> = relay.addr.clone().into();
    let ca: Arc<std::path::Path> = relay.ca().into();

    let setup_started = Instant::now();
    let (sessions, retries) = pair_all(&relay, n).await?;
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let stop = Arc::new(AtomicBool::new(false));
    let counters: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let lost = Arc::new(AtomicU64::new(0));
    let ended: Vec<Arc<AtomicBool>> = (0..n).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let mut pumps = JoinSet::new();
    let chunk = Bytes::from(vec![0x5a_u8; 64 * 1024]);
    let mut keep = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    for ((session, counter), ended) in sessions.into_iter().zip(&counters).zip(&ended) {
        let Session {
            _viewer,
            viewer_data,
            agent,
        } = session;
        let AgentLive {
            control,
            data,
            session: id,
            ..
        } = agent;
        ids.push(id);
        keep.push((_viewer, control, viewer_data.send, data.recv));
        let mut send = data.send;
        let mut recv = viewer_data.recv;
        let stop_tx = stop.clone();
        let chunk = chunk.clone();
        pumps.spawn(async move {
            if let Some(rate) = rate {
                // 20 writes a second: smooth enough for QUIC, few enough
                // wake-ups for a thousand sessions in this process.
                let per_tick = (rate / 20) as usize;
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                while !stop_tx.load(Ordering::Relaxed) {
                    tick.tick().await;
                    if send.write_chunk(chunk.slice(..per_tick)).await.is_err() {
                        break;
                    }
                }
            } else {
                while !stop_tx.load(Ordering::Relaxed) {
                    if send.write_chunk(chunk.clone()).await.is_err() {
                        break;
                    }
                }
            }
        });
        let counter = counter.clone();
        let lost = lost.clone();
        let ended = ended.clone();
        let stop_rx = stop.clone();
        pumps.spawn(async move {
            while let Ok(Some(c)) = recv.read_chunk(usize::MAX, true).await {
                counter.fetch_add(c.bytes.len() as u64, Ordering::Relaxed);
            }
            // The stream ended before the run did: the session was lost
            // (e.g. its connection timed out).
            if !stop_rx.load(Ordering::Relaxed) {
                lost.fetch_add(1, Ordering::Relaxed);
                ended.store(true, Ordering::Relaxed);
            }
        });
    }

    let agents = keep
        .iter()
        .zip(ids)
        .map(|((_, agent, _, _), id)| (agent.conn.clone(), id))
        .collect();
    let trace = tokio::spawn(crate::path_trace::watch(
        agents,
        ended.clone(),
        stop.clone(),
    ));
    let total = |c: &[Arc<AtomicU64>]| -> u64 { c.iter().map(|a| a.load(Ordering::Relaxed)).sum() };
    tokio::time::sleep(plan.warmup).await;
    let start_counts: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let udp_0 = udp_receive_drops();
    let relay_drops_0 = socket_drops(relay.proc.pid());
    let relay_0 = relay.proc.usage()?;
    let clients_0 = Usage::this_process()?;
    let t0 = Instant::now();
    let arrivals = probe_arrivals.then(|| {
        let (addr, ca, key) = (addr.clone(), ca.clone(), relay.technician.clone());
        tokio::spawn(arrive_during(addr, ca, key, plan.duration))
    });
    let mut aggregate = Vec::new();
    let (mut last, mut last_t) = (total(&counters), t0);
    while t0.elapsed() < plan.duration {
        tokio::time::sleep(plan.sample).await;
        let (now, now_t) = (total(&counters), Instant::now());
        aggregate.push((now - last) as f64 / (now_t - last_t).as_secs_f64());
        (last, last_t) = (now, now_t);
    }
    let secs = t0.elapsed().as_secs_f64();
    let relay_1: Usage = relay.proc.usage()?;
    let clients_1 = Usage::this_process()?;
    if !relay.proc.alive() {
        bail!(
            "the relay exited during the run; its log:\n{}",
            std::fs::read_to_string(&relay.log).unwrap_or_default()
        );
    }
    let per_session: Vec<f64> = counters
        .iter()
        .zip(&start_counts)
        .map(|(c, s)| (c.load(Ordering::Relaxed) - s) as f64 / secs)
        .collect();
    let bytes = total(&counters) - start_counts.iter().sum::<u64>();
    let udp_drops = match (udp_0, udp_receive_drops()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let relay_drops = match (relay_drops_0, socket_drops(relay.proc.pid())) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let arrivals = match arrivals {
        Some(task) => Some(task.await.context("the arrivals task")?),
        None => None,
    };
    let lost = lost.load(Ordering::Relaxed);
    if lost > 0 {
        eprintln!("relay: {}", end_reasons(&relay.dir));
        eprintln!("relay: {}", lost_connections(&relay.log));
    }
    let ended: Vec<bool> = ended.iter().map(|e| e.load(Ordering::Relaxed)).collect();
    stop.store(true, Ordering::Relaxed);
    pumps.abort_all();
    let _ = trace.await;
    while pumps.join_next().await.is_some() {}
    let datagrams = DatagramSizes::of(&keep);
    drop(keep);
    Ok(LoadResult {
        datagrams,
        lost,
        ended,
        udp_drops,
        relay_drops,
        setup_secs,
        setup_retries: retries,
        aggregate,
        per_session,
        relay_cpu: relay_1.cpu_secs - relay_0.cpu_secs,
        relay_peak_rss: relay_1.peak_rss,
        clients_cpu: clients_1.cpu_secs - clients_0.cpu_secs,
        bytes,
        secs,
        arrivals,
    })
}

/// Why the relay ended sessions, from its audit log (`session_end`
/// reasons with their counts), to tell a relay that judged peers lost
/// from clients that gave up.
fn end_reasons(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.join("audit/audit.jsonl")).unwrap_or_default();
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for record in text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        if record["event"] == "session_end" {
            let reason = record["reason"].as_str().unwrap_or("?").to_string();
            *reasons.entry(reason).or_default() += 1;
        }
    }
    let said: Vec<String> = reasons.iter().map(|(r, n)| format!("{r}={n}")).collect();
    format!(
        "sessions the relay ended during the run: {}",
        said.join(" ")
    )
}

/// The errors the relay's log gives for connections it lost (`connection
/// lost ... error=...`), with their counts: a QUIC idle timeout, a reset,
/// or a transport error tell different stories.
fn lost_connections(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    for line in text.lines().filter(|l| l.contains("connection lost")) {
        let error = line.split("error=").nth(1).unwrap_or("?");
        *errors.entry(error.trim().to_string()).or_default() += 1;
    }
    let said: Vec<String> = errors.iter().map(|(e, n)| format!("{n}× {e}")).collect();
    format!(
        "connections the relay's log calls lost: {}",
        said.join("; ")
    )
}

/// New sessions asked for, one every 2 s over `window`, while the load
/// runs: each starts, is refused as busy, or fails otherwise (which the
/// issue forbids: "none time out silently").
async fn arrive_during(
    addr: Arc<str>,
    ca: Arc<std::path::Path>,
    key: SecretKey,
    window: Duration,
) -> Arrivals {
    let mut a = Arrivals::default();
    let mut kept = Vec::new();
    let start = Instant::now();
    while start.elapsed() < window {
        let attempt = open_session(addr.clone(), ca.clone(), key.clone());
        match tokio::time::timeout(Duration::from_secs(15), attempt).await {
            Ok(Ok(session)) => {
                a.started += 1;
                kept.push(session);
            }
            Ok(Err(e)) if format!("{e:#}").to_lowercase().contains("busy") => a.refused_busy += 1,
            Ok(Err(e)) => {
                tracing::warn!(error = format!("{e:#}"), "a new session failed under load");
                a.failed += 1;
            }
            Err(_) => a.failed += 1,
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    a
}

impl Arrivals {
    fn figures(&self, label: &str) -> Vec<Figure> {
        let count = |what: &str, v: u64| {
            Figure::single(
                GROUP,
                format!("{label}: new sessions {what}"),
                "count",
                Better::Lower,
                Some(v as f64),
            )
        };
        vec![
            Figure::single(
                GROUP,
                format!("{label}: new sessions started"),
                "count",
                Better::Higher,
                Some(self.started as f64),
            ),
            count("refused as busy", self.refused_busy),
            count("timed out or failed otherwise", self.failed).target(Target::median(0.0)),
        ]
    }
}

/// The kernel's count of UDP datagrams dropped because a socket's receive
/// buffer was full (`RcvbufErrors` in /proc/net/snmp), all sockets.
fn udp_receive_drops() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Datagrams the kernel dropped at process `pid`'s UDP sockets.
fn socket_drops(pid: u32) -> Option<u64> {
    assent_net::udp_drops(std::path::Path::new(&format!("/proc/{pid}")))
}

/// Pairs `n` sessions through `relay`, a bounded number at a time (as
/// technicians and users would arrive), before any data flows; retries a
/// handshake that timed out on a saturated machine (the count is returned).
pub(crate) async fn pair_all(
    relay: &BenchRelay,
    n: usize,
) -> anyhow::Result<(Vec<Session>, usize)> {
    pair_all_from(relay, n, None).await
}

/// [`pair_all`], the sessions' connections coming from endpoints shared by
/// `per_endpoint` sessions each when set (each session's viewer and agent
/// on the same one): 10,000 sessions are 20,000 connections, and this
/// machine lets a process open 20,000 files.
pub(crate) async fn pair_all_from(
    relay: &BenchRelay,
    n: usize,
    per_endpoint: Option<usize>,
) -> anyhow::Result<(Vec<Session>, usize)> {
    let addr: Arc<str> = relay.addr.clone().into();
    let ca: Arc<std::path::Path> = relay.ca().into();
    let relay_addr: std::net::SocketAddr = relay.addr.parse().context("the relay's address")?;
    let mut shared: Vec<assent_net::Endpoint> = Vec::new();
    let setup_started = Instant::now();
    let mut sessions = Vec::with_capacity(n);
    let mut pending = JoinSet::new();
    let mut next = 0usize;
    let mut retries = 0usize;
    while sessions.len() < n {
        while next < n && pending.len() < SETUP_CONCURRENCY {
            let session = open_session(addr.clone(), ca.clone(), relay.technician.clone());
            match per_endpoint {
                Some(per) => {
                    let slot = next / per.max(1);
                    while shared.len() <= slot {
                        shared.push(assent_net::client_endpoint(&ca, relay_addr)?);
                    }
                    let endpoint = shared[slot].clone();
                    pending.spawn(assent_net::connecting_from(endpoint, session))
                }
                None => pending.spawn(session),
            };
            next += 1;
        }
        let result = match pending.join_next().await {
            Some(r) => r
                .context("session setup task")
                .and_then(std::convert::identity),
            None => break,
        };
        match result {
            Ok(s) => sessions.push(s),
            Err(e) if retries < MAX_SETUP_RETRIES => {
                // A handshake can time out on a saturated machine; a real
                // client tries again, and the count is reported.
                tracing::warn!(error = format!("{e:#}"), "session setup failed; retrying");
                retries += 1;
                next -= 1;
            }
            Err(e) => {
                let log = std::fs::read_to_string(&relay.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                return Err(e.context(format!(
                    "after {} of {n} sessions and {retries} retries; relay log tail:\n{}",
                    sessions.len(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )));
            }
        }
    }
    tracing::info!(
        sessions = n,
        retries,
        secs = setup_started.elapsed().as_secs_f64(),
        "sessions live"
    );

    Ok((sessions, retries))
}
