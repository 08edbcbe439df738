//! `[[webhooks]]` in `relay.toml`: where the relay POSTs what a ticket
//! system wants to know (the note, the session's summary, escalations), the
//! shared secret it signs with, and how patiently it retries.

use std::time::Duration;

use serde::Deserialize;

/// What a webhook is sent, as `events` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookEvent {
    /// The technician's note was filed (and, later, the user's answer added
    /// to it: `note_updated`).
    NoteFiled,
    /// A session ended, or a request ended with the user's refusal.
    SessionSummary,
    /// A session was handed over to another technician.
    Escalation,
}

impl HookEvent {
    pub const ALL: [HookEvent; 3] = [
        HookEvent::NoteFiled,
        HookEvent::SessionSummary,
        HookEvent::Escalation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::NoteFiled => "note_filed",
            HookEvent::SessionSummary => "session_summary",
            HookEvent::Escalation => "escalation",
        }
    }
}

/// One `[[webhooks]]` table.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Names the webhook in the audit log and the relay's log (the URL may
    /// carry a token, so it is never logged).
    pub name: String,
    /// `https://…` (or `http://…`, for a receiver on the same host or
    /// network).
    pub url: String,
    /// The HMAC-SHA256 key the receiver checks `X-Assent-Signature` with.
    pub secret: String,
    /// Which events; all of them when absent.
    #[serde(default = "all_events")]
    pub events: Vec<HookEvent>,
    /// PEM file of the CA the receiver's certificate must chain to, for a
    /// helpdesk behind a private CA; the public web's roots otherwise.
    #[serde(default)]
    pub ca: Option<String>,
    /// Seconds one attempt may take (connect, send, answer).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Wait after the first failed attempt; doubled after each further one ...
    #[serde(default = "default_initial")]
    pub retry_initial_ms: u64,
    /// ... up to this many seconds.
    #[serde(default = "default_max")]
    pub retry_max_secs: u64,
    /// A delivery still failing this long after it was queued is given up
    /// (`webhook_failed`).
    #[serde(default = "default_give_up")]
    pub give_up_after_secs: u64,
}

// Never print the secret, whatever prints the config.
impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("events", &self.events)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn all_events() -> Vec<HookEvent> {
    HookEvent::ALL.to_vec()
}
fn default_timeout() -> u64 {
    10
}
fn default_initial() -> u64 {
    5_000
}
fn default_max() -> u64 {
    3_600
}
fn default_give_up() -> u64 {
    7 * 24 * 3600
}

/// Longest URL accepted.
const MAX_URL: usize = 2048;

impl Webhook {
    pub fn wants(&self, event: HookEvent) -> bool {
        self.events.contains(&event)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// The wait before attempt `failed + 1`, after `failed` failures.
    pub fn backoff(&self, failed: u32) -> Duration {
        let initial = Duration::from_millis(self.retry_initial_ms);
        let max = Duration::from_secs(self.retry_max_secs).max(initial);
        let factor = 1u32 << failed.saturating_sub(1).min(30);
        initial.saturating_mul(factor).min(max)
    }

    pub fn give_up_after(&self) -> Duration {
        Duration::from_secs(self.give_up_after_secs)
    }

    /// Checks one table; `i` is its place in the file, for the message.
    fn validate(&self, i: usize) -> Result<(), String> {
        let at = format!("webhooks[{i}]");
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(format!(
                "{at}.name must be 1-64 letters, digits, '-' or '_'"
            ));
        }
        let at = format!("webhooks[{i}] ({})", self.name);
        check_url(&self.url).map_err(|e| format!("{at}.url {e}"))?;
        if self.secret.len() < 16 || self.secret.len() > 1024 {
            // Never echo the secret itself.
            return Err(format!(
                "{at}.secret must be 16 to 1024 bytes (e.g. `openssl rand -hex 32`)"
            ));
        }
        if self.events.is_empty() {
            return Err(format!(
                "{at}.events must name at least one of note_filed, session_summary, escalation"
            ));
        }
        if self.ca.as_deref().is_some_and(str::is_empty) {
            return Err(format!("{at}.ca must be a path to a PEM file"));
        }
        let ranges = [
            ("timeout_secs", self.timeout_secs, 1, 300),
            ("retry_initial_ms", self.retry_initial_ms, 10, 3_600_000),
            ("retry_max_secs", self.retry_max_secs, 1, 86_400),
            (
                "give_up_after_secs",
                self.give_up_after_secs,
                1,
                90 * 86_400,
            ),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(format!("{at}.{key} must be between {min} and {max}"));
            }
        }
        Ok(())
    }
}

