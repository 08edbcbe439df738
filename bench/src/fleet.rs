//! Fleet load (issue 17): three real relays on one private PostgreSQL
//! (`assent_fleet::testing::PgServer`), one technician enrolled on each.
//! Workers cycle sessions for the whole run: worker i's viewer asks relay
//! i%3 for an invite, its agent redeems the code at relay (i+1)%3, which
//! redirects it to relay i%3; the user consents, the session goes live and
//! the viewer ends it. Afterwards the relays stop (SIGTERM, so their last
//! records ship) and every relay's local audit log is compared with the
//! central one: no record lost or duplicated, one `session_end` per
//! `session_start`, `audit verify --fleet` clean. A failed check fails the
//! group.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use assent_client::{AgentLive, AgentPending, ClientError, Viewer, ViewerEvent};
use assent_fleet::testing::PgServer;
use assent_proto::identity::SecretKey;
use assent_proto::wire::{ConsentDecision, Scope};
use tokio::task::JoinSet;

use crate::procs::{ProcUsage as _, Usage};
use crate::relay::{self, BenchRelay};
use crate::report::{Better, Figure, Target};
use audit::{catch_up, check, db_counts, verify_fleet, Check, DbCounts};

mod audit;

const GROUP: &str = "fleet";
const RELAYS: usize = 3;
const DB: &str = "fleet";
/// A cycle taking longer than this counts as failed (`timeout`).
const CYCLE_LIMIT: Duration = Duration::from_secs(30);
/// How long the central audit may take to catch up after the load.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(60);
/// How long a relay may take to stop after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(30);
const MB: f64 = 1e6;
pub struct Plan {
    /// Workers cycling sessions at once.
    pub workers: usize,
    pub duration: Duration,
}

struct BenchFleet {
    pg: PgServer,
    relays: Vec<BenchRelay>,
    /// Every relay's CA in one file: what agents and viewers trust.
    ca: PathBuf,
    _tmp: tempfile::TempDir,
}

fn relay_id(i: usize) -> String {
    format!("relay-{}", (b'a' + i as u8) as char)
}

fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("temporary path is not UTF-8")
}

/// PostgreSQL, the schema, and three relays with a `[fleet]` table on a
/// fixed port each (so `public_address` is right), all serving.
async fn start_fleet() -> anyhow::Result<BenchFleet> {
    let pg = PgServer::start().context("a private PostgreSQL (scripts/packages installs it)")?;
    let url = pg.create_database(DB)?;
    let tmp = tempfile::tempdir()?;
    let technician = SecretKey::generate().context("generating a technician key")?;
    let key_file = tmp.path().join("technician.key");
    relay::write_key_file(&key_file, &technician)?;
    let mut dirs = Vec::new();
    for i in 0..RELAYS {
        let dir = tmp.path().join(relay_id(i));
        let port = free_udp_port()?;
        // One CA for the fleet: the first relay's issues the others'.
        let first_tls = tmp.path().join(relay_id(0)).join("tls");
        match i {
            0 => relay::init(&dir, &format!("127.0.0.1:{port}"))?,
            _ => relay::init_with(
                &dir,
                &format!("127.0.0.1:{port}"),
                &["--ca-dir", path_str(&first_tls)?],
            )?,
        }
        // The relay's default code limits stand: an agent sent on to its
        // technician's relay is no wrong guess, however many share an address.
        let table = format!(
            "\n[fleet]\ndatabase = {}\nrelay_id = \"{}\"\npublic_address = \"127.0.0.1:{port}\"\n",
            serde_json::to_string(&url)?,
            relay_id(i)
        );
        let config = dir.join("relay.toml");
        std::fs::write(&config, std::fs::read_to_string(&config)? + &table)?;
        relay::enrol(&dir, &technician)?;
        dirs.push(dir);
    }
    relay::run(&["fleet", "migrate", "--data-dir", path_str(&dirs[0])?])?;
    let ca = dirs[0].join("tls/ca.pem");
    let mut relays = Vec::new();
    for (i, dir) in dirs.into_iter().enumerate() {
        let log = tmp.path().join(format!("{}.log", relay_id(i)));
        relays.push(BenchRelay::serve(dir, log, technician.clone(), key_file.clone()).await?);
    }
    Ok(BenchFleet {
        pg,
        relays,
        ca,
        _tmp: tmp,
    })
}

struct Ctx {
    addrs: Vec<String>,
    ca: PathBuf,
    key: SecretKey,
}

#[derive(Default)]
struct Tally {
    completed: u64,
    join_to_live_ms: Vec<f64>,
    /// Failed cycles by kind, and the first error of each kind.
    failures: BTreeMap<String, (u64, String)>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.completed += other.completed;
        self.join_to_live_ms.extend(other.join_to_live_ms);
        for (kind, (n, first)) in other.failures {
            self.failures.entry(kind).or_insert((0, first)).0 += n;
        }
    }

    fn fail(&mut self, kind: String, error: &anyhow::Error) {
        let entry = self.failures.entry(kind);
        entry.or_insert_with(|| (0, format!("{error:#}"))).0 += 1;
    }
}

