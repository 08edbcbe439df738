//! The client side of the relay protocol, for both roles, without screen or
//! window: authentication with channel binding, invites, joining, consent
//! and the live data stream. The real agent and viewer build on it, and the
//! end-to-end tests drive it directly as a programmatic agent and viewer.

#![forbid(unsafe_code)]

pub mod e2e;
mod handover;
mod path;
mod permission;
pub mod resume;

pub use handover::Claimed;
pub use path::PathClock;

use std::path::Path;

use assent_net::{close, Connection, Endpoint, FrameReader, NetError, RecvStream, SendStream};
use assent_proto::identity::{self, PublicKey, SecretKey};
use assent_proto::wire::{
    ClientMsg, Confirmation, ConsentDecision, EndReason, ErrorKind, InviteRequest, RelayMsg, Role,
    Scope, SessionOffer, Validation, DATA_PREAMBLE,
};
use assent_proto::PROTOCOL_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("the relay refused: {message}")]
    Refused { kind: ErrorKind, message: String },
    #[error("the relay broke the protocol: {0}")]
    Protocol(String),
    #[error("the relay's signature on the session offer does not verify")]
    BadRelaySignature,
    #[error("the relay ended the session: {}", .0.as_str())]
    Ended(EndReason),
    #[error("{0} timed out")]
    TimedOut(&'static str),
}

