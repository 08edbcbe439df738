//! What a session task writes to the audit log besides its start and end
//! (scope changes, the technician's note), and the words each side reads
//! when a request ends before the user's answer.

use assent_proto::identity::{self, PublicKey};
use assent_proto::session::{AbortReason, Phase, SessionMachine};
use assent_proto::text;
use assent_proto::wire::{Confirmation, ErrorKind, RelayMsg, Scope, Validation};
use tracing::warn;

use super::side::Agent;
use crate::fields;
use crate::state::Shared;

/// Session note fields accepted at most.
const MAX_NOTE_FIELDS: usize = 32;

/// The refusal both sides get when a session is closed before it started.
/// The agent turns the kind into the user's words.
pub(super) fn abort_message(reason: AbortReason) -> RelayMsg {
    let (kind, message) = match reason {
        AbortReason::InviteExpired => (
            ErrorKind::InviteExpired,
            "the invite expired before anyone joined",
        ),
        AbortReason::ConsentDenied => (ErrorKind::ConsentDenied, "the user declined the session"),
        AbortReason::ConsentTimeout => {
            (ErrorKind::ConsentTimeout, "the user did not answer in time")
        }
        AbortReason::ViewerLeft => (ErrorKind::PeerGone, "the technician's connection was lost"),
        AbortReason::AgentLeft => (ErrorKind::PeerGone, "the user's agent left"),
        AbortReason::AdminKilled => (ErrorKind::Cancelled, "a relay admin ended the session"),
        AbortReason::TechnicianRevoked => (
            ErrorKind::TechnicianRevoked,
            "the technician's access was revoked",
        ),
        AbortReason::RelayShutdown => (ErrorKind::Shutdown, "the relay is shutting down"),
        AbortReason::Withdrawn => (
            ErrorKind::Withdrawn,
            "the technician withdrew the request",
        ),
        AbortReason::AuditFailed => (
            ErrorKind::Busy,
            "the relay cannot write its audit log, so the session did not start; tell the relay admin",
        ),
    };
    RelayMsg::Error {
        kind,
        message: message.to_string(),
    }
}

/// A scope change the agent reports, with the user's signed receipt.
pub(super) struct ScopeChange {
    pub scope: Scope,
    pub change: u32,
    pub receipt: Vec<u8>,
}

/// Whether a reported scope change is on record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScopeOutcome {
    Recorded,
    /// Not believed (no live session, wrong number, bad receipt): dropped.
    Ignored,
    /// Believed, but the audit write failed: the old scope stays.
    NotRecorded,
}

/// Records a scope change the agent's user agreed to. Only a live session's
/// agent, with a receipt signed by its device key for the next change
/// number, is believed.
pub(super) async fn record_scope_change(
    shared: &Shared,
    session: &str,
    machine: &SessionMachine,
    device_key: PublicKey,
    offer_bytes: &[u8],
    last_change: &mut u32,
    change: &ScopeChange,
) -> ScopeOutcome {
    if !matches!(machine.phase(), Phase::Live { .. }) {
        warn!(session = %session, "scope change outside a live session; ignored");
        return ScopeOutcome::Ignored;
    }
    let payload = identity::scope_change_payload(offer_bytes, change.change, change.scope);
    if change.change != last_change.wrapping_add(1)
        || device_key.verify(&payload, &change.receipt).is_err()
    {
        warn!(session = %session, "scope change without a valid receipt; ignored");
        return ScopeOutcome::Ignored;
    }
    *last_change = change.change;
    let written = shared
        .audit
        .record(
            "scope_changed",
            fields! {
                "session" => session, "scope" => change.scope.as_str(),
                "change" => change.change, "receipt" => hex::encode(&change.receipt),
                "device_key" => device_key.fingerprint(),
            },
        )
        .await;
    if let Err(e) = written {
        warn!(session = %session, error = %e, "scope change not recorded; the old scope stays");
        return ScopeOutcome::NotRecorded;
    }
    if let Some(e) = shared.lock().sessions.get_mut(session) {
        e.scope = change.scope;
    }
    ScopeOutcome::Recorded
}

