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
use assent_relay_formats::fleet::Fleet as FleetSettings;
use tracing::{info, warn};

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
        settings: &FleetSettings,
        relay_key: &assent_proto::identity::PublicKey,
    ) -> anyhow::Result<Arc<FleetLink>> {
        let link = Arc::new(FleetLink {
            fleet: Fleet::configure(fleet_config(settings))
                .context("the [fleet] database setting")?,
            relay_id: settings.relay_id.clone(),
            public_address: settings.public_address.clone(),
            lease: Duration::from_secs(settings.lease_secs),
            key_hex: hex::encode(relay_key.0),
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

    /// [`FleetLink::join`] when relay.toml has a `[fleet]` table.
    pub async fn join_if(
        settings: Option<&FleetSettings>,
        relay_key: &assent_proto::identity::PublicKey,
    ) -> anyhow::Result<Option<Arc<FleetLink>>> {
        match settings {
            Some(s) => Ok(Some(FleetLink::join(s, relay_key).await?)),
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
