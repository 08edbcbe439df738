//! The Assent relay: pairs an authenticated technician with an agent that
//! redeemed the technician's one-time code, records the user's consent,
//! forwards the session's end-to-end encrypted bytes it cannot read, and
//! audits every start and end. `main.rs` is only the command line.

#![forbid(unsafe_code)]

pub mod actions;
pub mod admin;
pub mod audit_writer;
pub mod check;
pub mod config;
pub mod fleet;
pub mod handover;
pub mod load;
pub mod metrics;
pub mod peer;
pub mod registry;
pub mod reload;
pub mod server;
pub mod session;
pub mod state;
pub mod store;
pub mod tracker;
pub mod webhook;
pub mod windows;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use assent_audit::{AuditError, AuditLog};
use assent_proto::invite::InviteBook;
use assent_proto::limits::{CodeGuard, ConnectionRate};
use tokio::sync::watch;
use tracing::info;

use crate::audit_writer::AuditHandle;
use crate::config::{Limits, MAX_INVITES_TOTAL};
use crate::registry::Registry;
use crate::state::{Shared, State};
use crate::store::DataDir;

/// RFC 3339 UTC with milliseconds, as the audit log writes times.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

/// How long shutdown waits for sessions to record their end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Opens the audit log, explaining the common failures.
/// A last record cut short by a crash is set aside and recorded, as `serve`
/// does, so an admin command after a crash is not refused for it.
pub fn open_audit(dir: &DataDir) -> anyhow::Result<AuditLog> {
    match AuditLog::open_repairing(&dir.audit()) {
        Ok((log, torn)) => {
            if let Some(t) = torn {
                warn_torn(&t);
            }
            Ok(log)
        }
        Err(e) => explain_audit_error(dir, e),
    }
}

fn warn_torn(t: &assent_audit::TornTail) {
    tracing::warn!(
        seq = t.seq,
        bytes = t.bytes,
        saved_to = %t.saved_to.display(),
        "the audit log ended in a record cut short (crash while writing); \
         set it aside and recorded audit_repaired"
    );
}

/// Opens the audit log to serve: a last record cut short by a crash is set
/// aside and recorded (`audit_repaired`), and sessions the crash left
/// without an end get one, so every `session_start` has its `session_end`.
pub fn open_audit_after_crash(dir: &DataDir) -> anyhow::Result<AuditLog> {
    let mut log = open_audit(dir)?;
    let orphans = sessions_without_end(&dir.audit())?;
    let recovered = orphans.len();
    let entries = orphans
        .into_iter()
        .map(|(session, started)| {
            (
                "session_end".to_string(),
                fields! {
                    "session" => session, "reason" => "relay_shutdown",
                    "recovered_after_crash" => true, "started" => started,
                    "duration_ms" => serde_json::Value::Null,
                    "bytes_to_viewer" => serde_json::Value::Null,
                    "bytes_to_agent" => serde_json::Value::Null,
                },
            )
        })
        .collect::<Vec<_>>();
    if !entries.is_empty() {
        log.append_batch(entries)
            .context("recording the ends of sessions the relay lost in a crash")?;
        tracing::warn!(
            sessions = recovered,
            "recorded session_end (relay_shutdown, recovered_after_crash) for sessions a crash left open"
        );
    }
    Ok(log)
}

/// `session_start` records with no `session_end` after them, with their start
/// times. Streams the log: memory grows with the sessions open at once, not
/// with the log.
fn sessions_without_end(path: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    use std::io::BufRead as _;
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut open: std::collections::BTreeMap<String, String> = Default::default();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let session = record["session"].as_str().unwrap_or_default().to_string();
        match record["event"].as_str() {
            Some("session_start") => {
                let time = record["time"].as_str().unwrap_or_default().to_string();
                open.insert(session, time);
            }
            Some("session_end") => {
                open.remove(&session);
            }
            _ => {}
        }
    }
    Ok(open.into_iter().collect())
}

fn explain_audit_error(dir: &DataDir, e: AuditError) -> anyhow::Result<AuditLog> {
    match e {
        AuditError::Locked(_) => anyhow::bail!(
            "the audit log {} is in use: another relay is serving this data directory",
            dir.audit().display()
        ),
        AuditError::Corrupt(e) => anyhow::bail!(
            "the audit log {} does not verify ({e}); refusing to append after damage. \
             Move it aside (keep it as evidence) and start again",
            dir.audit().display()
        ),
        e => Err(e).with_context(|| format!("opening {}", dir.audit().display())),
    }
}

