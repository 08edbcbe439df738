//! Whether the relay can take another session. Overload must slow the
//! sessions it carries, never kill them; so when the relay measures that it
//! is behind, it refuses *new* sessions ("relay busy, try again in N s",
//! `admission_refused`) and keeps serving the rest.
//!
//! The measure is the runtime's scheduling lag: a task that asks to wake
//! every [`SAMPLE_EVERY`] and notes how late it woke. A relay whose cores
//! keep up wakes within a millisecond or two; one that is starved of CPU
//! (more traffic than it can encrypt and forward, or a noisy neighbour)
//! wakes late, and every packet it handles waits as long.
//!
//! A relay short of CPU inside QUIC's per-packet work can keep its timers
//! on time while its socket overflows; the second measure, the kernel's
//! drops at that socket, is in [`overflow`].

pub mod overflow;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::metrics::ForwardedBytes;
use assent_net::own_udp_drops;
use overflow::{Overflow, Totals};

/// How often the lag is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How often the socket's drops are looked at.
pub const LOOK_AT_DROPS_EVERY: Duration = Duration::from_secs(1);
/// The samples a decision looks at.
pub const WINDOW: Duration = Duration::from_secs(2);
/// What a refused client is told to wait.
pub const RETRY_AFTER_SECS: u64 = 10;

/// The relay is behind: new sessions wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    /// Median scheduling lag over the window.
    pub lag_ms: u64,
    /// Datagrams the kernel drops a second at the relay's socket, when
    /// that is what makes it busy; 0 otherwise.
    pub dropped_per_sec: u64,
    pub retry_after_secs: u64,
}

impl Busy {
    fn of(median: Duration) -> Busy {
        Busy {
            lag_ms: u64::try_from(median.as_millis()).unwrap_or(u64::MAX),
            dropped_per_sec: 0,
            retry_after_secs: RETRY_AFTER_SECS,
        }
    }

    pub fn message(&self) -> String {
        let why = if self.dropped_per_sec > 0 {
            format!(
                "it receives more than it can take in: {} datagrams a second dropped",
                self.dropped_per_sec
            )
        } else {
            format!("it runs {} ms behind", self.lag_ms)
        };
        format!(
            "the relay is busy ({why}); try again in {} s",
            self.retry_after_secs
        )
    }
}

/// Refusals are audited at most this often (each one is counted in the
/// metrics): an overloaded relay must not fsync a record per refused
/// connection.
pub const REFUSALS_RECORDED_EVERY: Duration = Duration::from_secs(1);

/// The lag samples of the last [`WINDOW`] and the verdict; a state
/// machine fed `now`. Busy from a median lag of `bound` (relay.toml
/// `busy_lag_ms`, default 100: every packet then waits a tenth of a second
/// on top of the network), and free again only below half of it, so a
/// relay at the edge does not flap; a zero bound is never busy.
#[derive(Debug, Default)]
pub struct LoadGauge {
    inner: Mutex<Inner>,
    overflow: Mutex<Overflow>,
    /// When a refusal was last on record, and how many since.
    refusals: Mutex<(Option<Instant>, u64)>,
}

#[derive(Debug, Default)]
struct Inner {
    samples: VecDeque<(Instant, Duration)>,
    busy: bool,
}

impl Inner {
    fn median(&self, now: Instant) -> Option<Duration> {
        let mut recent: Vec<Duration> = self
            .samples
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= WINDOW)
            .map(|(_, lag)| *lag)
            .collect();
        recent.sort();
        recent.get(recent.len() / 2).copied()
    }
}

impl LoadGauge {
    /// A refusal: `Some(n)` when it goes on record, covering `n` refusals
    /// (this one and those since the last record).
    pub fn refused(&self, now: Instant) -> Option<u64> {
        let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        r.1 += 1;
        let due =
            r.0.is_none_or(|last| now.duration_since(last) >= REFUSALS_RECORDED_EVERY);
        if !due {
            return None;
        }
        let n = std::mem::take(&mut r.1);
        r.0 = Some(now);
        Some(n)
    }

    /// One sample; returns the change of verdict it caused, if any.
    pub fn record(&self, lag: Duration, now: Instant, bound: Duration) -> Option<Option<Busy>> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.samples.push_back((now, lag));
        while inner
            .samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW)
        {
            inner.samples.pop_front();
        }
        // One sample is a verdict too: a sampler starved for the whole
        // window has only the one it finally took, and it says enough.
        let median = inner.median(now).unwrap_or_default();
        let bound = if inner.busy { bound / 2 } else { bound };
        let busy = !bound.is_zero() && median >= bound;
        if busy == std::mem::replace(&mut inner.busy, busy) {
            return None;
        }
        Some(busy.then(|| Busy::of(median)))
    }

    /// One look at what the relay dropped and forwarded so far; returns
    /// the change of the overflow verdict, if any ([`Overflow::record`]).
    pub fn record_totals(&self, now: Instant, totals: Totals, bound: u64) -> Option<Option<u64>> {
        let mut overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        overflow.record(now, totals, bound)
    }

    /// `Some` while the relay is behind (late, or its socket overflowing),
    /// with the median lag and the drops.
    pub fn busy(&self, now: Instant) -> Option<Busy> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let dropping = self
            .overflow
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .busy();
        if !inner.busy && dropping.is_none() {
            return None;
        }
        // No sample in the window: the sampler itself cannot run.
        let fallback = if inner.busy { WINDOW } else { Duration::ZERO };
        let median = inner.median(now).unwrap_or(fallback);
        Some(Busy {
            dropped_per_sec: dropping.unwrap_or(0),
            ..Busy::of(median)
        })
    }
}