/// Why a cycle failed: the step (and the relay's refusal kind, if any).
struct Failure(String, anyhow::Error);

fn at(step: &'static str) -> impl FnOnce(ClientError) -> Failure {
    move |e| match e.refusal() {
        Some(kind) => Failure(format!("{step}: refused {kind:?}"), e.into()),
        None => Failure(step.to_string(), e.into()),
    }
}

/// One session through the fleet, from invite to end; the time from the
/// agent's join to its live session.
async fn cycle(ctx: &Ctx, i: usize) -> Result<Duration, Failure> {
    let (home, door) = (&ctx.addrs[i % RELAYS], &ctx.addrs[(i + 1) % RELAYS]);
    let device = SecretKey::generate().map_err(|e| Failure("device key".into(), anyhow!("{e}")))?;
    let request = crate::pviewer::request(Scope::View);
    let mut viewer = Viewer::connect(home, &ctx.ca, &ctx.key, request)
        .await
        .map_err(at("invite"))?;
    let code = viewer.invite.code.clone();
    let agent = async {
        let joined = Instant::now();
        let pending = AgentPending::join(door, &ctx.ca, device, "bench-fleet", &code)
            .await
            .map_err(at("join"))?;
        if pending.relay != *home {
            let e = anyhow!("sent to {} instead of {home}", pending.relay);
            return Err(Failure("join: wrong relay".into(), e));
        }
        let live = pending
            .answer(ConsentDecision::View)
            .await
            .map_err(at("consent"))?;
        Ok((live, joined.elapsed()))
    };
    let viewer_side = async {
        loop {
            match viewer.next_event().await.map_err(at("viewer wait"))? {
                ViewerEvent::Started { .. } => break,
                ViewerEvent::Ended(r) => {
                    return Err(Failure("viewer wait".into(), anyhow!("ended: {r:?}")))
                }
                _ => continue,
            }
        }
        viewer
            .control
            .accept_data()
            .await
            .map_err(at("viewer data"))
    };
    let ((live, took), viewer_data) = tokio::try_join!(agent, viewer_side)?;
    drop(viewer_data);
    let AgentLive { control, data, .. } = live;
    drop(data);
    tokio::join!(
        viewer.control.end(),
        control.close_when_ended(Duration::from_secs(2))
    );
    Ok(took)
}

async fn worker(ctx: Arc<Ctx>, i: usize, delay: Duration, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    tokio::time::sleep(delay).await;
    while Instant::now() < deadline {
        let (kind, e) = match tokio::time::timeout(CYCLE_LIMIT, cycle(&ctx, i)).await {
            Ok(Ok(took)) => {
                tally.completed += 1;
                tally.join_to_live_ms.push(took.as_secs_f64() * 1e3);
                continue;
            }
            Ok(Err(Failure(kind, e))) => (kind, e),
            Err(_) => ("timeout".into(), anyhow!("cycle over {CYCLE_LIMIT:?}")),
        };
        tally.fail(kind, &e);
        // A short pause after a failure, so a refusing relay is not hammered.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tally
}

/// Runs the workers until `plan.duration` is over (each finishes its cycle).
async fn load(f: &BenchFleet, plan: &Plan) -> Tally {
    let ctx = Arc::new(Ctx {
        addrs: f.relays.iter().map(|r| r.addr.clone()).collect(),
        ca: f.ca.clone(),
        key: f.relays[0].technician.clone(),
    });
    let ramp = (plan.duration / 4).min(Duration::from_secs(3));
    let deadline = Instant::now() + plan.duration;
    let mut set = JoinSet::new();
    for i in 0..plan.workers {
        let delay = ramp.mul_f64(i as f64 / plan.workers.max(1) as f64);
        set.spawn(worker(ctx.clone(), i, delay, deadline));
    }
    let mut total = Tally::default();
    while let Some(t) = set.join_next().await {
        total.add(t.unwrap_or_default());
    }
    total
}

/// SIGTERM to every relay, then waits for each; what went wrong.
fn stop_relays(relays: &mut [BenchRelay]) -> Vec<String> {
    relays.iter().for_each(|r| r.proc.signal(libc::SIGTERM));
    let mut problems = Vec::new();
    for (i, r) in relays.iter_mut().enumerate() {
        match tokio::task::block_in_place(|| r.proc.wait_timeout(STOP_LIMIT)) {
            Some(s) if s.success() => {}
            Some(s) => problems.push(format!("{} exited with {s}", relay_id(i))),
            None => problems.push(format!(
                "{} did not stop within {STOP_LIMIT:?}",
                relay_id(i)
            )),
        }
    }
    problems
}

/// CPU seconds of the PostgreSQL server and its live backends.
fn pg_cpu(pg: &PgServer) -> Option<f64> {
    let pid_file = std::fs::read_to_string(pg.data_dir().join("postmaster.pid")).ok()?;
    let pid: u32 = pid_file.lines().next()?.trim().parse().ok()?;
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1));
        if p == pid || ppid == Some(pid.to_string().as_str()) {
            total += Usage::of(p).map(|u| u.cpu_secs).unwrap_or(0.0);
        }
    }
    Some(total)
}

