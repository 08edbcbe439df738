//! The technician's side of authentication: key and signature, the invite
//! request, and the one-time code handed out on record.

use std::sync::Arc;
use std::time::Instant;

use assent_proto::identity::PublicKey;
use assent_proto::invite::{Invite, InviteCode};
use assent_proto::session::AbortReason;
use assent_proto::text;
use assent_proto::wire::{ClientMsg, ErrorKind, InviteRequest, RelayMsg, Role};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, Instrument as _};

use super::{refuse_peer, Refusal, Stop};
use crate::fields;
use crate::handover::{Control, Link};
use crate::registry::KeyStatus;
use crate::session::{run_session, SessionSetup};
use crate::state::{AgentArrival, Counters, EntryPhase, Peer, SessionEntry, Shared};

/// A technician's invite, created, audited and handed out: what the
/// session task needs besides the viewer's connection.
pub(super) struct OpenedInvite {
    pub(super) session: String,
    pub(super) technician: String,
    pub(super) invite: Invite,
    pub(super) request: InviteRequest,
    pub(super) arrival: oneshot::Receiver<AgentArrival>,
    pub(super) control: mpsc::Receiver<Control>,
    /// Set for a specialist's session: the escalated session it continues.
    pub(super) escalation: Option<Link>,
}

pub(super) async fn viewer_flow(
    shared: Arc<Shared>,
    mut peer: Peer,
    key: PublicKey,
    payload: &[u8],
    signature: &[u8],
) {
    let opened = match open(&shared, &mut peer, key, payload, signature).await {
        Ok(Some(o)) => o,
        Ok(None) => return super::handover::close_listing(peer).await,
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
        escalation: opened.escalation,
    };
    // Its own task: the connection's task, sized for every way a
    // connection can go (about 10 kB), ends here rather than being held for
    // the session's life (about 3.5 kB of its own).
    tokio::spawn(
        async move {
            run_session(shared, setup).await;
            drop(token);
        }
        .in_current_span(),
    );
}

/// Authenticates the technician and serves what they ask first: an
/// invite, the list of handovers waiting for them (`Ok(None)`), or a
/// handover to claim.
async fn open(
    shared: &Shared,
    peer: &mut Peer,
    key: PublicKey,
    payload: &[u8],
    signature: &[u8],
) -> Result<Option<OpenedInvite>, Stop> {
    super::fleet_gate::enrol_from_fleet(shared, &key).await;
    let technician = authenticate_technician(shared, key, payload, signature)?;
    super::fleet_gate::check_technician(shared, &key).await?;
    info!(technician = %technician, "technician authenticated");
    let hello = RelayMsg::Authenticated {
        technician: technician.clone(),
    };
    assent_net::send_msg(&mut peer.send, &hello)
        .await
        .map_err(|_| Stop::Silent)?;
    let ask = read_first_ask(peer).await?;
    if !matches!(ask, FirstAsk::ListHandovers) {
        super::admit(shared, Role::Viewer, peer.addr).await?;
    }
    match ask {
        FirstAsk::Invite(request) => {
            let who = (technician.as_str(), key);
            open_invite(shared, peer, who, request).await.map(Some)
        }
        FirstAsk::ListHandovers => {
            super::handover::list(shared, peer, &technician).await;
            Ok(None)
        }
        FirstAsk::Claim(handover) => {
            let who = (technician.as_str(), key);
            super::handover::claim(shared, peer, who, &handover)
                .await
                .map(Some)
        }
    }
}

/// Takes the technician's request and hands them a one-time code, on
/// record (`invite_created`) before it can be used.
async fn open_invite(
    shared: &Shared,
    peer: &mut Peer,
    (technician, key): (&str, PublicKey),
    request: InviteRequest,
) -> Result<OpenedInvite, Stop> {
    let (opened, code) = record_invite(shared, (technician, key), request, None).await?;
    let created = RelayMsg::InviteCreated {
        invite: opened.invite.id.clone(),
        code: code.grouped(),
        expires_in_secs: u32::try_from(shared.limits().invite_ttl_secs).unwrap_or(u32::MAX),
    };
    drop(code);
    hand_out(shared, peer, &opened, &created).await?;
    Ok(opened)
}

