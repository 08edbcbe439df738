//! Fleet mode (`[fleet]` in relay.toml): this relay's link to the fleet's
//! PostgreSQL database (`assent-fleet`). The relay stays the authority for
//! what it does; the database adds what one relay cannot know alone:
//!
//! - a lease, renewed every third of `lease_secs` (here), so the other
//!   relays show this relay's sessions as lost when it dies;
//! - the central audit: the local hash-chained log is shipped as it grows
//!   (`ship.rs`), and the directory of live sessions follows from the
//!   `session_start` / `session_end` records it ships (so a crash's
//!   recovered ends reach it too);
//! - kill and revoke from any relay (`control.rs` posts, `tasks.rs`
//!   follows what the others post).
//!
//! While the database is unreachable, established sessions go on, the
//! audit keeps appending locally and ships when it is back, and whatever
//! needs the fleet (a new invite, a technician's revocation check) is
//! refused with a clear error rather than served from stale state.

pub mod cli;
mod control;
mod ship;
pub mod tasks;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use assent_fleet::{Fleet, FleetConfig, FleetError};
use assent_proto::invite::InviteCode;
use assent_relay_formats::fleet::Fleet as FleetSettings;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use tracing::{info, warn};

use crate::store::DataDir;

pub use control::{forward_kill, forward_revoke};
pub use ship::{ship_rest, Shipper};

/// This relay's handle on the fleet.
pub struct FleetLink {
    pub fleet: Fleet,
    pub relay_id: String,
    pub public_address: String,
    lease: Duration,
    /// This relay's key (hex), registered with its first lease.
    key_hex: String,
    /// The fleet's secret (`tls/fleet.key`, the same on every relay): the
    /// database holds invite codes only as digests keyed with it.
    code_key: [u8; 32],
    /// Whether the relay is registered (it may start while the database
    /// is down, and registers when it is back).
    registered: AtomicBool,
    /// Whether the database answered the last time it was asked.
    up: AtomicBool,
}

impl FleetLink {
    /// Registers this relay with its signing key, taking its first lease.
    /// A bad address or another relay's key under this id is an error at
    /// start (named without the password); a database that is down is
    /// not: the relay serves, refuses new sessions, and registers when
    /// the database is back.
    pub async fn join(
        dir: &DataDir,
        settings: &FleetSettings,
        relay_key: &assent_proto::identity::PublicKey,
    ) -> anyhow::Result<Arc<FleetLink>> {
        let code_key = crate::store::load_fleet_key(dir)?;
        let link = Arc::new(FleetLink {
            fleet: Fleet::configure(fleet_config(settings))
                .context("the [fleet] database setting")?,
            relay_id: settings.relay_id.clone(),
            public_address: settings.public_address.clone(),
            lease: Duration::from_secs(settings.lease_secs),
            key_hex: hex::encode(relay_key.0),
            code_key,
            registered: AtomicBool::new(false),
            up: AtomicBool::new(true),
        });
        match link.register().await {
            Err(e @ FleetError::Unavailable(_)) => link.saw::<()>(&Err(e)),
            other => other
                .with_context(|| format!("registering relay {} in the fleet", settings.relay_id))?,
        }
        Ok(link)
    }

    /// A link that has not asked the database anything (Fleet::configure
    /// connects lazily), for tests of what the relay does locally.
    #[cfg(test)]
    pub(crate) fn unconnected(relay_id: &str) -> Arc<FleetLink> {
        let config = FleetConfig {
            database: "host=127.0.0.1 port=9 user=nobody sslmode=disable".into(),
            relay_id: relay_id.into(),
            public_address: "127.0.0.1:9".into(),
            ca_file: None,
        };
        Arc::new(FleetLink {
            fleet: Fleet::configure(config).expect("a valid conninfo"),
            relay_id: relay_id.into(),
            public_address: "127.0.0.1:9".into(),
            lease: Duration::from_secs(10),
            key_hex: String::new(),
            code_key: [7; 32],
            registered: AtomicBool::new(false),
            up: AtomicBool::new(true),
        })
    }

