//! `relay.toml`: parsed into typed settings, with an error naming the bad
//! key, and the commented template `init` writes.

use std::net::SocketAddr;
use std::time::Duration;

use assent_proto::limits::CodeGuardConfig;
use assent_proto::session::SessionLimits;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_public_name")]
    pub public_name: String,
    /// Threads for packet processing and encryption; `None`: one per core.
    #[serde(default)]
    pub workers: Option<usize>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub metrics: Metrics,
    /// `[[webhooks]]`: where notes and summaries are POSTed (webhooks.rs).
    #[serde(default)]
    pub webhooks: Vec<crate::webhooks::Webhook>,
    /// `[fleet]`: relays sharing one PostgreSQL (fleet.rs); `None`: alone.
    #[serde(default)]
    pub fleet: Option<crate::fleet::Fleet>,
}

/// `[metrics]`: the HTTP listener for Prometheus and health checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// TCP address of `/metrics`, `/healthz` and `/readyz`. Off when unset:
    /// the endpoint has no authentication, so the admin chooses where it is
    /// reachable, and a fixed default port would collide between two relays
    /// on one host.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_sessions: usize,
    pub max_pending_invites_per_technician: usize,
    pub invite_ttl_secs: u64,
    pub consent_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_session_secs: u64,
    pub connections_per_minute_per_address: u32,
    pub code_failure_base_delay_ms: u64,
    pub code_failure_max_delay_secs: u64,
    pub code_failures_per_minute: u32,
    pub auth_timeout_secs: u64,
    pub reconnect_grace_secs: u64,
    /// New sessions are refused while the relay's median scheduling lag is
    /// at least this (0: never).
    pub busy_lag_ms: u64,
    /// New sessions are also refused while the kernel keeps dropping
    /// datagrams at the relay's socket, at least this many a second (0:
    /// never); see `relay/src/load.rs`.
    pub busy_drops_per_sec: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 1000,
            max_pending_invites_per_technician: 5,
            invite_ttl_secs: 600,
            consent_timeout_secs: 90,
            idle_timeout_secs: 900,
            max_session_secs: 4 * 3600,
            connections_per_minute_per_address: 60,
            code_failure_base_delay_ms: 1000,
            code_failure_max_delay_secs: 300,
            code_failures_per_minute: 60,
            auth_timeout_secs: 10,
            reconnect_grace_secs: 20,
            busy_lag_ms: 100,
            busy_drops_per_sec: 100,
        }
    }
}

/// Longest reconnect grace: a session's capture is stopped throughout,
/// but its slot is held and a vanished peer ends it only this late.
pub const MAX_RECONNECT_GRACE_SECS: u64 = 300;

/// Invites the relay holds at most, across technicians (pending and
/// recently used ones). Part of the brute-force bound in ARCHITECTURE.md.
pub const MAX_INVITES_TOTAL: usize = 10_000;

/// The template's top-level keys.
fn template_head(listen: SocketAddr, public_name: &str) -> String {
    // Quoted by the TOML writer: a name with `"` or `\` pasted between
    // quotes would make a file that does not load (found by fuzzing).
    let public_name = toml::Value::String(public_name.to_string()).to_string();
    format!(
        r#"# Assent relay configuration. Read once when `assent-relay serve` starts.

# UDP address the QUIC relay listens on (`serve --listen` overrides it).
listen = "{listen}"

# Name agents and viewers use to reach this relay; the TLS certificate is
# valid for it (and for the listen IP). Changing it needs a new certificate.
public_name = {public_name}

# Threads that process packets and encrypt (every connection's work runs on
# any of them); one per core when unset. Read at start.
# workers = 4
"#
    )
}

/// Most worker threads `workers` takes.
pub const MAX_WORKERS: usize = 1024;

/// The template's `[metrics]` section.
const METRICS_TEMPLATE: &str = r#"[metrics]
# Prometheus metrics (/metrics), liveness (/healthz) and readiness (/readyz)
# over plain HTTP on this TCP address; off while unset. It has no
# authentication: keep it on loopback or a management network, e.g.
# listen = "127.0.0.1:9464"
"#;

