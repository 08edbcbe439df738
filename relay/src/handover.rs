//! Escalation handovers between session tasks. The first technician's
//! session task puts a handover on the table ([`Handovers`] in the shared
//! state); the specialist's connection claims it (`server/handover.rs`),
//! which opens a new session whose code only the user's agent receives, over
//! the first session. The two tasks then talk through [`Notice`]s: the
//! specialist's session says when it was claimed, accepted (its
//! `session_start` is on record) or closed without starting.

use std::collections::HashMap;
use std::time::Instant;

use assent_proto::escalation::{EscalatedFrom, HandoverInfo, MAX_HANDOVERS_LISTED};
use assent_proto::identity::PublicKey;
use assent_proto::session::Event;
use assent_proto::wire::InviteRequest;
use tokio::sync::mpsc;

/// What a session task is told from outside its connections. Every
/// variant is small (larger ones boxed): a channel allocates its slots 32
/// at a time whatever its capacity, and every session holds one.
#[derive(Debug)]
pub enum Control {
    /// An event for its state machine (admin kill, revocation…).
    Machine(Event),
    /// News of the handover this session offered.
    Handover(Box<Notice>),
    /// A side back on a new connection.
    Reconnect(Box<crate::peer::Reconnect>),
}

/// What the specialist's session tells the first one.
#[derive(Debug)]
pub enum Notice {
    /// The specialist claimed the handover: `code` (bound to the user's
    /// device) goes to the user's agent over the first session.
    Claimed { session: String, code: String },
    /// The user said yes and the specialist's `session_start` is on record:
    /// the first session ends (`escalated`).
    Accepted { session: String },
    /// The specialist's session ended before it started (its
    /// `invite_closed` reason); the first session goes on as it was.
    Closed { reason: &'static str },
}

/// A handover waiting for its specialist.
#[derive(Debug)]
pub struct Handover {
    pub from: EscalatedFrom,
    pub specialist: String,
    /// The first session's request, with the scope asked of the user now.
    pub request: InviteRequest,
    /// The user's device: the specialist's code is redeemed only by it.
    pub device_key: PublicKey,
    pub expires: Instant,
    pub from_control: mpsc::Sender<Control>,
}

/// The specialist's session's link back to the first session.
#[derive(Debug, Clone)]
pub struct Link {
    pub handover: String,
    pub from: EscalatedFrom,
    pub from_control: mpsc::Sender<Control>,
}

impl Link {
    /// Tells the first session; it may have ended meanwhile (then nobody
    /// is waiting for the news).
    pub async fn tell(&self, notice: Notice) {
        let _ = self
            .from_control
            .send(Control::Handover(Box::new(notice)))
            .await;
    }
}

/// Why a claim was refused (the specialist reads it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("no pending handover {0:?} (it expired, was claimed, or its session ended)")]
    Unknown(String),
    #[error("handover {0:?} is for another technician")]
    NotYours(String),
}

/// Pending handovers by id.
#[derive(Debug, Default)]
pub struct Handovers {
    pending: HashMap<String, Handover>,
}

impl Handovers {
    pub fn offer(&mut self, id: String, handover: Handover) {
        self.pending.insert(id, handover);
    }

    /// Takes the handover for `technician`; an expired one is gone.
    pub fn claim(
        &mut self,
        id: &str,
        technician: &str,
        now: Instant,
    ) -> Result<Handover, ClaimError> {
        match self.pending.get(id) {
            Some(h) if h.expires <= now => {}
            Some(h) if h.specialist != technician => {
                return Err(ClaimError::NotYours(id.to_string()))
            }
            Some(_) => {
                return self
                    .pending
                    .remove(id)
                    .ok_or_else(|| ClaimError::Unknown(id.to_string()))
            }
            None => {}
        }
        Err(ClaimError::Unknown(id.to_string()))
    }

    /// Removes an unclaimed handover (expired, or its session ended);
    /// `false` when it was claimed meanwhile.
    pub fn withdraw(&mut self, id: &str) -> bool {
        self.pending.remove(id).is_some()
    }

    /// What `technician` may claim now.
    pub fn waiting_for(&self, technician: &str, now: Instant) -> Vec<HandoverInfo> {
        let mut list: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, h)| h.specialist == technician && h.expires > now)
            .map(|(id, h)| HandoverInfo {
                handover: id.clone(),
                from_technician: h.from.technician.clone(),
                ticket: h.request.ticket.clone(),
                client: h.request.client.clone(),
                trigger: h.from.trigger.clone(),
                scope: h.request.scope,
                expires_in_secs: secs(h.expires.saturating_duration_since(now)),
            })
            .collect();
        list.sort_by(|a, b| a.handover.cmp(&b.handover));
        list.truncate(MAX_HANDOVERS_LISTED);
        list
    }
}

pub fn secs(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use assent_proto::wire::{Impact, Scope};
    use std::time::Duration;

    fn handover(specialist: &str, expires: Instant) -> Handover {
        Handover {
            from: EscalatedFrom {
                session: "s1".into(),
                technician: "alice".into(),
                trigger: "outside-scope".into(),
            },
            specialist: specialist.into(),
            request: InviteRequest {
                ticket: "T-1".into(),
                client: "Acme".into(),
                summary: String::new(),
                impact: Impact::Normal,
                scope: Scope::Control,
                identity_check: String::new(),
                permissions: vec![],
            },
            device_key: PublicKey([7; 32]),
            expires,
            from_control: mpsc::channel(1).0,
        }
    }

    #[test]
    fn only_the_named_specialist_claims_once_before_expiry() {
        let now = Instant::now();
        let mut h = Handovers::default();
        h.offer("h1".into(), handover("bob", now + Duration::from_secs(60)));
        assert_eq!(h.waiting_for("bob", now).len(), 1);
        assert!(h.waiting_for("carol", now).is_empty());
        assert_eq!(
            h.claim("h1", "carol", now).unwrap_err(),
            ClaimError::NotYours("h1".into())
        );
        assert_eq!(h.claim("h1", "bob", now).unwrap().specialist, "bob");
        assert!(matches!(
            h.claim("h1", "bob", now),
            Err(ClaimError::Unknown(_))
        ));
        assert!(!h.withdraw("h1"));

        h.offer("h2".into(), handover("bob", now + Duration::from_secs(1)));
        let later = now + Duration::from_secs(2);
        assert!(h.waiting_for("bob", later).is_empty());
        assert!(matches!(
            h.claim("h2", "bob", later),
            Err(ClaimError::Unknown(_))
        ));
        assert!(h.withdraw("h2"));
    }

    /// Every session's control channel holds 32 slots from its start.
    #[test]
    fn a_control_message_is_two_words_at_most() {
        assert!(std::mem::size_of::<Control>() <= 16);
    }
}
