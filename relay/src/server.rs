//! `assent-relay serve`: the QUIC accept loop and authentication of both
//! roles; every refusal goes through [`refuse`] with a typed [`Refusal`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use assent_net::{close, Connection, Endpoint, NetError, SendStream};
use assent_proto::identity::{self, PublicKey};
use assent_proto::invite::{Invite, InviteCode, RedeemError};
use assent_proto::limits::Throttle;
use assent_proto::session::{AbortReason, Event};
use assent_proto::text;
use assent_proto::wire::{ClientMsg, ErrorKind, InviteRequest, RelayMsg, Role};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, info_span, warn, Instrument as _};

use crate::fields;
use crate::registry::KeyStatus;
use crate::session::{run_session, SessionSetup};
use crate::state::{AgentArrival, EntryPhase, Peer, SessionEntry, Shared};

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
            let join = AgentJoin {
                code,
                device,
                device_key: PublicKey(device_key),
            };
            agent_flow(shared, peer_state, join, &payload, &signature)
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

/// A technician's invite, created, audited and handed out: what the
/// session task needs besides the viewer's connection.
struct OpenedInvite {
    session: String,
    technician: String,
    invite: Invite,
    request: InviteRequest,
    arrival: oneshot::Receiver<AgentArrival>,
    control: mpsc::Receiver<Event>,
}

async fn viewer_flow(
    shared: Arc<Shared>,
    mut peer: Peer,
    key: PublicKey,
    payload: &[u8],
    signature: &[u8],
) {
    let opened = match open_invite(&shared, &mut peer, key, payload, signature).await {
        Ok(o) => o,
        Err(stop) => return refuse_peer(&shared, peer, Role::Viewer, stop).await,
    };
    let token = shared.tasks.token();
    let setup = SessionSetup {
        session: opened.session,
        technician: opened.technician,
        technician_key: key,
        invite: opened.invite,
        request: opened.request,
        viewer: peer,
        arrival: opened.arrival,
        control: opened.control,
    };
    run_session(shared.clone(), setup)
        .instrument(tracing::Span::current())
        .await;
    drop(token);
}

/// Authenticates the technician, takes their request, and hands them a
/// one-time code, on record (`invite_created`) before it can be used.
async fn open_invite(
    shared: &Shared,
    peer: &mut Peer,
    key: PublicKey,
    payload: &[u8],
    signature: &[u8],
) -> Result<OpenedInvite, Stop> {
    let technician = authenticate_technician(shared, key, payload, signature)?;
    info!(technician = %technician, "technician authenticated");
    let hello = RelayMsg::Authenticated {
        technician: technician.clone(),
    };
    assent_net::send_msg(&mut peer.send, &hello)
        .await
        .map_err(|_| Stop::Silent)?;
    let request = read_invite_request(peer).await?;
    let session = assent_proto::random_id(8)
        .map_err(|_| Refusal::new(ErrorKind::Busy, "internal error: no randomness"))?;
    let (invite, code, arrival, control) =
        register_invite(shared, &technician, key, &request, &session)?;
    let fields = fields! {
        "technician" => technician,
        "technician_key" => key.fingerprint(),
        "ticket" => request.ticket,
        "client" => request.client,
        "scope" => request.scope.as_str(),
        "invite" => invite.id,
        "session" => session,
        "expires_in_secs" => shared.config.limits.invite_ttl_secs,
    };
    if shared.audit.record("invite_created", fields).await.is_err() {
        // An invite that is not on record must not be usable.
        forget_invite(shared, &invite.id, &session);
        let r = Refusal::new(ErrorKind::Busy, "the relay cannot write its audit log");
        return Err(r.into());
    }
    info!(invite = %invite.id, session = %session, "invite created");
    let created = RelayMsg::InviteCreated {
        invite: invite.id.clone(),
        code: code.grouped(),
        expires_in_secs: u32::try_from(shared.config.limits.invite_ttl_secs).unwrap_or(u32::MAX),
    };
    drop(code);
    if assent_net::send_msg(&mut peer.send, &created)
        .await
        .is_err()
    {
        // On record as created, so on record as closed: nobody has the code.
        forget_invite(shared, &invite.id, &session);
        let fields = fields! {
            "session" => session, "invite" => invite.id,
            "reason" => AbortReason::ViewerLeft.as_str(),
        };
        let _ = shared.audit.record("invite_closed", fields).await;
        return Err(Stop::Silent);
    }
    Ok(OpenedInvite {
        session,
        technician,
        invite,
        request,
        arrival,
        control,
    })
}

