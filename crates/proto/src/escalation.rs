//! Escalation to a specialist (support procedure 002, "Escalate if
//! required"): the triggers the procedure lists, what the relay tells each
//! party about a handover, and what the user's fresh prompt names.
//!
//! A handover never carries the first session's consent over: the
//! specialist's session is a new session with its own code (bound to the
//! same device), its own end-to-end handshake and its own yes.

use serde::{Deserialize, Serialize};

use crate::text::single_line;

/// The procedure's ten escalation triggers, as `--trigger` takes them, with
/// the words the user and the note read.
pub const TRIGGERS: &[(&str, &str)] = &[
    (
        "identity-unverified",
        "the user's identity cannot be verified",
    ),
    ("no-consent", "the user does not consent to remote access"),
    (
        "compromise-or-malware",
        "suspected account compromise or malware",
    ),
    (
        "sensitive-data",
        "the session revealed sensitive data exposure",
    ),
    (
        "admin-access",
        "administrative access is required but not approved",
    ),
    (
        "bypass-request",
        "the client asked to bypass security controls",
    ),
    (
        "multiple-users",
        "the issue affects multiple users or business-critical systems",
    ),
    (
        "device-risk",
        "the device appears lost, stolen, compromised or unmanaged",
    ),
    (
        "outside-scope",
        "the work required is outside the ticket's scope",
    ),
    (
        "unsure-if-safe",
        "the technician is unsure whether the action is safe or authorised",
    ),
];

/// Longest `other:TEXT` trigger.
pub const MAX_TRIGGER_TEXT: usize = 100;
/// Most specialists the relay lists at once.
pub const MAX_SPECIALISTS: usize = 64;
/// Most pending handovers the relay lists to one specialist.
pub const MAX_HANDOVERS_LISTED: usize = 32;

/// A valid trigger (one of [`TRIGGERS`] or `other:TEXT`); the error says
/// what is accepted.
pub fn trigger(value: &str) -> Result<String, String> {
    let value = value.trim();
    if TRIGGERS.iter().any(|(key, _)| *key == value) {
        return Ok(value.to_string());
    }
    match value.strip_prefix("other:") {
        Some(why) => single_line("escalation trigger", why, MAX_TRIGGER_TEXT)
            .map(|why| format!("other:{why}"))
            .map_err(|e| e.to_string()),
        None => Err(format!(
            "unknown escalation trigger {value:?}: expected {} or other:TEXT",
            TRIGGERS
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The trigger's kind for the audit log: the key, or `other` (the free text
/// stays in the note, never in the relay's records).
pub fn trigger_kind(trigger: &str) -> &str {
    if trigger.starts_with("other:") {
        "other"
    } else {
        trigger
    }
}

/// The words the user and the note read for a trigger.
pub fn trigger_words(trigger: &str) -> String {
    if let Some(why) = trigger.strip_prefix("other:") {
        return why.to_string();
    }
    TRIGGERS
        .iter()
        .find(|(key, _)| *key == trigger)
        .map(|(_, words)| words.to_string())
        .unwrap_or_else(|| trigger.to_string())
}

/// What the relay-signed offer of a specialist's session says about where
/// it comes from; the agent accepts such an offer only while that session
/// is live on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalatedFrom {
    pub session: String,
    pub technician: String,
    pub trigger: String,
}

/// A pending handover, as `assent-viewer handovers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverInfo {
    pub handover: String,
    pub from_technician: String,
    pub ticket: String,
    pub client: String,
    pub trigger: String,
    pub scope: crate::wire::Scope,
    pub expires_in_secs: u32,
}

/// Where an escalation stands, as the first technician is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EscalationState {
    /// On record; the specialist can claim it until it expires.
    Pending { expires_in_secs: u32 },
    /// The specialist claimed it; the user is being asked.
    Claimed,
    /// The user said yes: this session ends (`escalated`), the
    /// specialist's begins.
    Accepted,
    /// It ended without a handover; the session goes on as it was. The
    /// reason is the specialist session's `invite_closed` reason (or
    /// `expired` when nobody claimed it in time).
    Closed { reason: String },
    /// The relay refused the request (unknown specialist, one pending
    /// already…); nothing changed.
    Refused { message: String },
}

/// Decodes a list of at most `MAX` items without trusting the declared
/// length for the allocation (a few bytes can declare thousands of large
/// items; serde would reserve for them before reading one).
pub(crate) fn bounded_list<'de, D, T, const MAX: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Items<T, const MAX: usize>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const MAX: usize> serde::de::Visitor<'de> for Items<T, MAX> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a list of at most {MAX} items")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let declared = seq.size_hint().unwrap_or(0);
            if declared > MAX {
                return Err(serde::de::Error::invalid_length(declared, &self));
            }
            let mut items = Vec::with_capacity(declared);
            while let Some(item) = seq.next_element()? {
                if items.len() == MAX {
                    return Err(serde::de::Error::invalid_length(MAX + 1, &self));
                }
                items.push(item);
            }
            Ok(items)
        }
    }
    d.deserialize_seq(Items::<T, MAX>(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_are_the_procedures_or_other_text() {
        assert_eq!(trigger(" outside-scope ").unwrap(), "outside-scope");
        assert_eq!(
            trigger("other:printer on fire").unwrap(),
            "other:printer on fire"
        );
        assert!(trigger("other:").is_err());
        assert!(trigger("other:a\nb").is_err());
        let err = trigger("because").unwrap_err();
        assert!(err.contains("unsure-if-safe"), "{err}");
        assert_eq!(TRIGGERS.len(), 10);
        assert_eq!(trigger_kind("other:secret detail"), "other");
        assert_eq!(trigger_kind("admin-access"), "admin-access");
        assert_eq!(trigger_words("other:why"), "why");
        assert!(trigger_words("no-consent").contains("consent"));
    }

    #[test]
    fn a_declared_list_longer_than_its_bound_is_refused_before_allocation() {
        use crate::wire::{decode, encode, RelayMsg};
        let empty = encode(&RelayMsg::Handovers { list: Vec::new() }).unwrap();
        assert_eq!(empty.last(), Some(&0), "the list length comes last");
        let mut claims_many = empty[..empty.len() - 1].to_vec();
        claims_many.extend_from_slice(&[0x90, 0x4e]); // 10 000 items, none sent
        assert!(decode::<RelayMsg>(&claims_many).is_err());
        let names = vec!["bob".to_string(); MAX_SPECIALISTS + 1];
        let too_many = encode(&RelayMsg::Specialists { names }).unwrap();
        assert!(decode::<RelayMsg>(&too_many).is_err());
        let names = vec!["bob".to_string(), "carol".to_string()];
        let fine = RelayMsg::Specialists { names };
        assert_eq!(decode::<RelayMsg>(&encode(&fine).unwrap()).unwrap(), fine);
    }
}