impl Limits {
    pub fn session(&self) -> SessionLimits {
        SessionLimits {
            consent_timeout: Duration::from_secs(self.consent_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_duration: Duration::from_secs(self.max_session_secs),
            reconnect_grace: Duration::from_secs(self.reconnect_grace_secs),
        }
    }

    pub fn code_guard(&self) -> CodeGuardConfig {
        CodeGuardConfig {
            base_delay: Duration::from_millis(self.code_failure_base_delay_ms),
            max_delay: Duration::from_secs(self.code_failure_max_delay_secs),
            global_budget: self.code_failures_per_minute,
            budget_period: Duration::from_secs(60),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_sessions", self.max_sessions as u64),
            (
                "max_pending_invites_per_technician",
                self.max_pending_invites_per_technician as u64,
            ),
            ("invite_ttl_secs", self.invite_ttl_secs),
            ("consent_timeout_secs", self.consent_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("max_session_secs", self.max_session_secs),
            (
                "connections_per_minute_per_address",
                u64::from(self.connections_per_minute_per_address),
            ),
            (
                "code_failures_per_minute",
                u64::from(self.code_failures_per_minute),
            ),
            ("auth_timeout_secs", self.auth_timeout_secs),
            ("reconnect_grace_secs", self.reconnect_grace_secs),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("limits.{key} must be greater than 0"));
            }
        }
        if self.reconnect_grace_secs > MAX_RECONNECT_GRACE_SECS {
            return Err(format!(
                "limits.reconnect_grace_secs must be at most {MAX_RECONNECT_GRACE_SECS}"
            ));
        }
        if self.invite_ttl_secs > 24 * 3600 {
            return Err("limits.invite_ttl_secs must be at most 86400 (one day)".into());
        }
        Ok(())
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 4433))
}

fn default_public_name() -> String {
    "localhost".into()
}

/// Why `relay.toml` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, an unknown key or a value of the wrong type (the TOML
    /// parser's message, which points at the spot).
    #[error("{0}")]
    Syntax(String),
    /// A limit out of range; the message names the key.
    #[error("{0}")]
    Limit(String),
    /// A `[[webhooks]]` table out of range; the message names the key.
    #[error("{0}")]
    Webhook(String),
}

/// The parser's message; without the lines quoting the file when it holds
/// a webhook secret (the line and column still point at the spot).
fn redacted(text: &str, e: toml::de::Error) -> String {
    let message = e.to_string();
    if !text.contains("secret") && !text.contains("database") {
        return message;
    }
    let quotes = |l: &str| {
        l.trim_start()
            .split_once('|')
            .is_some_and(|(n, _)| n.trim().chars().all(|c| c.is_ascii_digit()))
    };
    message
        .lines()
        .filter(|l| !quotes(l))
        .collect::<Vec<_>>()
        .join("\n")
}