/// How much longer than the reconnect grace a silent connection lives.
const IDLE_MARGIN: Duration = Duration::from_secs(5);

/// Runs the relay until SIGTERM/SIGINT. Calls `ready` with the bound address
/// once it accepts connections.
pub async fn serve(
    dir: DataDir,
    listen_override: Option<SocketAddr>,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    dir.require_relay()?;
    let config = config::load(&dir.config())?;
    let listen = listen_override.unwrap_or(config.listen);
    let signing = store::load_signing_key(&dir)?;
    let technicians = registry::load(&dir)?;
    let log = open_audit_after_crash(&dir)?;
    let metrics = Arc::new(metrics::Metrics::new());
    let fleet = fleet::FleetLink::join_if(&dir, config.fleet.as_ref(), &signing.public()).await?;
    let (audit, writer, webhooks) = start_audit(&dir, &config, log, &metrics)?;
    // A connection outlives the reconnect grace a little, so the session
    // decides when an interrupted path ends it (the grace is read at start;
    // a reload changes it for new sessions only up to this bound).
    let idle = config.limits.session().reconnect_grace + IDLE_MARGIN;
    let endpoint = assent_net::server_endpoint(listen, (&dir.cert(), &dir.key()), idle)
        .context("starting the QUIC endpoint")?;
    let local = endpoint.local_addr().context("reading the bound address")?;
    let admin_listener = admin::bind(&dir.admin_socket())?;
    let metrics_listener = metrics::bind(config.metrics.listen).await?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let state = initial_state(&config.limits, Instant::now());
    let shared = Arc::new(Shared {
        dir: dir.clone(),
        limits: std::sync::RwLock::new(config.limits.clone()),
        signing,
        audit: audit.clone(),
        metrics: metrics.clone(),
        technicians: Registry::new(technicians),
        state: Mutex::new(state),
        shutdown: shutdown_rx,
        tasks: Default::default(),
        load: Default::default(),
        windows: Default::default(),
        fleet: fleet.clone(),
    });
    start_load_watch(&shared);
    audit
        .record(
            "relay_started",
            fields! {"listen" => local.to_string(), "version" => env!("CARGO_PKG_VERSION")},
        )
        .await
        .context("writing relay_started")?;
    let (stop, hangup) = signals().await?;
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    info!(%local, workers, "relay listening");

    let helpers = spawn_helpers(&shared, metrics_listener, hangup)?;
    let admin_task = tokio::spawn(admin::serve(shared.clone(), admin_listener));
    let accept = tokio::spawn(server::accept_loop(shared.clone(), endpoint.clone()));
    metrics.set_listening(true);
    ready(local);

    stop.await;
    info!("shutting down: ending live sessions");
    metrics.set_listening(false);
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, shared.tasks.wait_idle()).await;
    let _ = accept.await;
    let _ = admin_task.await;
    stop_helpers(helpers, webhooks).await;
    audit
        .record("relay_stopped", fields! {"reason" => "signal"})
        .await
        .context("writing relay_stopped")?;
    endpoint.close(assent_net::close::SHUTDOWN, b"relay shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    let _ = std::fs::remove_file(dir.admin_socket());
    drop(shared);
    drop(audit);
    last_records(writer, fleet.as_ref(), &dir).await;
    info!("relay stopped");
    Ok(())
}

/// Waits for the audit writer to put every queued record on disk (it exits
/// once its last handle is gone), then ships what the fleet lacks.
async fn last_records(
    writer: std::thread::JoinHandle<()>,
    fleet: Option<&Arc<fleet::FleetLink>>,
    dir: &DataDir,
) {
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .ok();
    if let Some(link) = fleet {
        fleet::ship_rest(link, dir, Duration::from_secs(2)).await;
    }
}

