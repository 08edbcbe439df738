//! The Assent relay: pairs an authenticated technician with an agent that
//! redeemed the technician's one-time code, records the user's consent,
//! forwards the session's end-to-end encrypted bytes it cannot read, and
//! audits every start and end. `main.rs` is only the command line.

pub mod admin;
pub mod audit_writer;
pub mod config;
pub mod server;
pub mod session;
pub mod store;
pub mod tracker;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use assent_audit::{AuditError, AuditLog};
use assent_proto::invite::InviteBook;
use assent_proto::limits::{CodeGuard, ConnectionRate};
use tokio::sync::watch;
use tracing::info;

use crate::audit_writer::AuditHandle;
use crate::config::{RelayConfig, MAX_INVITES_TOTAL};
use crate::server::{Shared, State};
use crate::store::{DataDir, Technicians};

/// RFC 3339 UTC with milliseconds, as the audit log writes times.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

/// How long shutdown waits for sessions to record their end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Opens the audit log, explaining the common failures.
pub fn open_audit(dir: &DataDir) -> anyhow::Result<AuditLog> {
    match AuditLog::open(&dir.audit()) {
        Ok(log) => Ok(log),
        Err(AuditError::Locked(_)) => anyhow::bail!(
            "the audit log {} is in use: another relay is serving this data directory",
            dir.audit().display()
        ),
        Err(AuditError::Corrupt(e)) => anyhow::bail!(
            "the audit log {} does not verify ({e}); refusing to append after damage. \
             Move it aside (keep it as evidence) and start again",
            dir.audit().display()
        ),
        Err(e) => Err(e).with_context(|| format!("opening {}", dir.audit().display())),
    }
}

/// Runs the relay until SIGTERM/SIGINT. Calls `ready` with the bound address
/// once it accepts connections.
pub async fn serve(
    dir: DataDir,
    listen_override: Option<SocketAddr>,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    dir.require_relay()?;
    let config = RelayConfig::load(&dir.config())?;
    let listen = listen_override.unwrap_or(config.listen);
    let signing = store::load_signing_key(&dir)?;
    let technicians = Technicians::load(&dir)?;
    let log = open_audit(&dir)?;
    let (audit, writer) = AuditHandle::spawn(log).context("starting the audit writer")?;
    let endpoint = assent_net::server_endpoint(listen, &dir.cert(), &dir.key())
        .context("starting the QUIC endpoint")?;
    let local = endpoint.local_addr().context("reading the bound address")?;
    let admin_listener = admin::bind(&dir.admin_socket())?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let now = Instant::now();
    let limits = &config.limits;
    let state = State {
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
    };
    let shared = Arc::new(Shared {
        dir: dir.clone(),
        config: config.clone(),
        signing,
        audit: audit.clone(),
        technicians: RwLock::new(technicians),
        state: Mutex::new(state),
        shutdown: shutdown_rx,
        tasks: Default::default(),
    });
    audit
        .record(
            "relay_started",
            fields! {"listen" => local.to_string(), "version" => env!("CARGO_PKG_VERSION")},
        )
        .await
        .context("writing relay_started")?;
    info!(%local, "relay listening");

    let housekeeping = tokio::spawn(housekeeping(shared.clone()));
    let admin_task = tokio::spawn(admin::serve(shared.clone(), admin_listener));
    let accept = tokio::spawn(server::accept_loop(shared.clone(), endpoint.clone()));
    ready(local);

    wait_for_signal().await?;
    info!("shutting down: ending live sessions");
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, shared.tasks.wait_idle()).await;
    let _ = accept.await;
    let _ = admin_task.await;
    housekeeping.abort();
    audit
        .record("relay_stopped", fields! {"reason" => "signal"})
        .await
        .context("writing relay_stopped")?;
    endpoint.close(assent_net::close::SHUTDOWN, b"relay shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    let _ = std::fs::remove_file(dir.admin_socket());
    drop(shared);
    drop(audit);
    // The writer exits once its last handle is gone; joining it means every
    // queued record is on disk.
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .ok();
    info!("relay stopped");
    Ok(())
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

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
