//! After the end: the window says the technician can no longer see or
//! control this computer, and asks whether the problem was solved.

use std::time::{Duration, Instant};

use assent_proto::wire::Confirmation;
use assent_softwindow::egui;

use super::{AgentWindow, Phase, UiCommand};

/// "Was your problem solved?", as the user sees it after the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndQuestion {
    /// "Session ended at HH:MM UTC: <technician> can no longer see or
    /// control this computer."
    pub headline: String,
    /// Who or what ended it.
    pub why: String,
    /// Unanswered by then, the question goes away by itself.
    pub deadline: Instant,
}

impl EndQuestion {
    pub fn new(technician: &str, at: &str, why: &str, deadline: Instant) -> EndQuestion {
        EndQuestion {
            headline: format!(
                "Session ended at {at} UTC: {technician} can no longer see or control this computer."
            ),
            why: why.to_string(),
            deadline,
        }
    }
}

/// The question and the keys that answer it.
pub const QUESTION: &str = "Was your problem solved?";
pub const KEYS_HINT: &str = "y = Yes, n = No, u = Not sure";

/// The answer a typed key or word stands for (`y`, `yes`, `n`, `no`, `u`,
/// `not sure`, any case).
pub fn confirmation_for_key(key: &str) -> Option<Confirmation> {
    match key.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Some(Confirmation::Yes),
        "n" | "no" => Some(Confirmation::No),
        "u" | "unsure" | "not sure" | "?" => Some(Confirmation::NotSure),
        _ => None,
    }
}

impl AgentWindow {
    /// The end, and the question until it is answered (buttons, or keys once
    /// armed like every other question); closing the window skips it.
    pub(super) fn confirm(&mut self, ui: &mut egui::Ui, question: &EndQuestion, answered: bool) {
        ui.heading(&question.headline);
        ui.label(&question.why);
        ui.label("Nothing on this computer is shared any more.");
        ui.separator();
        if answered {
            ui.label("Thank you: your answer was sent to your technician.");
            return;
        }
        ui.strong(QUESTION);
        let ctx = ui.ctx().clone();
        let focused = ctx.input(|i| i.viewport().focused).unwrap_or(true);
        let arming_left = self.arming.left(question.deadline, focused, Instant::now());
        let armed = arming_left.is_zero();
        let mut chosen = None;
        ui.add_enabled_ui(armed, |ui| {
            ui.horizontal(|ui| {
                for answer in [Confirmation::Yes, Confirmation::No, Confirmation::NotSure] {
                    let label = format!("{} ({})", answer.plain_words(), key_of(answer));
                    if ui.button(label).clicked() {
                        chosen = Some(answer);
                    }
                }
            });
        });
        ui.label(format!("{KEYS_HINT}. Close this window to skip."));
        let pressed = ctx.input(|i| {
            [
                (egui::Key::Y, Confirmation::Yes),
                (egui::Key::N, Confirmation::No),
                (egui::Key::U, Confirmation::NotSure),
            ]
            .into_iter()
            .find(|(k, _)| i.key_pressed(*k))
            .map(|(_, a)| a)
        });
        if armed {
            chosen = chosen.or(pressed);
        }
        if let Some(answer) = chosen {
            self.confirmed(answer);
        }
        let repaint = if armed { 500 } else { 100 };
        ctx.request_repaint_after(Duration::from_millis(repaint));
    }

    fn confirmed(&mut self, answer: Confirmation) {
        tracing::info!(answer = answer.as_str(), "end confirmed in the window");
        let mut s = self.ui.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Phase::Confirm { answered, .. } = &mut s.phase {
            if !*answered {
                *answered = true;
                drop(s);
                self.send(UiCommand::Confirm(answer));
            }
        }
    }
}

fn key_of(answer: Confirmation) -> char {
    match answer {
        Confirmation::Yes => 'y',
        Confirmation::No => 'n',
        Confirmation::NotSure => 'u',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_words_answer_and_nothing_else_does() {
        assert_eq!(confirmation_for_key("Y\n"), Some(Confirmation::Yes));
        assert_eq!(confirmation_for_key("no"), Some(Confirmation::No));
        assert_eq!(
            confirmation_for_key(" not sure "),
            Some(Confirmation::NotSure)
        );
        for other in ["", "e", "yes please", "maybe"] {
            assert_eq!(confirmation_for_key(other), None, "{other:?}");
        }
    }

    #[test]
    fn the_headline_names_time_and_technician() {
        let q = EndQuestion::new("alice", "10:42", "The technician ended it.", Instant::now());
        assert_eq!(
            q.headline,
            "Session ended at 10:42 UTC: alice can no longer see or control this computer."
        );
    }
}
