//! Escalation from the technician's side (support procedure 002,
//! "Escalate if required"): asking the relay who may receive one, handing
//! the session to a specialist for one of the procedure's triggers, and
//! what the note says when the user accepts (Result: Escalated, to whom and
//! why). The user is asked afresh by the specialist's session; this session
//! stays as it is until they say yes.

use assent_proto::escalation::{self, EscalationState};
use assent_proto::text::sanitize;
use assent_proto::wire::{ClientMsg, RelayMsg, Scope};
use tracing::info;

use crate::checklist::Outcome;
use crate::record::AuditWriter;
use crate::session::{fields, lock, Command, SharedState, ViewState};

/// What the window and the headless output show of an escalation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EscalationView {
    /// Bumped at every change, so `--headless` prints each once.
    pub version: u32,
    /// Who may receive one, once the relay said.
    pub specialists: Option<Vec<String>>,
    /// The escalation asked for: specialist and trigger.
    pub asked: Option<(String, String)>,
    pub handover: String,
    /// Where it stands, once the relay said.
    pub state: Option<EscalationState>,
}

impl EscalationView {
    /// One line for the status bar and the headless output.
    pub fn status(&self) -> Option<String> {
        let (specialist, _) = self.asked.as_ref()?;
        Some(match self.state.as_ref()? {
            EscalationState::Pending { expires_in_secs } => format!(
                "Escalation to {specialist} pending (handover {}): they run `assent-viewer connect --handover {}` within {} min",
                self.handover,
                self.handover,
                expires_in_secs / 60
            ),
            EscalationState::Claimed => {
                format!("{specialist} took the handover; the user is being asked")
            }
            EscalationState::Accepted => format!("The user accepted {specialist}; this session ends"),
            EscalationState::Closed { reason } => format!(
                "Escalation to {specialist} closed ({reason}); this session goes on as it was"
            ),
            EscalationState::Refused { message } => format!("Escalation refused: {message}"),
        })
    }
}

/// A `--headless` stdin line about escalation: `specialists`, or
/// `escalate SPECIALIST TRIGGER [view|control]` (the scope defaults to the
/// session's). `Some(Err)` for a malformed one.
pub fn parse_line(line: &str, scope: Scope) -> Option<Result<Command, String>> {
    let line = line.trim();
    if line == "specialists" {
        return Some(Ok(Command::ListSpecialists));
    }
    let rest = line.strip_prefix("escalate")?;
    if !rest.is_empty() && !rest.starts_with(' ') {
        return None;
    }
    let usage = "escalate takes: escalate SPECIALIST TRIGGER [view|control]";
    let mut words: Vec<&str> = rest.split_whitespace().collect();
    let scope = match words.last().and_then(|w| w.parse::<Scope>().ok()) {
        Some(s) if words.len() >= 3 => {
            words.pop();
            s
        }
        _ => scope,
    };
    // The trigger is the rest: `other:TEXT` may have spaces.
    let (specialist, trigger) = match words.as_slice() {
        [specialist, trigger @ ..] if !trigger.is_empty() => (*specialist, trigger.join(" ")),
        _ => return Some(Err(usage.into())),
    };
    Some(Ok(Command::Escalate {
        specialist: specialist.to_string(),
        trigger,
        scope,
    }))
}

/// The control message for the technician's "Escalate": checked here so a
/// bad trigger is refused with the accepted list before anything is sent.
pub fn request(
    state: &SharedState,
    audit: &AuditWriter,
    session: &str,
    (specialist, trigger, scope): (String, String, Scope),
) -> Result<ClientMsg, String> {
    let trigger = escalation::trigger(&trigger)?;
    let specialist = specialist.trim().to_string();
    if specialist.is_empty() {
        return Err("name the specialist to escalate to".into());
    }
    info!(%specialist, trigger = escalation::trigger_kind(&trigger), "escalating");
    audit.record(
        "escalation_requested",
        fields! {"session" => session, "specialist" => specialist, "trigger" => escalation::trigger_kind(&trigger), "scope" => scope.as_str()},
    );
    let mut s = lock(state);
    s.escalation.asked = Some((specialist.clone(), trigger.clone()));
    s.escalation.state = None;
    s.escalation.handover.clear();
    Ok(ClientMsg::Escalate {
        specialist,
        trigger,
        scope,
    })
}

