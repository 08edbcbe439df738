//! What an admin's command does to a serving relay, whichever relay of a
//! fleet it was typed on: end a session, change the technician registry
//! through its one audit-first path, end a revoked technician's sessions.
//! The admin socket (`admin.rs`) and the fleet's control feed
//! (`fleet/control.rs`) both act through these.

use assent_audit::Fields;
use assent_proto::session::Event;
use tracing::warn;

use crate::handover::Control;
use crate::registry::{Change, ChangeError, Technician};
use crate::state::Shared;

/// Tells a session's task to end as an admin kill; whether it was there.
pub async fn kill_local(shared: &Shared, session: &str) -> bool {
    let tx = shared
        .lock()
        .sessions
        .get(session)
        .map(|e| e.control.clone());
    match tx {
        Some(tx) => tx.send(Control::Machine(Event::AdminKill)).await.is_ok(),
        None => false,
    }
}

/// A registry change through the one audit-first path, its record written
/// by the relay's audit writer.
pub async fn change(shared: &Shared, change: Change) -> Result<Technician, ChangeError> {
    let record = async |event: String, fields: Fields| {
        shared
            .audit
            .record(&event, fields)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let result = shared
        .technicians
        .change(&shared.dir, &change, record)
        .await;
    if let Err(e) = &result {
        warn!(error = %e, "technician change refused");
    }
    result
}

/// A revocation's effect, once it is on record and in the registry: the
/// technician's pending invites are cancelled and sessions end. Returns how
/// many sessions were told to end.
pub async fn end_technician(shared: &Shared, technician: &str) -> usize {
    let targets: Vec<_> = {
        let mut st = shared.lock();
        st.invites.cancel_technician(technician);
        st.sessions
            .values()
            .filter(|e| e.technician == technician)
            .map(|e| e.control.clone())
            .collect()
    };
    let n = targets.len();
    for tx in targets {
        let _ = tx.send(Control::Machine(Event::TechnicianRevoked)).await;
    }
    n
}
