//! Fleet mode at the door: what a new session asks of the fleet's database
//! before it may start. A database that does not answer refuses the new
//! session with a clear message rather than letting stale state decide
//! (a revocation must never be missed); sessions already live go on.

use std::time::Duration;

use assent_fleet::{NewInvite, RedeemError};
use assent_proto::identity::PublicKey;
use assent_proto::invite::InviteCode;
use assent_proto::wire::ErrorKind;
use assent_relay_formats::technicians::KeyStatus;
use tracing::info;

use super::Refusal;
use crate::registry::Change;
use crate::state::Shared;

/// What the fleet's shared wrong-code budget counts over.
const CODE_WINDOW: Duration = Duration::from_secs(60);

fn unreachable_db() -> Refusal {
    Refusal::new(
        ErrorKind::Busy,
        "the relay cannot reach its fleet database, so it starts no new session; try again in a minute",
    )
}

/// A technician revoked on any relay of the fleet is refused here too.
pub(super) async fn check_technician(shared: &Shared, key: &PublicKey) -> Result<(), Refusal> {
    let Some(link) = &shared.fleet else {
        return Ok(());
    };
    let revoked = link.fleet.is_revoked(&key.fingerprint()).await;
    link.saw(&revoked);
    match revoked {
        Ok(false) => Ok(()),
        Ok(true) => Err(Refusal::auth(
            ErrorKind::TechnicianRevoked,
            "technician_revoked",
            "this technician key has been revoked in the fleet; ask the relay admin",
        )),
        Err(_) => Err(unreachable_db()),
    }
}

/// A technician enrolled on another relay of the fleet and unknown here is
/// enrolled here too, through the same audit-first path as an admin's
/// `technician add` (`technician_added`), before the key is checked.
pub(super) async fn enrol_from_fleet(shared: &Shared, key: &PublicKey) {
    let Some(link) = &shared.fleet else { return };
    if !matches!(shared.technicians.status(key), KeyStatus::Unknown) {
        return;
    }
    let fingerprint = key.fingerprint();
    let listed = link.fleet.technicians().await;
    link.saw(&listed);
    let Some(t) = listed
        .ok()
        .into_iter()
        .flatten()
        .find(|t| t.key_hex == fingerprint)
    else {
        return;
    };
    let Some(name) = t.document.get("name").and_then(|n| n.as_str()) else {
        return;
    };
    if t.revoked {
        return;
    }
    let change = Change::Add {
        name: name.to_string(),
        key: key.to_line(),
    };
    match crate::actions::change(shared, change).await {
        Ok(_) => info!(technician = %name, "enrolled from the fleet's registry"),
        Err(e) => {
            tracing::warn!(technician = %name, error = %e, "could not enrol a technician of the fleet here")
        }
    }
}

/// Puts a new invite where every relay of the fleet can find its relay.
pub(super) async fn publish_invite(
    shared: &Shared,
    code: &InviteCode,
    (invite_id, technician, session): (&str, &str, &str),
) -> Result<(), Refusal> {
    let Some(link) = &shared.fleet else {
        return Ok(());
    };
    let invite = NewInvite {
        invite_id: invite_id.to_string(),
        code_digest: link.code_digest(code),
        technician: technician.to_string(),
        session_id: session.to_string(),
        expires_in: Duration::from_secs(shared.limits().invite_ttl_secs),
    };
    let created = link.fleet.create_invite(&invite).await;
    link.saw(&created);
    created.map_err(|_| unreachable_db())
}

/// Marks a code redeemed here as used in the fleet too, so another relay
/// answers "already used" rather than sending the agent here again.
pub(super) fn spent_here(shared: &Shared, typed: &str) {
    let (Some(link), Some(code)) = (shared.fleet.clone(), InviteCode::parse(typed)) else {
        return;
    };
    let digest = link.code_digest(&code);
    tokio::spawn(async move {
        let _ = link.fleet.redeem(&digest).await;
    });
}

/// A code this relay does not know: the relay of the fleet that holds it
/// (`host:port`), or why not. The fleet's shared window of wrong codes is
/// read before the code is looked at and counts each code no relay knows,
/// so adding relays does not multiply an attacker's guesses while honest
/// agents sent on to their technician's relay spend none of it
/// (ARCHITECTURE.md, the brute-force arithmetic).
pub(super) async fn holder_of(shared: &Shared, typed: &str) -> Option<Result<String, Refusal>> {
    let link = shared.fleet.as_ref()?;
    let code = InviteCode::parse(typed)?;
    let budget = u64::from(shared.limits().code_failures_per_minute);
    let failures = link.fleet.code_failures(CODE_WINDOW).await;
    link.saw(&failures);
    match failures {
        Ok(n) if u64::from(n) >= budget => {
            return Some(Err(Refusal::auth(
                ErrorKind::Throttled,
                "throttled_global",
                "the relay is not accepting codes right now; try again in 60 s",
            )))
        }
        Ok(_) => {}
        Err(_) => return Some(Err(unreachable_db())),
    }
    let local = |e| Some(Err(super::code_refusal(e)));
    use assent_proto::invite::RedeemError as Local;
    match link.fleet.redeem(&link.code_digest(&code)).await {
        Ok(r) if r.relay_id != link.relay_id => {
            info!(relay = %r.relay_id, invite = %r.invite_id, "the code belongs to another relay: redirecting the agent");
            Some(Ok(r.public_address))
        }
        // Ours, yet not in our book: it ended here already.
        Ok(_) => None,
        Err(RedeemError::Unknown) => {
            let counted = link.fleet.code_failure(CODE_WINDOW).await;
            link.saw(&counted);
            None
        }
        Err(RedeemError::Expired) => local(Local::Expired),
        Err(RedeemError::Used) => local(Local::Used),
        Err(RedeemError::Withdrawn) => local(Local::Withdrawn),
        Err(RedeemError::Fleet(_)) => Some(Err(unreachable_db())),
    }
}
