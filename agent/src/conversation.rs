//! What the user and the technician say to each other during the session:
//! chat lines both ways and the answer to "please test". The text stays in
//! the end-to-end channel; the relay hears only that a chat line was sent
//! and the signed answer to "please test" (never the comment).

use assent_proto::session_msg::{SessionMsg, MAX_CHAT, MAX_VALIDATION_TEXT};
use assent_proto::text::sanitize;
use assent_proto::wire::{ClientMsg, Validation};
use tracing::{info, warn};

use crate::live::LiveSession;
use crate::ui::{ChatLine, UiEvent, ValidationAsk};

impl LiveSession {
    /// The user's chat line: to the technician end to end, to the relay
    /// only that one was sent.
    pub(crate) async fn send_chat(&mut self, text: String) {
        let text: String = text.chars().take(MAX_CHAT).collect();
        if text.trim().is_empty() {
            return;
        }
        if let Err(e) = self.tx.send(&SessionMsg::Chat(text.clone())).await {
            warn!(error = %e, "chat message not sent");
            return;
        }
        let _ = self.control.send(&ClientMsg::ChatSent).await;
        self.chat_sent = self.chat_sent.saturating_add(1);
        self.ui.show(UiEvent::Chat(ChatLine {
            from: "You".into(),
            text,
            at: chat_time(),
            mine: true,
        }));
    }

    /// The user's answer to "please test": signed to the relay (which
    /// records it), and with the comment to the technician, end to end.
    pub(crate) async fn send_validation(
        &mut self,
        number: u32,
        answer: Validation,
        comment: String,
    ) {
        if self.validation_pending != Some(number) {
            return;
        }
        self.validation_pending = None;
        info!(
            number,
            answer = answer.as_str(),
            "user answered the test request"
        );
        let reported = self
            .reporter
            .report_validation(&mut self.control, number, answer)
            .await;
        if let Err(e) = reported {
            warn!(error = %e, "could not report the validation to the relay");
        }
        let comment: String = comment.chars().take(MAX_VALIDATION_TEXT).collect();
        let msg = SessionMsg::ValidationAnswer {
            number,
            answer,
            comment,
        };
        if let Err(e) = self.tx.send(&msg).await {
            warn!(error = %e, "the test answer did not reach the technician");
        }
        info!(number, "test answer sent to the technician");
    }

    pub(crate) fn show_chat(&self, text: &str) {
        info!("chat message from the technician");
        self.ui.show(UiEvent::Chat(ChatLine {
            from: sanitize(&self.offer.technician, 64),
            text: sanitize(text, MAX_CHAT),
            at: chat_time(),
            mine: false,
        }));
    }

    /// The technician asks the user to test the fix.
    pub(crate) fn ask_validation(&mut self, number: u32, what: &str) {
        info!(number, "the technician asks the user to test");
        self.validation_pending = Some(number);
        self.ui.show(UiEvent::Validation(ValidationAsk {
            number,
            technician: sanitize(&self.offer.technician, 64),
            what: sanitize_optional(what, MAX_VALIDATION_TEXT),
        }));
    }
}

/// `HH:MM` (UTC) for a chat line.
pub fn chat_time() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{:02}:{:02}", secs / 3600 % 24, secs / 60 % 60)
}

/// Text the technician sent that may be empty (sanitize names it "unnamed").
fn sanitize_optional(text: &str, max: usize) -> String {
    if text.trim().is_empty() {
        String::new()
    } else {
        sanitize(text, max)
    }
}
