//! Messages on the control stream between a client (viewer or agent) and the
//! relay. Encoded with postcard (compact, serde-driven) inside the frames of
//! [`crate::framing`]. The session's own bytes travel on a separate stream
//! the relay forwards without parsing.

// A decoder of untrusted bytes: no panicking shortcuts (its tests may).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use serde::{Deserialize, Serialize};

use crate::framing::{FrameError, MAX_CONTROL_FRAME};

/// First bytes the relay writes on the data stream it opens to each client
/// once a session is live, so the client's `accept_bi` sees the stream at
/// once; everything after them is the session's opaque end-to-end bytes.
pub const DATA_PREAMBLE: &[u8; 8] = b"ASNTDATA";

/// Which side of a session a connection speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Role {
    Viewer = 1,
    Agent = 2,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Agent => "agent",
        }
    }
}

/// What the technician asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    View,
    Control,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::View => "view",
            Scope::Control => "control",
        }
    }

    /// The plain words the end user reads in the consent prompt.
    pub fn plain_words(self) -> &'static str {
        match self {
            Scope::View => "see your screen",
            Scope::Control => "see your screen and use your mouse and keyboard",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "view" => Ok(Scope::View),
            "control" => Ok(Scope::Control),
            other => Err(format!(
                "unknown scope {other:?} (expected view or control)"
            )),
        }
    }
}

/// Business impact, as the support procedure's note template names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Impact {
    Low,
    Normal,
    High,
    Critical,
}

impl Impact {
    pub fn as_str(self) -> &'static str {
        match self {
            Impact::Low => "low",
            Impact::Normal => "normal",
            Impact::High => "high",
            Impact::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Impact {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Impact::Low),
            "normal" => Ok(Impact::Normal),
            "high" => Ok(Impact::High),
            "critical" => Ok(Impact::Critical),
            other => Err(format!(
                "unknown impact {other:?} (expected low, normal, high or critical)"
            )),
        }
    }
}

/// The end user's answer to the consent prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum ConsentDecision {
    View = 1,
    Control = 2,
    Denied = 3,
    Timeout = 4,
}

impl ConsentDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentDecision::View => "view",
            ConsentDecision::Control => "control",
            ConsentDecision::Denied => "denied",
            ConsentDecision::Timeout => "timeout",
        }
    }

    /// The scope this decision grants, if any. A decision can never grant
    /// more than was requested: `Control` on a view-only request grants view.
    pub fn granted_scope(self, requested: Scope) -> Option<Scope> {
        match (self, requested) {
            (ConsentDecision::View, _) => Some(Scope::View),
            (ConsentDecision::Control, Scope::Control) => Some(Scope::Control),
            (ConsentDecision::Control, Scope::View) => Some(Scope::View),
            (ConsentDecision::Denied | ConsentDecision::Timeout, _) => None,
        }
    }
}

/// The user's answer when the technician asks them to test the fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Validation {
    Works = 1,
    StillBroken = 2,
}

impl Validation {
    pub fn as_str(self) -> &'static str {
        match self {
            Validation::Works => "works",
            Validation::StillBroken => "still_broken",
        }
    }

    /// The words on the buttons and in the note.
    pub fn plain_words(self) -> &'static str {
        match self {
            Validation::Works => "It works",
            Validation::StillBroken => "Still broken",
        }
    }
}

/// The user's answer, after the end, to "Was your problem solved?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Confirmation {
    Yes = 1,
    No = 2,
    NotSure = 3,
}

impl Confirmation {
    pub fn as_str(self) -> &'static str {
        match self {
            Confirmation::Yes => "yes",
            Confirmation::No => "no",
            Confirmation::NotSure => "not_sure",
        }
    }

    /// The words on the buttons and in the note.
    pub fn plain_words(self) -> &'static str {
        match self {
            Confirmation::Yes => "Yes",
            Confirmation::No => "No",
            Confirmation::NotSure => "Not sure",
        }
    }
}

