//! `assent-relay serve`: the QUIC accept loop and authentication of both
//! roles; every refusal goes through [`refuse`] with a typed [`Refusal`].

mod agent;
mod fleet_gate;
mod handover;
mod resume;
mod viewer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use assent_net::{close, Connection, Endpoint, NetError, RecvStream, SendStream};
use assent_proto::identity::{self, PublicKey};
use assent_proto::wire::{ClientMsg, ErrorKind, RelayMsg, Role};
use tracing::{info, info_span, warn, Instrument as _};

use crate::fields;
use crate::state::{Peer, Shared};

/// Refusal sent to a client before closing its connection.
pub struct Refusal {
    pub kind: ErrorKind,
    pub message: String,
    /// `auth_failed` reason to audit, if this refusal is an auth failure.
    pub audit_reason: Option<&'static str>,
}

impl Refusal {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
            audit_reason: None,
        }
    }
    fn auth(kind: ErrorKind, reason: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
            audit_reason: Some(reason),
        }
    }
}

/// Runs the accept loop until `shutdown` flips.
pub async fn accept_loop(shared: Arc<Shared>, endpoint: Endpoint) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = shutdown.changed() => break,
        };
        let peer = incoming.remote_address();
        // Address validation first (a Retry: one small packet, no state):
        // until the client has shown it receives at its address, the relay
        // sends nothing bigger, so a spoofed source cannot turn it into an
        // amplifier (quinn alone may send 3x plus one datagram). Costs a
        // round trip per connection; only validated ones count below.
        if !incoming.remote_address_validated() && incoming.may_retry() {
            let _ = incoming.retry();
            continue;
        }
        let allowed = shared.lock().conn_rate.allow(&peer.ip(), Instant::now());
        if !allowed {
            warn!(%peer, "connection refused: per-address connection rate exceeded");
            shared.metrics.admission_refused("connection_rate");
            incoming.refuse();
            continue;
        }
        let shared = shared.clone();
        let span = info_span!("conn", %peer);
        tokio::spawn(
            async move {
                match incoming.await {
                    Ok(conn) => {
                        shared.windows.join(&conn);
                        handle_connection(shared, conn).await
                    }
                    Err(e) => {
                        // Most often a client that does not trust this
                        // relay's CA; bounded by the connection rate limit.
                        info!(error = %e, "TLS handshake failed");
                        let _ = shared
                            .audit
                            .record(
                                "auth_failed",
                                fields! {"role" => "unknown", "peer" => peer.to_string(), "reason" => "tls_handshake_failed"},
                            )
                            .await;
                    }
                }
            }
            .instrument(span),
        );
    }
}

async fn handle_connection(shared: Arc<Shared>, conn: Connection) {
    let peer = conn.remote_address();
    let auth_timeout = Duration::from_secs(shared.limits().auth_timeout_secs);
    let Some((mut send, mut recv)) = control_stream(&conn, auth_timeout).await else {
        return;
    };
    let mut nonce = [0u8; 32];
    if assent_proto::random_bytes(&mut nonce).is_err() {
        conn.close(close::REFUSED, b"internal error");
        return;
    }
    let greeting =
        tokio::time::timeout(auth_timeout, greet(&shared, &mut send, &mut recv, nonce)).await;
    let (role, msg) = match greeting {
        Ok(Ok(Ok(x))) => x,
        Ok(Ok(Err(refusal))) => return refuse(&shared, &conn, send, None, peer, refusal).await,
        Ok(Err(e)) => {
            info!(error = %e, "connection failed during authentication");
            conn.close(close::REFUSED, b"protocol error");
            return;
        }
        Err(_) => {
            let refusal = Refusal::auth(ErrorKind::Protocol, "timeout", "authentication timed out");
            return refuse(&shared, &conn, send, None, peer, refusal).await;
        }
    };
    let Ok(exporter) = assent_net::exporter(&conn) else {
        conn.close(close::REFUSED, b"internal error");
        return;
    };
    let payload = identity::auth_payload(role, &nonce, &exporter);
    let peer = Peer {
        conn,
        send,
        recv,
        addr: peer,
    };
    dispatch(shared, peer, role, msg, &payload).await
}

/// The client's control stream, opened within the authentication timeout.
async fn control_stream(conn: &Connection, timeout: Duration) -> Option<(SendStream, RecvStream)> {
    match tokio::time::timeout(timeout, conn.accept_bi()).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            info!(error = %e, "connection closed before its control stream");
            None
        }
        Err(_) => {
            info!("no control stream within the authentication timeout");
            conn.close(close::REFUSED, b"authentication timeout");
            None
        }
    }
}

/// `Hello` (the role, at this protocol version), the relay's `Challenge`,
/// and the client's answer to it.
async fn greet(
    shared: &Shared,
    send: &mut SendStream,
    recv: &mut RecvStream,
    nonce: [u8; 32],
) -> Result<Result<(Role, ClientMsg), Refusal>, NetError> {
    let hello: ClientMsg = assent_net::recv_msg(recv).await?;
    let role = match hello {
        ClientMsg::Hello { version, role } if version == assent_proto::PROTOCOL_VERSION => role,
        ClientMsg::Hello { version, .. } => {
            return Ok(Err(Refusal::new(
                ErrorKind::BadVersion,
                format!(
                    "protocol version {version} is not supported (this relay speaks {})",
                    assent_proto::PROTOCOL_VERSION
                ),
            )))
        }
        _ => return Ok(Err(Refusal::new(ErrorKind::Protocol, "expected Hello"))),
    };
    let challenge = RelayMsg::Challenge {
        nonce,
        relay_key: shared.signing.public().0,
    };
    assent_net::send_msg(send, &challenge).await?;
    let msg: ClientMsg = assent_net::recv_msg(recv).await?;
    Ok(Ok((role, msg)))
}

