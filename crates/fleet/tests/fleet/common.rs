//! Shared set-up: a private server, a migrated database, relays on it.

use std::time::Duration;

use assent_audit::{AuditLog, Fields, Record};
use assent_fleet::testing::PgServer;
use assent_fleet::{Fleet, FleetConfig};
use serde_json::json;

pub const LEASE: Duration = Duration::from_secs(60);

/// A server with a migrated database `fleet`; returns the server and URL.
pub async fn migrated() -> (PgServer, String) {
    let pg = PgServer::start().expect("private PostgreSQL");
    let url = pg.create_database("fleet").expect("createdb");
    let report = assent_fleet::migrate(&config(&url, "admin"))
        .await
        .expect("migrate");
    assert_eq!(report.to, assent_fleet::LATEST_VERSION);
    (pg, url)
}

pub fn config(url: &str, relay_id: &str) -> FleetConfig {
    FleetConfig {
        database: url.to_string(),
        relay_id: relay_id.to_string(),
        public_address: format!("{relay_id}.example:4433"),
        ca_file: None,
    }
}

/// A connected, registered relay.
pub async fn relay(url: &str, relay_id: &str) -> Fleet {
    let fleet = Fleet::connect(config(url, relay_id))
        .await
        .expect("connect");
    fleet
        .register(&format!("{relay_id}-key"), LEASE)
        .await
        .expect("register");
    fleet
}

/// `n` real records from a local audit log (with a float, a NUL character
/// and nesting, so storage must keep the exact text to keep the hash).
pub fn records(n: usize) -> Vec<Record> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = AuditLog::open(&dir.path().join("audit.jsonl")).expect("audit log");
    (0..n)
        .map(|i| {
            let mut fields = Fields::new();
            fields.insert("i".into(), json!(i));
            fields.insert("ratio".into(), json!(0.1 + i as f64));
            fields.insert("big".into(), json!(1e300));
            fields.insert("note".into(), json!(format!("line\u{0}{i} \"q\" é")));
            fields.insert("nested".into(), json!({"b": [1, 2.5, null], "a": true}));
            log.append("session_note", fields).expect("append")
        })
        .collect()
}