/// The enrolled technician's name, if the key is enrolled, not revoked,
/// and signed this connection's challenge.
fn authenticate_technician(
    shared: &Shared,
    key: PublicKey,
    payload: &[u8],
    signature: &[u8],
) -> Result<String, Refusal> {
    let technician = match shared.technicians.status(&key) {
        KeyStatus::Enrolled(name) => name,
        KeyStatus::Revoked(_) => {
            return Err(Refusal::auth(
                ErrorKind::TechnicianRevoked,
                "technician_revoked",
                "this technician key has been revoked; ask the relay admin",
            ))
        }
        KeyStatus::Unknown => {
            return Err(Refusal::auth(
                ErrorKind::UnknownTechnician,
                "unknown_key",
                format!(
                    "technician key {} is not enrolled on this relay; send the admin the line \
                     `assent-viewer keygen` printed",
                    key.fingerprint()
                ),
            ))
        }
    };
    if key.verify(payload, signature).is_err() {
        return Err(Refusal::auth(
            ErrorKind::BadSignature,
            "bad_signature",
            "the key signature does not match this connection",
        ));
    }
    Ok(technician)
}

async fn read_invite_request(peer: &mut Peer) -> Result<InviteRequest, Stop> {
    match assent_net::recv_msg::<ClientMsg>(&mut peer.recv).await {
        Ok(ClientMsg::CreateInvite(r)) => {
            validate_request(r).map_err(|m| Refusal::new(ErrorKind::BadInput, m).into())
        }
        // A technician presenting an invite code is trying to take over
        // someone's invite (codes are only for the user's agent): on the
        // record, like any other attempt on a code.
        Ok(ClientMsg::AgentJoin { .. }) => Err(Refusal::auth(
            ErrorKind::Protocol,
            "code_on_technician_connection",
            "invite codes are redeemed by the user's agent, not by a technician",
        )
        .into()),
        Ok(_) => Err(Refusal::new(ErrorKind::Protocol, "expected CreateInvite").into()),
        Err(e) => {
            info!(error = %e, "viewer left before asking for an invite");
            Err(Stop::Silent)
        }
    }
}

type Registered = (
    Invite,
    InviteCode,
    oneshot::Receiver<AgentArrival>,
    mpsc::Receiver<Event>,
);

/// Creates the invite and the session's entry under one lock.
fn register_invite(
    shared: &Shared,
    technician: &str,
    key: PublicKey,
    request: &InviteRequest,
    session: &str,
) -> Result<Registered, Refusal> {
    let (arrival_tx, arrival_rx) = oneshot::channel();
    let (control_tx, control_rx) = mpsc::channel(8);
    let now = Instant::now();
    let mut st = shared.lock();
    let (invite, code) = st
        .invites
        .create(technician, key, request.clone(), now)
        .map_err(|e| Refusal::new(ErrorKind::LimitReached, e.to_string()))?;
    st.waiting
        .insert(invite.id.clone(), (session.to_string(), arrival_tx));
    st.sessions.insert(
        session.to_string(),
        SessionEntry {
            technician: technician.to_string(),
            ticket: request.ticket.clone(),
            scope: request.scope,
            device: None,
            started: None,
            created: now,
            phase: EntryPhase::WaitingForAgent,
            counters: Arc::default(),
            control: control_tx,
            holds_slot: false,
        },
    );
    Ok((invite, code, arrival_rx, control_rx))
}

