//! A specialist's first ask: the handovers waiting for them, or one to
//! claim. A claim opens the specialist's session like an invite (on record
//! as `invite_created` with `escalated_from`), except that the code goes to
//! the user's agent over the escalated session, never to the specialist,
//! and only the user's device may redeem it.

use std::time::{Duration, Instant};

use assent_net::close;
use assent_proto::identity::PublicKey;
use assent_proto::wire::{ErrorKind, RelayMsg};
use tracing::info;

use super::viewer::{hand_out, record_invite, OpenedInvite};
use super::{Refusal, Stop};
use crate::handover::{secs, ClaimError, Handover, Link, Notice};
use crate::state::{EntryPhase, Peer, Shared};

/// Sends the handovers waiting for `technician`.
pub(super) async fn list(shared: &Shared, peer: &mut Peer, technician: &str) {
    let list = shared
        .lock()
        .handovers
        .waiting_for(technician, Instant::now());
    info!(technician, waiting = list.len(), "handovers listed");
    let _ = assent_net::send_msg(&mut peer.send, &RelayMsg::Handovers { list }).await;
}

/// Closes a listing connection once the viewer had a moment to read it.
pub(super) async fn close_listing(mut peer: Peer) {
    let _ = peer.send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(2), peer.conn.closed()).await;
    peer.conn.close(close::NORMAL, b"listed");
}

/// Takes handover `id` for the specialist and opens their session.
pub(super) async fn claim(
    shared: &Shared,
    peer: &mut Peer,
    (technician, key): (&str, PublicKey),
    id: &str,
) -> Result<OpenedInvite, Stop> {
    let handover = take(shared, technician, id)?;
    let link = Link {
        handover: id.to_string(),
        from: handover.from.clone(),
        from_control: handover.from_control.clone(),
    };
    let escalation = Some((link.clone(), handover.device_key));
    let recorded = record_invite(
        shared,
        (technician, key),
        handover.request.clone(),
        escalation,
    );
    let (opened, code) = match recorded.await {
        Ok(x) => x,
        Err(stop) => {
            link.tell(Notice::Closed {
                reason: "audit_failed",
            })
            .await;
            return Err(stop);
        }
    };
    let claimed = RelayMsg::HandoverClaimed {
        invite: opened.invite.id.clone(),
        request: handover.request,
        from_technician: handover.from.technician,
        trigger: handover.from.trigger,
        expires_in_secs: secs(Duration::from_secs(shared.limits().invite_ttl_secs)),
    };
    if let Err(stop) = hand_out(shared, peer, &opened, &claimed).await {
        let reason = "viewer_left";
        link.tell(Notice::Closed { reason }).await;
        return Err(stop);
    }
    info!(handover = %id, session = %opened.session, "handover claimed");
    let session = opened.session.clone();
    link.tell(Notice::Claimed {
        session,
        code: code.grouped(),
    })
    .await;
    Ok(opened)
}

/// The handover, if it is `technician`'s and its session is still live.
fn take(shared: &Shared, technician: &str, id: &str) -> Result<Handover, Refusal> {
    let mut st = shared.lock();
    let handover = st
        .handovers
        .claim(id, technician, Instant::now())
        .map_err(|e| match e {
            ClaimError::Unknown(_) => Refusal::new(ErrorKind::BadInput, e.to_string()),
            // Someone else's handover: on the record like any attempt on
            // another person's request.
            ClaimError::NotYours(_) => {
                Refusal::auth(ErrorKind::Protocol, "handover_not_yours", e.to_string())
            }
        })?;
    let live = st
        .sessions
        .get(&handover.from.session)
        .is_some_and(|e| e.phase == EntryPhase::Live);
    if !live {
        return Err(Refusal::new(
            ErrorKind::PeerGone,
            "the session to take over has ended",
        ));
    }
    Ok(handover)
}
