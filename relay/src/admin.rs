//! The admin socket (`DIR/admin.sock`, mode 0600): how the CLI talks to a
//! running relay, so `sessions`, `kill` and technician changes act at once
//! and their audit records go through the relay's single writer.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use assent_audit::Fields;
use assent_proto::session::Event;
use assent_relay_formats::admin as protocol;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

pub use assent_relay_formats::admin::{AdminRequest, AdminResponse, SessionInfo};

use crate::handover::Control;
use crate::registry::{Change, ChangeError, Technician};
use crate::state::Shared;

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;

/// Binds the admin socket with mode 0600, replacing a stale one.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another relay is serving this data directory ({} answers)",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    // The data directory is 0700, so there is no window in which another
    // user can reach the socket before its mode is set.
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(listener)
}

pub async fn serve(shared: Arc<Shared>, listener: UnixListener) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let stream = tokio::select! {
            s = listener.accept() => match s { Ok((s, _)) => s, Err(e) => { warn!(error = %e, "admin accept failed"); continue } },
            _ = shutdown.changed() => break,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(shared, stream).await {
                warn!(error = %e, "admin request failed");
            }
        });
    }
}

async fn handle(shared: Arc<Shared>, stream: UnixStream) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let response = match protocol::parse_request(&line) {
        Ok(req) => execute(&shared, req).await,
        Err(e) => AdminResponse::err(format!("bad request: {e}")),
    };
    write.write_all(&protocol::to_line(&response)?).await?;
    Ok(())
}

/// Live sessions and pending requests, oldest first: an admin sees a
/// request waiting on a user's screen and can kill it like a session.
pub fn list_sessions(shared: &Shared) -> Vec<SessionInfo> {
    let now = std::time::Instant::now();
    let st = shared.lock();
    let mut list: Vec<(std::time::Instant, SessionInfo)> = st
        .sessions
        .iter()
        .map(|(id, e)| {
            let info = SessionInfo {
                id: id.clone(),
                technician: e.technician.clone(),
                ticket: e.ticket.clone(),
                device: e.device.clone().unwrap_or_default(),
                scope: e.scope.as_str().to_string(),
                started: e.started.clone().unwrap_or_default(),
                bytes_to_viewer: e.counters.to_viewer.load(Ordering::Relaxed),
                bytes_to_agent: e.counters.to_agent.load(Ordering::Relaxed),
                state: e.phase.as_str().to_string(),
                age_secs: now.saturating_duration_since(e.created).as_secs(),
                rate_to_viewer: e.counters.rate_to_viewer.load(Ordering::Relaxed),
                rate_to_agent: e.counters.rate_to_agent.load(Ordering::Relaxed),
                rtt_viewer_ms: rtt_ms(&e.counters.rtt_viewer_us),
                rtt_agent_ms: rtt_ms(&e.counters.rtt_agent_us),
            };
            (e.created, info)
        })
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
    list.into_iter().map(|(_, info)| info).collect()
}

/// Milliseconds with one decimal, `None` while unknown.
fn rtt_ms(us: &std::sync::atomic::AtomicU64) -> Option<f64> {
    let us = us.load(Ordering::Relaxed);
    (us > 0).then(|| (us as f64 / 100.0).round() / 10.0)
}

async fn execute(shared: &Shared, req: AdminRequest) -> AdminResponse {
    match req {
        AdminRequest::Sessions => AdminResponse {
            ok: true,
            sessions: Some(list_sessions(shared)),
            ..Default::default()
        },
        AdminRequest::Kill { session } => {
            let tx = shared
                .lock()
                .sessions
                .get(&session)
                .map(|e| e.control.clone());
            match tx {
                Some(tx) if tx.send(Control::Machine(Event::AdminKill)).await.is_ok() => {
                    info!(session = %session, "admin kill");
                    AdminResponse::ok(format!("session {session} ended"))
                }
                _ => AdminResponse::err(format!("no live session or pending request {session}")),
            }
        }
        AdminRequest::TechnicianAdd { name, key } => {
            match change(shared, Change::Add { name, key }).await {
                Ok(t) => AdminResponse::ok(format!("enrolled {} ({})", t.name, t.fingerprint())),
                Err(e) => AdminResponse::err(e.to_string()),
            }
        }
        AdminRequest::TechnicianEscalations { name, allowed } => {
            match change(shared, Change::Escalations { name, allowed }).await {
                Ok(t) => AdminResponse::ok(escalations_line(&t)),
                Err(e) => AdminResponse::err(e.to_string()),
            }
        }
        AdminRequest::TechnicianRevoke { name } => {
            match change(shared, Change::Revoke { name }).await {
                Ok(t) => {
                    let n = end_technician(shared, &t.name).await;
                    info!(technician = %t.name, sessions = n, "technician revoked");
                    AdminResponse::ok(format!("revoked {}; {n} session(s) ended", t.name))
                }
                Err(e) => AdminResponse::err(e.to_string()),
            }
        }
    }
}

/// What the admin reads after changing who may receive escalations.
pub fn escalations_line(t: &Technician) -> String {
    match t.can_receive_escalations {
        true => format!("{} may now receive escalations", t.name),
        false => format!("{} no longer receives escalations", t.name),
    }
}

/// A registry change through the one audit-first path, its record written
/// by the relay's audit writer.
async fn change(shared: &Shared, change: Change) -> Result<Technician, ChangeError> {
    let record = async |event: String, fields: Fields| {
        shared
            .audit
            .record(&event, fields)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let result = shared
        .technicians
        .change(&shared.dir, &change, record)
        .await;
    if let Err(e) = &result {
        warn!(error = %e, "technician change refused");
    }
    result
}

/// A revocation's effect, once it is on record and in the registry: the
/// technician's pending invites are cancelled and sessions end. Returns how
/// many sessions were told to end.
pub(crate) async fn end_technician(shared: &Shared, technician: &str) -> usize {
    let targets: Vec<_> = {
        let mut st = shared.lock();
        st.invites.cancel_technician(technician);
        st.sessions
            .values()
            .filter(|e| e.technician == technician)
            .map(|e| e.control.clone())
            .collect()
    };
    let n = targets.len();
    for tx in targets {
        let _ = tx.send(Control::Machine(Event::TechnicianRevoked)).await;
    }
    n
}

/// Sends one request to a running relay. `Ok(None)` when no relay answers
/// (socket absent or stale), so the caller can act on the files directly.
pub async fn request(path: &Path, req: &AdminRequest) -> anyhow::Result<Option<AdminResponse>> {
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
    };
    let (read, mut write) = stream.into_split();
    write.write_all(&protocol::to_line(req)?).await?;
    let mut answer = String::new();
    BufReader::new(read.take(64 * 1024 * 1024))
        .read_line(&mut answer)
        .await
        .context("reading the relay's answer")?;
    let response = protocol::parse_response(&answer).context("the relay's answer is not valid")?;
    Ok(Some(response))
}
