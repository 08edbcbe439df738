//! The second measure of overload: the kernel dropping datagrams at the
//! relay's socket. A relay short of CPU inside QUIC (decrypting, encrypting,
//! acknowledging for every session) can keep its timers on time while
//! packets arrive faster than it takes them in; the socket's receive buffer
//! then overflows and the kernel drops what does not fit (measured at 1000
//! sessions offered twice what this machine forwards: ~1.7 % of datagrams
//! dropped, with a median scheduling lag far under 100 ms; 0.03 % when the
//! same relay keeps up).
//!
//! A second *overflows* when the kernel dropped at least the bound
//! (relay.toml `busy_drops_per_sec`) and at least one datagram for every MB
//! the relay forwarded in it, so a big relay's background of stray drops
//! does not count. Busy after [`OVERFLOWING`] of the last [`LOOKED_AT`]
//! seconds overflowed; free again after [`CLEAR_IN_A_ROW`] clear seconds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Seconds a verdict looks at.
pub const LOOKED_AT: usize = 4;
/// Of those, how many must overflow for the relay to be busy.
pub const OVERFLOWING: usize = 3;
/// Clear seconds in a row before new sessions are admitted again.
pub const CLEAR_IN_A_ROW: u32 = 5;
/// Forwarded bytes that excuse one dropped datagram.
const BYTES_PER_EXCUSED_DROP: u64 = 1_000_000;

/// The overflow verdict, fed the relay's running totals about once a
/// second with `now`.
#[derive(Debug, Default)]
pub struct Overflow {
    last: Option<(Instant, Totals)>,
    recent: VecDeque<bool>,
    clear_in_a_row: u32,
    /// Drops a second while busy (the latest overflowing second's).
    busy: Option<u64>,
}

/// What the relay has dropped and forwarded since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub dropped: u64,
    pub forwarded_bytes: u64,
}

impl Overflow {
    /// One look; returns the change of verdict it caused, if any
    /// (`Some(Some(drops a second))`: now busy; `Some(None)`: free again).
    pub fn record(&mut self, now: Instant, totals: Totals, bound: u64) -> Option<Option<u64>> {
        // A first look only sets the baseline.
        let (then, before) = self.last.replace((now, totals))?;
        // A starved sampler looks late; rates are per second of real time.
        let secs = now.duration_since(then).max(Duration::from_millis(100));
        let dropped = totals.dropped.saturating_sub(before.dropped);
        let forwarded = totals
            .forwarded_bytes
            .saturating_sub(before.forwarded_bytes);
        let per_sec = (dropped as f64 / secs.as_secs_f64()) as u64;
        let overflowing = bound > 0
            && per_sec >= bound
            && dropped.saturating_mul(BYTES_PER_EXCUSED_DROP) >= forwarded;
        self.recent.push_back(overflowing);
        while self.recent.len() > LOOKED_AT {
            self.recent.pop_front();
        }
        self.clear_in_a_row = if overflowing {
            0
        } else {
            self.clear_in_a_row.saturating_add(1)
        };
        let was = self.busy.is_some();
        let overflowed = self.recent.iter().filter(|o| **o).count();
        // While busy, each overflowing second renews the figure.
        if overflowing && (was || overflowed >= OVERFLOWING) {
            self.busy = Some(per_sec);
        } else if bound == 0 || self.clear_in_a_row >= CLEAR_IN_A_ROW {
            self.busy = None;
        }
        (was != self.busy.is_some()).then_some(self.busy)
    }

    /// `Some(drops a second)` while busy.
    pub fn busy(&self) -> Option<u64> {
        self.busy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: u64 = 100;
    const MB: u64 = 1_000_000;

    /// Feeds one look a second: (drops, forwarded bytes) in that second.
    fn feed(
        o: &mut Overflow,
        t0: Instant,
        start: u32,
        seconds: &[(u64, u64)],
    ) -> Vec<Option<Option<u64>>> {
        let mut totals = o.last.map(|(_, t)| t).unwrap_or_default();
        seconds
            .iter()
            .enumerate()
            .map(|(i, (dropped, bytes))| {
                totals.dropped += dropped;
                totals.forwarded_bytes += bytes;
                let at = t0 + Duration::from_secs(u64::from(start) + i as u64 + 1);
                o.record(at, totals, BOUND)
            })
            .collect()
    }

    fn changes(v: &[Option<Option<u64>>]) -> Vec<Option<u64>> {
        v.iter().flatten().copied().collect()
    }

    #[test]
    fn busy_after_three_overflowing_seconds_of_four_and_free_after_five_clear() {
        let mut o = Overflow::default();
        let t0 = Instant::now();
        assert_eq!(
            o.record(t0, Totals::default(), BOUND),
            None,
            "a first look sets the baseline"
        );
        // Two overflowing seconds, one clear, then the third: busy, said once.
        let v = feed(
            &mut o,
            t0,
            0,
            &[
                (800, 200 * MB),
                (900, 200 * MB),
                (0, 200 * MB),
                (700, 200 * MB),
            ],
        );
        assert_eq!(changes(&v), [Some(700)]);
        assert_eq!(o.busy(), Some(700));
        // Four clear seconds are not enough; the fifth is.
        let v = feed(&mut o, t0, 4, &[(10, 200 * MB); 4]);
        assert!(changes(&v).is_empty(), "{v:?}");
        assert!(o.busy().is_some());
        let v = feed(&mut o, t0, 8, &[(10, 200 * MB)]);
        assert_eq!(changes(&v), [None]);
        assert_eq!(o.busy(), None);
    }

    #[test]
    fn drops_a_big_relay_forwards_past_do_not_count() {
        let mut o = Overflow::default();
        let t0 = Instant::now();
        o.record(t0, Totals::default(), BOUND);
        // 500 drops a second while forwarding 1 GB a second: 0.5 a MB.
        let v = feed(&mut o, t0, 0, &[(500, 1000 * MB); 10]);
        assert!(changes(&v).is_empty(), "{v:?}");
        // Under the bound, however little is forwarded: not overflowing.
        let v = feed(&mut o, t0, 10, &[(99, 0); 10]);
        assert!(changes(&v).is_empty(), "{v:?}");
    }

    #[test]
    fn a_late_look_is_judged_per_second_and_a_zero_bound_frees() {
        let mut o = Overflow::default();
        let t0 = Instant::now();
        o.record(t0, Totals::default(), BOUND);
        // 300 drops over 3 s is 100 a second: overflowing, three times.
        let mut totals = Totals::default();
        for i in 1..=3u64 {
            totals.dropped += 300;
            let change = o.record(t0 + Duration::from_secs(3 * i), totals, BOUND);
            assert_eq!(change, (i == 3).then_some(Some(100)), "look {i}");
        }
        // 0 turns it off at once.
        totals.dropped += 1000;
        assert_eq!(
            o.record(t0 + Duration::from_secs(10), totals, 0),
            Some(None)
        );
        assert_eq!(o.busy(), None);
    }
}
