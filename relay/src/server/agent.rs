//! The user's side of authentication: the device key's signature, the
//! invite code (throttled), and the hand-over to the waiting session.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use assent_proto::identity::PublicKey;
use assent_proto::invite::{Invite, RedeemError};
use assent_proto::limits::Throttle;
use assent_proto::text;
use assent_proto::wire::{ErrorKind, RelayMsg, Role};
use tokio::sync::oneshot;
use tracing::info;

use super::{refuse_peer, Refusal};
use crate::state::{AgentArrival, Peer, Shared};

pub(super) async fn agent_flow(
    shared: Arc<Shared>,
    peer: Peer,
    join: AgentJoin,
    payload: &[u8],
    signature: &[u8],
) {
    let AgentJoin {
        code,
        device,
        device_key,
    } = join;
    if device_key.verify(payload, signature).is_err() {
        let r = Refusal::auth(
            ErrorKind::BadSignature,
            "bad_signature",
            "the device key signature does not match this connection",
        );
        return refuse_peer(&shared, peer, Role::Agent, r.into()).await;
    }
    let device = match text::single_line("device name", &device, text::MAX_NAME) {
        Ok(d) => d,
        Err(e) => {
            let r = Refusal::new(ErrorKind::BadInput, e.to_string());
            return refuse_peer(&shared, peer, Role::Agent, r.into()).await;
        }
    };
    // Before the code is looked at: a busy relay spends no code.
    if let Err(r) = super::admit(&shared, Role::Agent, peer.addr).await {
        return refuse_peer(&shared, peer, Role::Agent, r.into()).await;
    }
    let redeemed = match redeem_code(&shared, peer.addr.ip(), &code) {
        // Fleet mode: a code unknown here may be another relay's.
        Err(r) if r.audit_reason == Some("bad_code") => {
            let refusal = match super::fleet_gate::holder_of(&shared, &code).await {
                Some(Ok(relay)) => return redirect(peer, relay).await,
                Some(Err(fleet_refusal)) => fleet_refusal,
                None => r,
            };
            // Not another relay's either: a wrong code, counted now.
            if shared.fleet.is_some() {
                let now = Instant::now();
                shared.lock().code_guard.failed(&peer.addr.ip(), now);
            }
            Err(refusal)
        }
        other => other,
    };
    if redeemed.is_ok() {
        super::fleet_gate::spent_here(&shared, &code);
    }
    drop(code);
    let handoff = redeemed.and_then(|invite| {
        hand_to_session(&shared, &invite, (&device, device_key)).map(|tx| (invite, tx))
    });
    let (invite, tx) = match handoff {
        Ok(x) => x,
        Err(r) => return refuse_peer(&shared, peer, Role::Agent, r.into()).await,
    };
    info!(invite = %invite.id, device = %device, "agent joined");
    let arrival = AgentArrival {
        peer,
        device,
        device_key,
    };
    if let Err(arrival) = tx.send(arrival) {
        let r = Refusal::new(ErrorKind::PeerGone, "the technician has left");
        refuse_peer(&shared, arrival.peer, Role::Agent, r.into()).await;
    }
}

/// What an agent presented when it joined.
pub(super) struct AgentJoin {
    pub(super) code: String,
    pub(super) device: String,
    pub(super) device_key: PublicKey,
}

/// Sends the agent to the relay of the fleet that holds its code.
async fn redirect(mut peer: Peer, relay: String) {
    let _ = assent_net::send_msg(&mut peer.send, &RelayMsg::Redirect { relay }).await;
    let _ = peer.send.finish();
    // The agent closes once it has read it; do not wait long for it.
    let _ = tokio::time::timeout(Duration::from_millis(500), peer.conn.closed()).await;
    peer.conn.close(assent_net::close::REFUSED, b"redirected");
}

/// Checks the throttles and redeems the code under one lock, so two
/// guesses cannot race the guard.
fn redeem_code(shared: &Shared, ip: IpAddr, code: &str) -> Result<Invite, Refusal> {
    let outcome = {
        let mut st = shared.lock();
        let now = Instant::now();
        st.code_guard.check(&ip, now).map(|()| {
            let r = st.invites.redeem(code, now);
            match &r {
                Ok(_) => st.code_guard.succeeded(&ip),
                // Fleet mode: another relay's code is not a wrong one;
                // counted once the fleet does not know it either.
                Err(RedeemError::Unknown) if shared.fleet.is_some() => {}
                Err(_) => st.code_guard.failed(&ip, now),
            }
            r
        })
    };
    match outcome {
        Err(Throttle::Address(wait)) => Err(Refusal::auth(
            ErrorKind::Throttled,
            "throttled",
            format!(
                "too many wrong codes from this address; wait {} s and check the code with your technician",
                wait.as_secs().max(1)
            ),
        )),
        Err(Throttle::Global(wait)) => Err(Refusal::auth(
            ErrorKind::Throttled,
            "throttled_global",
            format!(
                "the relay is not accepting codes right now; try again in {} s",
                wait.as_secs().max(1)
            ),
        )),
        Ok(Err(e)) => Err(super::code_refusal(e)),
        Ok(Ok(invite)) => Ok(invite),
    }
}

/// Gives the redeemed invite's session its agent slot; the sender hands
/// the agent's connection to the session task.
fn hand_to_session(
    shared: &Shared,
    invite: &Invite,
    (device, device_key): (&str, PublicKey),
) -> Result<oneshot::Sender<AgentArrival>, Refusal> {
    let mut st = shared.lock();
    let busy =
        st.sessions.values().filter(|s| s.holds_slot).count() >= shared.limits().max_sessions;
    let bound_elsewhere = |session: &str| {
        st.sessions
            .get(session)
            .and_then(|e| e.bound_device)
            .is_some_and(|bound| bound != device_key)
    };
    match st.waiting.get(&invite.id) {
        // A specialist's code reached another device: spent, on record.
        Some((session, _)) if bound_elsewhere(session) => {
            st.waiting.remove(&invite.id);
            return Err(Refusal::auth(
                ErrorKind::BadCode,
                "code_for_another_device",
                "this code belongs to another device's session",
            ));
        }
        _ => {}
    }
    match st.waiting.remove(&invite.id) {
        None => Err(Refusal::new(
            ErrorKind::PeerGone,
            "the technician is no longer waiting for this code",
        )),
        // Put nothing back: the code is spent either way, and the
        // technician learns of it when their session aborts.
        Some(_) if busy => Err(Refusal::new(
            ErrorKind::Busy,
            "the relay is at its session limit; try again in a few minutes",
        )),
        Some((session, tx)) => {
            if let Some(entry) = st.sessions.get_mut(&session) {
                entry.holds_slot = true;
                entry.device = Some(device.to_string());
            }
            Ok(tx)
        }
    }
}
