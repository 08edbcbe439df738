//! `assent-relay serve`: the QUIC accept loop, authentication of both roles,
//! and the shared state sessions register in.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use assent_net::{close, Connection, Endpoint, NetError, RecvStream, SendStream};
use assent_proto::identity::{self, PublicKey, SecretKey};
use assent_proto::invite::{InviteBook, RedeemError};
use assent_proto::limits::{CodeGuard, ConnectionRate, Throttle};
use assent_proto::session::Event;
use assent_proto::text;
use assent_proto::wire::{ClientMsg, ErrorKind, InviteRequest, RelayMsg, Role, Scope};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, info_span, warn, Instrument as _};

use crate::audit_writer::AuditHandle;
use crate::config::RelayConfig;
use crate::fields;
use crate::session::{run_session, Peer, SessionSetup};
use crate::store::{DataDir, KeyStatus, Technicians};

/// Byte counters of a live session, shared with its forwarders.
#[derive(Debug, Default)]
pub struct Counters {
    pub to_viewer: AtomicU64,
    pub to_agent: AtomicU64,
}

/// What the admin socket and the accept loop know of a session.
pub struct SessionEntry {
    pub technician: String,
    pub ticket: String,
    pub scope: Scope,
    pub device: Option<String>,
    /// RFC 3339 start time, once live.
    pub started: Option<String>,
    pub counters: Arc<Counters>,
    pub control: mpsc::Sender<Event>,
    /// Counts against `max_sessions` from the agent's join on.
    pub holds_slot: bool,
}

/// An authenticated agent handed from its connection task to the session.
pub struct AgentArrival {
    pub peer: Peer,
    pub device: String,
    pub device_key: PublicKey,
}

/// Mutable relay state. Held only for short, non-async sections.
pub struct State {
    pub invites: InviteBook,
    pub code_guard: CodeGuard<IpAddr>,
    pub conn_rate: ConnectionRate<IpAddr>,
    /// Invite id → the session waiting for its agent.
    pub waiting: HashMap<String, (String, oneshot::Sender<AgentArrival>)>,
    /// Session id → entry, from invite creation to the session's end.
    pub sessions: HashMap<String, SessionEntry>,
}