/// Why a live session ended (the INTERFACE.md vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    ViewerClosed,
    AgentEnded,
    ViewerLost,
    AgentLost,
    AdminKilled,
    TechnicianRevoked,
    IdleTimeout,
    MaxDuration,
    RelayShutdown,
    /// The user accepted a specialist's session in its place.
    Escalated,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::ViewerClosed => "viewer_closed",
            EndReason::AgentEnded => "agent_ended",
            EndReason::ViewerLost => "viewer_lost",
            EndReason::AgentLost => "agent_lost",
            EndReason::AdminKilled => "admin_killed",
            EndReason::TechnicianRevoked => "technician_revoked",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::MaxDuration => "max_duration",
            EndReason::RelayShutdown => "relay_shutdown",
            EndReason::Escalated => "escalated",
        }
    }
}

/// What the technician states about the ticket when asking for an invite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRequest {
    pub ticket: String,
    pub client: String,
    pub summary: String,
    pub impact: Impact,
    pub scope: Scope,
    /// How the technician verified who asked (`text::identity_check`);
    /// empty when not recorded.
    pub identity_check: String,
    /// Permissions beyond the scope the technician asks for (the user is
    /// asked for each in the prompt; none is on by default).
    #[serde(deserialize_with = "crate::permission::bounded")]
    pub permissions: Vec<crate::permission::Permission>,
}

/// What the relay attests to the agent before consent: who asks, for which
/// ticket, to do what. Signed by the relay's ed25519 key over its postcard
/// bytes (see [`crate::identity::offer_payload`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOffer {
    pub session: String,
    pub technician: String,
    pub technician_key: [u8; 32],
    pub ticket: String,
    pub client: String,
    pub summary: String,
    pub impact: Impact,
    pub scope: Scope,
    pub device: String,
    pub device_key: [u8; 32],
    /// Seconds the relay waits for the user's answer before recording `timeout`.
    pub consent_timeout_secs: u32,
    /// Set when a technician escalated a live session to this one's
    /// technician: the user is asked afresh, told by whom and why.
    pub escalated_from: Option<crate::escalation::EscalatedFrom>,
    /// Permissions beyond the scope the technician asks for, each put to
    /// the user separately (off unless they tick it).
    #[serde(deserialize_with = "crate::permission::bounded")]
    pub permissions: Vec<crate::permission::Permission>,
}

impl SessionOffer {
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain structs into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<SessionOffer, FrameError> {
        decode(bytes)
    }
}

