//! A question answers nothing until it has been seen: keys and clicks
//! count only once it has been visible and focused for [`ARM_DELAY`].

use std::time::{Duration, Instant};

use assent_proto::wire::{ConsentDecision, Scope};
use assent_softwindow::egui;

/// How long a question must have been on screen, with keyboard focus,
/// before a key or click answers it: someone typing in another window when
/// it appears must not answer it by accident.
pub const ARM_DELAY: Duration = Duration::from_secs(1);

/// Whether the question on screen may be answered yet.
#[derive(Debug, Default)]
pub(super) struct Arming {
    /// The question being armed (its deadline identifies it).
    question: Option<Instant>,
    /// Visible and focused since; reset when focus is lost.
    since: Option<Instant>,
}

impl Arming {
    /// Time left before answers count; zero once armed.
    pub(super) fn left(&mut self, question: Instant, focused: bool, now: Instant) -> Duration {
        if self.question != Some(question) {
            *self = Arming {
                question: Some(question),
                ..Arming::default()
            };
        }
        if !focused {
            self.since = None;
            return ARM_DELAY;
        }
        let since = *self.since.get_or_insert(now);
        ARM_DELAY.saturating_sub(now.saturating_duration_since(since))
    }
}

/// The answer key pressed this frame, if any.
pub(super) fn pressed_answer(ctx: &egui::Context, requested: Scope) -> Option<ConsentDecision> {
    let key = ctx.input(|i| {
        if i.key_pressed(egui::Key::V) {
            Some("v")
        } else if i.key_pressed(egui::Key::C) {
            Some("c")
        } else if [
            egui::Key::D,
            egui::Key::Escape,
            egui::Key::Enter,
            egui::Key::Space,
        ]
        .iter()
        .any(|k| i.key_pressed(*k))
        {
            Some("d")
        } else {
            None
        }
    });
    key.and_then(|k| crate::prompt::decision_for_key(k, requested))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_question_arms_only_after_a_second_of_focus() {
        let t0 = Instant::now();
        let question = t0 + Duration::from_secs(60);
        let mut a = Arming::default();
        assert_eq!(a.left(question, true, t0), ARM_DELAY);
        assert_eq!(a.left(question, true, t0 + 100 * MS), 900 * MS);
        assert!(!a.left(question, true, t0 + 999 * MS).is_zero());
        assert!(a.left(question, true, t0 + 1000 * MS).is_zero());
    }

    #[test]
    fn losing_focus_or_a_new_question_starts_over() {
        let t0 = Instant::now();
        let q1 = t0 + Duration::from_secs(60);
        let mut a = Arming::default();
        a.left(q1, true, t0);
        assert_eq!(a.left(q1, false, t0 + 800 * MS), ARM_DELAY);
        assert_eq!(a.left(q1, true, t0 + 900 * MS), ARM_DELAY);
        assert!(a.left(q1, true, t0 + 1900 * MS).is_zero());
        // A mid-session question is armed afresh.
        let q2 = t0 + Duration::from_secs(120);
        assert_eq!(a.left(q2, true, t0 + 2000 * MS), ARM_DELAY);
    }
}