fn forget_invite(shared: &Shared, invite: &str, session: &str) {
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

async fn agent_flow(
    shared: Arc<Shared>,
    peer: Peer,
    join: AgentJoin,
    payload: &[u8],
    signature: &[u8],
) {
    let AgentJoin {
        code,
        device,
        device_key,
    } = join;
    if device_key.verify(payload, signature).is_err() {
        let r = Refusal::auth(
            ErrorKind::BadSignature,
            "bad_signature",
            "the device key signature does not match this connection",
        );
        return refuse_peer(&shared, peer, Role::Agent, r.into()).await;
    }
    let device = match text::single_line("device name", &device, text::MAX_NAME) {
        Ok(d) => d,
        Err(e) => {
            let r = Refusal::new(ErrorKind::BadInput, e.to_string());
            return refuse_peer(&shared, peer, Role::Agent, r.into()).await;
        }
    };
    let handoff = redeem_code(&shared, peer.addr.ip(), code)
        .and_then(|invite| hand_to_session(&shared, &invite, &device).map(|tx| (invite, tx)));
    let (invite, tx) = match handoff {
        Ok(x) => x,
        Err(r) => return refuse_peer(&shared, peer, Role::Agent, r.into()).await,
    };
    info!(invite = %invite.id, device = %device, "agent joined");
    let arrival = AgentArrival {
        peer,
        device,
        device_key,
    };
    if let Err(arrival) = tx.send(arrival) {
        let r = Refusal::new(ErrorKind::PeerGone, "the technician has left");
        refuse_peer(&shared, arrival.peer, Role::Agent, r.into()).await;
    }
}

/// What an agent presented when it joined.
struct AgentJoin {
    code: String,
    device: String,
    device_key: PublicKey,
}

/// Checks the throttles and redeems the code under one lock, so two
/// guesses cannot race the guard. The code is dropped here.
fn redeem_code(shared: &Shared, ip: IpAddr, code: String) -> Result<Invite, Refusal> {
    let outcome = {
        let mut st = shared.lock();
        let now = Instant::now();
        st.code_guard.check(&ip, now).map(|()| {
            let r = st.invites.redeem(&code, now);
            match &r {
                Ok(_) => st.code_guard.succeeded(&ip),
                Err(_) => st.code_guard.failed(&ip, now),
            }
            r
        })
    };
    drop(code);
    match outcome {
        Err(Throttle::Address(wait)) => Err(Refusal::auth(
            ErrorKind::Throttled,
            "throttled",
            format!(
                "too many wrong codes from this address; wait {} s and check the code with your technician",
                wait.as_secs().max(1)
            ),
        )),
        Err(Throttle::Global(wait)) => Err(Refusal::auth(
            ErrorKind::Throttled,
            "throttled_global",
            format!(
                "the relay is not accepting codes right now; try again in {} s",
                wait.as_secs().max(1)
            ),
        )),
        Ok(Err(e)) => Err(redeem_refusal(e)),
        Ok(Ok(invite)) => Ok(invite),
    }
}

fn redeem_refusal(e: RedeemError) -> Refusal {
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

/// Gives the redeemed invite's session its agent slot; the sender hands
/// the agent's connection to the session task.
fn hand_to_session(
    shared: &Shared,
    invite: &Invite,
    device: &str,
) -> Result<oneshot::Sender<AgentArrival>, Refusal> {
    let mut st = shared.lock();
    let busy =
        st.sessions.values().filter(|s| s.holds_slot).count() >= shared.config.limits.max_sessions;
    match st.waiting.remove(&invite.id) {
        None => Err(Refusal::new(
            ErrorKind::PeerGone,
            "the technician is no longer waiting for this code",
        )),
        // Put nothing back: the code is spent either way, and the
        // technician learns of it when their session aborts.
        Some(_) if busy => Err(Refusal::new(
            ErrorKind::Busy,
            "the relay is at its session limit; try again in a few minutes",
        )),
        Some((session, tx)) => {
            if let Some(entry) = st.sessions.get_mut(&session) {
                entry.holds_slot = true;
                entry.device = Some(device.to_string());
            }
            Ok(tx)
        }
    }
}
