//! One-time invite codes: generation, single use, expiry, and binding to the
//! technician and ticket that asked for them.

use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::identity::PublicKey;
use crate::wire::InviteRequest;

/// Digits in a code: 15 decimal digits are 49.8 bits, read aloud as five
/// groups of three.
pub const CODE_DIGITS: usize = 15;
const GROUP: usize = 3;

/// Kept after use or expiry so a replay is reported as such, not as unknown.
const TOMBSTONE_GRACE: Duration = Duration::from_secs(3600);

/// An invite code. `Debug` is redacted so a code never lands in a log by
/// accident; the digits are reachable only through [`InviteCode::grouped`].
#[derive(Clone)]
pub struct InviteCode(Zeroizing<String>);

impl std::fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InviteCode(<redacted>)")
    }
}

impl InviteCode {
    /// A uniformly random code from the OS CSPRNG (rejection sampling, so no
    /// digit is more likely than another).
    pub fn generate() -> Result<InviteCode, crate::RandomError> {
        let mut digits = Zeroizing::new(String::with_capacity(CODE_DIGITS));
        let mut buf = Zeroizing::new([0u8; 32]);
        while digits.len() < CODE_DIGITS {
            crate::random_bytes(buf.as_mut())?;
            for &b in buf.iter() {
                // 250 is the largest multiple of 10 below 256.
                if b < 250 && digits.len() < CODE_DIGITS {
                    digits.push(char::from(b'0' + b % 10));
                }
            }
        }
        Ok(InviteCode(digits))
    }

    /// Parses what a user typed: digits with any `-` or whitespace.
    pub fn parse(input: &str) -> Option<InviteCode> {
        let digits: Zeroizing<String> = Zeroizing::new(
            input
                .chars()
                .filter(|c| !(c.is_whitespace() || *c == '-'))
                .collect(),
        );
        if digits.len() == CODE_DIGITS && digits.bytes().all(|b| b.is_ascii_digit()) {
            Some(InviteCode(digits))
        } else {
            None
        }
    }

    /// The form printed for the technician: `123-456-789-012-345`.
    pub fn grouped(&self) -> String {
        let bytes = self.0.as_bytes();
        bytes
            .chunks(GROUP)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }

    fn ct_eq(&self, other: &InviteCode) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InviteState {
    Pending,
    Used,
    Cancelled,
    /// Taken back by its technician before the user answered.
    Withdrawn,
}

/// An invite the relay holds while it waits for the agent.
#[derive(Debug, Clone)]
pub struct Invite {
    pub id: String,
    pub technician: String,
    pub technician_key: PublicKey,
    pub request: InviteRequest,
    pub created: Instant,
    pub expires: Instant,
    code: InviteCode,
    state: InviteState,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("technician already has {0} pending invites")]
    TooManyPending(usize),
    #[error("the relay holds too many invites")]
    Full,
    #[error("{0}")]
    Random(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    #[error("not a code (expected {CODE_DIGITS} digits)")]
    Malformed,
    #[error("unknown code")]
    Unknown,
    #[error("code expired")]
    Expired,
    #[error("code already used")]
    Used,
    #[error("request withdrawn by the technician")]
    Withdrawn,
}

/// All invites of a relay.
#[derive(Debug)]
pub struct InviteBook {
    invites: Vec<Invite>,
    ttl: Duration,
    max_pending_per_technician: usize,
    max_total: usize,
}

impl InviteBook {
    pub fn new(ttl: Duration, max_pending_per_technician: usize, max_total: usize) -> InviteBook {
        InviteBook {
            invites: Vec::new(),
            ttl,
            max_pending_per_technician,
            max_total,
        }
    }

    /// New limits (the relay's SIGHUP reload). Invites already handed out
    /// keep the expiry they were created with.
    pub fn set_limits(&mut self, ttl: Duration, max_pending_per_technician: usize) {
        self.ttl = ttl;
        self.max_pending_per_technician = max_pending_per_technician;
    }

