//! One thread per webhook: POSTs the front of its queue, signed, until the
//! receiver answers 2xx, waiting longer after each failure; then audits the
//! outcome. Deliveries go out in the order they were queued, so a ticket
//! system sees a session's summary before its note.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use assent_relay_formats::outbox::{Outcome, Pending};
use assent_relay_formats::webhooks::Webhook;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::outbox::Outbox;
use crate::audit_writer::AuditHandle;
use crate::fields;

/// The header carrying the signature: `sha256=` and the lowercase hex
/// HMAC-SHA256 of the body under the webhook's secret.
pub const SIGNATURE_HEADER: &str = "X-Assent-Signature";

/// `sha256=HEX`: what the receiver recomputes to check a body.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Deliveries one webhook keeps waiting at most (bodies are held in
/// memory too); beyond, the oldest are given up (`queue_full`).
pub const MAX_QUEUE: usize = 20_000;

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// 2xx.
    Delivered(u16),
    /// Any other status.
    Refused(u16),
    /// No answer: which kind of failure (never the error's text, which may
    /// quote the URL and its token).
    NoAnswer(&'static str),
}

/// The thread's state: its webhook, the client, where results go.
pub struct Worker {
    pub hook: Webhook,
    pub agent: ureq::Agent,
    pub outbox: Arc<Outbox>,
    pub audit: AuditHandle,
    pub runtime: tokio::runtime::Handle,
}

/// A client for one webhook: its timeout, no redirects (a POST is not
/// followed elsewhere), statuses as values, the webhook's CA when it names
/// one.
pub fn agent(hook: &Webhook) -> anyhow::Result<ureq::Agent> {
    use anyhow::Context as _;
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(path) = &hook.ca {
        let pem = std::fs::read(path)
            .with_context(|| format!("webhook {}: reading its ca {path}", hook.name))?;
        let certs = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("webhook {}: {path} is not PEM", hook.name))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "webhook {}: {path} holds no certificate",
            hook.name
        );
        tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)));
    }
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(hook.timeout()))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("assent-relay/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.build())
        .build();
    Ok(config.into())
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Worker {
    /// Runs until the outbox stops.
    pub fn run(self) {
        let name = self.hook.name.clone();
        // Failures in a row: the wait before the next attempt.
        let mut failures = 0u32;
        loop {
            let Some(p) = self.outbox.next(&name, Duration::from_secs(5)) else {
                if !self.outbox.pause(Duration::ZERO) {
                    return;
                }
                continue;
            };
            if self.outbox.queued(&name) > MAX_QUEUE {
                // A receiver down for very long: the oldest go, on record
                // (the audit log keeps what they said).
                self.outbox.finish(&name, Outcome::Failed);
                let (status, attempts) = (p.last_status, p.attempts);
                self.audit_outcome(&p, "webhook_failed", status, attempts, Some("queue_full"));
                continue;
            }
            let attempts = p.attempts.saturating_add(1);
            let (status, error) = match self.post(&p, attempts) {
                Attempt::Delivered(status) => {
                    failures = 0;
                    self.outbox.finish(&name, Outcome::Delivered);
                    tracing::info!(webhook = %name, key = %p.queued.key, status, attempts, "webhook delivered");
                    self.audit_outcome(&p, "webhook_delivered", status, attempts, None);
                    continue;
                }
                Attempt::Refused(status) => (status, "status"),
                Attempt::NoAnswer(kind) => (0, kind),
            };
            failures = failures.saturating_add(1);
            if !self.failed(&p, (attempts, failures), status, error) {
                return;
            }
        }
    }

    /// After a failed attempt: gives the delivery up when it is too old,
    /// else waits before the next. `false` when the relay is stopping.
    fn failed(
        &self,
        p: &Pending,
        (attempts, failures): (u32, u32),
        status: u16,
        error: &str,
    ) -> bool {
        let name = &self.hook.name;
        self.outbox.attempted(name, attempts, status);
        if self.expired(p) {
            self.outbox.finish(name, Outcome::Failed);
            tracing::warn!(webhook = %name, key = %p.queued.key, status, error, attempts, "webhook given up");
            self.audit_outcome(p, "webhook_failed", status, attempts, Some(error));
            return true;
        }
        let wait = self.hook.backoff(failures);
        tracing::warn!(webhook = %name, key = %p.queued.key, status, error, attempts, retry_in_ms = wait.as_millis() as u64, "webhook attempt failed");
        self.outbox.pause(wait)
    }

    /// Older than `give_up_after_secs` since it was queued.
    fn expired(&self, p: &Pending) -> bool {
        let age = unix_ms(SystemTime::now()).saturating_sub(p.queued.queued_at);
        Duration::from_millis(age) >= self.hook.give_up_after()
    }

    fn post(&self, p: &Pending, attempt: u32) -> Attempt {
        let body = p.queued.body.as_bytes();
        let sent = self
            .agent
            .post(&self.hook.url)
            .header("Content-Type", "application/json")
            .header("X-Assent-Event", &p.queued.event)
            .header("X-Assent-Delivery", &p.queued.key)
            .header("Idempotency-Key", &p.queued.key)
            .header("X-Assent-Attempt", attempt.to_string())
            .header(
                SIGNATURE_HEADER,
                signature(self.hook.secret.as_bytes(), body),
            )
            .send(body);
        match sent {
            Ok(r) if r.status().is_success() => Attempt::Delivered(r.status().as_u16()),
            Ok(r) => Attempt::Refused(r.status().as_u16()),
            Err(e) => Attempt::NoAnswer(kind(&e)),
        }
    }

    /// `webhook_delivered` / `webhook_failed`: which webhook, which record,
    /// the status and attempts; never the URL, the secret or the body.
    fn audit_outcome(
        &self,
        p: &Pending,
        event: &str,
        status: u16,
        attempts: u32,
        error: Option<&str>,
    ) {
        let session = serde_json::from_str::<serde_json::Value>(&p.queued.body)
            .ok()
            .and_then(|b| b["session"]["id"].as_str().map(str::to_string))
            .unwrap_or_default();
        let mut fields = fields! {
            "webhook" => self.hook.name, "type" => p.queued.event,
            "key" => p.queued.key, "audit_seq" => p.queued.seq,
            "session" => session, "status" => status, "attempts" => attempts,
        };
        if let Some(error) = error {
            fields.insert("error".into(), error.into());
        }
        if let Err(e) = self.runtime.block_on(self.audit.record(event, fields)) {
            tracing::warn!(webhook = %self.hook.name, error = %e, "{event} not recorded");
        }
    }
}

/// A word for why no answer came.
fn kind(e: &ureq::Error) -> &'static str {
    match e {
        ureq::Error::Timeout(_) => "timeout",
        ureq::Error::HostNotFound => "host_not_found",
        ureq::Error::ConnectionFailed => "connection_failed",
        ureq::Error::Io(_) => "io",
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => "tls",
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => "redirect",
        _ => "protocol",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe".
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