pub struct Shared {
    pub dir: DataDir,
    pub config: RelayConfig,
    pub signing: SecretKey,
    pub audit: AuditHandle,
    pub technicians: RwLock<Technicians>,
    pub state: Mutex<State>,
    pub shutdown: watch::Receiver<bool>,
    pub tasks: crate::tracker::Tracker,
}

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock would already have ended the relay
        // (panic = abort is not set, but no code path panics under it);
        // recover the guard rather than cascade.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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
        let allowed = shared.lock().conn_rate.allow(&peer.ip(), Instant::now());
        if !allowed {
            warn!(%peer, "connection refused: per-address connection rate exceeded");
            incoming.refuse();
            continue;
        }
        let shared = shared.clone();
        let span = info_span!("conn", %peer);
        tokio::spawn(
            async move {
                match incoming.await {
                    Ok(conn) => handle_connection(shared, conn).await,
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
    let auth_timeout = Duration::from_secs(shared.config.limits.auth_timeout_secs);
    let streams = tokio::time::timeout(auth_timeout, conn.accept_bi()).await;
    let (mut send, mut recv) = match streams {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            info!(error = %e, "connection closed before its control stream");
            return;
        }
        Err(_) => {
            info!("no control stream within the authentication timeout");
            conn.close(close::REFUSED, b"authentication timeout");
            return;
        }
    };
    let mut nonce = [0u8; 32];
    if assent_proto::random_bytes(&mut nonce).is_err() {
        conn.close(close::REFUSED, b"internal error");
        return;
    }
    let hello = tokio::time::timeout(auth_timeout, async {
        let hello: ClientMsg = assent_net::recv_msg(&mut recv).await?;
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
        assent_net::send_msg(
            &mut send,
            &RelayMsg::Challenge {
                nonce,
                relay_key: shared.signing.public().0,
            },
        )
        .await?;
        let msg: ClientMsg = assent_net::recv_msg(&mut recv).await?;
        Ok::<_, NetError>(Ok((role, msg)))
    })
    .await;
    let (role, msg) = match hello {
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
    let exporter = match assent_net::exporter(&conn) {
        Ok(e) => e,
        Err(_) => {
            conn.close(close::REFUSED, b"internal error");
            return;
        }
    };
    let peer_state = Peer {
        conn: conn.clone(),
        send,
        recv,
        addr: peer,
    };
    match (role, msg) {
        (
            Role::Viewer,
            ClientMsg::ViewerAuth {
                public_key,
                signature,
            },
        ) => {
            let payload = identity::auth_payload(Role::Viewer, &nonce, &exporter);
            viewer_flow(
                shared,
                peer_state,
                PublicKey(public_key),
                &payload,
                &signature,
            )
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
            let payload = identity::auth_payload(Role::Agent, &nonce, &exporter);
            agent_flow(
                shared,
                peer_state,
                code,
                device,
                PublicKey(device_key),
                &payload,
                &signature,
            )
            .instrument(info_span!("agent"))
            .await
        }
        (role, _) => {
            let refusal = Refusal::new(ErrorKind::Protocol, "unexpected message for this role");
            refuse(&shared, &conn, peer_state.send, Some(role), peer, refusal).await
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

async fn viewer_flow(
    shared: Arc<Shared>,
    mut peer: Peer,
    key: PublicKey,
    payload: &[u8],
    signature: &[u8],
) {
    let status = shared
        .technicians
        .read()
        .map(|t| t.status(&key))
        .unwrap_or(KeyStatus::Unknown);
    let technician = match status {
        KeyStatus::Enrolled(name) => name,
        KeyStatus::Revoked(_) => {
            let r = Refusal::auth(
                ErrorKind::TechnicianRevoked,
                "technician_revoked",
                "this technician key has been revoked; ask the relay admin",
            );
            return refuse(
                &shared,
                &peer.conn,
                peer.send,
                Some(Role::Viewer),
                peer.addr,
                r,
            )
            .await;
        }
        KeyStatus::Unknown => {
            let r = Refusal::auth(
                ErrorKind::UnknownTechnician,
                "unknown_key",
                format!(
                    "technician key {} is not enrolled on this relay; send the admin the line \
                     `assent-viewer keygen` printed",
                    key.fingerprint()
                ),
            );
            return refuse(
                &shared,
                &peer.conn,
                peer.send,
                Some(Role::Viewer),
                peer.addr,
                r,
            )
            .await;
        }
    };
    if key.verify(payload, signature).is_err() {
        let r = Refusal::auth(
            ErrorKind::BadSignature,
            "bad_signature",
            "the key signature does not match this connection",
        );
        return refuse(
            &shared,
            &peer.conn,
            peer.send,
            Some(Role::Viewer),
            peer.addr,
            r,
        )
        .await;
    }
    info!(technician = %technician, "technician authenticated");
    if assent_net::send_msg(
        &mut peer.send,
        &RelayMsg::Authenticated {
            technician: technician.clone(),
        },
    )
    .await
    .is_err()
    {
        return;
    }
    let request = match assent_net::recv_msg::<ClientMsg>(&mut peer.recv).await {
        Ok(ClientMsg::CreateInvite(r)) => r,
        Ok(other) => {
            // A technician presenting an invite code is trying to take
            // over someone's invite (codes are only for the user's agent):
            // on the record, like any other attempt on a code.
            let r = match other {
                ClientMsg::AgentJoin { .. } => Refusal::auth(
                    ErrorKind::Protocol,
                    "code_on_technician_connection",
                    "invite codes are redeemed by the user's agent, not by a technician",
                ),
                _ => Refusal::new(ErrorKind::Protocol, "expected CreateInvite"),
            };
            return refuse(
                &shared,
                &peer.conn,
                peer.send,
                Some(Role::Viewer),
                peer.addr,
                r,
            )
            .await;
        }
        Err(e) => {
            info!(error = %e, "viewer left before asking for an invite");
            return;
        }
    };
    let request = match validate_request(request) {
        Ok(r) => r,
        Err(message) => {
            let r = Refusal::new(ErrorKind::BadInput, message);
            return refuse(
                &shared,
                &peer.conn,
                peer.send,
                Some(Role::Viewer),
                peer.addr,
                r,
            )
            .await;
        }
    };
    let session_id = match assent_proto::random_id(8) {
        Ok(id) => id,
        Err(_) => return peer.conn.close(close::REFUSED, b"internal error"),
    };
    let (arrival_tx, arrival_rx) = oneshot::channel();
    let (control_tx, control_rx) = mpsc::channel(8);
    let created = {
        let mut st = shared.lock();
        match st
            .invites
            .create(&technician, key, request.clone(), Instant::now())
        {
            Ok((invite, code)) => {
                st.waiting
                    .insert(invite.id.clone(), (session_id.clone(), arrival_tx));
                st.sessions.insert(
                    session_id.clone(),
                    SessionEntry {
                        technician: technician.clone(),
                        ticket: request.ticket.clone(),
                        scope: request.scope,
                        device: None,
                        started: None,
                        counters: Arc::default(),
                        control: control_tx,
                        holds_slot: false,
                    },
                );
                Ok((invite, code))
            }
            Err(e) => Err(e),
        }
    };
    let (invite, code) = match created {
        Ok(x) => x,
        Err(e) => {
            let r = Refusal::new(ErrorKind::LimitReached, e.to_string());
            return refuse(
                &shared,
                &peer.conn,
                peer.send,
                Some(Role::Viewer),
                peer.addr,
                r,
            )
            .await;
        }
    };
    let audited = shared
        .audit
        .record(
            "invite_created",
            fields! {
                "technician" => technician,
                "technician_key" => key.fingerprint(),
                "ticket" => request.ticket,
                "client" => request.client,
                "scope" => request.scope.as_str(),
                "invite" => invite.id,
                "session" => session_id,
                "expires_in_secs" => shared.config.limits.invite_ttl_secs,
            },
        )
        .await;
    if audited.is_err() {
        // An invite that is not on record must not be usable.
        withdraw(&shared, &invite.id, &session_id);
        let r = Refusal::new(ErrorKind::Busy, "the relay cannot write its audit log");
        return refuse(
            &shared,
            &peer.conn,
            peer.send,
            Some(Role::Viewer),
            peer.addr,
            r,
        )
        .await;
    }
    info!(invite = %invite.id, session = %session_id, "invite created");
    let sent = assent_net::send_msg(
        &mut peer.send,
        &RelayMsg::InviteCreated {
            invite: invite.id.clone(),
            code: code.grouped(),
            expires_in_secs: u32::try_from(shared.config.limits.invite_ttl_secs)
                .unwrap_or(u32::MAX),
        },
    )
    .await;
    drop(code);
    if sent.is_err() {
        withdraw(&shared, &invite.id, &session_id);
        return;
    }
    let token = shared.tasks.token();
    run_session(
        shared.clone(),
        SessionSetup {
            session: session_id,
            technician,
            technician_key: key,
            invite,
            request,
            viewer: peer,
            arrival: arrival_rx,
            control: control_rx,
        },
    )
    .instrument(tracing::Span::current())
    .await;
    drop(token);
}

fn withdraw(shared: &Shared, invite: &str, session: &str) {
    let mut st = shared.lock();
    st.invites.cancel(invite);
    st.waiting.remove(invite);
    st.sessions.remove(session);
}

fn validate_request(r: InviteRequest) -> Result<InviteRequest, String> {
    let e = |e: text::TextError| e.to_string();
    Ok(InviteRequest {
        ticket: text::single_line("ticket", &r.ticket, text::MAX_TICKET).map_err(e)?,
        client: text::optional_line("client", &r.client, text::MAX_CLIENT).map_err(e)?,
        summary: text::optional_line("summary", &r.summary, text::MAX_SUMMARY).map_err(e)?,
        impact: r.impact,
        scope: r.scope,
    })
}

#[allow(clippy::too_many_arguments)]
async fn agent_flow(
    shared: Arc<Shared>,
    peer: Peer,
    code: String,
    device: String,
    device_key: PublicKey,
    payload: &[u8],
    signature: &[u8],
) {
    let refuse_agent = |peer: Peer, r: Refusal| {
        let shared = shared.clone();
        async move {
            refuse(
                &shared,
                &peer.conn,
                peer.send,
                Some(Role::Agent),
                peer.addr,
                r,
            )
            .await
        }
    };
    if device_key.verify(payload, signature).is_err() {
        let r = Refusal::auth(
            ErrorKind::BadSignature,
            "bad_signature",
            "the device key signature does not match this connection",
        );
        return refuse_agent(peer, r).await;
    }
    let device = match text::single_line("device name", &device, text::MAX_NAME) {
        Ok(d) => d,
        Err(e) => {
            return refuse_agent(peer, Refusal::new(ErrorKind::BadInput, e.to_string())).await
        }
    };
    let ip = peer.addr.ip();
    // Check and redeem under one lock so two guesses cannot race the guard.
    let outcome = {
        let mut st = shared.lock();
        let now = Instant::now();
        match st.code_guard.check(&ip, now) {
            Err(t) => Err(t),
            Ok(()) => {
                let r = st.invites.redeem(&code, now);
                match &r {
                    Ok(_) => st.code_guard.succeeded(&ip),
                    Err(_) => st.code_guard.failed(&ip, now),
                }
                Ok(r)
            }
        }
    };
    drop(code);
    let invite = match outcome {
        Err(Throttle::Address(wait)) => {
            let r = Refusal::auth(
                ErrorKind::Throttled,
                "throttled",
                format!(
                    "too many wrong codes from this address; wait {} s and check the code with your technician",
                    wait.as_secs().max(1)
                ),
            );
            return refuse_agent(peer, r).await;
        }
        Err(Throttle::Global(wait)) => {
            let r = Refusal::auth(
                ErrorKind::Throttled,
                "throttled_global",
                format!(
                    "the relay is not accepting codes right now; try again in {} s",
                    wait.as_secs().max(1)
                ),
            );
            return refuse_agent(peer, r).await;
        }
        Ok(Err(e)) => {
            let (kind, reason, message) = match e {
                RedeemError::Malformed => (
                    ErrorKind::BadCode,
                    "bad_code",
                    "that is not an invite code: it has 15 digits".to_string(),
                ),
                RedeemError::Unknown => (
                    ErrorKind::BadCode,
                    "bad_code",
                    "wrong invite code: check it with your technician".to_string(),
                ),
                RedeemError::Expired => (
                    ErrorKind::ExpiredCode,
                    "expired_code",
                    "this invite code has expired: ask your technician for a new one".to_string(),
                ),
                RedeemError::Used => (
                    ErrorKind::UsedCode,
                    "used_code",
                    "this invite code was already used: ask your technician for a new one"
                        .to_string(),
                ),
            };
            return refuse_agent(peer, Refusal::auth(kind, reason, message)).await;
        }
        Ok(Ok(invite)) => invite,
    };
    let handoff = {
        let mut st = shared.lock();
        let busy = st.sessions.values().filter(|s| s.holds_slot).count()
            >= shared.config.limits.max_sessions;
        match st.waiting.remove(&invite.id) {
            None => Err(Refusal::new(
                ErrorKind::PeerGone,
                "the technician is no longer waiting for this code",
            )),
            Some(_) if busy => {
                // Put nothing back: the code is spent either way, and the
                // technician learns of it when their session aborts.
                Err(Refusal::new(
                    ErrorKind::Busy,
                    "the relay is at its session limit; try again in a few minutes",
                ))
            }
            Some((session, tx)) => {
                if let Some(entry) = st.sessions.get_mut(&session) {
                    entry.holds_slot = true;
                    entry.device = Some(device.clone());
                }
                Ok(tx)
            }
        }
    };
    let tx = match handoff {
        Ok(tx) => tx,
        Err(r) => return refuse_agent(peer, r).await,
    };
    info!(invite = %invite.id, device = %device, "agent joined");
    let arrival = AgentArrival {
        peer,
        device,
        device_key,
    };
    if let Err(arrival) = tx.send(arrival) {
        let r = Refusal::new(ErrorKind::PeerGone, "the technician has left");
        refuse_agent(arrival.peer, r).await;
    }
}

/// The control stream of one side, as the session task owns it.
pub fn spawn_reader(mut recv: RecvStream) -> mpsc::Receiver<Result<ClientMsg, NetError>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let msg = assent_net::recv_msg::<ClientMsg>(&mut recv).await;
            let failed = msg.is_err();
            if tx.send(msg).await.is_err() || failed {
                break;
            }
        }
    });
    rx
}