/// Client → relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First message on a connection.
    Hello { version: u16, role: Role },
    /// Viewer: proves the technician key on this connection.
    ViewerAuth {
        public_key: [u8; 32],
        signature: Vec<u8>,
    },
    /// Viewer: asks for a one-time invite code for a ticket.
    CreateInvite(InviteRequest),
    /// Agent: redeems a code and proves its device key on this connection.
    AgentJoin {
        code: String,
        device: String,
        device_key: [u8; 32],
        signature: Vec<u8>,
    },
    /// Agent: the user's decision, signed (see [`crate::identity::consent_payload`]).
    Consent {
        decision: ConsentDecision,
        receipt: Vec<u8>,
    },
    /// Either side, while consent is pending: one end-to-end handshake
    /// message for the peer (Noise; opaque to the relay). Run before the
    /// prompt so the user sees the verification code while deciding.
    Handshake(Vec<u8>),
    /// Viewer: the session note, recorded by the relay as `session_note`.
    SessionNote { fields: Vec<(String, String)> },
    /// Either side: ends the session deliberately (window closed, End clicked).
    End,
    /// Agent, while live: the user answered a scope-change request again and
    /// this scope is now in force; signed (see
    /// [`crate::identity::scope_change_payload`]). `change` counts the
    /// changes of this session from 1, so no two receipts are alike.
    ScopeChange {
        scope: Scope,
        change: u32,
        receipt: Vec<u8>,
    },
    /// This side sent one chat message (metadata only: the text stays in
    /// the end-to-end channel). The relay counts them for `session_end`.
    ChatSent,
    /// The user's answer to the technician's "please test" (number
    /// `number` of the session), signed by the device key over
    /// [`crate::identity::validation_payload`]. The comment stays end to end.
    UserValidation {
        number: u32,
        answer: Validation,
        receipt: Vec<u8>,
    },
    /// Agent, after the session ended: the user's answer to "Was your
    /// problem solved?", signed by the device key over
    /// [`crate::identity::confirmation_payload`]. At most one per session.
    UserConfirmation {
        answer: Confirmation,
        receipt: Vec<u8>,
    },
    /// Viewer, while live: hand the session to `specialist` (an enrolled
    /// technician who may receive escalations) for `trigger`
    /// ([`crate::escalation::trigger`]), asking the user for `scope`.
    Escalate {
        specialist: String,
        trigger: String,
        scope: Scope,
    },
    /// Viewer, while live: who may receive an escalation.
    ListSpecialists,
    /// Viewer, in place of `CreateInvite`: the handovers waiting for this
    /// technician (the relay answers, then closes the connection).
    ListHandovers,
    /// Viewer, in place of `CreateInvite`: take this handover; the relay
    /// asks the user afresh, as for an invite.
    ClaimHandover { handover: String },
    /// Agent, while live: what the user keeps private changed (counts only).
    PrivacyChanged(crate::privacy::PrivacyCounts),
    /// Agent, while live: the user turned a permission on or off.
    PermissionChanged(crate::permission::PermissionReport),
    /// Agent, while live: clipboard text moved (metadata only).
    ClipboardTransfer(crate::permission::ClipboardReport),
    /// Agent: a file transfer ended (metadata only), also just after the
    /// session ended under it.
    FileTransfer(crate::files::FileReport),
    /// Viewer, while live: it started writing a recording (the user allows
    /// recording: the relay checks its record of that).
    RecordingStarted,
    /// Viewer: the recording it wrote is closed: its size, SHA-256 and
    /// frame count (`assent-viewer verify-recording` checks a file against
    /// them).
    RecordingStopped {
        bytes: u64,
        sha256: [u8; 32],
        frames: u32,
    },
    /// Viewer, while live: it saved a screenshot (its PNG's SHA-256).
    ScreenshotTaken { sha256: [u8; 32] },
    /// Agent or viewer, in place of `AgentJoin` / `ViewerAuth`: carry on
    /// live session `session` on this new connection (its old one can no
    /// longer reach the relay). `credential` is the one the relay sent in
    /// [`RelayMsg::ResumeCredential`]; `signature` proves, as `AgentJoin`
    /// does, the same device (or technician) key on this connection. The
    /// end-to-end channel then starts again, bound to the old one.
    Resume {
        session: String,
        credential: ResumeCredential,
        signature: Vec<u8>,
    },
}

/// Relay → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayMsg {
    /// Fresh nonce to sign, and the relay's offer-signing public key.
    Challenge {
        nonce: [u8; 32],
        relay_key: [u8; 32],
    },
    /// Viewer authenticated as this enrolled technician.
    Authenticated { technician: String },
    /// The one-time code to read to the user. Sent only to the technician.
    InviteCreated {
        invite: String,
        code: String,
        expires_in_secs: u32,
    },
    /// To the viewer: which device redeemed the code; consent is pending.
    AgentJoined {
        session: String,
        device: String,
        device_key: [u8; 32],
    },
    /// To the agent: who is asking, signed by the relay.
    ConsentRequest {
        offer: Vec<u8>,
        relay_signature: Vec<u8>,
    },
    /// The peer's end-to-end handshake message, passed on unread.
    Handshake(Vec<u8>),
    /// To the viewer: the user's decision.
    ConsentResult { decision: ConsentDecision },
    /// To both: the session is live with this scope; the relay now opens the
    /// data stream.
    SessionStarted { session: String, scope: Scope },
    /// To both: the session is over.
    SessionEnded { reason: EndReason },
    /// A refusal the client should show; the connection closes after it.
    Error { kind: ErrorKind, message: String },
    /// To the agent: whether the relay recorded scope change number `change`
    /// (`scope_changed` on disk). A wider scope takes effect only after
    /// `recorded: true`.
    ScopeRecorded { change: u32, recorded: bool },
    /// To the viewer, after the end while it writes the note: the user's
    /// answer to "Was your problem solved?", as the relay recorded it.
    UserConfirmed { answer: Confirmation },
    /// To the first technician: where their escalation stands.
    Escalation {
        handover: String,
        specialist: String,
        state: crate::escalation::EscalationState,
    },
    /// To the first technician: who may receive an escalation.
    Specialists {
        #[serde(
            deserialize_with = "crate::escalation::bounded_list::<_, _, { crate::escalation::MAX_SPECIALISTS }>"
        )]
        names: Vec<String>,
    },
    /// To a specialist: the handovers waiting for them.
    Handovers {
        #[serde(
            deserialize_with = "crate::escalation::bounded_list::<_, _, { crate::escalation::MAX_HANDOVERS_LISTED }>"
        )]
        list: Vec<crate::escalation::HandoverInfo>,
    },
    /// To the specialist, for `ClaimHandover`: the request they now carry
    /// (the first session's ticket, with the scope asked for); the user's
    /// agent gets the code, never the specialist.
    HandoverClaimed {
        invite: String,
        request: InviteRequest,
        from_technician: String,
        trigger: String,
        expires_in_secs: u32,
    },
    /// To the user's agent, while live: the one-time code of the
    /// specialist's session, bound to this device; the agent joins with it
    /// and asks the user afresh.
    EscalationCode { handover: String, code: String },
    /// To one side: the other side's path went silent (the agent stops
    /// capturing until it is back; the session waits out the grace).
    PeerInterrupted { side: Role },
    /// To one side: the other side's path is back.
    PeerResumed { side: Role },
    /// To each side once the session is live: what proves, with its key,
    /// that a later new connection is this side of this session (see
    /// [`ClientMsg::Resume`]). A secret: never logged.
    ResumeCredential { credential: ResumeCredential },
    /// To a side that sent `Resume`: this connection carries the session
    /// now; the relay opens its data stream next.
    Reconnected { session: String },
    /// To one side: the other side came back on a new connection; a new
    /// data stream follows, and the end-to-end channel starts again on it.
    PeerReconnected { side: Role },
    /// Fleet mode: the code belongs to a technician connected to another
    /// relay of the fleet, at this `host:port`. The agent joins there
    /// with the same code (its CA decides whether to trust that relay).
    Redirect { relay: String },
}

