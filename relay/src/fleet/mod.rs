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
//! - kill and revoke from any relay (`control.rs`).
//!
//! While the database is unreachable, established sessions go on, the
//! audit keeps appending locally and ships when it is back, and whatever
//! needs the fleet (a new invite, a technician's revocation check) is
//! refused with a clear error rather than served from stale state.

pub mod cli;
mod control;
mod ship;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use assent_fleet::{Fleet, FleetConfig, FleetError};
use assent_relay_formats::fleet::Fleet as FleetSettings;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::state::Shared;

pub use control::{forward_kill, forward_revoke};
pub use ship::{ship_rest, Shipper};

/// This relay's handle on the fleet.
pub struct FleetLink {
    pub fleet: Fleet,
    pub relay_id: String,
    pub public_address: String,
    lease: Duration,
    /// Whether the database answered the last time it was asked.
    up: AtomicBool,
}

impl FleetLink {
    /// Connects (a bad address or a database that is down is an error at
    /// start, named without its password) and registers this relay with
    /// its signing key, taking its first lease.
    pub async fn join(
        settings: &FleetSettings,
        relay_key: &assent_proto::identity::PublicKey,
    ) -> anyhow::Result<Arc<FleetLink>> {
        let fleet = connect(settings).await?;
        let lease = Duration::from_secs(settings.lease_secs);
        fleet
            .register(&hex::encode(relay_key.0), lease)
            .await
            .with_context(|| format!("registering relay {} in the fleet", settings.relay_id))?;
        info!(relay_id = %settings.relay_id, "joined the fleet");
        Ok(Arc::new(FleetLink {
            fleet,
            relay_id: settings.relay_id.clone(),
            public_address: settings.public_address.clone(),
            lease,
            up: AtomicBool::new(true),
        }))
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

/// Opens the fleet database named in `[fleet]`.
pub async fn connect(settings: &FleetSettings) -> anyhow::Result<Fleet> {
    let config = FleetConfig {
        database: settings.database.clone(),
        relay_id: settings.relay_id.clone(),
        public_address: settings.public_address.clone(),
        ca_file: settings.ca_file.clone(),
    };
    Fleet::connect(config)
        .await
        .context("connecting to the fleet database")
}

/// The fleet's tasks for a serving relay: the lease, the control feed and
/// the audit shipper. They stop with the relay (aborted with its helpers;
/// the shipper's last batch is sent by [`ship_rest`]).
pub fn spawn(shared: &Arc<Shared>, link: &Arc<FleetLink>) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let shipper = Shipper::new(link.clone(), &shared.dir.audit(), &shared.signing)?;
    Ok(vec![
        tokio::spawn(keep_lease(link.clone())),
        tokio::spawn(control::follow(shared.clone(), link.clone())),
        tokio::spawn(shipper.run()),
    ])
}

/// Renews the lease every third of its length.
async fn keep_lease(link: Arc<FleetLink>) {
    let mut tick = tokio::time::interval(link.lease / 3);
    loop {
        tick.tick().await;
        let renewed = link.fleet.renew_lease(link.lease).await;
        link.saw(&renewed);
    }
}