impl ClientError {
    /// The refusal kind, when the relay refused with one.
    pub fn refusal(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Refused { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// The control stream to the relay, after `Hello`.
pub struct Control {
    pub endpoint: Endpoint,
    pub conn: Connection,
    pub send: SendStream,
    recv: FrameReader,
    /// The relay's offer-signing key, from its challenge.
    pub relay_key: PublicKey,
    nonce: [u8; 32],
}

impl Control {
    /// Connects, says hello in `role`, and reads the relay's challenge.
    pub async fn open(relay: &str, ca: &Path, role: Role) -> Result<Control, ClientError> {
        let (endpoint, conn) = assent_net::connect(relay, ca).await?;
        let (mut send, recv) = conn.open_bi().await.map_err(NetError::from)?;
        let mut recv = FrameReader::new(recv);
        assent_net::send_msg(
            &mut send,
            &ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                role,
            },
        )
        .await?;
        match recv_relay(&mut recv).await? {
            RelayMsg::Challenge { nonce, relay_key } => Ok(Control {
                endpoint,
                conn,
                send,
                recv,
                relay_key: PublicKey(relay_key),
                nonce,
            }),
            other => Err(unexpected("Challenge", &other)),
        }
    }

    /// Signs the challenge bound to this connection's TLS exporter.
    pub fn sign_challenge(&self, role: Role, key: &SecretKey) -> Result<Vec<u8>, ClientError> {
        let exporter = assent_net::exporter(&self.conn)?;
        Ok(key.sign(&identity::auth_payload(role, &self.nonce, &exporter)))
    }

    pub async fn send(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        Ok(assent_net::send_msg(&mut self.send, msg).await?)
    }

    /// The next relay message; relay errors become [`ClientError::Refused`].
    /// Cancel-safe: it can sit in a `select!` beside the user's prompt.
    pub async fn recv(&mut self) -> Result<RelayMsg, ClientError> {
        recv_relay(&mut self.recv).await
    }

    /// Accepts the data stream the relay opens when the session goes live.
    pub async fn accept_data(&mut self) -> Result<DataStream, ClientError> {
        let (send, mut recv) = self.conn.accept_bi().await.map_err(NetError::from)?;
        let mut preamble = [0u8; DATA_PREAMBLE.len()];
        recv.read_exact(&mut preamble)
            .await
            .map_err(|e| ClientError::Protocol(format!("data stream preamble: {e}")))?;
        if &preamble != DATA_PREAMBLE {
            return Err(ClientError::Protocol("bad data stream preamble".into()));
        }
        Ok(DataStream { send, recv })
    }

    /// Ends deliberately: tells the relay, then closes the connection.
    pub async fn end(mut self) {
        let _ = assent_net::send_msg(&mut self.send, &ClientMsg::End).await;
        self.close_when_ended(std::time::Duration::from_secs(1))
            .await;
    }

    /// Closes after the relay says the session ended (or `wait` passes),
    /// without claiming the end: for a side whose session was ended by the
    /// other side, so the relay records who really ended it.
    pub async fn close_when_ended(mut self, wait: std::time::Duration) {
        let _ = self.send.finish();
        let deadline = tokio::time::Instant::now() + wait;
        // Closing the connection discards whatever of ours is still unsent
        // (an `End`, a session note): first let the relay acknowledge all
        // of it. A `SessionEnded` that arrived earlier is no such sign.
        let _ = tokio::time::timeout_at(deadline, self.send.stopped()).await;
        // Then give the relay a moment to act on it before the close frame,
        // so it records a deliberate end rather than a lost peer.
        let _ = tokio::time::timeout_at(deadline, async {
            loop {
                match recv_relay(&mut self.recv).await {
                    Ok(RelayMsg::SessionEnded { .. }) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        self.conn.close(close::NORMAL, b"bye");
        self.endpoint.wait_idle().await;
    }
}

/// The session's opaque end-to-end byte stream through the relay.
pub struct DataStream {
    pub send: SendStream,
    pub recv: RecvStream,
}

async fn recv_relay(recv: &mut FrameReader) -> Result<RelayMsg, ClientError> {
    match recv.recv::<RelayMsg>().await? {
        RelayMsg::Error { kind, message } => Err(ClientError::Refused { kind, message }),
        msg => Ok(msg),
    }
}

pub(crate) fn unexpected(wanted: &str, got: &RelayMsg) -> ClientError {
    ClientError::Protocol(format!("expected {wanted}, got {}", msg_name(got)))
}

fn msg_name(msg: &RelayMsg) -> &'static str {
    match msg {
        RelayMsg::Challenge { .. } => "Challenge",
        RelayMsg::Authenticated { .. } => "Authenticated",
        RelayMsg::InviteCreated { .. } => "InviteCreated",
        RelayMsg::AgentJoined { .. } => "AgentJoined",
        RelayMsg::ConsentRequest { .. } => "ConsentRequest",
        RelayMsg::ConsentResult { .. } => "ConsentResult",
        RelayMsg::Handshake(_) => "Handshake",
        RelayMsg::SessionStarted { .. } => "SessionStarted",
        RelayMsg::SessionEnded { .. } => "SessionEnded",
        RelayMsg::Error { .. } => "Error",
        RelayMsg::ScopeRecorded { .. } => "ScopeRecorded",
        RelayMsg::UserConfirmed { .. } => "UserConfirmed",
        RelayMsg::Escalation { .. } => "Escalation",
        RelayMsg::Specialists { .. } => "Specialists",
        RelayMsg::Handovers { .. } => "Handovers",
        RelayMsg::HandoverClaimed { .. } => "HandoverClaimed",
        RelayMsg::EscalationCode { .. } => "EscalationCode",
        RelayMsg::PeerInterrupted { .. } => "PeerInterrupted",
        RelayMsg::PeerResumed { .. } => "PeerResumed",
        RelayMsg::ResumeCredential { .. } => "ResumeCredential",
        RelayMsg::Reconnected { .. } => "Reconnected",
        RelayMsg::PeerReconnected { .. } => "PeerReconnected",
        RelayMsg::Redirect { .. } => "Redirect",
    }
}

/// An invite as the technician sees it.
pub struct Invite {
    pub id: String,
    /// The code to read to the user. Print it for the technician; never log it.
    pub code: String,
    pub expires_in_secs: u32,
}

impl std::fmt::Debug for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invite")
            .field("id", &self.id)
            .field("code", &"<redacted>")
            .finish()
    }
}

/// The technician's side, from authentication to a live session.
pub struct Viewer {
    pub control: Control,
    pub technician: String,
    pub invite: Invite,
}

/// What the viewer learns while waiting.
#[derive(Debug)]
pub enum ViewerEvent {
    AgentJoined {
        session: String,
        device: String,
        device_key: PublicKey,
    },
    Consent(ConsentDecision),
    Started {
        session: String,
        scope: Scope,
    },
    Ended(EndReason),
    /// An end-to-end handshake message from the agent.
    Handshake(Vec<u8>),
}

impl Viewer {
    /// Authenticates the technician key and asks for an invite.
    pub async fn connect(
        relay: &str,
        ca: &Path,
        key: &SecretKey,
        request: InviteRequest,
    ) -> Result<Viewer, ClientError> {
        let (mut control, technician) = authenticate(relay, ca, key).await?;
        control.send(&ClientMsg::CreateInvite(request)).await?;
        let invite = match control.recv().await? {
            RelayMsg::InviteCreated {
                invite,
                code,
                expires_in_secs,
            } => Invite {
                id: invite,
                code,
                expires_in_secs,
            },
            other => return Err(unexpected("InviteCreated", &other)),
        };
        Ok(Viewer {
            control,
            technician,
            invite,
        })
    }

    /// The next step of pairing, as it happens.
    pub async fn next_event(&mut self) -> Result<ViewerEvent, ClientError> {
        match self.control.recv().await? {
            RelayMsg::AgentJoined {
                session,
                device,
                device_key,
            } => Ok(ViewerEvent::AgentJoined {
                session,
                device,
                device_key: PublicKey(device_key),
            }),
            RelayMsg::ConsentResult { decision } => Ok(ViewerEvent::Consent(decision)),
            RelayMsg::SessionStarted { session, scope } => {
                Ok(ViewerEvent::Started { session, scope })
            }
            RelayMsg::SessionEnded { reason } => Ok(ViewerEvent::Ended(reason)),
            RelayMsg::Handshake(bytes) => Ok(ViewerEvent::Handshake(bytes)),
            other => Err(unexpected("a pairing message", &other)),
        }
    }
}

/// Opens a viewer connection and proves the technician key on it.
pub(crate) async fn authenticate(
    relay: &str,
    ca: &Path,
    key: &SecretKey,
) -> Result<(Control, String), ClientError> {
    let mut control = Control::open(relay, ca, Role::Viewer).await?;
    let signature = control.sign_challenge(Role::Viewer, key)?;
    control
        .send(&ClientMsg::ViewerAuth {
            public_key: key.public().0,
            signature,
        })
        .await?;
    match control.recv().await? {
        RelayMsg::Authenticated { technician } => Ok((control, technician)),
        other => Err(unexpected("Authenticated", &other)),
    }
}

/// Redirects an agent follows while joining (a fleet needs one).
const MAX_REDIRECTS: u32 = 1;

/// The end user's side after a code was accepted: consent is pending.
pub struct AgentPending {
    pub control: Control,
    /// The relay the code was redeemed at (another than the one asked
    /// first after a fleet's redirect): where the session lives.
    pub relay: String,
    pub offer: SessionOffer,
    offer_bytes: Vec<u8>,
    device_key: SecretKey,
}

impl AgentPending {
    /// Redeems `code`, proving the device key on this connection, and
    /// returns the relay-signed offer to show the user.
    pub async fn join(
        relay: &str,
        ca: &Path,
        device_key: SecretKey,
        device: &str,
        code: &str,
    ) -> Result<AgentPending, ClientError> {
        let mut relay = relay.to_string();
        let mut hops = 0;
        let (control, offer_bytes, relay_signature) = loop {
            let mut control = Control::open(&relay, ca, Role::Agent).await?;
            let signature = control.sign_challenge(Role::Agent, &device_key)?;
            control
                .send(&ClientMsg::AgentJoin {
                    code: code.to_string(),
                    device: device.to_string(),
                    device_key: device_key.public().0,
                    signature,
                })
                .await?;
            match control.recv().await? {
                RelayMsg::ConsentRequest {
                    offer,
                    relay_signature,
                } => break (control, offer, relay_signature),
                // One hop: the relay a fleet names holds the code itself.
                RelayMsg::Redirect { relay: next } if hops < MAX_REDIRECTS => {
                    (relay, hops) = (next, hops + 1);
                }
                other => return Err(unexpected("ConsentRequest", &other)),
            }
        };
        control
            .relay_key
            .verify(&identity::offer_payload(&offer_bytes), &relay_signature)
            .map_err(|_| ClientError::BadRelaySignature)?;
        let offer = SessionOffer::from_bytes(&offer_bytes)
            .map_err(|e| ClientError::Protocol(format!("session offer: {e}")))?;
        if offer.device_key != device_key.public().0 {
            return Err(ClientError::Protocol(
                "offer names another device key".into(),
            ));
        }
        Ok(AgentPending {
            control,
            relay,
            offer,
            offer_bytes,
            device_key,
        })
    }

    /// The device key this agent joined with (it also signs the end-to-end
    /// handshake).
    pub fn device_key(&self) -> &SecretKey {
        &self.device_key
    }

    /// A copy of the device key (the handshake borrows it while `self` is
    /// borrowed mutably for the control stream).
    pub fn device_key_clone(&self) -> SecretKey {
        self.device_key.clone()
    }

    /// Sends the user's signed decision. On a grant, waits for the session to
    /// start and returns the live control and data streams.
    pub async fn answer(mut self, decision: ConsentDecision) -> Result<AgentLive, ClientError> {
        let receipt = self
            .device_key
            .sign(&identity::consent_payload(&self.offer_bytes, decision));
        self.control
            .send(&ClientMsg::Consent { decision, receipt })
            .await?;
        // The relay's answer comes after any handshake messages the viewer
        // sent in excess (a patched viewer may); skipping them, rather than
        // failing, keeps the connection open until the relay has the
        // decision, so a refusal is always on the record.
        let reply = loop {
            match self.control.recv().await? {
                RelayMsg::Handshake(_) => continue,
                other => break other,
            }
        };
        match reply {
            RelayMsg::SessionStarted { session, scope } => {
                let data = self.control.accept_data().await?;
                Ok(AgentLive {
                    control: self.control,
                    data,
                    session,
                    scope,
                    offer: self.offer,
                    offer_bytes: self.offer_bytes,
                    device_key: self.device_key,
                })
            }
            RelayMsg::SessionEnded { reason } => Err(ClientError::Ended(reason)),
            other => Err(unexpected("SessionStarted", &other)),
        }
    }
}

/// A live session on the agent's side.
pub struct AgentLive {
    pub control: Control,
    pub data: DataStream,
    pub session: String,
    pub scope: Scope,
    pub offer: SessionOffer,
    offer_bytes: Vec<u8>,
    device_key: SecretKey,
}

impl AgentLive {
    /// The relay-signed offer this session runs under, as signed: receipts
    /// of the user's answers are bound to it.
    pub fn offer_bytes(&self) -> &[u8] {
        &self.offer_bytes
    }

    /// What reports scope changes of this session to the relay (kept apart
    /// so the data stream can be moved into the end-to-end channel).
    pub fn scope_reporter(&self) -> ScopeReporter {
        ScopeReporter {
            offer_bytes: self.offer_bytes.clone(),
            device_key: self.device_key.clone(),
            changes: 0,
            permission_changes: 0,
            transfers: 0,
            files: 0,
        }
    }
}

/// Signs and sends the user's receipts of one live session: scope changes
/// and answers to "please test".
pub struct ScopeReporter {
    offer_bytes: Vec<u8>,
    device_key: SecretKey,
    changes: u32,
    /// Permission changes and clipboard transfers reported so far.
    permission_changes: u32,
    transfers: u32,
    files: u32,
}

impl ScopeReporter {
    /// Reports a change and waits for the relay's `ScopeRecorded`: `true`
    /// only when the `scope_changed` record is on disk. A refusal or no
    /// answer within `wait` is `false` (the caller keeps the old scope). A
    /// `SessionEnded` seen meanwhile comes back as [`ClientError::Ended`].
    pub async fn report_recorded(
        &mut self,
        control: &mut Control,
        scope: Scope,
        wait: std::time::Duration,
    ) -> Result<bool, ClientError> {
        self.report(control, scope).await?;
        let change = self.changes;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, control.recv()).await {
                Err(_) => return Ok(false),
                Ok(Ok(RelayMsg::ScopeRecorded {
                    change: c,
                    recorded,
                })) if c == change => return Ok(recorded),
                Ok(Ok(RelayMsg::SessionEnded { reason })) => {
                    return Err(ClientError::Ended(reason))
                }
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Tells the relay, with a receipt signed by the device key, the user's
    /// answer to "please test" number `number` (recorded as `user_validation`).
    pub async fn report_validation(
        &mut self,
        control: &mut Control,
        number: u32,
        answer: Validation,
    ) -> Result<(), ClientError> {
        let payload = identity::validation_payload(&self.offer_bytes, number, answer);
        let receipt = self.device_key.sign(&payload);
        control
            .send(&ClientMsg::UserValidation {
                number,
                answer,
                receipt,
            })
            .await
    }

    /// Tells the relay, after the end, the user's answer to "Was your
    /// problem solved?" with a receipt signed by the device key (recorded
    /// as `user_confirmation`).
    pub async fn report_confirmation(
        &self,
        control: &mut Control,
        answer: Confirmation,
    ) -> Result<(), ClientError> {
        let receipt = self
            .device_key
            .sign(&identity::confirmation_payload(&self.offer_bytes, answer));
        control
            .send(&ClientMsg::UserConfirmation { answer, receipt })
            .await
    }

    /// Tells the relay, with a signed receipt, that the user changed the
    /// scope in force (the relay records it as `scope_changed`).
    pub async fn report(&mut self, control: &mut Control, scope: Scope) -> Result<(), ClientError> {
        self.changes = self.changes.saturating_add(1);
        let change = self.changes;
        let receipt = self.device_key.sign(&identity::scope_change_payload(
            &self.offer_bytes,
            change,
            scope,
        ));
        control
            .send(&ClientMsg::ScopeChange {
                scope,
                change,
                receipt,
            })
            .await
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("relay", &self.conn.remote_address())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("technician", &self.technician)
            .field("invite", &self.invite)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AgentPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentPending")
            .field("offer", &self.offer)
            .finish_non_exhaustive()
    }
}

/// Resolves on the first SIGTERM or SIGINT: both programs treat them as
/// the user closing the window. Never resolves if the handlers cannot be
/// installed (the window or End still work).
pub async fn termination_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
}
