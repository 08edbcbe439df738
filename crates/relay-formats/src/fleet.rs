//! `[fleet]` in `relay.toml`: several relays on one PostgreSQL database
//! (ARCHITECTURE.md, "Fleet mode"). Absent: the relay is on its own, with
//! its local files only.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// Longest relay id (it names the relay in every central audit record).
pub const MAX_RELAY_ID: usize = 64;

/// One `[fleet]` table.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    /// `postgres://user:password@host/db?sslmode=…` or a key=value
    /// conninfo. Never logged or shown with its password.
    pub database: String,
    /// This relay's name in the fleet: unique, stable across restarts.
    pub relay_id: String,
    /// `host:port` agents and viewers reach this relay at; another relay
    /// sends an agent here when the agent's code belongs to a technician
    /// connected here.
    pub public_address: String,
    /// PEM file of the CA the database server's certificate must chain
    /// to; without it the URL must say `sslmode=disable` (a Unix socket
    /// or loopback).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds a relay's lease lasts without renewal (renewed every third
    /// of it); after it, its sessions show as lost.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

fn default_lease_secs() -> u64 {
    10
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("database", &"(redacted)")
            .field("relay_id", &self.relay_id)
            .field("public_address", &self.public_address)
            .field("ca_file", &self.ca_file)
            .field("lease_secs", &self.lease_secs)
            .finish()
    }
}

/// Checks the table; the message names the key.
pub fn validate(fleet: &Fleet) -> Result<(), String> {
    let id_ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if fleet.relay_id.is_empty()
        || fleet.relay_id.len() > MAX_RELAY_ID
        || !fleet.relay_id.chars().all(id_ok)
    {
        return Err(format!(
            "fleet.relay_id must be 1 to {MAX_RELAY_ID} letters, digits, '-', '_' or '.'"
        ));
    }
    if fleet.database.trim().is_empty() {
        return Err("fleet.database must name the PostgreSQL database".into());
    }
    let (host, port) = fleet.public_address.rsplit_once(':').unwrap_or(("", ""));
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err("fleet.public_address must be HOST:PORT".into());
    }
    if !(3..=3600).contains(&fleet.lease_secs) {
        return Err("fleet.lease_secs must be between 3 and 3600".into());
    }
    Ok(())
}

/// The commented example `init` writes.
pub const TEMPLATE: &str = r#"
# Fleet mode: several relays on one PostgreSQL database share invites (a
# code redeems on any of them, once), one list of sessions, kill and revoke
# from any relay, and one central audit. Create the schema once with
# `assent-relay fleet migrate --data-dir DIR`. Off while unset.
# [fleet]
# database = "postgres://assent:PASSWORD@db.example.com/assent"
# relay_id = "relay-eu-1"                  # unique and stable
# public_address = "relay-eu-1.example.com:4433"
# ca_file = "/etc/assent/db-ca.pem"        # required unless sslmode=disable
# lease_secs = 10                          # sessions of a relay silent this long show as lost
"#;