/// What the run measured, before the relays stop.
struct Measured {
    secs: f64,
    tally: Tally,
    db0: DbCounts,
    db1: DbCounts,
    relay_cpu: f64,
    relay_peak_rss: u64,
    pg_cpu: Option<f64>,
    clients_cpu: f64,
    caught_up: Option<f64>,
}

async fn measure(f: &BenchFleet, plan: &Plan) -> anyhow::Result<Measured> {
    let relays =
        || -> anyhow::Result<Vec<Usage>> { f.relays.iter().map(|r| r.proc.usage()).collect() };
    let (db0, usage0) = (db_counts(&f.pg)?, relays()?);
    let (pg0, clients0) = (pg_cpu(&f.pg), Usage::this_process()?);
    let t0 = Instant::now();
    let tally = load(f, plan).await;
    let secs = t0.elapsed().as_secs_f64();
    let usage1 = relays()?;
    let (pg1, clients1) = (pg_cpu(&f.pg), Usage::this_process()?);
    let caught_up = catch_up(f).await?;
    Ok(Measured {
        secs,
        tally,
        db0,
        db1: db_counts(&f.pg)?,
        relay_cpu: usage0
            .iter()
            .zip(&usage1)
            .map(|(a, b)| b.cpu_secs - a.cpu_secs)
            .sum(),
        relay_peak_rss: usage1.iter().map(|u| u.peak_rss).max().unwrap_or(0),
        pg_cpu: pg0.zip(pg1).map(|(a, b)| b - a),
        clients_cpu: clients1.cpu_secs - clients0.cpu_secs,
        caught_up,
    })
}

fn figures(m: &Measured, c: &Check) -> Vec<Figure> {
    let rate = |n: f64| Some(n / m.secs);
    let (d0, d1, done) = (&m.db0, &m.db1, m.tally.completed as f64);
    let shipped = rate(d1.audit - d0.audit);
    let writes = rate(d1.started + d1.ended - d0.started - d0.ended);
    let growth = (done > 0.0).then(|| (d1.bytes - d0.bytes) / MB / done * 1000.0);
    let rss = Some(m.relay_peak_rss as f64 / MB);
    let failed = Some(m.tally.failures.values().map(|f| f.0).sum::<u64>() as f64);
    let (hi, lo) = (Better::Higher, Better::Lower);
    let (cpu, pg, own) = (
        rate(m.relay_cpu),
        m.pg_cpu.and_then(rate),
        rate(m.clients_cpu),
    );
    let (caught, unpaired) = (m.caught_up, Some(c.unpaired as f64));
    let rows = [
        ("sessions completed (fleet-wide)", "/s", hi, rate(done)),
        ("invites created", "/s", hi, rate(d1.invites - d0.invites)),
        ("audit records shipped (central rows)", "/s", hi, shipped),
        ("directory writes (session start + end)", "/s", hi, writes),
        ("central audit caught up after load", "s", lo, caught),
        ("DB growth per 1000 sessions", "MB", lo, growth),
        ("relay CPU (3 relays together)", "cores", lo, cpu),
        ("relay peak RSS (largest of 3)", "MB", lo, rss),
        ("PostgreSQL CPU (context)", "cores", lo, pg),
        ("benchmark clients' CPU (context)", "cores", lo, own),
        ("sessions without a start/end pair", "count", lo, unpaired),
        ("failed cycles", "count", lo, failed),
    ];
    let mut out: Vec<Figure> = rows
        .into_iter()
        .map(|(name, unit, better, v)| Figure::single(GROUP, name, unit, better, v))
        .collect();
    let join = &m.tally.join_to_live_ms;
    out.insert(
        4,
        Figure::from_samples(GROUP, "agent join → live", "ms", lo, join),
    );
    for (name, n) in [
        ("audit records lost (local, not central)", c.lost),
        ("audit records duplicated or foreign (central)", c.extra),
    ] {
        let fig = Figure::single(GROUP, name, "count", lo, Some(n as f64));
        out.push(fig.target(Target::median(0.0)));
    }
    for (kind, (n, _)) in &m.tally.failures {
        let name = format!("failed cycles: {kind}");
        out.push(Figure::single(GROUP, name, "count", lo, Some(*n as f64)));
    }
    out
}

pub async fn run(plan: &Plan) -> anyhow::Result<Vec<Figure>> {
    let mut f = start_fleet().await?;
    let m = measure(&f, plan).await?;
    let mut problems = stop_relays(&mut f.relays);
    let c = check(&f)?;
    problems.extend(c.problems.iter().cloned());
    if let Some(out) = verify_fleet(&f)? {
        problems.push(format!("audit verify --fleet failed: {}", out.trim()));
    }
    if m.tally.completed == 0 {
        problems.push("no session completed".into());
    }
    for (kind, (n, first)) in &m.tally.failures {
        tracing::warn!(kind, count = n, first, "fleet cycles failed");
    }
    let figures = figures(&m, &c);
    if !problems.is_empty() {
        eprint!("{}", crate::report::table(&figures));
        anyhow::bail!("fleet checks failed:\n{}", problems.join("\n"));
    }
    Ok(figures)
}
