//! The consent prompt's content and keys, shared by the window and the
//! terminal so both say exactly the same thing.

use assent_proto::identity::PublicKey;
use assent_proto::permission::Permission;
use assent_proto::text::sanitize;
use assent_proto::wire::{ConsentDecision, EndReason, ErrorKind, Scope, SessionOffer};

/// What the user is asked, in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptText {
    pub technician: String,
    pub technician_key: String,
    pub ticket: String,
    pub client: String,
    pub summary: String,
    pub scope: Scope,
    pub verification_code: String,
    /// Set when a live session asks for more: the scope in force, which a
    /// no (or no answer) keeps.
    pub in_force: Option<Scope>,
    /// The account the session would run in ("signed in as").
    pub account: String,
    /// For a specialist's session: who escalated it and why.
    pub escalation: Vec<String>,
    /// Permissions beyond the scope the technician also asks for; each is
    /// off unless the user allows it (a checkbox, or `clipboard on`).
    pub permissions: Vec<Permission>,
}

impl PromptText {
    /// Everything shown comes from the relay-signed offer; it is sanitised
    /// again here because it ends up on a terminal.
    pub fn new(offer: &SessionOffer, verification_code: &str) -> PromptText {
        PromptText {
            technician: sanitize(&offer.technician, 64),
            technician_key: PublicKey(offer.technician_key).fingerprint(),
            ticket: sanitize(&offer.ticket, 64),
            client: sanitize(&offer.client, 128),
            summary: sanitize(&offer.summary, 500),
            scope: offer.scope,
            verification_code: sanitize(verification_code, 16),
            in_force: None,
            account: crate::device::Account::current().display(),
            escalation: crate::escalation::prompt_lines(offer),
            permissions: assent_proto::permission::normalized(&offer.permissions),
        }
    }

    /// The question again, mid-session, for `requested` while `in_force` holds.
    pub fn scope_change(
        offer: &SessionOffer,
        verification_code: &str,
        in_force: Scope,
        requested: Scope,
    ) -> PromptText {
        PromptText {
            scope: requested,
            in_force: Some(in_force),
            permissions: Vec::new(),
            ..PromptText::new(offer, verification_code)
        }
    }

    pub fn question(&self) -> String {
        match self.in_force {
            None if !self.escalation.is_empty() => format!(
                "{} asks to take over this session and {}.",
                self.technician,
                self.scope.plain_words()
            ),
            None => format!("{} asks to {}.", self.technician, self.scope.plain_words()),
            Some(_) => format!(
                "{} now also asks to {}.",
                self.technician,
                self.scope.plain_words()
            ),
        }
    }

    /// What happens without an answer.
    pub fn timeout_hint(&self) -> &'static str {
        match self.in_force {
            None => "denied",
            Some(_) => "kept as it is",
        }
    }

    /// The prompt as lines (the terminal prints them; the window lays them out).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![self.question()];
        lines.extend(self.escalation.iter().cloned());
        if let Some(in_force) = self.in_force {
            lines.push(format!(
                "The session stays live. If you say no, they can still only {}.",
                in_force.plain_words()
            ));
        }
        lines.extend([
            format!(
                "Technician: {} (key {})",
                self.technician, self.technician_key
            ),
            format!("Ticket: {}", self.ticket),
        ]);
        if !self.client.is_empty() && self.client != "unnamed" {
            lines.push(format!("Client: {}", self.client));
        }
        if !self.summary.is_empty() && self.summary != "unnamed" {
            lines.push(format!("Summary: {}", self.summary));
        }
        for p in &self.permissions {
            lines.push(format!(
                "They also ask to {} ({}): off unless you allow it.",
                p.plain_words(),
                p.as_str()
            ));
        }
        lines.push(format!("Signed in as: {}", self.account));
        lines.push(format!(
            "Verification code: {} (your technician sees the same code)",
            self.verification_code
        ));
        lines
    }

    /// The keys on offer: control only when it was requested.
    pub fn keys_hint(&self) -> &'static str {
        match (self.in_force, self.scope) {
            (Some(_), _) => "c = allow control    v, d or Escape = keep view only",
            (None, Scope::Control) => {
                "v = allow view only    c = allow control    d or Escape = deny"
            }
            (None, Scope::View) => "v = allow view    d or Escape = deny",
        }
    }
}

/// A technician's name as the user reads it.
pub fn display_name(name: &str) -> String {
    sanitize(name, 64)
}

/// A key the user pressed, as a decision. `c` counts only when control was
/// requested; anything unknown is no decision.
pub fn decision_for_key(key: &str, requested: Scope) -> Option<ConsentDecision> {
    match key.trim().to_ascii_lowercase().as_str() {
        "v" => Some(ConsentDecision::View),
        "c" if requested == Scope::Control => Some(ConsentDecision::Control),
        "d" | "\u{1b}" | "escape" => Some(ConsentDecision::Denied),
        _ => None,
    }
}