/// What a receipt is checked against: the live session and the device key
/// its offer named.
pub(super) struct ReceiptCtx<'a> {
    pub shared: &'a Shared,
    pub session: &'a str,
    pub machine: &'a SessionMachine,
    pub device_key: PublicKey,
    pub peer: std::net::SocketAddr,
    pub offer_bytes: &'a [u8],
}

impl<'a> ReceiptCtx<'a> {
    /// The session's side of the check (its offer, as signed), and the
    /// agent's key and address.
    pub fn new(
        shared: &'a Shared,
        (session, machine, offer_bytes): (&'a str, &'a SessionMachine, &'a [u8]),
        agent: &Agent,
    ) -> ReceiptCtx<'a> {
        ReceiptCtx {
            shared,
            session,
            machine,
            device_key: agent.device_key,
            peer: agent.side.addr,
            offer_bytes,
        }
    }
}

/// A numbered, device-signed answer of the user.
pub(super) struct Receipted<A> {
    pub number: u32,
    pub answer: A,
    pub receipt: Vec<u8>,
}

/// Records the user's answer to "please test" (`user_validation`). Only a
/// live session's agent, with a receipt of its device key for the next
/// number, is believed; a forged or replayed one is refused and audited
/// (`auth_failed`, `bad_validation_receipt`).
pub(super) async fn record_validation(
    ctx: &ReceiptCtx<'_>,
    last: &mut u32,
    v: Receipted<Validation>,
) -> Option<Validation> {
    if !matches!(ctx.machine.phase(), Phase::Live { .. }) {
        warn!(session = %ctx.session, "validation outside a live session; ignored");
        return None;
    }
    let payload = identity::validation_payload(ctx.offer_bytes, v.number, v.answer);
    let believed = v.number > *last && ctx.device_key.verify(&payload, &v.receipt).is_ok();
    let (event, fields) = if believed {
        *last = v.number;
        let fields = fields! {
            "session" => ctx.session, "number" => v.number, "answer" => v.answer.as_str(),
            "receipt" => hex::encode(&v.receipt), "device_key" => ctx.device_key.fingerprint(),
        };
        ("user_validation", fields)
    } else {
        warn!(session = %ctx.session, "user validation with a forged or replayed receipt; refused");
        let fields = fields! {
            "role" => "agent", "peer" => ctx.peer.to_string(),
            "reason" => "bad_validation_receipt", "session" => ctx.session,
        };
        ("auth_failed", fields)
    };
    if let Err(e) = ctx.shared.audit.record(event, fields).await {
        warn!(session = %ctx.session, error = %e, "{event} not recorded");
        return None;
    }
    believed.then_some(v.answer)
}

/// Records the user's answer, after the end, to "Was your problem solved?"
/// (`user_confirmation`): believed once per session, with a receipt of the
/// device key over this session's offer; anything else is refused and
/// audited (`auth_failed`, `bad_confirmation_receipt`).
pub(super) async fn record_confirmation(
    ctx: &ReceiptCtx<'_>,
    already: Option<Confirmation>,
    answer: Confirmation,
    receipt: &[u8],
) -> Option<Confirmation> {
    let payload = identity::confirmation_payload(ctx.offer_bytes, answer);
    let believed = already.is_none()
        && matches!(ctx.machine.phase(), Phase::Ended { .. })
        && ctx.device_key.verify(&payload, receipt).is_ok();
    let (event, fields) = if believed {
        let fields = fields! {
            "session" => ctx.session, "answer" => answer.as_str(),
            "receipt" => hex::encode(receipt), "device_key" => ctx.device_key.fingerprint(),
        };
        ("user_confirmation", fields)
    } else {
        warn!(session = %ctx.session, "user confirmation with a forged or repeated receipt; refused");
        let fields = fields! {
            "role" => "agent", "peer" => ctx.peer.to_string(),
            "reason" => "bad_confirmation_receipt", "session" => ctx.session,
        };
        ("auth_failed", fields)
    };
    if let Err(e) = ctx.shared.audit.record(event, fields).await {
        warn!(session = %ctx.session, error = %e, "{event} not recorded");
        return None;
    }
    believed.then_some(answer)
}

