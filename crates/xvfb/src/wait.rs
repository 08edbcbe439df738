//! [`eventually`]: the one way tests wait on a condition instead of sleeping.

use std::time::{Duration, Instant};

/// How often [`eventually`] looks again.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `condition` every 20 ms until it returns `Some` or `limit` passes.
/// It is always checked at least once, and once more after the limit.
pub fn eventually<T>(limit: Duration, condition: impl FnMut() -> Option<T>) -> Option<T> {
    eventually_every(limit, POLL, condition)
}

/// [`eventually`], looking again every `every` instead of every 20 ms: more
/// often where a test measures how soon something happened, less where one
/// look is expensive (running a program).
pub fn eventually_every<T>(
    limit: Duration,
    every: Duration,
    mut condition: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = condition() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value_the_condition_gives() {
        let mut calls = 0;
        let got = eventually(Duration::from_secs(10), || {
            calls += 1;
            (calls == 3).then_some(calls * 10)
        });
        assert_eq!(got, Some(30));
        assert_eq!(calls, 3);
    }

    #[test]
    fn gives_up_after_the_limit_having_looked_after_it() {
        let started = Instant::now();
        let mut last_look = started;
        let got: Option<()> = eventually(Duration::from_millis(100), || {
            last_look = Instant::now();
            None
        });
        assert!(got.is_none());
        assert!(last_look.duration_since(started) >= Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
