//! Kill and revoke from any relay of the fleet: the relay where the admin
//! typed the command acts on what it holds and posts the command to the
//! fleet's control table here; every other relay follows the table
//! (`tasks.rs`) and acts on what it holds.

use assent_fleet::{Control, FleetError, SessionState};

use super::FleetLink;

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
