//! A question answers nothing until it has been seen: keys and clicks
//! count only once it has been visible and focused for [`ARM_DELAY`].

use std::time::{Duration, Instant};

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
