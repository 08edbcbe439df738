//! The JPEG quality photos and video are sent at: the technician's choice
//! (auto / sharp / smooth), and in auto, the link's.
//!
//! Auto lowers the quality while frames wait for the byte budget (the
//! link is what limits the frame rate: smaller frames mean more of them,
//! and input that does not queue behind pictures) and raises it again
//! while they do not. Whatever the quality, a region that stops changing
//! is sent again exactly (the codec's refinement), and text never goes
//! as JPEG.

use std::time::{Duration, Instant};

use assent_proto::session_msg::ScreenQuality;

/// Auto's range and start: 80 looks like the original to most eyes, 30
/// is still a recognisable picture at about a third of its bytes.
const AUTO_BEST: u8 = 80;
const AUTO_WORST: u8 = 30;
/// Smooth's fixed quality: motion first.
const SMOOTH: u8 = 35;
/// How often auto reconsiders, and its steps: down fast (the link is
/// queueing now), up slowly (probe, do not overshoot).
const STEP_EVERY: Duration = Duration::from_millis(250);
const STEP_DOWN: u8 = 10;
const STEP_UP: u8 = 5;

#[derive(Debug)]
pub struct Quality {
    mode: ScreenQuality,
    /// Auto's current quality.
    level: u8,
    /// Since when the current step's observations run, and whether frames
    /// waited for the byte budget in it.
    step_from: Option<Instant>,
    limited: bool,
}

impl Default for Quality {
    fn default() -> Quality {
        Quality {
            mode: ScreenQuality::Auto,
            level: AUTO_BEST,
            step_from: None,
            limited: false,
        }
    }
}

impl Quality {
    pub fn mode(&self) -> ScreenQuality {
        self.mode
    }

    /// The technician's choice; auto starts again from its best.
    pub fn set_mode(&mut self, mode: ScreenQuality) {
        if mode != self.mode {
            self.mode = mode;
            self.level = AUTO_BEST;
            self.step_from = None;
        }
    }

    /// The JPEG quality for the next frame; `None`: exact only.
    pub fn jpeg(&self) -> Option<u8> {
        match self.mode {
            ScreenQuality::Auto => Some(self.level),
            ScreenQuality::Sharp => None,
            ScreenQuality::Smooth => Some(SMOOTH),
        }
    }

    /// Called whenever the session would capture a frame: whether the
    /// byte budget holds it back now.
    pub fn observe(&mut self, held_back: bool, now: Instant) {
        let from = *self.step_from.get_or_insert(now);
        self.limited |= held_back;
        if now.saturating_duration_since(from) < STEP_EVERY {
            return;
        }
        self.level = match self.limited {
            true => self.level.saturating_sub(STEP_DOWN).max(AUTO_WORST),
            false => self.level.saturating_add(STEP_UP).min(AUTO_BEST),
        };
        self.step_from = Some(now);
        self.limited = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_the_link_and_the_technicians_choice_holds() {
        let mut q = Quality::default();
        let t0 = Instant::now();
        let at = |steps: f64| t0 + STEP_EVERY.mul_f64(steps);
        assert_eq!(q.jpeg(), Some(AUTO_BEST));
        // Held back: one step down per step, to the floor, not below.
        q.observe(true, at(0.0));
        q.observe(true, at(0.5));
        assert_eq!(q.jpeg(), Some(AUTO_BEST), "not before a whole step");
        q.observe(true, at(1.0));
        assert_eq!(q.jpeg(), Some(AUTO_BEST - STEP_DOWN));
        for k in 2..=10 {
            q.observe(true, at(f64::from(k)));
        }
        assert_eq!(q.jpeg(), Some(AUTO_WORST));
        // Free again: back up a smaller step at a time.
        q.observe(false, at(11.0));
        q.observe(false, at(12.0));
        assert_eq!(q.jpeg(), Some(AUTO_WORST + 2 * STEP_UP));
        // One held-back moment within a step is enough to step down.
        q.observe(true, at(12.5));
        q.observe(false, at(13.0));
        assert_eq!(q.jpeg(), Some(AUTO_WORST));
        q.set_mode(ScreenQuality::Sharp);
        q.observe(true, at(20.0));
        assert_eq!(q.jpeg(), None);
        q.set_mode(ScreenQuality::Smooth);
        assert_eq!(q.jpeg(), Some(SMOOTH));
        q.set_mode(ScreenQuality::Auto);
        assert_eq!(q.jpeg(), Some(AUTO_BEST));
        assert_eq!(q.mode(), ScreenQuality::Auto);
    }
}
