//! Rate limits the relay enforces, as pure state driven by `now`.
//!
//! * [`ConnectionRate`]: new connections per source address (token bucket).
//! * [`CodeGuard`]: wrong invite codes. Each failure doubles the lockout of
//!   its source address, and a relay-wide budget caps how many wrong codes
//!   are even *checked* per minute, whatever the number of addresses. The
//!   budget is what bounds a distributed brute force; ARCHITECTURE.md has the
//!   arithmetic.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Upper bound on tracked addresses, so a flood of spoofed or distinct
/// sources cannot grow the tables without limit.
pub const MAX_TRACKED: usize = 100_000;

/// A token bucket: `capacity` tokens, refilled continuously over `period`.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(capacity: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(capacity),
            updated: now,
        }
    }

    fn refill(&mut self, capacity: u32, period: Duration, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        let rate = f64::from(capacity) / period.as_secs_f64().max(1e-9);
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(capacity));
        self.updated = now;
    }

    fn take(&mut self, capacity: u32, period: Duration, now: Instant) -> bool {
        self.refill(capacity, period, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn time_to_token(&self, capacity: u32, period: Duration) -> Duration {
        let rate = f64::from(capacity) / period.as_secs_f64().max(1e-9);
        Duration::from_secs_f64(((1.0 - self.tokens).max(0.0) / rate.max(1e-9)).min(3600.0))
    }
}

/// New connections allowed per source address.
#[derive(Debug)]
pub struct ConnectionRate<K> {
    per_period: u32,
    period: Duration,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> ConnectionRate<K> {
    pub fn new(per_period: u32, period: Duration) -> Self {
        ConnectionRate {
            per_period,
            period,
            buckets: HashMap::new(),
        }
    }

    /// A new allowance (the relay's SIGHUP reload); buckets keep their
    /// tokens, capped by the new allowance as they refill.
    pub fn set_per_period(&mut self, per_period: u32) {
        self.per_period = per_period;
    }

    /// Whether a new connection from `addr` may proceed now.
    pub fn allow(&mut self, addr: &K, now: Instant) -> bool {
        if self.buckets.len() >= MAX_TRACKED {
            self.forget_full(now);
        }
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(addr) {
            // Table full of active sources: refusing is safer than forgetting
            // someone's debt.
            return false;
        }
        let (cap, period) = (self.per_period, self.period);
        self.buckets
            .entry(addr.clone())
            .or_insert_with(|| Bucket::full(cap, now))
            .take(cap, period, now)
    }

    /// Drops addresses whose bucket has refilled: they owe nothing.
    pub fn forget_full(&mut self, now: Instant) {
        let (cap, period) = (self.per_period, self.period);
        self.buckets.retain(|_, b| {
            b.refill(cap, period, now);
            b.tokens < f64::from(cap)
        });
    }

    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// Settings of [`CodeGuard`].
#[derive(Debug, Clone, Copy)]
pub struct CodeGuardConfig {
    /// Lockout after the first wrong code from an address; doubles each time.
    pub base_delay: Duration,
    /// Longest lockout of one address.
    pub max_delay: Duration,
    /// Wrong codes the whole relay checks per `budget_period`.
    pub global_budget: u32,
    pub budget_period: Duration,
}

impl Default for CodeGuardConfig {
    fn default() -> Self {
        CodeGuardConfig {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            global_budget: 60,
            budget_period: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
struct AddrFailures {
    failures: u32,
    locked_until: Instant,
    last: Instant,
}

/// Why a code attempt was not even checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Throttle {
    #[error("too many wrong codes from this address; retry in {0:?}")]
    Address(Duration),
    #[error("the relay is refusing code attempts for now (too many wrong codes); retry in {0:?}")]
    Global(Duration),
}

/// Guards invite-code redemption against guessing.
#[derive(Debug)]
pub struct CodeGuard<K> {
    config: CodeGuardConfig,
    addrs: HashMap<K, AddrFailures>,
    budget: Bucket,
}

impl<K: Hash + Eq + Clone> CodeGuard<K> {
    pub fn new(config: CodeGuardConfig, now: Instant) -> Self {
        CodeGuard {
            config,
            addrs: HashMap::new(),
            budget: Bucket::full(config.global_budget, now),
        }
    }

    /// New delays and budget (the relay's SIGHUP reload). Addresses keep
    /// the lockouts they earned: a reload never forgives a guesser.
    pub fn set_config(&mut self, config: CodeGuardConfig) {
        self.config = config;
    }

    /// Call before checking a code from `addr`. `Ok` means the check may
    /// proceed; the attempt then must be reported with [`Self::failed`] or
    /// [`Self::succeeded`].
    pub fn check(&mut self, addr: &K, now: Instant) -> Result<(), Throttle> {
        if let Some(state) = self.addrs.get(addr) {
            if now < state.locked_until {
                return Err(Throttle::Address(state.locked_until - now));
            }
        }
        let (cap, period) = (self.config.global_budget, self.config.budget_period);
        self.budget.refill(cap, period, now);
        if self.budget.tokens < 1.0 {
            return Err(Throttle::Global(self.budget.time_to_token(cap, period)));
        }
        Ok(())
    }

    /// A wrong code: spends global budget and extends the address lockout.
    pub fn failed(&mut self, addr: &K, now: Instant) {
        let (cap, period) = (self.config.global_budget, self.config.budget_period);
        self.budget.refill(cap, period, now);
        self.budget.tokens = (self.budget.tokens - 1.0).max(0.0);
        if self.addrs.len() >= MAX_TRACKED && !self.addrs.contains_key(addr) {
            self.prune(now);
            if self.addrs.len() >= MAX_TRACKED {
                // Still full of locked-out sources: the global budget, already
                // charged above, keeps bounding this address's guesses.
                return;
            }
        }
        let config = self.config;
        let state = self.addrs.entry(addr.clone()).or_insert(AddrFailures {
            failures: 0,
            locked_until: now,
            last: now,
        });
        state.failures = state.failures.saturating_add(1);
        let delay = exponential(config.base_delay, config.max_delay, state.failures);
        state.locked_until = now + delay;
        state.last = now;
    }

    /// A right code clears the address's record: an honest user who mistyped
    /// once is not punished later.
    pub fn succeeded(&mut self, addr: &K) {
        self.addrs.remove(addr);
    }

    /// Forgets addresses whose lockout ended long ago (one max delay).
    pub fn prune(&mut self, now: Instant) {
        let keep = self.config.max_delay;
        self.addrs
            .retain(|_, s| now < s.locked_until || now.saturating_duration_since(s.last) < keep);
    }

    pub fn tracked(&self) -> usize {
        self.addrs.len()
    }

    /// Most wrong codes the relay can check over `window`: the bound used in
    /// the brute-force arithmetic.
    pub fn max_guesses(&self, window: Duration) -> f64 {
        let c = &self.config;
        f64::from(c.global_budget) * (1.0 + window.as_secs_f64() / c.budget_period.as_secs_f64())
    }
}

/// `base * 2^(n-1)`, capped.
fn exponential(base: Duration, max: Duration, n: u32) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(31));
    base.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u8 = 1;
    const B: u8 = 2;

    #[test]
    fn connection_rate_per_address() {
        let t0 = Instant::now();
        let mut r = ConnectionRate::new(3, Duration::from_secs(60));
        assert!(r.allow(&A, t0));
        assert!(r.allow(&A, t0));
        assert!(r.allow(&A, t0));
        assert!(
            !r.allow(&A, t0),
            "fourth connection within the period is refused"
        );
        assert!(r.allow(&B, t0), "other addresses are unaffected");
        assert!(
            r.allow(&A, t0 + Duration::from_secs(20)),
            "one token back after period/3"
        );
        assert!(!r.allow(&A, t0 + Duration::from_secs(20)));
        r.forget_full(t0 + Duration::from_secs(600));
        assert_eq!(r.tracked(), 0);
    }

    #[test]
    fn code_failures_lock_out_exponentially() {
        let t0 = Instant::now();
        let mut g = CodeGuard::new(CodeGuardConfig::default(), t0);
        assert!(g.check(&A, t0).is_ok());
        g.failed(&A, t0);
        assert_eq!(
            g.check(&A, t0),
            Err(Throttle::Address(Duration::from_secs(1)))
        );
        let t1 = t0 + Duration::from_secs(1);
        assert!(g.check(&A, t1).is_ok());
        g.failed(&A, t1);
        assert_eq!(
            g.check(&A, t1),
            Err(Throttle::Address(Duration::from_secs(2)))
        );
        let mut t = t1;
        for _ in 0..20 {
            t += Duration::from_secs(1000);
            g.failed(&A, t);
        }
        assert_eq!(
            g.check(&A, t),
            Err(Throttle::Address(Duration::from_secs(300))),
            "capped"
        );
        assert!(g.check(&B, t).is_ok(), "other addresses unaffected");
        g.succeeded(&A);
        assert!(g.check(&A, t).is_ok());
    }

    #[test]
    fn global_budget_caps_distributed_guessing() {
        let t0 = Instant::now();
        let cfg = CodeGuardConfig {
            global_budget: 10,
            ..CodeGuardConfig::default()
        };
        let mut g = CodeGuard::new(cfg, t0);
        // Each guess from a fresh address: per-address lockout never bites.
        let mut checked = 0u32;
        for addr in 0u32..1000 {
            if g.check(&addr, t0).is_ok() {
                checked += 1;
                g.failed(&addr, t0);
            }
        }
        assert_eq!(checked, 10);
        assert!(matches!(g.check(&5000, t0), Err(Throttle::Global(_))));
        // Budget refills at 10 per minute.
        assert!(g.check(&5000, t0 + Duration::from_secs(6)).is_ok());
    }

    #[test]
    fn brute_force_bound_over_a_code_lifetime() {
        // The ARCHITECTURE.md arithmetic, computed from the defaults.
        let g: CodeGuard<u8> = CodeGuard::new(CodeGuardConfig::default(), Instant::now());
        let guesses = g.max_guesses(Duration::from_secs(600));
        let codes = 10f64.powi(crate::invite::CODE_DIGITS as i32);
        let pending_invites_max = 10_000.0;
        let p = guesses * pending_invites_max / codes;
        assert!(p <= 1e-6, "p = {p}");
    }

    #[test]
    fn tables_are_bounded() {
        let t0 = Instant::now();
        let mut g = CodeGuard::new(
            CodeGuardConfig {
                global_budget: u32::MAX,
                ..CodeGuardConfig::default()
            },
            t0,
        );
        let later = t0 + Duration::from_secs(10_000);
        for addr in 0..(MAX_TRACKED as u32 + 10) {
            g.failed(&addr, t0);
        }
        assert_eq!(g.tracked(), MAX_TRACKED);
        g.failed(&u32::MAX, later);
        assert_eq!(g.tracked(), 1, "stale entries were pruned");
    }

    /// The schedule the e2e test `wrong_codes_are_throttled_per_address_and_
    /// relay_wide` (tests/e2e/relay.rs) drives the real relay through, here
    /// to the millisecond: a 400 ms base lockout and 3 wrong codes a minute
    /// relay-wide.
    #[test]
    fn the_relay_test_schedule_to_the_millisecond() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let config = CodeGuardConfig {
            base_delay: ms(400),
            global_budget: 3,
            ..CodeGuardConfig::default()
        };
        let mut g = CodeGuard::new(config, t0);
        // First wrong code: checked; then locked out for 400 ms, and an
        // attempt refused unchecked does not lengthen that.
        assert!(g.check(&A, t0).is_ok());
        g.failed(&A, t0);
        assert_eq!(g.check(&A, t0), Err(Throttle::Address(ms(400))));
        assert_eq!(g.check(&A, t0 + ms(399)), Err(Throttle::Address(ms(1))));
        let t1 = t0 + ms(400);
        assert!(g.check(&A, t1).is_ok());
        // Second: 800 ms.
        g.failed(&A, t1);
        assert_eq!(g.check(&A, t1 + ms(450)), Err(Throttle::Address(ms(350))));
        assert_eq!(g.check(&A, t1 + ms(799)), Err(Throttle::Address(ms(1))));
        let t2 = t1 + ms(800);
        assert!(g.check(&A, t2).is_ok());
        // Third: 1600 ms, and the relay-wide budget is spent, for every
        // address.
        g.failed(&A, t2);
        assert_eq!(g.check(&A, t2 + ms(1599)), Err(Throttle::Address(ms(1))));
        assert!(matches!(g.check(&B, t2), Err(Throttle::Global(_))));
        let t3 = t2 + ms(1600);
        let Err(Throttle::Global(wait)) = g.check(&A, t3) else {
            panic!("the address lockout is over; the budget still refuses");
        };
        // The budget refills at 3 a minute: the next code is checked about
        // 20 s after the first failure, not a millisecond before.
        assert!(wait > ms(15_000) && wait <= ms(20_000), "{wait:?}");
        assert!(matches!(
            g.check(&A, t3 + wait - ms(1)),
            Err(Throttle::Global(_))
        ));
        assert!(g.check(&A, t3 + wait + ms(1)).is_ok());
    }
}
