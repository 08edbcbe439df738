//! The fleet's tasks in a serving relay: the lease, the control feed that
//! applies the other relays' kills and revocations here (LISTEN / NOTIFY
//! only wakes it; it catches up by id after any disconnection), and the
//! audit shipper. They stop with the relay (aborted with its helpers; the
//! shipper's last batch is sent by [`super::ship_rest`]).

use std::sync::Arc;
use std::time::Duration;

use assent_fleet::Control;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{keep_lease, FleetLink, Shipper};
use crate::registry::Change;
use crate::state::Shared;

/// Starts the lease, the control feed and the shipper.
pub fn spawn(shared: &Arc<Shared>, link: &Arc<FleetLink>) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let shipper = Shipper::new(link.clone(), &shared.dir.audit(), &shared.signing)?;
    Ok(vec![
        tokio::spawn(keep_lease(link.clone())),
        tokio::spawn(follow(shared.clone(), link.clone())),
        tokio::spawn(shipper.run()),
    ])
}

/// Applies the fleet's commands posted by other relays until aborted.
async fn follow(shared: Arc<Shared>, link: Arc<FleetLink>) {
    // From now on: a command posted before this start concerned sessions
    // this relay did not hold (a revoked key is also refused by the check
    // each new session makes against the database).
    let after = loop {
        let last = link.fleet.last_control_id().await;
        link.saw(&last);
        match last {
            Ok(id) => break id,
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    };
    let mut feed = link.fleet.control_feed(after);
    while let Some(event) = feed.recv().await {
        if event.issued_by == link.relay_id {
            continue;
        }
        match event.control {
            Control::Kill { session_id } => {
                if crate::actions::kill_local(&shared, &session_id).await {
                    info!(session = %session_id, by = %event.issued_by, "admin kill from the fleet");
                }
            }
            Control::Revoke { technician_key_hex } => {
                revoke_local(&shared, &technician_key_hex, &event.issued_by).await;
            }
        }
    }
}

/// A revocation made on another relay, made here too (audited here as
/// any revocation) and its sessions here ended.
async fn revoke_local(shared: &Shared, fingerprint: &str, by: &str) {
    let Some((name, revoked)) = shared.technicians.name_of(fingerprint) else {
        return;
    };
    if !revoked {
        let change = Change::Revoke { name: name.clone() };
        if let Err(e) = crate::actions::change(shared, change).await {
            warn!(technician = %name, error = %e, "a revocation from the fleet could not be recorded here");
        }
    }
    let n = crate::actions::end_technician(shared, &name).await;
    info!(technician = %name, sessions = n, by = %by, "technician revoked from the fleet");
}