/// relay.toml's `busy_lag_ms` and `busy_drops_per_sec`, as they are now.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub lag: Duration,
    pub drops_per_sec: u64,
}

/// Samples the lag, and looks at the socket's drops every second, until
/// the relay stops; says when it starts and stops refusing new sessions.
/// `bounds` reads relay.toml as it is now (a reload changes it); it runs
/// until `shutdown` flips.
pub async fn sample(
    gauge: std::sync::Arc<LoadGauge>,
    bounds: impl Fn() -> Bounds,
    forwarded: ForwardedBytes,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut drops = DropWatch::new();
    let mut looked = Instant::now();
    loop {
        // By the clock, not by samples: a starved sampler samples seldom.
        if looked.elapsed() >= LOOK_AT_DROPS_EVERY {
            looked = Instant::now();
            look_at_drops(&gauge, &mut drops, &forwarded, bounds().drops_per_sec);
        }
        let asked = Instant::now();
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        let now = Instant::now();
        let lag = now.duration_since(asked).saturating_sub(SAMPLE_EVERY);
        match gauge.record(lag, now, bounds().lag) {
            Some(Some(busy)) => warn!(
                lag_ms = busy.lag_ms,
                "the relay is behind: new sessions are refused until it catches up"
            ),
            Some(None) if gauge.busy(now).is_none() => {
                info!("the relay caught up: new sessions are admitted again")
            }
            _ => {}
        }
    }
}

/// The once-a-second look at the socket: the drop warning, and the
/// overflow verdict.
fn look_at_drops(gauge: &LoadGauge, drops: &mut DropWatch, forwarded: &ForwardedBytes, bound: u64) {
    let now = Instant::now();
    let Some(dropped) = drops.look(now) else {
        return;
    };
    let totals = Totals {
        dropped,
        forwarded_bytes: forwarded.to_viewer.get() + forwarded.to_agent.get(),
    };
    match gauge.record_totals(now, totals, bound) {
        Some(Some(per_sec)) => warn!(
            dropped_per_sec = per_sec,
            "the relay is behind (its socket overflows): new sessions are refused until it \
             catches up"
        ),
        Some(None) if gauge.busy(now).is_none() => {
            info!("the relay caught up: new sessions are admitted again")
        }
        _ => {}
    }
}

/// Says (at most every [`DROPS_SAID_EVERY`]) when the kernel dropped
/// datagrams at the relay's socket since it last looked (its receive
/// buffer was full: packets lost before the relay saw them).
pub(crate) struct DropWatch {
    last: Option<u64>,
    said: Option<Instant>,
}

/// How often a drop warning may repeat.
pub const DROPS_SAID_EVERY: Duration = Duration::from_secs(10);

impl DropWatch {
    pub(crate) fn new() -> DropWatch {
        DropWatch {
            last: own_udp_drops(),
            said: None,
        }
    }

    /// Looks again; warns with the figure when there are new drops.
    /// Returns the socket's drops so far, where the kernel says.
    pub(crate) fn look(&mut self, now: Instant) -> Option<u64> {
        let total = own_udp_drops()?;
        let new = total.saturating_sub(self.last.unwrap_or(total));
        let quiet = self
            .said
            .is_some_and(|at| now.duration_since(at) < DROPS_SAID_EVERY);
        if new == 0 || quiet {
            // Unsaid drops are said with the next warning.
            if new == 0 {
                self.last = Some(total);
            }
            return Some(total);
        }
        warn!(
            dropped = new,
            total,
            "the kernel dropped datagrams at the relay's socket (receive buffer full): \
             the relay is behind, or net.core.rmem_max is too small"
        );
        self.last = Some(total);
        self.said = Some(now);
        Some(total)
    }
}

/// Test hook, compiled into debug builds only: while the file named by
/// `ASSENT_TEST_STALL_FILE` exists and holds a number N, tasks block the
/// runtime's worker threads N ms at a time (a relay starved of CPU, as a
/// CPU hog would do, but on cue). A release relay never reads it.
#[cfg(debug_assertions)]
pub fn start_stall_hook() {
    let Some(path) = std::env::var_os("ASSENT_TEST_STALL_FILE") else {
        return;
    };
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    for _ in 0..workers * 2 {
        let path = std::path::PathBuf::from(&path);
        tokio::spawn(async move {
            loop {
                let stall = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok());
                match stall {
                    Some(ms) => std::thread::sleep(Duration::from_millis(ms)),
                    None => tokio::time::sleep(SAMPLE_EVERY).await,
                }
                tokio::task::yield_now().await;
            }
        });
    }
}

