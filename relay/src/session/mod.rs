//! One session's task: drives the pure [`SessionMachine`] with events from
//! both control streams, admin commands and the clock, and carries out its
//! actions (audit first, then the effect). Each session runs in its own task
//! with its own forwarders, so a slow session stalls nobody else.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use assent_net::{close, Connection, ConnectionError, NetError, RecvStream, SendStream};
use assent_proto::identity::{self, PublicKey};
use assent_proto::invite::Invite;
use assent_proto::session::{AbortReason, Action, Event, Phase, SessionMachine};
use assent_proto::text;
use assent_proto::wire::{
    ClientMsg, ConsentDecision, EndReason, ErrorKind, InviteRequest, RelayMsg, Scope, SessionOffer,
    DATA_PREAMBLE, MAX_HANDSHAKE_MSG, MAX_HANDSHAKE_MSGS,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::fields;
use crate::server::{spawn_reader, AgentArrival, Counters, Shared};

/// Largest chunk a forwarder moves at once.
const CHUNK: usize = 64 * 1024;
/// How often a live session looks at its byte counters (idle detection).
const ACTIVITY_POLL: Duration = Duration::from_secs(1);
/// How long a technician has to send the note after a session they did not
/// end themselves.
const NOTE_GRACE: Duration = Duration::from_secs(30 * 60);
/// Session note fields accepted at most.
const MAX_NOTE_FIELDS: usize = 32;

/// One authenticated connection: its control stream and address.
pub struct Peer {
    pub conn: Connection,
    pub send: SendStream,
    pub recv: RecvStream,
    pub addr: SocketAddr,
}

pub struct SessionSetup {
    pub session: String,
    pub technician: String,
    pub technician_key: PublicKey,
    pub invite: Invite,
    pub request: InviteRequest,
    pub viewer: Peer,
    pub arrival: oneshot::Receiver<AgentArrival>,
    pub control: mpsc::Receiver<Event>,
}

struct Side {
    conn: Connection,
    send: SendStream,
    addr: SocketAddr,
    messages: mpsc::Receiver<Result<ClientMsg, NetError>>,
}

impl Side {
    fn new(peer: Peer) -> Side {
        Side {
            conn: peer.conn,
            send: peer.send,
            addr: peer.addr,
            messages: spawn_reader(peer.recv),
        }
    }

    async fn tell(&mut self, msg: &RelayMsg) {
        if let Err(e) = assent_net::send_msg(&mut self.send, msg).await {
            info!(peer = %self.addr, error = %e, "could not send to peer");
        }
    }

    fn close(mut self) {
        let _ = self.send.finish();
        self.conn.close(close::NORMAL, b"session over");
    }

    /// Final message, then close once the peer had a moment to read it.
    async fn finish(mut self, last: RelayMsg) {
        self.tell(&last).await;
        let _ = self.send.finish();
        let _ = tokio::time::timeout(Duration::from_millis(1000), self.conn.closed()).await;
        self.conn.close(close::NORMAL, b"session over");
    }
}

struct Agent {
    side: Side,
    device: String,
    device_key: PublicKey,
}

/// Whether a failed control stream was a deliberate close or a lost peer.
fn lost_or_closed(e: &NetError) -> bool {
    matches!(
        e,
        NetError::Closed | NetError::Connection(ConnectionError::ApplicationClosed(_))
    )
}

pub async fn run_session(shared: Arc<Shared>, setup: SessionSetup) {
    let SessionSetup {
        session,
        technician,
        technician_key,
        invite,
        request,
        viewer,
        mut arrival,
        mut control,
    } = setup;
    let limits = shared.config.limits.session();
    let mut machine = SessionMachine::new(request.scope, invite.expires, limits);
    let mut viewer = Side::new(viewer);
    let mut agent: Option<Agent> = None;
    let mut arrival_open = true;
    let mut offer_bytes = Vec::new();
    let mut forwarders: Vec<JoinHandle<()>> = Vec::new();
    let counters = shared
        .lock()
        .sessions
        .get(&session)
        .map(|e| e.counters.clone())
        .unwrap_or_default();
    let mut last_seen_bytes = 0u64;
    let mut started_wall = None;
    // The agent's signed receipt for the decision it sent, kept until the
    // machine says which decision to record (a late answer is recorded as a
    // timeout, and then this receipt does not apply).
    let mut pending_receipt: Option<(ConsentDecision, String)> = None;
    let mut scope_changes = 0u32;
    let mut handshakes_from_viewer = 0usize;
    let mut handshakes_from_agent = 0usize;
    let mut shutdown = shared.shutdown.clone();
    if *shutdown.borrow() {
        machine.handle(Event::RelayShutdown, Instant::now());
    }

    while !machine.is_over() {
        let deadline = machine
            .next_deadline()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + ACTIVITY_POLL);
        let wake = if machine.may_forward() {
            deadline.min(tokio::time::Instant::now() + ACTIVITY_POLL)
        } else {
            deadline
        };
        let event = tokio::select! {
            a = &mut arrival, if arrival_open => {
                arrival_open = false;
                match a {
                    Ok(a) => {
                        agent = Some(Agent { side: Side::new(a.peer), device: a.device, device_key: a.device_key });
                        Event::AgentJoined
                    }
                    // The invite was withdrawn; the deadline or a control
                    // event ends the session.
                    Err(_) => continue,
                }
            }
            msg = viewer.messages.recv() => match msg {
                Some(Ok(ClientMsg::End)) => Event::ViewerClosed,
                Some(Ok(ClientMsg::Handshake(bytes))) => {
                    if let Some(a) = agent.as_mut() {
                        pass_handshake(&session, &machine, &mut handshakes_from_viewer, bytes, &mut a.side).await;
                    }
                    continue;
                }
                Some(Ok(ClientMsg::SessionNote { fields })) => {
                    record_note(&shared, &session, &machine, fields).await;
                    continue;
                }
                Some(Ok(_)) => {
                    warn!(session = %session, "viewer sent an unexpected message; ignored");
                    continue;
                }
                Some(Err(e)) if lost_or_closed(&e) => Event::ViewerClosed,
                Some(Err(e)) => {
                    info!(session = %session, error = %e, "viewer connection lost");
                    Event::ViewerLost
                }
                None => Event::ViewerLost,
            },
            msg = async { match agent.as_mut() { Some(a) => a.side.messages.recv().await, None => std::future::pending().await } } => {
                let Some(a) = agent.as_ref() else { continue };
                match msg {
                    Some(Ok(ClientMsg::Consent { decision, receipt })) => {
                        let payload = identity::consent_payload(&offer_bytes, decision);
                        if a.device_key.verify(&payload, &receipt).is_err() {
                            warn!(session = %session, "consent receipt does not verify; treating the agent as lost");
                            let _ = shared.audit.record("auth_failed", fields! {
                                "role" => "agent", "peer" => a.side.addr.to_string(),
                                "reason" => "bad_consent_receipt", "session" => session,
                            }).await;
                            Event::AgentLost
                        } else {
                            pending_receipt = Some((decision, hex::encode(&receipt)));
                            Event::Consent(decision)
                        }
                    }
                    Some(Ok(ClientMsg::Handshake(bytes))) => {
                        pass_handshake(&session, &machine, &mut handshakes_from_agent, bytes, &mut viewer).await;
                        continue;
                    }
                    Some(Ok(ClientMsg::End)) => Event::AgentEnded,
                    Some(Ok(ClientMsg::ScopeChange { scope, change, receipt })) => {
                        let change = ScopeChange { scope, change, receipt };
                        if record_scope_change(&shared, &session, &machine, a, &offer_bytes, &mut scope_changes, change).await.is_err() {
                            machine.handle(Event::RelayShutdown, Instant::now());
                            break;
                        }
                        continue;
                    }
                    Some(Ok(_)) => {
                        warn!(session = %session, "agent sent an unexpected message; ignored");
                        continue;
                    }
                    Some(Err(e)) if lost_or_closed(&e) => Event::AgentEnded,
                    Some(Err(e)) => {
                        info!(session = %session, error = %e, "agent connection lost");
                        Event::AgentLost
                    }
                    None => Event::AgentLost,
                }
            }
            ev = control.recv() => match ev {
                Some(ev) => ev,
                None => continue,
            },
            _ = shutdown.changed() => Event::RelayShutdown,
            _ = tokio::time::sleep_until(wake) => {
                let total = counters.to_viewer.load(Ordering::Relaxed) + counters.to_agent.load(Ordering::Relaxed);
                if total != last_seen_bytes {
                    last_seen_bytes = total;
                    machine.handle(Event::Activity, Instant::now());
                }
                Event::Tick
            }
        };
        let actions = machine.handle(event, Instant::now());
        for action in actions {
            match action {
                Action::Ignored => {
                    warn!(session = %session, ?event, "event ignored in this phase");
                }
                Action::AskConsent => {
                    let Some(a) = agent.as_mut() else { continue };
                    let offer = SessionOffer {
                        session: session.clone(),
                        technician: technician.clone(),
                        technician_key: technician_key.0,
                        ticket: request.ticket.clone(),
                        client: request.client.clone(),
                        summary: request.summary.clone(),
                        impact: request.impact,
                        scope: request.scope,
                        device: a.device.clone(),
                        device_key: a.device_key.0,
                        consent_timeout_secs: u32::try_from(limits.consent_timeout.as_secs())
                            .unwrap_or(u32::MAX),
                    };
                    offer_bytes = offer.to_bytes();
                    let relay_signature =
                        shared.signing.sign(&identity::offer_payload(&offer_bytes));
                    a.side
                        .tell(&RelayMsg::ConsentRequest {
                            offer: offer_bytes.clone(),
                            relay_signature,
                        })
                        .await;
                    viewer
                        .tell(&RelayMsg::AgentJoined {
                            session: session.clone(),
                            device: a.device.clone(),
                            device_key: a.device_key.0,
                        })
                        .await;
                }
                Action::RecordConsent(decision) => {
                    let receipt = match pending_receipt.take() {
                        Some((signed, receipt)) if signed == decision => receipt,
                        _ => String::new(),
                    };
                    let (device, device_fp) = agent
                        .as_ref()
                        .map(|a| (a.device.clone(), a.device_key.fingerprint()))
                        .unwrap_or_default();
                    let ok = shared
                        .audit
                        .record(
                            "consent",
                            fields! {
                                "session" => session, "decision" => decision.as_str(),
                                "receipt" => receipt, "technician" => technician,
                                "ticket" => request.ticket, "device" => device,
                                "device_key" => device_fp,
                            },
                        )
                        .await;
                    if ok.is_err() {
                        // No record, no session.
                        machine.handle(Event::RelayShutdown, Instant::now());
                        break;
                    }
                    viewer.tell(&RelayMsg::ConsentResult { decision }).await;
                }
                Action::Start(scope) => {
                    let Some(a) = agent.as_mut() else { continue };
                    let ok = shared
                        .audit
                        .record(
                            "session_start",
                            fields! {
                                "session" => session, "technician" => technician,
                                "technician_key" => technician_key.fingerprint(),
                                "ticket" => request.ticket, "device" => a.device,
                                "device_key" => a.device_key.fingerprint(),
                                "scope" => scope.as_str(),
                                "agent_peer" => a.side.addr.to_string(),
                                "viewer_peer" => viewer.addr.to_string(),
                            },
                        )
                        .await;
                    if ok.is_err() {
                        machine.handle(Event::RelayShutdown, Instant::now());
                        break;
                    }
                    let now = crate::now_rfc3339();
                    if let Some(e) = shared.lock().sessions.get_mut(&session) {
                        e.started = Some(now.clone());
                        e.scope = scope;
                    }
                    started_wall = Some(Instant::now());
                    info!(session = %session, scope = scope.as_str(), "session started");
                    let started = RelayMsg::SessionStarted {
                        session: session.clone(),
                        scope,
                    };
                    viewer.tell(&started).await;
                    a.side.tell(&started).await;
                    match open_data(&viewer.conn, &a.side.conn).await {
                        Ok(((v_send, v_recv), (a_send, a_recv))) => {
                            forwarders.push(tokio::spawn(pump(
                                a_recv,
                                v_send,
                                counters.clone(),
                                true,
                            )));
                            forwarders.push(tokio::spawn(pump(
                                v_recv,
                                a_send,
                                counters.clone(),
                                false,
                            )));
                        }
                        Err(e) => {
                            info!(session = %session, error = %e, "could not open data streams");
                        }
                    }
                }
                Action::End(reason) => {
                    for f in forwarders.drain(..) {
                        f.abort();
                    }
                    let duration_ms = match machine.phase() {
                        Phase::Ended { duration, .. } => duration.as_millis() as u64,
                        _ => started_wall
                            .map(|s| s.elapsed().as_millis() as u64)
                            .unwrap_or(0),
                    };
                    let to_viewer = counters.to_viewer.load(Ordering::Relaxed);
                    let to_agent = counters.to_agent.load(Ordering::Relaxed);
                    if let Err(e) = shared
                        .audit
                        .record(
                            "session_end",
                            fields! {
                                "session" => session, "reason" => reason.as_str(),
                                "duration_ms" => duration_ms,
                                "bytes_to_viewer" => to_viewer, "bytes_to_agent" => to_agent,
                            },
                        )
                        .await
                    {
                        warn!(session = %session, error = %e, "session_end not recorded");
                    }
                    info!(session = %session, reason = reason.as_str(), "session ended");
                }
                Action::Abort(reason) => {
                    let _ = shared
                        .audit
                        .record(
                            "invite_closed",
                            fields! {
                                "session" => session, "invite" => invite.id,
                                "reason" => reason.as_str(),
                            },
                        )
                        .await;
                    info!(session = %session, reason = reason.as_str(), "session closed before it started");
                }
            }
        }
    }

    // Goodbyes and cleanup.
    let last = match machine.phase() {
        Phase::Ended { reason, .. } => RelayMsg::SessionEnded { reason },
        Phase::Aborted { reason } => abort_message(reason),
        _ => RelayMsg::SessionEnded {
            reason: EndReason::RelayShutdown,
        },
    };
    {
        let mut st = shared.lock();
        st.sessions.remove(&session);
        st.waiting.remove(&invite.id);
        st.invites.cancel(&invite.id);
    }
    let agent_bye = async {
        if let Some(a) = agent {
            a.side.finish(last.clone()).await;
        }
    };
    // A session the technician did not end themselves (the user clicked
    // End, a limit, an admin) leaves them writing the note: keep their
    // connection open for it, for a while.
    let viewer_may_write_note = matches!(
        machine.phase(),
        Phase::Ended { reason, .. } if !matches!(
            reason,
            EndReason::ViewerClosed | EndReason::ViewerLost | EndReason::RelayShutdown
        )
    );
    if viewer_may_write_note {
        viewer.tell(&last).await;
        let note_wait = async {
            let deadline = tokio::time::Instant::now() + NOTE_GRACE;
            loop {
                tokio::select! {
                    msg = viewer.messages.recv() => match msg {
                        Some(Ok(ClientMsg::SessionNote { fields })) => {
                            record_note(&shared, &session, &machine, fields).await;
                        }
                        Some(Ok(_)) | Some(Err(_)) | None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = shutdown.changed() => break,
                }
            }
        };
        tokio::join!(note_wait, agent_bye);
        viewer.close();
    } else {
        tokio::join!(viewer.finish(last.clone()), agent_bye);
    }
}

/// Passes one end-to-end handshake message to the other side, only while
/// consent is pending and only a few small ones: the relay cannot read them,
/// and they carry no session content.
async fn pass_handshake(
    session: &str,
    machine: &SessionMachine,
    count: &mut usize,
    bytes: Vec<u8>,
    to: &mut Side,
) {
    if !matches!(machine.phase(), Phase::AwaitingConsent { .. }) {
        warn!(session = %session, "handshake message outside the consent phase; dropped");
        return;
    }
    if *count >= MAX_HANDSHAKE_MSGS || bytes.len() > MAX_HANDSHAKE_MSG {
        warn!(session = %session, "handshake message over the limits; dropped");
        return;
    }
    *count += 1;
    to.tell(&RelayMsg::Handshake(bytes)).await;
}

fn abort_message(reason: AbortReason) -> RelayMsg {
    let (kind, message) = match reason {
        AbortReason::InviteExpired => (
            ErrorKind::InviteExpired,
            "the invite expired before anyone joined",
        ),
        AbortReason::ConsentDenied => (ErrorKind::ConsentDenied, "the user declined the session"),
        AbortReason::ConsentTimeout => {
            (ErrorKind::ConsentTimeout, "the user did not answer in time")
        }
        AbortReason::ViewerLeft => (ErrorKind::PeerGone, "the technician left"),
        AbortReason::AgentLeft => (ErrorKind::PeerGone, "the user's agent left"),
        AbortReason::AdminKilled => (ErrorKind::Cancelled, "a relay admin ended the session"),
        AbortReason::TechnicianRevoked => {
            (ErrorKind::Cancelled, "the technician's access was revoked")
        }
        AbortReason::RelayShutdown => (ErrorKind::Shutdown, "the relay is shutting down"),
    };
    RelayMsg::Error {
        kind,
        message: message.to_string(),
    }
}

struct ScopeChange {
    scope: Scope,
    change: u32,
    receipt: Vec<u8>,
}

/// Records a scope change the agent's user agreed to. Only a live session's
/// agent, with a receipt signed by its device key for the next change
/// number, is believed; anything else is logged and dropped. An `Err` means
/// the audit log failed (no record, no session).
async fn record_scope_change(
    shared: &Shared,
    session: &str,
    machine: &SessionMachine,
    agent: &Agent,
    offer_bytes: &[u8],
    last_change: &mut u32,
    change: ScopeChange,
) -> Result<(), ()> {
    if !matches!(machine.phase(), Phase::Live { .. }) {
        warn!(session = %session, "scope change outside a live session; ignored");
        return Ok(());
    }
    let payload = identity::scope_change_payload(offer_bytes, change.change, change.scope);
    if change.change != last_change.wrapping_add(1)
        || agent.device_key.verify(&payload, &change.receipt).is_err()
    {
        warn!(session = %session, "scope change without a valid receipt; ignored");
        return Ok(());
    }
    *last_change = change.change;
    shared
        .audit
        .record(
            "scope_changed",
            fields! {
                "session" => session, "scope" => change.scope.as_str(),
                "change" => change.change, "receipt" => hex::encode(&change.receipt),
                "device_key" => agent.device_key.fingerprint(),
            },
        )
        .await
        .map_err(|_| ())?;
    if let Some(e) = shared.lock().sessions.get_mut(session) {
        e.scope = change.scope;
    }
    Ok(())
}

async fn record_note(
    shared: &Shared,
    session: &str,
    machine: &SessionMachine,
    note: Vec<(String, String)>,
) {
    if matches!(
        machine.phase(),
        Phase::AwaitingAgent { .. } | Phase::AwaitingConsent { .. }
    ) {
        warn!(session = %session, "session note before the session started; ignored");
        return;
    }
    if note.len() > MAX_NOTE_FIELDS {
        warn!(session = %session, "session note with too many fields; ignored");
        return;
    }
    let mut fields = fields! {"session" => session};
    for (key, value) in note {
        let key = match text::single_line("note field name", &key, 64) {
            Ok(k) if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => k,
            _ => {
                warn!(session = %session, "session note field with a bad name; ignored");
                return;
            }
        };
        if assent_audit::RESERVED_FIELDS.contains(&key.as_str()) || key == "session" {
            continue;
        }
        match text::multi_line("note field", &value, text::MAX_NOTE_FIELD) {
            Ok(v) => {
                fields.insert(key, serde_json::Value::String(v));
            }
            Err(e) => {
                warn!(session = %session, error = %e, "session note refused");
                return;
            }
        }
    }
    if let Err(e) = shared.audit.record("session_note", fields).await {
        warn!(session = %session, error = %e, "session note not recorded");
    }
}

type Pair = (SendStream, RecvStream);

/// Opens the data stream to each side. The preamble makes the stream visible
/// to the client's `accept_bi` at once.
async fn open_data(viewer: &Connection, agent: &Connection) -> Result<(Pair, Pair), NetError> {
    let open = |conn: Connection| async move {
        let (mut send, recv) = conn.open_bi().await?;
        send.write_all(DATA_PREAMBLE).await?;
        Ok::<_, NetError>((send, recv))
    };
    let (v, a) = tokio::join!(open(viewer.clone()), open(agent.clone()));
    Ok((v?, a?))
}

/// Moves one direction of a session's bytes. Chunks are passed on as the
/// `Bytes` quinn read them (no copy); while the receiving side's window is
/// full, `write_chunk` waits and nothing more is read, so QUIC flow control
/// pushes back on the sender instead of the relay buffering.
async fn pump(mut from: RecvStream, mut to: SendStream, counters: Arc<Counters>, to_viewer: bool) {
    let counter = if to_viewer {
        &counters.to_viewer
    } else {
        &counters.to_agent
    };
    loop {
        match from.read_chunk(CHUNK, true).await {
            Ok(Some(chunk)) => {
                let n = chunk.bytes.len() as u64;
                if to.write_chunk(chunk.bytes).await.is_err() {
                    break;
                }
                counter.fetch_add(n, Ordering::Relaxed);
            }
            Ok(None) => {
                let _ = to.finish();
                break;
            }
            Err(_) => break,
        }
    }
}