/// Hands the greeted client to its role's flow; `payload` is what its key
/// must have signed.
async fn dispatch(shared: Arc<Shared>, peer: Peer, role: Role, msg: ClientMsg, payload: &[u8]) {
    match (role, msg) {
        (
            Role::Viewer,
            ClientMsg::ViewerAuth {
                public_key,
                signature,
            },
        ) => {
            let key = PublicKey(public_key);
            viewer::viewer_flow(shared, peer, key, payload, &signature)
                .instrument(info_span!("viewer"))
                .await
        }
        (
            Role::Agent,
            ClientMsg::AgentJoin {
                code,
                device,
                device_key,
                signature,
            },
        ) => {
            let join = agent::AgentJoin {
                code,
                device,
                device_key: PublicKey(device_key),
            };
            agent::agent_flow(shared, peer, join, payload, &signature)
                .instrument(info_span!("agent"))
                .await
        }
        (
            role,
            ClientMsg::Resume {
                session,
                credential,
                signature,
            },
        ) => {
            let ask = resume::ResumeAsk {
                session,
                credential,
                signature,
            };
            resume::resume_flow(shared, peer, role, ask, payload)
                .instrument(info_span!("resume"))
                .await
        }
        (role, _) => {
            let refusal = Refusal::new(ErrorKind::Protocol, "unexpected message for this role");
            refuse_peer(&shared, peer, role, refusal.into()).await
        }
    }
}

/// Sends a refusal, audits it when it is an authentication failure, and
/// closes the connection once the client has had a moment to read it.
pub async fn refuse(
    shared: &Shared,
    conn: &Connection,
    mut send: SendStream,
    role: Option<Role>,
    peer: SocketAddr,
    refusal: Refusal,
) {
    if let Some(reason) = refusal.audit_reason {
        let role = role.map(Role::as_str).unwrap_or("unknown");
        warn!(role, reason, "authentication failed");
        let _ = shared
            .audit
            .record(
                "auth_failed",
                fields! {"role" => role, "peer" => peer.to_string(), "reason" => reason},
            )
            .await;
    } else {
        info!(kind = ?refusal.kind, "refused: {}", refusal.message);
        shared
            .metrics
            .admission_refused(crate::metrics::kind_label(refusal.kind));
    }
    let _ = assent_net::send_msg(
        &mut send,
        &RelayMsg::Error {
            kind: refusal.kind,
            message: refusal.message,
        },
    )
    .await;
    let _ = send.finish();
    // The client closes when it reads the error; do not wait long for it.
    let _ = tokio::time::timeout(Duration::from_millis(500), conn.closed()).await;
    conn.close(close::REFUSED, b"refused");
}

/// New sessions wait while the relay is behind ([`crate::load`]): the
/// client is told when to try again, and the refusal is on record as
/// `admission_refused` (coalesced, with how many it covers).
pub(crate) async fn admit(shared: &Shared, role: Role, peer: SocketAddr) -> Result<(), Refusal> {
    let now = Instant::now();
    let Some(busy) = shared.load.busy(now) else {
        return Ok(());
    };
    if let Some(refused) = shared.load.refused(now) {
        let fields = fields! {
            "role" => role.as_str(), "peer" => peer.to_string(), "reason" => "busy",
            "lag_ms" => busy.lag_ms, "dropped_per_sec" => busy.dropped_per_sec,
            "retry_after_secs" => busy.retry_after_secs,
            "refused" => refused,
        };
        let _ = shared.audit.record("admission_refused", fields).await;
    }
    Err(Refusal::new(ErrorKind::Busy, busy.message()))
}

/// Why an authenticated client's flow stopped before its session.
enum Stop {
    /// Tell the client why, audit it if it is an auth failure, and close.
    Refuse(Refusal),
    /// The client is gone already; nothing to say.
    Silent,
}

impl From<Refusal> for Stop {
    fn from(r: Refusal) -> Stop {
        Stop::Refuse(r)
    }
}

async fn refuse_peer(shared: &Shared, peer: Peer, role: Role, stop: Stop) {
    if let Stop::Refuse(r) = stop {
        refuse(shared, &peer.conn, peer.send, Some(role), peer.addr, r).await;
    }
}

/// What an agent is told about a code that did not redeem.
fn code_refusal(e: assent_proto::invite::RedeemError) -> Refusal {
    use assent_proto::invite::RedeemError;
    let (kind, reason, message) = match e {
        RedeemError::Malformed => (
            ErrorKind::BadCode,
            "bad_code",
            "that is not an invite code: it has 15 digits",
        ),
        RedeemError::Unknown => (
            ErrorKind::BadCode,
            "bad_code",
            "wrong invite code: check it with your technician",
        ),
        RedeemError::Expired => (
            ErrorKind::ExpiredCode,
            "expired_code",
            "this invite code has expired: ask your technician for a new one",
        ),
        RedeemError::Used => (
            ErrorKind::UsedCode,
            "used_code",
            "this invite code was already used: ask your technician for a new one",
        ),
        RedeemError::Withdrawn => (
            ErrorKind::Withdrawn,
            "withdrawn_code",
            "this request was withdrawn by the technician: nothing was shared; \
             ask them for a new code if you still need help",
        ),
    };
    Refusal::auth(kind, reason, message)
}