/// The relay's word on escalation: `true` when `msg` was one.
pub fn on_relay_msg(
    state: &SharedState,
    audit: &AuditWriter,
    session: &str,
    msg: &RelayMsg,
) -> bool {
    match msg {
        RelayMsg::Specialists { names } => {
            let names = names.iter().map(|n| sanitize(n, 64)).collect();
            let mut s = lock(state);
            s.escalation.specialists = Some(names);
            s.escalation.version += 1;
            true
        }
        RelayMsg::Escalation {
            handover,
            specialist,
            state: news,
        } => {
            audit.record(
                "escalation_update",
                fields! {"session" => session, "handover" => handover, "specialist" => specialist, "state" => state_word(news)},
            );
            let mut s = lock(state);
            s.escalation.handover = sanitize(handover, 32);
            s.escalation.state = Some(news.clone());
            s.escalation.version += 1;
            if let Some(line) = s.escalation.status() {
                info!("{line}");
            }
            true
        }
        _ => false,
    }
}

impl EscalationView {
    /// The `--headless` line: `{"escalation": {"handover", "specialist",
    /// "state", "status", "specialists"}}`.
    pub fn json(&self) -> serde_json::Value {
        let specialist = self.asked.as_ref().map(|(s, _)| s.clone());
        serde_json::json!({"escalation": {
            "handover": self.handover,
            "specialist": specialist,
            "state": self.state.as_ref().map(state_word),
            "status": self.status(),
            "specialists": self.specialists,
        }})
    }
}

fn state_word(state: &EscalationState) -> &'static str {
    match state {
        EscalationState::Pending { .. } => "pending",
        EscalationState::Claimed => "claimed",
        EscalationState::Accepted => "accepted",
        EscalationState::Closed { .. } => "closed",
        EscalationState::Refused { .. } => "refused",
    }
}

/// The session ended because the user accepted the specialist: the note's
/// Result is Escalated (unless the technician chose otherwise) and says to
/// whom and why; Next Action names who continues.
pub fn note_escalated(s: &mut ViewState) {
    let Some((specialist, trigger)) = s.escalation.asked.clone() else {
        return;
    };
    let why = escalation::trigger_words(&trigger);
    if s.outcome.is_none() {
        s.outcome = Some(Outcome::Escalated);
    }
    let details = s.note.get("Result").trim().to_string();
    let escalated = format!("To {specialist}, because {why}");
    let result = match details.is_empty() {
        true => escalated,
        false => format!("{escalated}. {details}"),
    };
    s.note.set("Result", result);
    if s.note.get("Next Action").trim().is_empty() {
        s.note.set(
            "Next Action",
            format!(
                "{specialist} continues in the escalated session (handover {}), with the user's fresh consent",
                s.escalation.handover
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headless_lines() {
        assert_eq!(
            parse_line("specialists", Scope::View),
            Some(Ok(Command::ListSpecialists))
        );
        assert_eq!(
            parse_line("escalate bob outside-scope control", Scope::View),
            Some(Ok(Command::Escalate {
                specialist: "bob".into(),
                trigger: "outside-scope".into(),
                scope: Scope::Control
            }))
        );
        assert_eq!(
            parse_line("escalate bob admin-access", Scope::View),
            Some(Ok(Command::Escalate {
                specialist: "bob".into(),
                trigger: "admin-access".into(),
                scope: Scope::View
            }))
        );
        assert!(matches!(
            parse_line("escalate bob", Scope::View),
            Some(Err(_))
        ));
        // The trigger is the rest of the line (other:TEXT has spaces); the
        // relay refuses one that is not in the procedure's list.
        assert_eq!(
            parse_line("escalate bob other:the print server control", Scope::View),
            Some(Ok(Command::Escalate {
                specialist: "bob".into(),
                trigger: "other:the print server".into(),
                scope: Scope::Control
            }))
        );
        assert_eq!(parse_line("escalated", Scope::View), None);
        assert_eq!(parse_line("chat hi", Scope::View), None);
    }

    #[test]
    fn an_accepted_escalation_fills_the_note() {
        let request = assent_proto::wire::InviteRequest {
            ticket: "T-1".into(),
            client: String::new(),
            summary: String::new(),
            impact: assent_proto::wire::Impact::Normal,
            scope: Scope::View,
            identity_check: String::new(),
            permissions: vec![],
        };
        let mut s = ViewState::new(&request);
        s.escalation.asked = Some(("bob".into(), "compromise-or-malware".into()));
        s.escalation.handover = "h1".into();
        note_escalated(&mut s);
        assert_eq!(s.outcome, Some(Outcome::Escalated));
        assert!(s
            .note
            .get("Result")
            .contains("To bob, because suspected account compromise"));
        assert!(s.note.get("Next Action").contains("bob continues"));
    }
}