/// `http://` or `https://`, a host, no spaces, no control characters, no
/// user:password part (credentials belong in the secret or the path).
fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL {
        return Err(format!("is longer than {MAX_URL} characters"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("must not carry a user or password".into());
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    Ok(())
}

/// Checks every `[[webhooks]]` table, and that names are unique.
pub fn validate(hooks: &[Webhook]) -> Result<(), String> {
    for (i, hook) in hooks.iter().enumerate() {
        hook.validate(i)?;
        if hooks[..i].iter().any(|h| h.name == hook.name) {
            return Err(format!(
                "webhooks[{i}].name {:?} is used twice; names must be unique",
                hook.name
            ));
        }
    }
    if hooks.len() > 16 {
        return Err("at most 16 [[webhooks]] tables".into());
    }
    Ok(())
}

/// The commented example `init` writes at the end of `relay.toml`.
pub const TEMPLATE: &str = r#"
# Webhooks: the relay POSTs JSON to a ticket system (see INTERFACE.md,
# "Webhooks"), signed with HMAC-SHA256 of the body under `secret`
# (header X-Assent-Signature: sha256=HEX) and carrying an idempotency key
# (header Idempotency-Key) that stays the same on every retry. Deliveries
# wait in DATA_DIR/webhooks/outbox.jsonl until the receiver answers 2xx,
# across restarts and crashes. One table per receiver:
# [[webhooks]]
# name = "helpdesk"                       # names it in the audit log
# url = "https://helpdesk.example.com/assent"
# secret = "at least 16 bytes, e.g. from: openssl rand -hex 32"
# events = ["note_filed", "session_summary", "escalation"]
# ca = "/etc/ssl/private-ca.pem"          # optional: a private CA
# timeout_secs = 10                       # one attempt
# retry_initial_ms = 5000                 # first wait, doubled each failure
# retry_max_secs = 3600                   # ... up to this
# give_up_after_secs = 604800             # then webhook_failed
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        webhooks: Vec<Webhook>,
    }

    fn parse(text: &str) -> Result<Vec<Webhook>, String> {
        let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
        validate(&f.webhooks)?;
        Ok(f.webhooks)
    }

    fn hook(url: &str, secret: &str, extra: &str) -> Result<Vec<Webhook>, String> {
        parse(&format!(
            "[[webhooks]]\nname = \"hd\"\nurl = \"{url}\"\nsecret = \"{secret}\"\n{extra}"
        ))
    }

    const SECRET: &str = "0123456789abcdef";

    #[test]
    fn defaults_and_backoff() {
        let h = &hook("https://hd.example/x", SECRET, "").unwrap()[0];
        assert_eq!(h.events, HookEvent::ALL.to_vec());
        assert_eq!(h.backoff(1), Duration::from_secs(5));
        assert_eq!(h.backoff(2), Duration::from_secs(10));
        assert_eq!(h.backoff(3), Duration::from_secs(20));
        assert_eq!(h.backoff(40), Duration::from_secs(3600));
        assert!(!format!("{h:?}").contains(SECRET));
    }

    #[test]
    fn errors_name_the_key_and_never_the_secret() {
        let cases = [
            ("ftp://x", SECRET, "", "url"),
            ("https://h/", SECRET, "events = []", "events"),
            ("https://h/", SECRET, "events = [\"note\"]", "note"),
            ("https://h/", SECRET, "timeout_secs = 0", "timeout_secs"),
            (
                "https://h/",
                SECRET,
                "retry_max_secs = 100000",
                "retry_max_secs",
            ),
            ("https://h/", SECRET, "colour = 1", "colour"),
            ("https://h/", "tooshort", "", "secret"),
        ];
        for (url, secret, extra, key) in cases {
            let err = hook(url, secret, extra).unwrap_err();
            assert!(err.contains(key), "{extra}: {err}");
            assert!(!err.contains("tooshort"), "{err}");
        }
        let twice =
            "[[webhooks]]\nname = \"a\"\nurl = \"http://h/\"\nsecret = \"0123456789abcdef\"\n";
        let err = parse(&format!("{twice}{twice}")).unwrap_err();
        assert!(err.contains("webhooks[1].name"), "{err}");
    }

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_url("https://[::1]:8443/").is_ok());
        assert!(check_url("https://user:pw@h/").is_err());
        assert!(check_url("https:///path").is_err());
        assert!(check_url("https://h/a b").is_err());
    }
}
