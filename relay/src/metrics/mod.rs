//! The relay's Prometheus metrics. Most counters are derived in one place,
//! from the audit records the relay writes ([`Metrics::observe`], called by
//! the audit writer once a record is on disk), so a metric moves exactly
//! when the audited event happened. Gauges (sessions live, invites
//! pending) and the UDP drop counter are read when scraped.
//!
//! Labels only ever take values from the closed lists below (anything else
//! becomes `other`): never a code, key, ticket, name or any free text.

mod http;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use assent_audit::Fields;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use http::{bind, serve, write_probe};

/// `session_end` reasons (`EndReason::as_str`).
const END_REASONS: &[&str] = &[
    "viewer_closed",
    "agent_ended",
    "viewer_lost",
    "agent_lost",
    "admin_killed",
    "technician_revoked",
    "idle_timeout",
    "max_duration",
    "relay_shutdown",
    "escalated",
];
/// `invite_closed` reasons (`AbortReason::as_str`).
const ABORT_REASONS: &[&str] = &[
    "invite_expired",
    "consent_denied",
    "consent_timeout",
    "viewer_left",
    "agent_left",
    "admin_killed",
    "technician_revoked",
    "relay_shutdown",
    "withdrawn",
    "audit_failed",
];
/// `auth_failed` reasons (INTERFACE.md).
const AUTH_REASONS: &[&str] = &[
    "tls_handshake_failed",
    "timeout",
    "unknown_key",
    "technician_revoked",
    "code_on_technician_connection",
    "handover_not_yours",
    "code_for_another_device",
    "bad_signature",
    "throttled",
    "throttled_global",
    "bad_code",
    "expired_code",
    "used_code",
    "withdrawn_code",
    "bad_consent_receipt",
    "bad_validation_receipt",
];
const ROLES: &[&str] = &["viewer", "agent", "unknown"];
const DECISIONS: &[&str] = &["view", "control", "denied", "timeout"];
/// Every event the serving relay writes.
const EVENTS: &[&str] = &[
    "relay_started",
    "relay_stopped",
    "audit_repaired",
    "technician_added",
    "technician_revoked",
    "technician_changed",
    "invite_created",
    "invite_closed",
    "auth_failed",
    "consent",
    "session_start",
    "scope_changed",
    "session_end",
    "user_validation",
    "session_note",
    "session_note_update",
    "user_confirmation",
    "escalation_requested",
    "escalation_closed",
    "session_interrupted",
    "session_resumed",
    "config_reloaded",
    "config_reload_failed",
    "webhook_delivered",
    "webhook_failed",
    "privacy_changed",
];

