//! The admin socket (`DIR/admin.sock`, mode 0600): how the CLI talks to a
//! running relay, so `sessions`, `kill` and technician changes act at once
//! and their audit records go through the relay's single writer.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::actions::{change, end_technician, kill_local};
use anyhow::{bail, Context as _};
use assent_relay_formats::admin as protocol;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

pub use assent_relay_formats::admin::{AdminRequest, AdminResponse, SessionInfo};

use crate::registry::{Change, Technician};
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
                relay: shared.fleet.as_ref().map(|f| f.relay_id.clone()),
            };
            (e.created, info)
        })
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
    list.into_iter().map(|(_, info)| info).collect()
}

/// In fleet mode, the sessions the other relays hold, from the fleet's
/// directory (`lost` when their relay's lease ran out).
async fn add_fleet_sessions(
    shared: &Shared,
    list: &mut Vec<SessionInfo>,
) -> Result<(), assent_fleet::FleetError> {
    let Some(link) = &shared.fleet else {
        return Ok(());
    };
    let rows = link.fleet.sessions().await;
    link.saw(&rows);
    let started = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    };
    for row in rows?.into_iter().filter(|r| r.relay_id != link.relay_id) {
        let state = match row.state {
            assent_fleet::SessionState::Live => row.phase.clone(),
            assent_fleet::SessionState::Lost => "lost (its relay stopped answering)".into(),
        };
        list.push(SessionInfo {
            id: row.session_id,
            technician: row.technician,
            device: row.device.unwrap_or_default(),
            started: started(row.started_at_ms),
            state,
            relay: Some(row.relay_id),
            ..Default::default()
        });
    }
    Ok(())
}

/// Milliseconds with one decimal, `None` while unknown.
fn rtt_ms(us: &std::sync::atomic::AtomicU64) -> Option<f64> {
    let us = us.load(Ordering::Relaxed);
    (us > 0).then(|| (us as f64 / 100.0).round() / 10.0)
}

async fn execute(shared: &Shared, req: AdminRequest) -> AdminResponse {
    match req {
        AdminRequest::Sessions => {
            let mut sessions = list_sessions(shared);
            // This relay's own list stands even when the fleet's is missing.
            let warning = add_fleet_sessions(shared, &mut sessions).await.err().map(|e| {
                format!("warning: only this relay's sessions: the fleet database could not be asked ({e})")
            });
            AdminResponse {
                ok: true,
                sessions: Some(sessions),
                message: warning,
                ..Default::default()
            }
        }
        AdminRequest::Kill { session } => kill(shared, &session).await,
        AdminRequest::TechnicianAdd { name, key } => {
            match change(shared, Change::Add { name, key }).await {
                Ok(t) => {
                    let line = format!("enrolled {} ({})", t.name, t.fingerprint());
                    AdminResponse::ok(tell_fleet_enrolled(shared, &t, line).await)
                }
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
                    let line = format!("revoked {}; {n} session(s) ended", t.name);
                    AdminResponse::ok(tell_fleet_revoked(shared, &t, line).await)
                }
                Err(e) => AdminResponse::err(e.to_string()),
            }
        }
    }
}

/// Ends a session or pending request this relay holds; in fleet mode,
/// one another relay holds, through the fleet.
async fn kill(shared: &Shared, session: &str) -> AdminResponse {
    if kill_local(shared, session).await {
        info!(session = %session, "admin kill");
        return AdminResponse::ok(format!("session {session} ended"));
    }
    let missing = || AdminResponse::err(format!("no live session or pending request {session}"));
    let Some(link) = &shared.fleet else {
        return missing();
    };
    match crate::fleet::forward_kill(link, session).await {
        Ok(Some(relay)) => {
            info!(session = %session, relay = %relay, "admin kill sent through the fleet");
            AdminResponse::ok(format!("session {session} on relay {relay}: told to end"))
        }
        Ok(None) => missing(),
        Err(e) => AdminResponse::err(format!(
            "no live session or pending request {session} on this relay, and the fleet database could not be asked: {e}"
        )),
    }
}

/// In fleet mode, puts an enrolment in the fleet's registry, so the
/// technician may connect to any relay (enrolled there at first use).
/// A key revoked anywhere in the fleet stays revoked.
async fn tell_fleet_enrolled(shared: &Shared, t: &Technician, line: String) -> String {
    let Some(link) = &shared.fleet else {
        return line;
    };
    let fingerprint = t.fingerprint();
    let shared_doc = serde_json::json!({ "name": t.name });
    let put = match link.fleet.is_revoked(&fingerprint).await {
        Ok(true) => {
            return format!(
                "{line}; WARNING: this key is revoked in the fleet, so only this relay knows it"
            )
        }
        Ok(false) => {
            link.fleet
                .put_technician(&fingerprint, &shared_doc, false)
                .await
        }
        Err(e) => Err(e),
    };
    link.saw(&put);
    match put {
        Ok(_) => format!("{line}; the fleet's other relays accept it too"),
        Err(e) => format!(
            "{line}; WARNING: the fleet database is unreachable ({e}): only this relay knows it"
        ),
    }
}

/// In fleet mode, tells the other relays of a revocation done here.
async fn tell_fleet_revoked(shared: &Shared, t: &Technician, line: String) -> String {
    let Some(link) = &shared.fleet else {
        return line;
    };
    match crate::fleet::forward_revoke(link, &t.fingerprint()).await {
        Ok(()) => format!("{line}; the fleet's other relays are told"),
        Err(e) => format!(
            "{line}; WARNING: the fleet database is unreachable ({e}): the other relays were not told, revoke again when it is back"
        ),
    }
}

/// What the admin reads after changing who may receive escalations.
pub fn escalations_line(t: &Technician) -> String {
    match t.can_receive_escalations {
        true => format!("{} may now receive escalations", t.name),
        false => format!("{} no longer receives escalations", t.name),
    }
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