    /// Creates an invite bound to this technician and request.
    pub fn create(
        &mut self,
        technician: &str,
        technician_key: PublicKey,
        request: InviteRequest,
        now: Instant,
    ) -> Result<(Invite, InviteCode), InviteError> {
        self.prune(now);
        let pending = self.pending_for(technician, now);
        if pending >= self.max_pending_per_technician {
            return Err(InviteError::TooManyPending(pending));
        }
        if self.invites.len() >= self.max_total {
            return Err(InviteError::Full);
        }
        let random = |e: crate::RandomError| InviteError::Random(e.to_string());
        let code = InviteCode::generate().map_err(random)?;
        let invite = Invite {
            id: format!("inv-{}", crate::random_id(6).map_err(random)?),
            technician: technician.to_string(),
            technician_key,
            request,
            created: now,
            expires: now + self.ttl,
            code: code.clone(),
            state: InviteState::Pending,
        };
        self.invites.push(invite.clone());
        Ok((invite, code))
    }

    /// Redeems a typed code. Compares against every held code in constant
    /// time so response timing says nothing about how close a guess was.
    pub fn redeem(&mut self, typed: &str, now: Instant) -> Result<Invite, RedeemError> {
        let code = InviteCode::parse(typed).ok_or(RedeemError::Malformed)?;
        let mut found = None;
        for (i, inv) in self.invites.iter().enumerate() {
            if inv.code.ct_eq(&code) {
                found = Some(i);
            }
        }
        let inv = found
            .and_then(|i| self.invites.get_mut(i))
            .ok_or(RedeemError::Unknown)?;
        match inv.state {
            InviteState::Used => Err(RedeemError::Used),
            InviteState::Cancelled => Err(RedeemError::Expired),
            InviteState::Withdrawn => Err(RedeemError::Withdrawn),
            InviteState::Pending if now >= inv.expires => Err(RedeemError::Expired),
            InviteState::Pending => {
                inv.state = InviteState::Used;
                Ok(inv.clone())
            }
        }
    }

    /// Withdraws an invite (its technician left); the code stops working.
    pub fn cancel(&mut self, id: &str) {
        for inv in self.invites.iter_mut().filter(|i| i.id == id) {
            if inv.state == InviteState::Pending {
                inv.state = InviteState::Cancelled;
            }
        }
    }

    /// The technician took the request back: the code stops working, and
    /// a user who types it later is told why.
    pub fn withdraw(&mut self, id: &str) {
        for inv in self.invites.iter_mut().filter(|i| i.id == id) {
            if inv.state == InviteState::Pending {
                inv.state = InviteState::Withdrawn;
            }
        }
    }

    /// Withdraws every pending invite of a technician (revocation).
    pub fn cancel_technician(&mut self, technician: &str) {
        for inv in self
            .invites
            .iter_mut()
            .filter(|i| i.technician == technician)
        {
            if inv.state == InviteState::Pending {
                inv.state = InviteState::Cancelled;
            }
        }
    }

    pub fn pending_for(&self, technician: &str, now: Instant) -> usize {
        self.invites
            .iter()
            .filter(|i| {
                i.technician == technician && i.state == InviteState::Pending && now < i.expires
            })
            .count()
    }

    /// Invites that can still be redeemed.
    pub fn pending_total(&self, now: Instant) -> usize {
        self.invites
            .iter()
            .filter(|i| i.state == InviteState::Pending && now < i.expires)
            .count()
    }

    /// Forgets invites long past their expiry.
    pub fn prune(&mut self, now: Instant) {
        self.invites.retain(|i| now < i.expires + TOMBSTONE_GRACE);
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Impact, Scope};

    fn request(ticket: &str) -> InviteRequest {
        InviteRequest {
            ticket: ticket.into(),
            client: "Acme".into(),
            summary: "printer".into(),
            impact: Impact::Normal,
            scope: Scope::View,
            identity_check: String::new(),
            permissions: vec![],
        }
    }

    fn book() -> InviteBook {
        InviteBook::new(Duration::from_secs(600), 3, 100)
    }

    fn key() -> PublicKey {
        PublicKey([5; 32])
    }

    #[test]
    fn codes_are_fifteen_digits_grouped_and_random() {
        let a = InviteCode::generate().unwrap();
        let b = InviteCode::generate().unwrap();
        let g = a.grouped();
        assert_eq!(g.len(), CODE_DIGITS + CODE_DIGITS / 3 - 1);
        assert!(g
            .split('-')
            .all(|p| p.len() == 3 && p.bytes().all(|c| c.is_ascii_digit())));
        assert_ne!(a.grouped(), b.grouped());
        assert_eq!(format!("{a:?}"), "InviteCode(<redacted>)");
    }

