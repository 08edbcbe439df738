//! The technician's side of authentication: key and signature, the invite
//! request, and the one-time code handed out on record.

use std::sync::Arc;
use std::time::Instant;

use assent_proto::identity::PublicKey;
use assent_proto::invite::{Invite, InviteCode};
use assent_proto::session::{AbortReason, Event};
use assent_proto::text;
use assent_proto::wire::{ClientMsg, ErrorKind, InviteRequest, RelayMsg, Role};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, Instrument as _};

use super::{refuse_peer, Refusal, Stop};
use crate::fields;
use crate::registry::KeyStatus;
use crate::session::{run_session, SessionSetup};
use crate::state::{AgentArrival, Counters, EntryPhase, Peer, SessionEntry, Shared};

/// A technician's invite, created, audited and handed out: what the
/// session task needs besides the viewer's connection.
struct OpenedInvite {
    session: String,
    technician: String,
    invite: Invite,
    request: InviteRequest,
    arrival: oneshot::Receiver<AgentArrival>,
    control: mpsc::Receiver<Event>,
}

pub(super) async fn viewer_flow(
    shared: Arc<Shared>,
    mut peer: Peer,
    key: PublicKey,
    payload: &[u8],
    signature: &[u8],
) {
    let opened = match open_invite(&shared, &mut peer, key, payload, signature).await {
        Ok(o) => o,
        Err(stop) => return refuse_peer(&shared, peer, Role::Viewer, stop).await,
    };
    let token = shared.tasks.token();
    let setup = SessionSetup {
        session: opened.session,
        technician: opened.technician,
        technician_key: key,
        invite: opened.invite,
        request: opened.request,
        viewer: peer,
        arrival: opened.arrival,
        control: opened.control,
    };
    run_session(shared.clone(), setup)
        .instrument(tracing::Span::current())
        .await;
    drop(token);
}

/// Authenticates the technician, takes their request, and hands them a
/// one-time code, on record (`invite_created`) before it can be used.
async fn open_invite(
    shared: &Shared,
    peer: &mut Peer,
    key: PublicKey,
    payload: &[u8],
    signature: &[u8],
) -> Result<OpenedInvite, Stop> {
    let technician = authenticate_technician(shared, key, payload, signature)?;
    info!(technician = %technician, "technician authenticated");
    let hello = RelayMsg::Authenticated {
        technician: technician.clone(),
    };
    assent_net::send_msg(&mut peer.send, &hello)
        .await
        .map_err(|_| Stop::Silent)?;
    let request = read_invite_request(peer).await?;
    let session = assent_proto::random_id(8)
        .map_err(|_| Refusal::new(ErrorKind::Busy, "internal error: no randomness"))?;
    let (invite, code, arrival, control) =
        register_invite(shared, &technician, key, &request, &session)?;
    let fields = fields! {
        "technician" => technician,
        "technician_key" => key.fingerprint(),
        "ticket" => request.ticket,
        "client" => request.client,
        "scope" => request.scope.as_str(),
        "invite" => invite.id,
        "session" => session,
        "expires_in_secs" => shared.limits().invite_ttl_secs,
        "identity_check" => if request.identity_check.is_empty() { "not_recorded" } else { request.identity_check.as_str() },
    };
    if shared.audit.record("invite_created", fields).await.is_err() {
        // An invite that is not on record must not be usable.
        forget_invite(shared, &invite.id, &session);
        let r = Refusal::new(ErrorKind::Busy, "the relay cannot write its audit log");
        return Err(r.into());
    }
    info!(invite = %invite.id, session = %session, "invite created");
    let created = RelayMsg::InviteCreated {
        invite: invite.id.clone(),
        code: code.grouped(),
        expires_in_secs: u32::try_from(shared.limits().invite_ttl_secs).unwrap_or(u32::MAX),
    };
    drop(code);
    if assent_net::send_msg(&mut peer.send, &created)
        .await
        .is_err()
    {
        // On record as created, so on record as closed: nobody has the code.
        forget_invite(shared, &invite.id, &session);
        let fields = fields! {
            "session" => session, "invite" => invite.id,
            "reason" => AbortReason::ViewerLeft.as_str(),
        };
        let _ = shared.audit.record("invite_closed", fields).await;
        return Err(Stop::Silent);
    }
    Ok(OpenedInvite {
        session,
        technician,
        invite,
        request,
        arrival,
        control,
    })
}