/// Samples how far behind the relay runs (admission control, the drop
/// warning) until shutdown.
fn start_load_watch(shared: &Arc<Shared>) {
    // The closure holds the shared state (so the audit writer) only until
    // the sampler stops at shutdown.
    let limits = shared.clone();
    let bounds = move || {
        let limits = limits.limits();
        load::Bounds {
            lag: Duration::from_millis(limits.busy_lag_ms),
            drops_per_sec: limits.busy_drops_per_sec,
        }
    };
    let shutdown = shared.shutdown.clone();
    let forwarded = shared.metrics.forwarded_bytes();
    tokio::spawn(load::sample(
        shared.load.clone(),
        bounds,
        forwarded,
        shutdown,
    ));
    load::start_stall_hook();
}

/// Starts the audit writer, with the webhook outbox fed from it when
/// `[[webhooks]]` are configured (or deliveries are still queued).
fn start_audit(
    dir: &DataDir,
    config: &config::RelayConfig,
    log: AuditLog,
    metrics: &Arc<metrics::Metrics>,
) -> anyhow::Result<(
    AuditHandle,
    std::thread::JoinHandle<()>,
    Option<webhook::Webhooks>,
)> {
    let last_seq = log.next_seq().saturating_sub(1);
    let Some((mut feed, prepared)) = webhook::prepare(dir, config, last_seq)? else {
        let (audit, writer) =
            AuditHandle::spawn(log, metrics.clone()).context("starting the audit writer")?;
        return Ok((audit, writer, None));
    };
    let committed = Box::new(move |records: &[assent_audit::Record]| feed.committed(records));
    let (audit, writer) = AuditHandle::spawn_with(log, metrics.clone(), committed)
        .context("starting the audit writer")?;
    let webhooks = prepared
        .start(&audit)
        .context("starting the webhook delivery threads")?;
    Ok((audit, writer, Some(webhooks)))
}

/// Stops the helper tasks, and the webhook threads before the audit
/// writer goes (they audit their deliveries).
async fn stop_helpers(
    helpers: Vec<tokio::task::JoinHandle<()>>,
    webhooks: Option<webhook::Webhooks>,
) {
    helpers.iter().for_each(tokio::task::JoinHandle::abort);
    if let Some(w) = webhooks {
        let _ = tokio::task::spawn_blocking(move || w.stop()).await;
    }
}

/// The tasks that stop with the relay without a say in its shutdown:
/// housekeeping, the SIGHUP reload, the fleet's, and the metrics endpoint (its address
/// is logged, which names the port when `listen` asked for port 0).
fn spawn_helpers(
    shared: &Arc<Shared>,
    metrics_listener: Option<tokio::net::TcpListener>,
    hangup: tokio::signal::unix::Signal,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = vec![
        tokio::spawn(housekeeping(shared.clone())),
        tokio::spawn(reload::on_hangup(shared.clone(), hangup)),
    ];
    if let Some(listener) = metrics_listener {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "metrics endpoint listening (/metrics, /healthz, /readyz)");
        }
        tasks.push(tokio::spawn(metrics::serve(shared.clone(), listener)));
    }
    if let Some(link) = &shared.fleet {
        tasks.extend(fleet::tasks::spawn(shared, link)?);
    }
    Ok(tasks)
}

/// No invites, sessions or strikes yet; the tables sized by `limits`.
fn initial_state(limits: &Limits, now: Instant) -> State {
    State {
        invites: InviteBook::new(
            Duration::from_secs(limits.invite_ttl_secs),
            limits.max_pending_invites_per_technician,
            MAX_INVITES_TOTAL,
        ),
        code_guard: CodeGuard::new(limits.code_guard(), now),
        conn_rate: ConnectionRate::new(
            limits.connections_per_minute_per_address,
            Duration::from_secs(60),
        ),
        waiting: Default::default(),
        sessions: Default::default(),
        handovers: Default::default(),
    }
}

/// Keeps the rate-limit tables small.
async fn housekeeping(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let mut st = shared.lock();
        st.conn_rate.forget_full(now);
        st.code_guard.prune(now);
        st.invites.prune(now);
    }
}

/// SIGTERM and SIGINT (the future: stop), and SIGHUP (reload), caught from
/// the moment this is called: installed before the relay says it listens,
/// so a signal sent as soon as it does is handled instead of killing it
/// without `relay_stopped`.
async fn signals() -> anyhow::Result<(
    impl std::future::Future<Output = ()>,
    tokio::signal::unix::Signal,
)> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    Ok((stop, hangup))
}