/// Creates the invite and its session entry and writes `invite_created`;
/// an invite that is not on record is forgotten (nobody can use it).
pub(super) async fn record_invite(
    shared: &Shared,
    (technician, key): (&str, PublicKey),
    request: InviteRequest,
    escalation: Option<(Link, PublicKey)>,
) -> Result<(OpenedInvite, InviteCode), Stop> {
    let session = assent_proto::random_id(8)
        .map_err(|_| Refusal::new(ErrorKind::Busy, "internal error: no randomness"))?;
    let bound_device = escalation.as_ref().map(|(_, device)| *device);
    let (invite, code, arrival, control) =
        register_invite(shared, (technician, key), &request, &session, bound_device)?;
    let ids = (invite.id.as_str(), technician, session.as_str());
    if let Err(r) = super::fleet_gate::publish_invite(shared, &code, ids).await {
        forget_invite(shared, &invite.id, &session);
        return Err(r.into());
    }
    let mut fields = fields! {
        "technician" => technician,
        "technician_key" => key.fingerprint(),
        "ticket" => request.ticket,
        "client" => request.client,
        "scope" => request.scope.as_str(),
        "invite" => invite.id,
        "session" => session,
        "expires_in_secs" => shared.limits().invite_ttl_secs,
        "identity_check" => if request.identity_check.is_empty() { "not_recorded" } else { request.identity_check.as_str() },
        "permissions_asked" => request.permissions.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
    };
    if let Some((link, _)) = &escalation {
        fields.insert("escalated_from".into(), link.from.session.clone().into());
        fields.insert("handover".into(), link.handover.clone().into());
    }
    if shared.audit.record("invite_created", fields).await.is_err() {
        forget_invite(shared, &invite.id, &session);
        let r = Refusal::new(ErrorKind::Busy, "the relay cannot write its audit log");
        return Err(r.into());
    }
    info!(invite = %invite.id, session = %session, "invite created");
    let opened = OpenedInvite {
        session,
        technician: technician.to_string(),
        invite,
        request,
        arrival,
        control,
        escalation: escalation.map(|(link, _)| link),
    };
    Ok((opened, code))
}

/// Sends the technician their invite; one that cannot reach them is on
/// record as created, so it goes on record as closed (nobody has its code).
pub(super) async fn hand_out(
    shared: &Shared,
    peer: &mut Peer,
    opened: &OpenedInvite,
    msg: &RelayMsg,
) -> Result<(), Stop> {
    if assent_net::send_msg(&mut peer.send, msg).await.is_ok() {
        return Ok(());
    }
    forget_invite(shared, &opened.invite.id, &opened.session);
    let fields = fields! {
        "session" => opened.session, "invite" => opened.invite.id,
        "reason" => AbortReason::ViewerLeft.as_str(),
    };
    let _ = shared.audit.record("invite_closed", fields).await;
    Err(Stop::Silent)
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

/// What an authenticated technician asks first.
enum FirstAsk {
    Invite(InviteRequest),
    ListHandovers,
    Claim(String),
}

async fn read_first_ask(peer: &mut Peer) -> Result<FirstAsk, Stop> {
    match assent_net::recv_msg::<ClientMsg>(&mut peer.recv).await {
        Ok(ClientMsg::CreateInvite(r)) => validate_request(r)
            .map(FirstAsk::Invite)
            .map_err(|m| Refusal::new(ErrorKind::BadInput, m).into()),
        Ok(ClientMsg::ListHandovers) => Ok(FirstAsk::ListHandovers),
        Ok(ClientMsg::ClaimHandover { handover }) => Ok(FirstAsk::Claim(handover)),
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
    mpsc::Receiver<Control>,
);

/// Creates the invite and the session's entry under one lock.
fn register_invite(
    shared: &Shared,
    (technician, key): (&str, PublicKey),
    request: &InviteRequest,
    session: &str,
    bound_device: Option<PublicKey>,
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
            bound_device,
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
        permissions: assent_proto::permission::normalized(&r.permissions),
    })
}
