//! The admin socket (`DIR/admin.sock`, mode 0600): how the CLI talks to a
//! running relay, so `sessions`, `kill` and technician changes act at once
//! and their audit records go through the relay's single writer.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use assent_proto::session::Event;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

use crate::fields;
use crate::state::Shared;
use crate::store::{StoreError, Technician, Technicians};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum AdminRequest {
    Sessions,
    Kill { session: String },
    TechnicianAdd { name: String, key: String },
    TechnicianRevoke { name: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: String,
    pub technician: String,
    pub ticket: String,
    pub device: String,
    pub scope: String,
    /// RFC 3339 start time; empty while the request is pending.
    pub started: String,
    pub bytes_to_viewer: u64,
    pub bytes_to_agent: u64,
    /// `live`, `waiting for the user to join` or `asking the user`.
    #[serde(default)]
    pub state: String,
    /// Seconds since the request (invite) was created.
    #[serde(default)]
    pub age_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AdminResponse {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Vec<SessionInfo>>,
}

impl AdminResponse {
    fn ok(message: impl Into<String>) -> Self {
        AdminResponse {
            ok: true,
            message: Some(message.into()),
            ..Default::default()
        }
    }
    fn err(error: impl Into<String>) -> Self {
        AdminResponse {
            ok: false,
            error: Some(error.into()),
            ..Default::default()
        }
    }
}

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
    let response = match serde_json::from_str::<AdminRequest>(&line) {
        Ok(req) => execute(&shared, req).await,
        Err(e) => AdminResponse::err(format!("bad request: {e}")),
    };
    let mut out = serde_json::to_vec(&response)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    Ok(())
}

fn now() -> String {
    crate::now_rfc3339()
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
            };
            (e.created, info)
        })
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
    list.into_iter().map(|(_, info)| info).collect()
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
                Some(tx) if tx.send(Event::AdminKill).await.is_ok() => {
                    info!(session = %session, "admin kill");
                    AdminResponse::ok(format!("session {session} ended"))
                }
                _ => AdminResponse::err(format!("no live session or pending request {session}")),
            }
        }
        AdminRequest::TechnicianAdd { name, key } => {
            let result = {
                let mut reg = match shared.technicians.write() {
                    Ok(r) => r,
                    Err(p) => p.into_inner(),
                };
                let mut updated: Technicians = reg.clone();
                match updated.add(&name, &key, &now()) {
                    Ok(t) => updated.save(&shared.dir).map(|()| {
                        *reg = updated;
                        t
                    }),
                    Err(e) => Err(e),
                }
            };
            match result {
                Ok(t) => {
                    audit_technician(shared, "technician_added", &t).await;
                    AdminResponse::ok(format!("enrolled {} ({})", t.name, t.fingerprint()))
                }
                Err(e) => AdminResponse::err(e.to_string()),
            }
        }
        AdminRequest::TechnicianRevoke { name } => {
            let result: Result<Technician, StoreError> = {
                let mut reg = match shared.technicians.write() {
                    Ok(r) => r,
                    Err(p) => p.into_inner(),
                };
                let mut updated: Technicians = reg.clone();
                match updated.revoke(&name, &now()) {
                    Ok(t) => updated.save(&shared.dir).map(|()| {
                        *reg = updated;
                        t
                    }),
                    Err(e) => Err(e),
                }
            };
            match result {
                Ok(t) => {
                    // On record first, then the effect.
                    audit_technician(shared, "technician_revoked", &t).await;
                    let targets: Vec<_> = {
                        let mut st = shared.lock();
                        st.invites.cancel_technician(&t.name);
                        st.sessions
                            .values()
                            .filter(|e| e.technician == t.name)
                            .map(|e| e.control.clone())
                            .collect()
                    };
                    let n = targets.len();
                    for tx in targets {
                        let _ = tx.send(Event::TechnicianRevoked).await;
                    }
                    info!(technician = %t.name, sessions = n, "technician revoked");
                    AdminResponse::ok(format!("revoked {}; {n} session(s) ended", t.name))
                }
                Err(e) => AdminResponse::err(e.to_string()),
            }
        }
    }
}

async fn audit_technician(shared: &Shared, event: &str, t: &Technician) {
    if let Err(e) = shared
        .audit
        .record(
            event,
            fields! {"technician" => t.name, "technician_key" => t.fingerprint()},
        )
        .await
    {
        warn!(error = %e, "technician change not audited");
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
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut answer = String::new();
    BufReader::new(read.take(64 * 1024 * 1024))
        .read_line(&mut answer)
        .await
        .context("reading the relay's answer")?;
    let response = serde_json::from_str(&answer).context("the relay's answer is not valid")?;
    Ok(Some(response))
}
