//! Errors, with the database password scrubbed out of every message.
//!
//! Errors end up in logs, audit fields and admin replies. The connection
//! string may carry a password, and the underlying client's messages may echo
//! parts of it, so every message is redacted when the error is built and the
//! error keeps only strings (never the client's error value, whose `Debug`
//! could print more than its `Display`).

use std::fmt;

/// What went wrong talking to the fleet database.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The configuration cannot work: a malformed connection string, an
    /// unreadable CA file, TLS asked for without a CA.
    #[error("fleet configuration: {0}")]
    Config(String),
    /// The database cannot be reached (refused, timed out, connection lost).
    /// Retrying later may succeed.
    #[error("fleet database unavailable: {0}")]
    Unavailable(String),
    /// The server refused a statement (`code` is the SQLSTATE).
    #[error("fleet database error {code}: {message}")]
    Db { code: String, message: String },
    /// The audit triggers refused a record: a gap in `seq` or a `prev` that
    /// does not match the stored chain.
    #[error("central audit refused the chain: {0}")]
    ChainRefused(String),
    /// A record already stored for this relay and seq has another hash: the
    /// local log and the central copy disagree.
    #[error("central audit conflict: relay {relay_id} seq {seq} is stored with another hash")]
    Conflict { relay_id: String, seq: u64 },
    /// A record handed to `ship` is not a valid link of a chain.
    #[error("audit record seq {seq} cannot be shipped: {reason}")]
    BadRecord { seq: u64, reason: String },
    /// This relay id is registered with a different public key.
    #[error("relay {0} is already registered with a different public key")]
    KeyMismatch(String),
    /// This relay id has not been registered.
    #[error("relay {0} is not registered")]
    NotRegistered(String),
    /// The database was migrated by a newer version of this crate.
    #[error("fleet schema version {found} is newer than this build knows ({known})")]
    SchemaTooNew { found: i32, known: i32 },
    /// The database returned data that does not fit (a value out of range,
    /// a malformed JSON document). Reported, never a panic.
    #[error("fleet database returned unexpected data: {0}")]
    Corrupt(String),
}

/// Why an invite code was not redeemed, or that the database failed.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error("unknown invite code")]
    Unknown,
    #[error("invite expired")]
    Expired,
    #[error("invite already used")]
    Used,
    #[error("invite withdrawn")]
    Withdrawn,
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

/// Secrets to scrub from messages: the password of the connection string.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Redactor(..)")
    }
}

impl Redactor {
    /// Collects the password from the raw connection string itself, so it is
    /// known even when the string does not parse.
    pub(crate) fn for_conninfo(raw: &str) -> Redactor {
        let mut secrets = Vec::new();
        if let Some(p) = url_password(raw) {
            secrets.push(p.to_string());
            if let Some(decoded) = percent_decode(p) {
                secrets.push(decoded);
            }
        }
        if let Some(p) = keyword_password(raw) {
            secrets.push(p);
        }
        secrets.retain(|s| !s.is_empty());
        Redactor { secrets }
    }

    pub(crate) fn add(&mut self, secret: &[u8]) {
        if let Ok(s) = std::str::from_utf8(secret) {
            if !s.is_empty() && !self.secrets.iter().any(|x| x == s) {
                self.secrets.push(s.to_string());
            }
        }
    }

    pub(crate) fn scrub(&self, message: &str) -> String {
        let mut out = message.to_string();
        // Longest first, so a secret containing another is replaced whole.
        let mut secrets: Vec<&String> = self.secrets.iter().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for s in secrets {
            out = out.replace(s.as_str(), "***");
        }
        out
    }

    /// Maps a client error to a [`FleetError`], classifying by SQLSTATE:
    /// the audit triggers raise `AS001` and `AS002` for chain refusals.
    pub(crate) fn pg(&self, e: &tokio_postgres::Error) -> FleetError {
        if let Some(db) = e.as_db_error() {
            let mut message = db.message().to_string();
            if let Some(detail) = db.detail() {
                message = format!("{message} ({detail})");
            }
            let message = self.scrub(&message);
            let code = db.code().code().to_string();
            return match code.as_str() {
                "AS001" | "AS002" => FleetError::ChainRefused(message),
                "57P01" | "57P02" | "57P03" => FleetError::Unavailable(message),
                _ => FleetError::Db { code, message },
            };
        }
        FleetError::Unavailable(self.scrub(&error_chain(e)))
    }

    pub(crate) fn pool(&self, e: &deadpool_postgres::PoolError) -> FleetError {
        use deadpool_postgres::PoolError;
        match e {
            PoolError::Backend(pg) => self.pg(pg),
            PoolError::Timeout(_) => FleetError::Unavailable(
                "timed out connecting to the database (is it running and reachable?)".into(),
            ),
            other => FleetError::Unavailable(self.scrub(&other.to_string())),
        }
    }
}

/// `Display` of an error and its sources, e.g. "error connecting to server:
/// Connection refused (os error 111)".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The password of `scheme://user:password@host...`, still percent-encoded.
fn url_password(raw: &str) -> Option<&str> {
    let rest = &raw[raw.find("://")? + 3..];
    let at = rest.rfind('@')?;
    let userinfo = &rest[..at];
    let colon = userinfo.find(':')?;
    Some(&userinfo[colon + 1..])
}

/// The value of `password=...` in a key=value conninfo (quoted or not).
fn keyword_password(raw: &str) -> Option<String> {
    let idx = raw.find("password")?;
    let rest = raw[idx + "password".len()..].trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    if let Some(quoted) = rest.strip_prefix('\'') {
        let mut value = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '\'' => break,
                c => value.push(c),
            }
        }
        Some(value)
    } else {
        Some(
            rest.split(|c: char| c.is_whitespace() || c == '&')
                .next()?
                .to_string(),
        )
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `raw` with its password replaced by `***`, for `Debug` of the config.
pub(crate) fn redact_conninfo(raw: &str) -> String {
    Redactor::for_conninfo(raw).scrub(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_passwords_in_both_forms() {
        let r = Redactor::for_conninfo("postgres://relay:s3cr%40t@db.example:5432/assent");
        assert_eq!(r.scrub("x s3cr%40t y s3cr@t"), "x *** y ***");
        let r = Redactor::for_conninfo("host=db user=relay password='a b\\'c' dbname=a");
        assert_eq!(r.scrub("[a b'c]"), "[***]");
        let r = Redactor::for_conninfo("host=db password=hunter2 dbname=a");
        assert_eq!(r.scrub("password=hunter2"), "password=***");
        assert_eq!(
            redact_conninfo("postgresql://u:pw@h/d?sslmode=disable"),
            "postgresql://u:***@h/d?sslmode=disable"
        );
        assert!(Redactor::for_conninfo("postgres://u@h/d")
            .secrets
            .is_empty());
    }
}
