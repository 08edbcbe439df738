//! How much of the screen may be on its way to the viewer at once.
//!
//! Two limits, both from the frames' acknowledgements (frame sent → the
//! viewer's `FrameAck`, which covers the agent's own send buffer, the
//! link, the relay and the viewer):
//!
//! - **Frames**: enough for the target frame rate over the link's base
//!   round trip (a slow link still carries 30 fps; a fast one keeps few
//!   frames queued).
//! - **Bytes**: a delay-based budget in the manner of LEDBAT (RFC 6817).
//!   The lowest round trip of the last minute is the link without a queue;
//!   whatever an acknowledgement takes beyond it is queueing. Below
//!   [`TARGET_QUEUE`] the budget grows by what was acknowledged, above it
//!   the budget shrinks the same way, so the agent sends as much as the
//!   link carries without building a queue in it: on a home uplink the
//!   frame rate drops instead of the technician's input waiting behind a
//!   second of old frames, and comes back when the link frees. The codec
//!   sends what changed since the last frame sent, so a frame not sent is
//!   folded into the next one, never lost.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The frame rate the frame window is sized for.
const TARGET_FRAME_INTERVAL: Duration = Duration::from_millis(33);
/// Never fewer frames: enough for loopback and LAN.
pub const MIN_WINDOW: u64 = 4;
/// Never more: beyond this a slow link only queues staleness.
pub const MAX_WINDOW: u64 = 16;
/// Queueing the byte budget aims at (the "never more than ~100 ms").
pub const TARGET_QUEUE: Duration = Duration::from_millis(40);
/// The byte budget's bounds and start. One frame may always be on its way,
/// whatever its size, so a large keyframe is never stuck.
const MIN_BUDGET: f64 = 16.0 * 1024.0;
const MAX_BUDGET: f64 = 32.0 * 1024.0 * 1024.0;
const INITIAL_BUDGET: f64 = 256.0 * 1024.0;
/// How long one minimum round trip counts (two of them are kept, so the
/// base is the least of the last one to two epochs: a route that got
/// slower is learnt within two minutes).
const BASE_EPOCH: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u64,
    at: Instant,
    bytes: u64,
}

#[derive(Debug)]
pub struct FlowWindow {
    sent: VecDeque<Sent>,
    last_sent: u64,
    last_acked: u64,
    bytes_in_flight: u64,
    /// Smoothed round trip (RFC 6298 style, gain 1/8), for the figures.
    srtt: Option<Duration>,
    /// Minimum round trip of this epoch and the one before, and when this
    /// epoch began.
    base: (Option<Duration>, Option<Duration>, Option<Instant>),
    budget: f64,
}

impl Default for FlowWindow {
    fn default() -> FlowWindow {
        FlowWindow {
            sent: VecDeque::new(),
            last_sent: 0,
            last_acked: 0,
            bytes_in_flight: 0,
            srtt: None,
            base: (None, None, None),
            budget: INITIAL_BUDGET,
        }
    }
}

impl FlowWindow {
    /// `seq` is the codec's frame number, which starts at 0; counted here
    /// from 1, so that 0 can mean "nothing acknowledged yet".
    pub fn on_sent(&mut self, seq: u64, bytes: usize, now: Instant) {
        let seq = seq.saturating_add(1);
        if self.last_sent == 0 {
            // Acknowledgements count from the first frame sent.
            self.last_acked = seq - 1;
        }
        self.last_sent = seq;
        self.sent.push_back(Sent {
            seq,
            at: now,
            bytes: bytes as u64,
        });
        self.bytes_in_flight += bytes as u64;
        // Bounded even if a hostile viewer never acknowledges anything.
        while self.sent.len() as u64 > MAX_WINDOW {
            if let Some(old) = self.sent.pop_front() {
                self.bytes_in_flight -= old.bytes;
            }
        }
    }

    /// An acknowledgement from the viewer; one for a frame never sent counts
    /// as the last one sent (a hostile viewer cannot open the window wider).
    pub fn on_ack(&mut self, seq: u64, now: Instant) {
        let seq = seq.saturating_add(1).min(self.last_sent);
        if seq <= self.last_acked {
            return;
        }
        self.last_acked = seq;
        let was_in_flight = self.bytes_in_flight;
        let (mut acked, mut sample) = (0, None);
        while let Some(&s) = self.sent.front() {
            if s.seq > seq {
                break;
            }
            self.sent.pop_front();
            acked += s.bytes;
            if s.seq == seq {
                sample = Some(now.saturating_duration_since(s.at));
            }
        }
        self.bytes_in_flight -= acked;
        if let Some(rtt) = sample {
            self.srtt = Some(match self.srtt {
                None => rtt,
                Some(srtt) => (srtt * 7 + rtt) / 8,
            });
            self.note_base(rtt, now);
            self.adjust_budget(rtt, acked, was_in_flight);
        }
    }

    fn note_base(&mut self, rtt: Duration, now: Instant) {
        let (current, previous, since) = &mut self.base;
        if since.is_none_or(|at| now.saturating_duration_since(at) >= BASE_EPOCH) {
            *previous = current.take();
            *since = Some(now);
        }
        *current = Some(current.map_or(rtt, |c| c.min(rtt)));
    }

    /// The link's round trip without a queue: the least seen lately.
    pub fn base_rtt(&self) -> Option<Duration> {
        match self.base {
            (Some(c), Some(p), _) => Some(c.min(p)),
            (c, p, _) => c.or(p),
        }
    }

    fn adjust_budget(&mut self, rtt: Duration, acked: u64, was_in_flight: u64) {
        let queued = rtt.saturating_sub(self.base_rtt().unwrap_or(rtt));
        let target = TARGET_QUEUE.as_secs_f64();
        let off_target = ((target - queued.as_secs_f64()) / target).clamp(-1.0, 1.0);
        // A sender that did not use half its budget learnt nothing about
        // the link's room: the budget does not grow on a quiet screen
        // (and then let a burst queue).
        if off_target > 0.0 && (was_in_flight as f64) * 2.0 < self.budget {
            return;
        }
        self.budget = (self.budget + off_target * acked as f64).clamp(MIN_BUDGET, MAX_BUDGET);
    }

    /// Frames allowed on their way: enough for 30 fps over the base round
    /// trip (its queueing is the byte budget's business).
    pub fn window(&self) -> u64 {
        let rtt = self.base_rtt().unwrap_or_default();
        let frames_per_rtt = rtt.as_micros() / TARGET_FRAME_INTERVAL.as_micros() + 2;
        (frames_per_rtt as u64).clamp(MIN_WINDOW, MAX_WINDOW)
    }

    pub fn in_flight(&self) -> u64 {
        self.last_sent - self.last_acked
    }

    /// Bytes allowed on their way now.
    pub fn budget(&self) -> u64 {
        self.budget as u64
    }

    pub fn may_send(&self) -> bool {
        self.in_flight() < self.window() && self.bytes_room()
    }

    fn bytes_room(&self) -> bool {
        self.bytes_in_flight == 0 || (self.bytes_in_flight as f64) < self.budget
    }

    /// Whether the byte budget alone holds the next frame back (the link,
    /// not the frame window, limits the frame rate).
    pub fn held_back_by_bytes(&self) -> bool {
        self.in_flight() < self.window() && !self.bytes_room()
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
}

#[cfg(test)]
mod tests;