/// The enrolled technician's name, if the key is enrolled, not revoked,
/// and signed this connection's challenge.
fn authenticate_technician(
    shared: &Shared,
    key: PublicKey,
    payload: &[u8],
    signature: &[u8],
) -> Result<String, Refusal> {
    let technician = match shared.technicians.status(&key) {
        KeyStatus::Enrolled(name) => name,
        KeyStatus::Revoked(_) => {
            return Err(Refusal::auth(
                ErrorKind::TechnicianRevoked,
                "technician_revoked",
                "this technician key has been revoked; ask the relay admin",
            ))
        }
        KeyStatus::Unknown => {
            return Err(Refusal::auth(
                ErrorKind::UnknownTechnician,
                "unknown_key",
                format!(
                    "technician key {} is not enrolled on this relay; send the admin the line \
                     `assent-viewer keygen` printed",
                    key.fingerprint()
                ),
            ))
        }
    };
    if key.verify(payload, signature).is_err() {
        return Err(Refusal::auth(
            ErrorKind::BadSignature,
            "bad_signature",
            "the key signature does not match this connection",
        ));
    }
    Ok(technician)
}

async fn read_invite_request(peer: &mut Peer) -> Result<InviteRequest, Stop> {
    match assent_net::recv_msg::<ClientMsg>(&mut peer.recv).await {
        Ok(ClientMsg::CreateInvite(r)) => {
            validate_request(r).map_err(|m| Refusal::new(ErrorKind::BadInput, m).into())
        }
        // A technician presenting an invite code is trying to take over
        // someone's invite (codes are only for the user's agent): on the
        // record, like any other attempt on a code.
        Ok(ClientMsg::AgentJoin { .. }) => Err(Refusal::auth(
            ErrorKind::Protocol,
            "code_on_technician_connection",
            "invite codes are redeemed by the user's agent, not by a technician",
        )
        .into()),
        Ok(_) => Err(Refusal::new(ErrorKind::Protocol, "expected CreateInvite").into()),
        Err(e) => {
            info!(error = %e, "viewer left before asking for an invite");
            Err(Stop::Silent)
        }
    }
}

type Registered = (
    Invite,
    InviteCode,
    oneshot::Receiver<AgentArrival>,
    mpsc::Receiver<Event>,
);

/// Creates the invite and the session's entry under one lock.
fn register_invite(
    shared: &Shared,
    technician: &str,
    key: PublicKey,
    request: &InviteRequest,
    session: &str,
) -> Result<Registered, Refusal> {
    let (arrival_tx, arrival_rx) = oneshot::channel();
    let (control_tx, control_rx) = mpsc::channel(8);
    let now = Instant::now();
    let mut st = shared.lock();
    let (invite, code) = st
        .invites
        .create(technician, key, request.clone(), now)
        .map_err(|e| Refusal::new(ErrorKind::LimitReached, e.to_string()))?;
    st.waiting
        .insert(invite.id.clone(), (session.to_string(), arrival_tx));
    st.sessions.insert(
        session.to_string(),
        SessionEntry {
            technician: technician.to_string(),
            ticket: request.ticket.clone(),
            scope: request.scope,
            device: None,
            started: None,
            created: now,
            phase: EntryPhase::WaitingForAgent,
            counters: Arc::new(Counters::new(shared.metrics.forwarded_bytes())),
            control: control_tx,
            holds_slot: false,
        },
    );
    Ok((invite, code, arrival_rx, control_rx))
}

fn forget_invite(shared: &Shared, invite: &str, session: &str) {
    let mut st = shared.lock();
    st.invites.cancel(invite);
    st.waiting.remove(invite);
    st.sessions.remove(session);
}

fn validate_request(r: InviteRequest) -> Result<InviteRequest, String> {
    let e = |e: text::TextError| e.to_string();
    Ok(InviteRequest {
        ticket: text::single_line("ticket", &r.ticket, text::MAX_TICKET).map_err(e)?,
        client: text::optional_line("client", &r.client, text::MAX_CLIENT).map_err(e)?,
        summary: text::optional_line("summary", &r.summary, text::MAX_SUMMARY).map_err(e)?,
        impact: r.impact,
        scope: r.scope,
        identity_check: text::identity_check(&r.identity_check)?,
    })
}
