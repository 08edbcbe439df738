//! `Resume`: a side of a live session back on a new connection. The
//! session itself checks the credential and the key (it alone holds them);
//! this finds the session and answers a refusal.

use std::sync::Arc;

use assent_proto::wire::{ErrorKind, Role};
use tokio::sync::oneshot;
use tracing::info;

use super::{refuse_peer, Refusal};
use crate::handover::Control;
use crate::state::{Peer, Reconnect, Shared};

/// What `Resume` carried.
pub(super) struct ResumeAsk {
    pub session: String,
    pub credential: assent_proto::wire::ResumeCredential,
    pub signature: Vec<u8>,
}

pub(super) async fn resume_flow(
    shared: Arc<Shared>,
    peer: Peer,
    role: Role,
    ask: ResumeAsk,
    payload: &[u8],
) {
    let control = shared
        .lock()
        .sessions
        .get(&ask.session)
        .map(|e| e.control.clone());
    let Some(control) = control else {
        return refuse_peer(
            &shared,
            peer,
            role,
            refusal("resume_unknown_session").into(),
        )
        .await;
    };
    let (refused, verdict) = oneshot::channel();
    let reconnect = Reconnect {
        peer,
        role,
        credential: ask.credential,
        payload: payload.to_vec(),
        signature: ask.signature,
        refused,
    };
    if let Err(e) = control.send(Control::Reconnect(Box::new(reconnect))).await {
        let Control::Reconnect(r) = e.0 else { return };
        let r = *r;
        return refuse_peer(&shared, r.peer, role, refusal("resume_not_live").into()).await;
    }
    match verdict.await {
        Ok((peer, reason)) => refuse_peer(&shared, peer, role, refusal(reason).into()).await,
        // Taken: the connection carries the session now.
        Err(_) => info!(
            role = role.as_str(),
            "session carried on by a new connection"
        ),
    }
}

/// One answer for every refusal, so a stranger learns nothing of which
/// check failed (the audit says).
fn refusal(reason: &'static str) -> Refusal {
    Refusal::auth(
        ErrorKind::NotResumable,
        reason,
        "there is no live session to carry on with these credentials",
    )
}