#[cfg(not(debug_assertions))]
pub fn start_stall_hook() {}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_millis(100);

    fn feed(gauge: &LoadGauge, start: Instant, lags_ms: &[u64]) -> Vec<Option<Option<Busy>>> {
        lags_ms
            .iter()
            .enumerate()
            .map(|(i, ms)| {
                let at = start + SAMPLE_EVERY * (i as u32 + 1);
                gauge.record(Duration::from_millis(*ms), at, BOUND)
            })
            .collect()
    }

    #[test]
    fn busy_when_the_median_lag_reaches_the_bound_and_free_below_half_of_it() {
        let gauge = LoadGauge::default();
        let t0 = Instant::now();
        assert_eq!(gauge.busy(t0), None, "no samples, no verdict");
        // A lone spike (a garbage-collecting neighbour) is not overload.
        let changes = feed(&gauge, t0, &[1, 2, 400, 1, 2, 1]);
        assert!(changes.iter().all(Option::is_none), "{changes:?}");
        // Most samples late: busy, said once.
        let t1 = t0 + SAMPLE_EVERY * 6;
        let changes = feed(&gauge, t1, &[150; 12]);
        let turned: Vec<_> = changes.iter().flatten().collect();
        assert_eq!(turned.len(), 1, "{changes:?}");
        let busy = gauge.busy(t1 + SAMPLE_EVERY * 12).expect("busy");
        assert_eq!(
            (busy.lag_ms, busy.retry_after_secs),
            (150, RETRY_AFTER_SECS)
        );
        assert!(
            busy.message().contains("try again in 10 s"),
            "{}",
            busy.message()
        );
        // Hovering just under the bound keeps it busy (no flapping).
        let t2 = t1 + SAMPLE_EVERY * 12;
        let changes = feed(&gauge, t2, &[80; 25]);
        assert!(changes.iter().all(Option::is_none), "{changes:?}");
        assert!(gauge.busy(t2 + SAMPLE_EVERY * 25).is_some());
        // Caught up: said once.
        let t3 = t2 + SAMPLE_EVERY * 25;
        let changes = feed(&gauge, t3, &[1; 25]);
        assert_eq!(changes.iter().flatten().collect::<Vec<_>>(), [&None]);
        assert_eq!(gauge.busy(t3 + SAMPLE_EVERY * 25), None);
    }

    #[test]
    fn a_zero_bound_is_never_busy() {
        let gauge = LoadGauge::default();
        let t0 = Instant::now();
        for i in 0..30 {
            let at = t0 + SAMPLE_EVERY * i;
            assert_eq!(
                gauge.record(Duration::from_secs(1), at, Duration::ZERO),
                None
            );
        }
        assert_eq!(gauge.busy(t0 + SAMPLE_EVERY * 30), None);
    }

    #[test]
    fn refusals_go_on_record_at_most_once_a_second_with_their_count() {
        let gauge = LoadGauge::default();
        let t0 = Instant::now();
        assert_eq!(gauge.refused(t0), Some(1));
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(gauge.refused(ms(10)), None);
        assert_eq!(gauge.refused(ms(500)), None);
        assert_eq!(gauge.refused(ms(1000)), Some(3));
        assert_eq!(gauge.refused(ms(1001)), None);
    }

    #[test]
    fn a_starved_sampler_still_decides_on_what_it_has() {
        let gauge = LoadGauge::default();
        let t0 = Instant::now();
        // One sample in the whole window, five seconds late.
        assert!(gauge.record(Duration::from_secs(5), t0, BOUND).is_some());
        assert_eq!(gauge.busy(t0).map(|b| b.lag_ms), Some(5000));
        // Starved again: no sample for longer than the window; still busy.
        let later = t0 + WINDOW * 3;
        assert_eq!(gauge.busy(later).map(|b| b.lag_ms), Some(2000));
    }

    #[test]
    fn an_overflowing_socket_makes_the_relay_busy_on_time_and_says_why() {
        let gauge = LoadGauge::default();
        let t0 = Instant::now();
        feed(&gauge, t0, &[1; 20]);
        let mut totals = Totals::default();
        let mut turned = Vec::new();
        for second in 0..=4u64 {
            totals.dropped += 900;
            totals.forwarded_bytes += 200_000_000;
            let at = t0 + Duration::from_secs(second);
            turned.extend(gauge.record_totals(at, totals, 100));
        }
        assert_eq!(turned, [Some(900)]);
        let busy = gauge.busy(t0 + Duration::from_secs(4)).expect("busy");
        assert_eq!(busy.dropped_per_sec, 900);
        assert!(busy.lag_ms < 100, "the timers are on time: {busy:?}");
        let message = busy.message();
        assert!(
            message.contains("900 datagrams a second dropped")
                && message.contains("try again in 10 s"),
            "{message}"
        );
    }
}