    /// [`FleetLink::join`] when relay.toml has a `[fleet]` table.
    pub async fn join_if(
        dir: &DataDir,
        settings: Option<&FleetSettings>,
        relay_key: &assent_proto::identity::PublicKey,
    ) -> anyhow::Result<Option<Arc<FleetLink>>> {
        match settings {
            Some(s) => Ok(Some(FleetLink::join(dir, s, relay_key).await?)),
            None => Ok(None),
        }
    }

    /// Registers (once) or renews the lease.
    async fn register(&self) -> Result<(), FleetError> {
        if self.registered.load(Ordering::Relaxed) {
            return self.fleet.renew_lease(self.lease).await.map(drop);
        }
        self.fleet.register(&self.key_hex, self.lease).await?;
        self.registered.store(true, Ordering::Relaxed);
        info!(relay_id = %self.relay_id, "joined the fleet");
        Ok(())
    }

    /// The fleet's name for an invite code: the code itself is never
    /// stored, and without the fleet key whoever reads the database cannot
    /// search the code space for it offline.
    pub fn code_digest(&self, code: &InviteCode) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.code_key).expect("any key length");
        mac.update(b"assent fleet invite code\0");
        mac.update(code.grouped().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether the database answered the last time it was asked.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Notes a call's outcome; logs the moments the database goes and
    /// comes back (not every failed call).
    pub fn saw<T>(&self, result: &Result<T, FleetError>) {
        let ok = match result {
            Ok(_) => true,
            Err(e) => !matches!(e, FleetError::Unavailable(_)),
        };
        if self.up.swap(ok, Ordering::Relaxed) != ok {
            match (ok, result) {
                (true, _) => info!("the fleet database is reachable again"),
                (false, Err(e)) => {
                    warn!(error = %e, "the fleet database is unreachable: established sessions go on, new ones that need it are refused")
                }
                (false, Ok(_)) => {}
            }
        }
    }
}

/// Opens the fleet database named in `[fleet]` (for the admin's commands).
pub async fn connect(settings: &FleetSettings) -> anyhow::Result<Fleet> {
    Fleet::connect(fleet_config(settings))
        .await
        .context("connecting to the fleet database")
}

fn fleet_config(settings: &FleetSettings) -> FleetConfig {
    FleetConfig {
        database: settings.database.clone(),
        relay_id: settings.relay_id.clone(),
        public_address: settings.public_address.clone(),
        ca_file: settings.ca_file.clone(),
    }
}

/// Renews the lease every third of its length (registering first if the
/// database was down at start).
pub(crate) async fn keep_lease(link: Arc<FleetLink>) {
    let mut tick = tokio::time::interval(link.lease / 3);
    loop {
        tick.tick().await;
        let renewed = link.register().await;
        if let Err(e @ FleetError::KeyMismatch(_)) = &renewed {
            tracing::error!(error = %e, "this relay id belongs to another relay key in the fleet");
        }
        link.saw(&renewed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_codes_reach_the_database_only_as_digests_keyed_with_the_fleet_key() {
        let code = InviteCode::parse("123-456-789-012-345").expect("a code");
        let a = FleetLink::unconnected("relay-a");
        let b = FleetLink::unconnected("relay-b");
        assert_eq!(a.code_digest(&code), b.code_digest(&code), "one fleet key");
        let other_fleet = FleetLink {
            code_key: [8; 32],
            ..Arc::into_inner(FleetLink::unconnected("relay-c")).unwrap()
        };
        assert_ne!(other_fleet.code_digest(&code), a.code_digest(&code));
        let other_code = InviteCode::parse("123-456-789-012-346").unwrap();
        assert_ne!(a.code_digest(&other_code), a.code_digest(&code));
        let digest = hex::encode(a.code_digest(&code));
        assert!(!digest.contains("123456789012345"));
    }
}