/// What the relay itself knows of the user's answers, added to the note:
/// from signed receipts, so a viewer cannot write them.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct UserAnswers {
    pub validation: Option<Validation>,
    pub confirmation: Option<Confirmation>,
}

impl UserAnswers {
    fn insert_into(&self, fields: &mut assent_audit::Fields) {
        if let Some(v) = self.validation {
            fields.insert("user_validation".into(), v.as_str().into());
        }
        if let Some(c) = self.confirmation {
            fields.insert("user_confirmation".into(), c.as_str().into());
        }
    }
}

/// Field names only the relay writes into a note.
const RELAY_NOTE_FIELDS: [&str; 2] = ["user_validation", "user_confirmation"];

/// An answer that arrived after the note was filed: appended to it as
/// `session_note_update` (the chain stays append-only).
pub(super) async fn record_note_update(shared: &Shared, session: &str, answers: UserAnswers) {
    let mut fields = fields! {"session" => session};
    answers.insert_into(&mut fields);
    if let Err(e) = shared.audit.record("session_note_update", fields).await {
        warn!(session = %session, error = %e, "session_note_update not recorded");
    }
}

/// Records the technician's note, with what the relay knows of the user's
/// answers. `true` when it is on record.
pub(super) async fn record_note(
    shared: &Shared,
    session: &str,
    machine: &SessionMachine,
    note: Vec<(String, String)>,
    answers: UserAnswers,
) -> bool {
    if matches!(
        machine.phase(),
        Phase::AwaitingAgent { .. } | Phase::AwaitingConsent { .. } | Phase::Recording { .. }
    ) {
        warn!(session = %session, "session note before the session started; ignored");
        return false;
    }
    if note.len() > MAX_NOTE_FIELDS {
        warn!(session = %session, "session note with too many fields; ignored");
        return false;
    }
    let mut fields = fields! {"session" => session};
    for (key, value) in note {
        let key = match text::single_line("note field name", &key, 64) {
            Ok(k) if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => k,
            _ => {
                warn!(session = %session, "session note field with a bad name; ignored");
                return false;
            }
        };
        let reserved = assent_audit::RESERVED_FIELDS.contains(&key.as_str())
            || RELAY_NOTE_FIELDS.contains(&key.as_str());
        if reserved || key == "session" {
            continue;
        }
        match text::multi_line("note field", &value, text::MAX_NOTE_FIELD) {
            Ok(v) => {
                fields.insert(key, serde_json::Value::String(v));
            }
            Err(e) => {
                warn!(session = %session, error = %e, "session note refused");
                return false;
            }
        }
    }
    answers.insert_into(&mut fields);
    match shared.audit.record("session_note", fields).await {
        Ok(_) => true,
        Err(e) => {
            warn!(session = %session, error = %e, "session note not recorded");
            false
        }
    }
}

impl super::SessionTask {
    /// Records the user's scope change, then tells the agent whether it is
    /// on record: a wider scope takes effect at the agent only after that.
    pub(super) async fn on_scope_change(&mut self, change: ScopeChange) {
        let Some(a) = self.agent.as_mut() else { return };
        let outcome = record_scope_change(
            &self.shared,
            &self.id,
            &self.machine,
            a.device_key,
            &self.offer_bytes,
            &mut self.scope_changes,
            &change,
        )
        .await;
        if outcome != ScopeOutcome::Ignored {
            let recorded = outcome == ScopeOutcome::Recorded;
            let reply = RelayMsg::ScopeRecorded {
                change: change.change,
                recorded,
            };
            a.side.tell(&reply).await;
        }
    }
}
