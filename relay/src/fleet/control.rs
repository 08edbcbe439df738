//! Kill and revoke from any relay of the fleet: the relay where the admin
//! typed the command acts on what it holds and posts the command to the
//! fleet's control table; every other relay follows the table (LISTEN /
//! NOTIFY only wakes it; it catches up by id after any disconnection) and
//! acts on what it holds.

use std::sync::Arc;
use std::time::Duration;

use assent_fleet::{Control, FleetError, SessionState};
use tracing::{info, warn};

use super::FleetLink;
use crate::registry::Change;
use crate::state::Shared;

/// Applies the fleet's commands posted by other relays until aborted.
pub(super) async fn follow(shared: Arc<Shared>, link: Arc<FleetLink>) {
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
                if crate::admin::kill_local(&shared, &session_id).await {
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
        if let Err(e) = crate::admin::change(shared, change).await {
            warn!(technician = %name, error = %e, "a revocation from the fleet could not be recorded here");
        }
    }
    let n = crate::admin::end_technician(shared, &name).await;
    info!(technician = %name, sessions = n, by = %by, "technician revoked from the fleet");
}

/// Sends an admin's kill to the relay that holds `session` (from the
/// fleet's directory). `Ok(Some(relay))` when posted for that relay,
/// `Ok(None)` when no relay of the fleet holds it.
pub async fn forward_kill(link: &FleetLink, session: &str) -> Result<Option<String>, FleetError> {
    let sessions = link.fleet.sessions().await;
    link.saw(&sessions);
    let Some(row) = sessions?.into_iter().find(|s| s.session_id == session) else {
        return Ok(None);
    };
    if row.state == SessionState::Lost {
        return Ok(None);
    }
    let posted = link
        .fleet
        .post(&Control::Kill {
            session_id: session.to_string(),
        })
        .await;
    link.saw(&posted);
    posted.map(|_| Some(row.relay_id))
}

/// Tells every relay of the fleet that this key is revoked (and marks it
/// so in the fleet's registry, which each new session checks).
pub async fn forward_revoke(link: &FleetLink, fingerprint: &str) -> Result<(), FleetError> {
    let posted = link
        .fleet
        .post(&Control::Revoke {
            technician_key_hex: fingerprint.to_string(),
        })
        .await;
    link.saw(&posted);
    posted.map(drop)
}