/// What the user reads when a request ends before their answer counted:
/// who or what ended it, in their words, and that nothing was shared.
/// `None` is a connection lost without a word from the relay.
/// Why a live session ended, in the user's words (`technician` named).
pub fn session_ended(reason: EndReason, technician: &str) -> String {
    match reason {
        EndReason::ViewerClosed => format!("{technician} ended the session."),
        EndReason::AgentEnded => "You ended the session.".to_string(),
        EndReason::ViewerLost => format!("The connection to {technician} was lost."),
        EndReason::AgentLost => "The connection to the relay was lost.".to_string(),
        EndReason::AdminKilled => "A relay administrator ended the session.".to_string(),
        EndReason::TechnicianRevoked => format!("{technician}'s access was revoked."),
        EndReason::IdleTimeout => "The session ended after a while without activity.".to_string(),
        EndReason::MaxDuration => "The session reached its time limit.".to_string(),
        EndReason::RelayShutdown => "The relay shut down.".to_string(),
        EndReason::Escalated => format!("{technician} handed the session to a specialist."),
    }
}

pub fn request_closed(kind: Option<ErrorKind>, offer: &SessionOffer) -> String {
    let technician = sanitize(&offer.technician, 64);
    let ticket = sanitize(&offer.ticket, 64);
    let what = match kind {
        Some(ErrorKind::Withdrawn) => format!("{technician} withdrew the request (ticket {ticket})."),
        Some(ErrorKind::Cancelled) => {
            format!("An administrator cancelled this request (ticket {ticket}).")
        }
        Some(ErrorKind::TechnicianRevoked) => format!(
            "{technician} is no longer allowed to connect, so the request (ticket {ticket}) was cancelled."
        ),
        Some(ErrorKind::Shutdown) => format!(
            "The support service is restarting, so the request (ticket {ticket}) was cancelled."
        ),
        Some(ErrorKind::PeerGone) => format!(
            "{technician}'s connection was lost, so the request (ticket {ticket}) was cancelled."
        ),
        Some(ErrorKind::ConsentTimeout) => {
            format!("The request (ticket {ticket}) timed out before your answer arrived.")
        }
        Some(ErrorKind::Busy) => format!(
            "The support service could not record your answer, so the session (ticket {ticket}) did not start."
        ),
        Some(_) => format!("The request (ticket {ticket}) was cancelled by the support service."),
        None => format!(
            "The connection to the support service was lost, so the request (ticket {ticket}) was cancelled."
        ),
    };
    format!("{what} Nothing was shared.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use assent_proto::wire::Impact;

    fn offer(scope: Scope) -> SessionOffer {
        SessionOffer {
            session: "s".into(),
            technician: "alice\x1b[31m".into(),
            technician_key: [1; 32],
            ticket: "T-1042".into(),
            client: "Acme".into(),
            summary: "Outlook".into(),
            impact: Impact::High,
            scope,
            device: "pc".into(),
            device_key: [2; 32],
            consent_timeout_secs: 90,
            escalated_from: None,
            permissions: vec![],
        }
    }

    #[test]
    fn prompt_names_technician_ticket_scope_and_code() {
        let p = PromptText::new(&offer(Scope::Control), "123456");
        let all = p.lines().join("\n");
        assert!(all.contains("see your screen and use your mouse and keyboard"));
        assert!(all.contains("T-1042") && all.contains("Acme") && all.contains("123456"));
        assert!(all.contains("SHA256:"));
        assert!(!all.contains('\x1b'), "escape sequences are neutralised");
        assert!(p.keys_hint().contains("c = allow control"));
        let view = PromptText::new(&offer(Scope::View), "123456");
        assert!(view.lines()[0].ends_with("see your screen."));
        assert!(!view.keys_hint().contains("control"));
    }

    #[test]
    fn a_mid_session_request_says_what_a_no_keeps() {
        let p =
            PromptText::scope_change(&offer(Scope::View), "123456", Scope::View, Scope::Control);
        let all = p.lines().join("\n");
        assert!(p
            .question()
            .contains("now also asks to see your screen and use your mouse"));
        assert!(all.contains(
            "The session stays live. If you say no, they can still only see your screen."
        ));
        assert!(all.contains("123456"));
        assert!(p.keys_hint().contains("keep view only"));
        assert_eq!(p.timeout_hint(), "kept as it is");
        assert_eq!(
            PromptText::new(&offer(Scope::View), "1").timeout_hint(),
            "denied"
        );
    }

    #[test]
    fn keys() {
        assert_eq!(
            decision_for_key("v", Scope::View),
            Some(ConsentDecision::View)
        );
        assert_eq!(
            decision_for_key("C\n", Scope::Control),
            Some(ConsentDecision::Control)
        );
        assert_eq!(
            decision_for_key("c", Scope::View),
            None,
            "control not offered"
        );
        assert_eq!(
            decision_for_key("d", Scope::View),
            Some(ConsentDecision::Denied)
        );
        assert_eq!(
            decision_for_key("\u{1b}", Scope::Control),
            Some(ConsentDecision::Denied)
        );
        assert_eq!(decision_for_key("yes", Scope::Control), None);
    }
}