/// What proves, with a side's key, that a new connection is that side of a
/// live session (`ResumeCredential`, `Resume`). A secret: its `Debug` shows
/// no byte of it, so no log line can.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResumeCredential(pub [u8; 32]);

impl std::fmt::Debug for ResumeCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeCredential(..)")
    }
}

/// Largest end-to-end handshake message the relay passes on.
pub const MAX_HANDSHAKE_MSG: usize = 4096;
/// Handshake messages the relay passes on per side and session. Noise XX
/// needs three in all plus one identity signature each way.
pub const MAX_HANDSHAKE_MSGS: usize = 4;

/// Machine-readable refusal kinds, so clients can explain what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    BadVersion,
    Protocol,
    UnknownTechnician,
    TechnicianRevoked,
    BadSignature,
    BadCode,
    ExpiredCode,
    UsedCode,
    Throttled,
    Busy,
    LimitReached,
    BadInput,
    ConsentDenied,
    ConsentTimeout,
    InviteExpired,
    PeerGone,
    Cancelled,
    Shutdown,
    /// The technician withdrew the request before the user answered.
    Withdrawn,
    /// `Resume` named no live session this side may carry on.
    NotResumable,
}

/// Encodes a message body (without the length prefix).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let bytes = postcard::to_allocvec(msg).map_err(|e| FrameError::Encode(e.to_string()))?;
    if bytes.len() > MAX_CONTROL_FRAME {
        return Err(FrameError::TooLarge {
            len: bytes.len(),
            max: MAX_CONTROL_FRAME,
        });
    }
    Ok(bytes)
}

/// Decodes a message body. Hostile input yields an error, never a panic;
/// postcard never allocates more than the input's length suggests, and the
/// input itself is bounded by the frame limit.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, FrameError> {
    if bytes.len() > MAX_CONTROL_FRAME {
        return Err(FrameError::TooLarge {
            len: bytes.len(),
            max: MAX_CONTROL_FRAME,
        });
    }
    decode_whole(bytes)
}

/// Decodes one value that must fill `bytes` exactly. postcard alone stops
/// at the end of the value and ignores whatever follows; a message with
/// bytes after it is malformed, so nothing can ride along unseen behind a
/// valid message (or a signed offer) and each message has one length.
pub(crate) fn decode_whole<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, FrameError> {
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| FrameError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(format!(
            "{} unexpected bytes after the message",
            rest.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;