    #[test]
    fn digits_are_roughly_uniform() {
        let mut counts = [0u32; 10];
        for _ in 0..400 {
            for b in InviteCode::generate()
                .unwrap()
                .grouped()
                .bytes()
                .filter(u8::is_ascii_digit)
            {
                counts[(b - b'0') as usize] += 1;
            }
        }
        // 6000 digits: each expected 600; a broken generator (e.g. modulo bias
        // toward 0-5, or a constant) falls far outside this band.
        for c in counts {
            assert!((480..720).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn typed_forms_are_accepted() {
        let mut b = book();
        let now = Instant::now();
        let (_, code) = b.create("alice", key(), request("T-1"), now).unwrap();
        let spaced = code.grouped().replace('-', " ");
        assert!(b.redeem(&format!("  {spaced} "), now).is_ok());
        assert!(InviteCode::parse("12-34").is_none());
        assert!(InviteCode::parse("abc-def-ghi-jkl-mno").is_none());
    }

    #[test]
    fn single_use_expiry_and_binding() {
        let mut b = book();
        let now = Instant::now();
        let (inv, code) = b.create("alice", key(), request("T-7"), now).unwrap();
        let got = b
            .redeem(&code.grouped(), now + Duration::from_secs(1))
            .unwrap();
        assert_eq!(got.id, inv.id);
        assert_eq!(got.technician, "alice");
        assert_eq!(got.request.ticket, "T-7");
        assert_eq!(
            b.redeem(&code.grouped(), now).unwrap_err(),
            RedeemError::Used
        );

        let (_, late) = b.create("alice", key(), request("T-8"), now).unwrap();
        assert_eq!(
            b.redeem(&late.grouped(), now + Duration::from_secs(600))
                .unwrap_err(),
            RedeemError::Expired
        );
        assert_eq!(
            b.redeem("000-000-000-000-000", now).unwrap_err(),
            RedeemError::Unknown
        );
        assert_eq!(b.redeem("1", now).unwrap_err(), RedeemError::Malformed);
    }

    #[test]
    fn cancelled_invite_stops_working() {
        let mut b = book();
        let now = Instant::now();
        let (inv, code) = b.create("alice", key(), request("T-1"), now).unwrap();
        b.cancel(&inv.id);
        assert_eq!(
            b.redeem(&code.grouped(), now).unwrap_err(),
            RedeemError::Expired
        );
        let (_, code2) = b.create("bob", key(), request("T-2"), now).unwrap();
        b.cancel_technician("bob");
        assert_eq!(
            b.redeem(&code2.grouped(), now).unwrap_err(),
            RedeemError::Expired
        );
    }

    #[test]
    fn withdrawn_invite_says_so_and_does_not_count() {
        let mut b = book();
        let now = Instant::now();
        let (inv, code) = b.create("alice", key(), request("T-1"), now).unwrap();
        assert_eq!(b.pending_for("alice", now), 1);
        b.withdraw(&inv.id);
        assert_eq!(b.pending_for("alice", now), 0);
        assert_eq!(
            b.redeem(&code.grouped(), now).unwrap_err(),
            RedeemError::Withdrawn
        );
        // A used invite stays used: withdrawing after the join changes nothing.
        let (inv2, code2) = b.create("alice", key(), request("T-2"), now).unwrap();
        b.redeem(&code2.grouped(), now).unwrap();
        b.withdraw(&inv2.id);
        assert_eq!(
            b.redeem(&code2.grouped(), now).unwrap_err(),
            RedeemError::Used
        );
    }

    #[test]
    fn pending_limit_per_technician_and_total() {
        let mut b = InviteBook::new(Duration::from_secs(600), 2, 3);
        let now = Instant::now();
        b.create("alice", key(), request("1"), now).unwrap();
        b.create("alice", key(), request("2"), now).unwrap();
        assert_eq!(
            b.create("alice", key(), request("3"), now).unwrap_err(),
            InviteError::TooManyPending(2)
        );
        b.create("bob", key(), request("4"), now).unwrap();
        assert_eq!(
            b.create("carol", key(), request("5"), now).unwrap_err(),
            InviteError::Full
        );
        // Expired invites free the technician's quota.
        let later = now + Duration::from_secs(601);
        assert_eq!(b.pending_for("alice", later), 0);
        // ...and are forgotten entirely after the grace period.
        b.prune(later + TOMBSTONE_GRACE);
        assert!(b
            .create("carol", key(), request("6"), later + TOMBSTONE_GRACE)
            .is_ok());
    }
}