/// `value` if it is one of `known`, else `other`: a label can only ever
/// hold a word from a closed list.
fn closed(known: &'static [&'static str], value: Option<&str>) -> &'static str {
    value
        .and_then(|v| known.iter().find(|k| **k == v))
        .copied()
        .unwrap_or("other")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    role: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Decision {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Event {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Throttle {
    scope: &'static str,
}

/// The `admission_refusals` label of a refusal that is not an
/// authentication failure: the kinds a relay refuses for load or bad
/// requests by name, anything else `other`.
pub fn kind_label(kind: assent_proto::wire::ErrorKind) -> &'static str {
    use assent_proto::wire::ErrorKind as K;
    match kind {
        K::Busy => "busy",
        K::LimitReached => "limit_reached",
        K::BadVersion => "bad_version",
        K::Protocol => "protocol",
        K::BadInput => "bad_input",
        K::Shutdown => "shutdown",
        _ => "other",
    }
}

/// Relay-wide forwarded byte counters, held by every session's counters.
#[derive(Clone, Debug)]
pub struct ForwardedBytes {
    pub to_viewer: Counter,
    pub to_agent: Counter,
}

/// Every metric the relay exposes, and its readiness.
pub struct Metrics {
    registry: Registry,
    sessions_live: Gauge,
    invites_pending: Gauge,
    consent_pending: Gauge,
    sessions_started: Counter,
    sessions_ended: Family<Reason, Counter>,
    invites_created: Counter,
    invites_closed: Family<Reason, Counter>,
    consent: Family<Decision, Counter>,
    auth_failures: Family<AuthLabels, Counter>,
    code_throttled: Family<Throttle, Counter>,
    admission_refusals: Family<Reason, Counter>,
    bytes: ForwardedBytes,
    audit_append: Histogram,
    audit_records: Family<Event, Counter>,
    audit_failures: Counter,
    udp_drops: Counter,
    /// Set once the QUIC endpoint accepts connections, cleared at shutdown.
    listening: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let bytes_family = Family::<Direction, Counter>::default();
        // One statement each: a family's guard lives to the end of its
        // statement, and a second `get_or_create` beside it deadlocks.
        let to_viewer = bytes_family
            .get_or_create(&Direction {
                direction: "to_viewer",
            })
            .clone();
        let to_agent = bytes_family
            .get_or_create(&Direction {
                direction: "to_agent",
            })
            .clone();
        let bytes = ForwardedBytes {
            to_viewer,
            to_agent,
        };
        let m = Metrics {
            registry: Registry::with_prefix("assent"),
            sessions_live: Gauge::default(),
            invites_pending: Gauge::default(),
            consent_pending: Gauge::default(),
            sessions_started: Counter::default(),
            sessions_ended: Family::default(),
            invites_created: Counter::default(),
            invites_closed: Family::default(),
            consent: Family::default(),
            auth_failures: Family::default(),
            code_throttled: Family::default(),
            admission_refusals: Family::default(),
            bytes,
            // 0.5 ms to about 4 s: an fsync on a healthy disk is a few ms.
            audit_append: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            audit_records: Family::default(),
            audit_failures: Counter::default(),
            udp_drops: Counter::default(),
            listening: AtomicBool::new(false),
        };
        m.register(bytes_family)
    }

    /// The session and authentication metrics.
    fn register(mut self, bytes: Family<Direction, Counter>) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "build",
            "The relay's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "sessions_live",
            "Sessions live now",
            self.sessions_live.clone(),
        );
        r.register(
            "invites_pending",
            "Invites waiting for the user's agent to join",
            self.invites_pending.clone(),
        );
        r.register(
            "consent_pending",
            "Requests whose user is being asked",
            self.consent_pending.clone(),
        );
        r.register(
            "sessions_started",
            "Sessions started (session_start)",
            self.sessions_started.clone(),
        );
        r.register(
            "sessions_ended",
            "Sessions ended, by reason (session_end)",
            self.sessions_ended.clone(),
        );
        r.register(
            "invites_created",
            "Invite codes handed out",
            self.invites_created.clone(),
        );
        r.register(
            "invites_closed",
            "Requests that ended before going live, by reason (invite_closed)",
            self.invites_closed.clone(),
        );
        r.register(
            "consent_decisions",
            "The users' answers, by decision",
            self.consent.clone(),
        );
        r.register(
            "auth_failures",
            "Refused authentications, by role and reason (auth_failed)",
            self.auth_failures.clone(),
        );
        r.register(
            "code_throttled",
            "Code attempts refused by the wrong-code throttle (scope address or relay)",
            self.code_throttled.clone(),
        );
        self.register_relay(bytes)
    }

    /// The relay-wide metrics (refusals, bytes, audit, UDP).
    fn register_relay(mut self, bytes: Family<Direction, Counter>) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "admission_refusals",
            "Connections and requests refused for a reason other than authentication",
            self.admission_refusals.clone(),
        );
        r.register(
            "forwarded_bytes",
            "Session bytes forwarded, by direction",
            bytes,
        );
        r.register_with_unit(
            "audit_append",
            "Time from asking for an audit record to its fsync",
            prometheus_client::registry::Unit::Seconds,
            self.audit_append.clone(),
        );
        r.register(
            "audit_records",
            "Audit records written, by event",
            self.audit_records.clone(),
        );
        r.register(
            "audit_failures",
            "Audit records that could not be written",
            self.audit_failures.clone(),
        );
        r.register(
            "udp_drops",
            "Datagrams the kernel dropped on the relay's UDP socket (receive buffer full)",
            self.udp_drops.clone(),
        );
        self
    }

    /// The relay-wide byte counters a session's forwarders add to.
    pub fn forwarded_bytes(&self) -> ForwardedBytes {
        self.bytes.clone()
    }

    /// Counts a refusal that is not an authentication failure (those are
    /// counted from their `auth_failed` record). `reason` comes from code,
    /// never from a client.
    pub fn admission_refused(&self, reason: &'static str) {
        self.admission_refusals
            .get_or_create(&Reason { reason })
            .inc();
    }

    /// Counts what an audit record says, once it is on disk.
    pub fn observe(&self, event: &str, fields: &Fields, took: Duration) {
        let field = |name: &str| fields.get(name).and_then(|v| v.as_str());
        self.audit_append.observe(took.as_secs_f64());
        self.audit_records
            .get_or_create(&Event {
                event: closed(EVENTS, Some(event)),
            })
            .inc();
        match event {
            "session_start" => {
                self.sessions_started.inc();
            }
            "session_end" => {
                let reason = closed(END_REASONS, field("reason"));
                self.sessions_ended.get_or_create(&Reason { reason }).inc();
            }
            "invite_created" => {
                self.invites_created.inc();
            }
            "invite_closed" => {
                let reason = closed(ABORT_REASONS, field("reason"));
                self.invites_closed.get_or_create(&Reason { reason }).inc();
            }
            "consent" => {
                let decision = closed(DECISIONS, field("decision"));
                self.consent.get_or_create(&Decision { decision }).inc();
            }
            "auth_failed" => self.auth_failed(field("role"), field("reason")),
            _ => {}
        }
    }

    fn auth_failed(&self, role: Option<&str>, reason: Option<&str>) {
        let reason = closed(AUTH_REASONS, reason);
        let role = closed(ROLES, role);
        self.auth_failures
            .get_or_create(&AuthLabels { role, reason })
            .inc();
        let scope = match reason {
            "throttled" => "address",
            "throttled_global" => "relay",
            _ => return,
        };
        self.code_throttled.get_or_create(&Throttle { scope }).inc();
    }

    /// An audit record that could not be written.
    pub fn audit_failed(&self) {
        self.audit_failures.inc();
    }

    pub fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::SeqCst);
    }

    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// Sets the values read at scrape time and encodes everything in the
    /// OpenMetrics text format.
    pub fn encode(&self, now: Snapshot) -> Result<String, std::fmt::Error> {
        self.sessions_live.set(now.live);
        self.invites_pending.set(now.waiting_for_agent);
        self.consent_pending.set(now.asking_user);
        if let Some(drops) = now.udp_drops {
            // The kernel's count only grows while the socket lives.
            let seen = self.udp_drops.get();
            self.udp_drops.inc_by(drops.saturating_sub(seen));
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The values only known when scraped.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot {
    pub live: i64,
    pub waiting_for_agent: i64,
    pub asking_user: i64,
    pub udp_drops: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pairs: &[(&str, &str)]) -> Fields {
        let mut f = Fields::new();
        for (k, v) in pairs {
            f.insert((*k).into(), serde_json::json!(v));
        }
        f
    }

    #[test]
    fn counters_follow_audit_records() {
        let m = Metrics::new();
        let ms = Duration::from_millis(3);
        m.observe("session_start", &record(&[("ticket", "T-1")]), ms);
        m.observe("session_end", &record(&[("reason", "agent_ended")]), ms);
        m.observe("consent", &record(&[("decision", "control")]), ms);
        m.observe(
            "auth_failed",
            &record(&[("role", "agent"), ("reason", "throttled_global")]),
            ms,
        );
        m.forwarded_bytes().to_agent.inc_by(42);
        let text = m.encode(Snapshot::default()).unwrap();
        for line in [
            "assent_sessions_started_total 1",
            "assent_sessions_ended_total{reason=\"agent_ended\"} 1",
            "assent_consent_decisions_total{decision=\"control\"} 1",
            "assent_auth_failures_total{role=\"agent\",reason=\"throttled_global\"} 1",
            "assent_code_throttled_total{scope=\"relay\"} 1",
            "assent_forwarded_bytes_total{direction=\"to_agent\"} 42",
            "assent_forwarded_bytes_total{direction=\"to_viewer\"} 0",
            "assent_audit_append_seconds_count 4",
            "assent_build_info{version=\"",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn labels_never_carry_unknown_text() {
        let m = Metrics::new();
        let secret = "123-456-789-012-345";
        m.observe(
            "session_end",
            &record(&[("reason", secret)]),
            Duration::ZERO,
        );
        m.observe(
            "auth_failed",
            &record(&[("role", secret), ("reason", secret)]),
            Duration::ZERO,
        );
        m.observe(secret, &record(&[]), Duration::ZERO);
        let text = m.encode(Snapshot::default()).unwrap();
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("assent_sessions_ended_total{reason=\"other\"} 1"));
        assert!(text.contains("assent_audit_records_total{event=\"other\"} 1"));
    }

    #[test]
    fn udp_drops_follow_the_kernel_count() {
        let m = Metrics::new();
        let snap = |d| Snapshot {
            udp_drops: Some(d),
            ..Snapshot::default()
        };
        m.encode(snap(5)).unwrap();
        let text = m.encode(snap(7)).unwrap();
        assert!(text.contains("assent_udp_drops_total 7"), "{text}");
    }
}