impl RelayConfig {
    /// Parses the text of `relay.toml` and checks every limit.
    pub fn parse(text: &str) -> Result<RelayConfig, ConfigError> {
        let config: RelayConfig =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(redacted(text, e)))?;
        config.limits.validate().map_err(ConfigError::Limit)?;
        if config.workers.is_some_and(|w| w == 0 || w > MAX_WORKERS) {
            let e = format!("workers must be between 1 and {MAX_WORKERS}");
            return Err(ConfigError::Limit(e));
        }
        crate::webhooks::validate(&config.webhooks).map_err(ConfigError::Webhook)?;
        if let Some(fleet) = &config.fleet {
            crate::fleet::validate(fleet).map_err(ConfigError::Limit)?;
        }
        Ok(config)
    }

    /// The file `init` writes: every key present and commented.
    pub fn template(listen: SocketAddr, public_name: &str) -> String {
        let l = Limits::default();
        let head = template_head(listen, public_name);
        format!(
            r#"{head}
[limits]
# Sessions (awaiting consent or live) the relay carries at once; further
# agents are refused with a clear "relay busy" error.
max_sessions = {}

# Invites one technician may have waiting for an agent at once.
max_pending_invites_per_technician = {}

# Seconds an invite code stays valid (single use in any case).
invite_ttl_secs = {}

# Seconds the relay waits for the user's answer before recording `timeout`
# (the agent's own prompt times out first, after 60 s by default).
consent_timeout_secs = {}

# A live session with no traffic either way for this long ends `idle_timeout`.
idle_timeout_secs = {}

# A live session ends `max_duration` after this long, busy or not.
max_session_secs = {}

# New QUIC connections accepted per source IP address per minute.
connections_per_minute_per_address = {}

# After a wrong invite code, that address must wait this long before its next
# attempt; the wait doubles with each further wrong code ...
code_failure_base_delay_ms = {}
# ... up to this many seconds.
code_failure_max_delay_secs = {}

# Wrong invite codes the whole relay checks per minute, from all addresses
# together. This bounds a distributed brute force (see ARCHITECTURE.md).
code_failures_per_minute = {}

# Seconds a new connection has to authenticate before it is dropped.
auth_timeout_secs = {}

# A live session whose agent or viewer goes silent (Wi-Fi roaming, a pulled
# cable) is interrupted at once (the agent stops capturing and injecting)
# and resumes if the path comes back within this many seconds; after it the
# session ends `agent_lost` / `viewer_lost` (at most 300; read at start).
reconnect_grace_secs = {}

# While the relay runs this many ms behind (short of CPU), new sessions get
# "relay busy, try again in 10 s" and the live ones go on; 0 turns it off.
busy_lag_ms = {}

# While the kernel keeps dropping datagrams at the relay's socket (packets
# arrive faster than the relay takes them), at least this many a second and
# one for every MB forwarded, in 3 seconds of 4, new sessions get "relay
# busy" too, until 5 seconds in a row are clear; 0 turns it off.
busy_drops_per_sec = {}

{}{}{}"#,
            l.max_sessions,
            l.max_pending_invites_per_technician,
            l.invite_ttl_secs,
            l.consent_timeout_secs,
            l.idle_timeout_secs,
            l.max_session_secs,
            l.connections_per_minute_per_address,
            l.code_failure_base_delay_ms,
            l.code_failure_max_delay_secs,
            l.code_failures_per_minute,
            l.auth_timeout_secs,
            l.reconnect_grace_secs,
            l.busy_lag_ms,
            l.busy_drops_per_sec,
            METRICS_TEMPLATE,
            crate::webhooks::TEMPLATE,
            crate::fleet::TEMPLATE,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_to_defaults() {
        let text = RelayConfig::template(default_listen(), "relay.example");
        let c = RelayConfig::parse(&text).unwrap();
        assert_eq!(c.public_name, "relay.example");
        assert_eq!(c.listen, default_listen());
        assert_eq!(c.limits.max_sessions, Limits::default().max_sessions);
        assert_eq!(c.limits.invite_ttl_secs, 600);
        assert_eq!(c.metrics.listen, None);
        assert!(c.webhooks.is_empty());
    }

    #[test]
    fn a_fleet_table_is_checked_and_its_password_never_shown() {
        let table = |id: &str, addr: &str| {
            format!("[fleet]\ndatabase = \"postgres://a:hunter2@db/x\"\nrelay_id = \"{id}\"\npublic_address = \"{addr}\"\n")
        };
        let c = RelayConfig::parse(&table("relay-a", "a.example:4433")).unwrap();
        let f = c.fleet.as_ref().unwrap();
        assert_eq!((f.relay_id.as_str(), f.lease_secs), ("relay-a", 10));
        assert!(!format!("{c:?}").contains("hunter2"));
        let err = RelayConfig::parse(&table("a b", "a:1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("fleet.relay_id"), "{err}");
        let err = RelayConfig::parse(&table("a", "nohost"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("fleet.public_address"), "{err}");
        let bad = format!("{}lease = 3\n", table("a", "a:1"));
        let err = RelayConfig::parse(&bad).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn webhooks_are_checked_with_the_rest() {
        let hook = "[[webhooks]]\nname = \"hd\"\nurl = \"http://127.0.0.1:9/\"\nsecret = \"0123456789abcdef\"\n";
        let c = RelayConfig::parse(hook).unwrap();
        assert_eq!(c.webhooks.len(), 1);
        let err = RelayConfig::parse(&hook.replace("http:", "gopher:")).unwrap_err();
        assert!(err.to_string().contains("webhooks[0] (hd).url"), "{err}");
        let typo = hook.replace("\"0123456789abcdef\"", "\"0123456789abcdef");
        let err = RelayConfig::parse(&typo).unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
        assert!(!err.contains("0123456789abcdef"), "{err}");
    }

    #[test]
    fn metrics_listen_is_optional_and_checked() {
        let c = RelayConfig::parse("[metrics]\nlisten = \"127.0.0.1:9464\"\n").unwrap();
        assert_eq!(c.metrics.listen, Some(([127, 0, 0, 1], 9464).into()));
        let err = RelayConfig::parse("[metrics]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
        let err = RelayConfig::parse("[metrics]\nport = 9464\n").unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
    }

    #[test]
    fn template_quotes_any_public_name() {
        for name in [r#"relay "one""#, r"back\slash", "it's", "Müller"] {
            let text = RelayConfig::template(default_listen(), name);
            assert_eq!(RelayConfig::parse(&text).unwrap().public_name, name);
        }
    }

    #[test]
    fn bad_values_are_named() {
        let err = RelayConfig::parse("[limits]\nmax_sessions = 0\n").unwrap_err();
        assert!(matches!(err, ConfigError::Limit(_)));
        assert!(err.to_string().contains("limits.max_sessions"), "{err}");
        let err = RelayConfig::parse("[limits]\nmax_sesions = 3\n").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax(_)));
        assert!(err.to_string().contains("max_sesions"), "{err}");
        let err = RelayConfig::parse("[limits]\ninvite_ttl_secs = 86401\n").unwrap_err();
        assert!(err.to_string().contains("invite_ttl_secs"), "{err}");
    }
}
