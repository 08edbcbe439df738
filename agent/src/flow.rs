//! How many frames may be on their way to the viewer at once.
//!
//! A fixed window caps the frame rate at window ÷ round-trip time: 4 frames
//! give 30 fps only up to ~130 ms. The window here follows the measured
//! round trip (frame sent → its acknowledgement) so that a slow link still
//! carries the target frame rate, while a fast one keeps few frames queued
//! (the screen the technician sees is never more than a round trip old).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The frame rate the window is sized for.
const TARGET_FRAME_INTERVAL: Duration = Duration::from_millis(33);
/// Never fewer: enough for loopback and LAN.
pub const MIN_WINDOW: u64 = 4;
/// Never more: beyond this a slow link only queues staleness.
pub const MAX_WINDOW: u64 = 16;

#[derive(Debug, Default)]
pub struct FlowWindow {
    sent_at: VecDeque<(u64, Instant)>,
    last_sent: u64,
    last_acked: u64,
    /// Smoothed round trip (RFC 6298 style, gain 1/8).
    srtt: Option<Duration>,
}

impl FlowWindow {
    pub fn on_sent(&mut self, seq: u64, now: Instant) {
        self.last_sent = seq;
        self.sent_at.push_back((seq, now));
        // Bounded even if a hostile viewer never acknowledges anything.
        while self.sent_at.len() as u64 > MAX_WINDOW {
            self.sent_at.pop_front();
        }
    }

    /// An acknowledgement from the viewer; one for a frame never sent counts
    /// as the last one sent (a hostile viewer cannot open the window wider).
    pub fn on_ack(&mut self, seq: u64, now: Instant) {
        let seq = seq.min(self.last_sent);
        if seq <= self.last_acked {
            return;
        }
        self.last_acked = seq;
        while let Some(&(s, at)) = self.sent_at.front() {
            if s > seq {
                break;
            }
            self.sent_at.pop_front();
            if s == seq {
                let sample = now.saturating_duration_since(at);
                self.srtt = Some(match self.srtt {
                    None => sample,
                    Some(srtt) => (srtt * 7 + sample) / 8,
                });
            }
        }
    }

    pub fn window(&self) -> u64 {
        let rtt = self.srtt.unwrap_or_default();
        let frames_per_rtt = rtt.as_micros() / TARGET_FRAME_INTERVAL.as_micros() + 2;
        (frames_per_rtt as u64).clamp(MIN_WINDOW, MAX_WINDOW)
    }

    pub fn in_flight(&self) -> u64 {
        self.last_sent - self.last_acked
    }

    pub fn may_send(&self) -> bool {
        self.in_flight() < self.window()
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rtt: Duration, frames: u64) -> FlowWindow {
        let mut w = FlowWindow::default();
        let t0 = Instant::now();
        for seq in 1..=frames {
            let at = t0 + TARGET_FRAME_INTERVAL * seq as u32;
            w.on_sent(seq, at);
            w.on_ack(seq, at + rtt);
        }
        w
    }

    #[test]
    fn loopback_keeps_the_minimum() {
        let w = run(Duration::from_millis(2), 50);
        assert_eq!(w.window(), MIN_WINDOW);
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn a_long_round_trip_widens_the_window_to_keep_30_fps() {
        let w = run(Duration::from_millis(400), 100);
        // 400 ms at 33 ms a frame needs ~12 frames on the way, plus slack.
        assert_eq!(w.window(), 14);
        let w = run(Duration::from_secs(5), 100);
        assert_eq!(w.window(), MAX_WINDOW, "capped");
    }

    #[test]
    fn the_window_closes_when_acks_stop() {
        let mut w = FlowWindow::default();
        let t0 = Instant::now();
        for seq in 1..=MIN_WINDOW {
            assert!(w.may_send());
            w.on_sent(seq, t0);
        }
        assert!(!w.may_send());
        w.on_ack(1, t0 + Duration::from_millis(5));
        assert!(w.may_send());
    }

    #[test]
    fn acks_for_frames_never_sent_do_not_open_the_window() {
        let mut w = FlowWindow::default();
        let t0 = Instant::now();
        for seq in 1..=3 {
            w.on_sent(seq, t0);
        }
        w.on_ack(u64::MAX, t0);
        assert_eq!(w.in_flight(), 0);
        w.on_sent(4, t0);
        w.on_ack(1, t0); // stale: ignored
        assert_eq!(w.in_flight(), 1);
        // A flood of sends without acks keeps the bookkeeping bounded.
        for seq in 5..10_000 {
            w.on_sent(seq, t0);
        }
        assert!(w.sent_at.len() as u64 <= MAX_WINDOW);
        assert!(!w.may_send());
    }
}
