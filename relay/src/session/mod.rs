//! One session's task: drives the pure [`SessionMachine`] with events from
//! both control streams, admin commands and the clock, and carries out its
//! actions (audit first, then the effect). The loop only waits and
//! dispatches; each source has its handler, each action its step in
//! [`SessionTask::apply`]. Each session runs in its own task with its own
//! forwarders, so a slow session stalls nobody else.

mod escalation;
mod farewell;
mod paths;
mod permissions;
mod privacy;
mod reconnect;
mod records;
mod side;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use assent_net::NetError;
use assent_proto::identity::{self, PublicKey};
use assent_proto::invite::Invite;
use assent_proto::session::{Action, Event, SessionMachine};
use assent_proto::wire::{
    ClientMsg, ConsentDecision, InviteRequest, RelayMsg, Scope, SessionOffer, Validation,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::fields;
use crate::handover::{Control, Link, Notice};
use crate::state::{AgentArrival, Counters, EntryPhase, Peer, Shared};
use records::{record_note, record_validation, ReceiptCtx, Receipted, ScopeChange, UserAnswers};
use side::{handshake_allowed, lost_or_closed, Agent, Side};

/// How often a live session looks at its byte counters (idle detection).
const ACTIVITY_POLL: Duration = Duration::from_secs(1);
/// How long a technician has to send the note after a session they did not
/// end themselves.
const NOTE_GRACE: Duration = Duration::from_secs(30 * 60);

pub struct SessionSetup {
    pub session: String,
    pub technician: String,
    pub technician_key: PublicKey,
    pub invite: Invite,
    pub request: InviteRequest,
    pub viewer: Peer,
    pub arrival: oneshot::Receiver<AgentArrival>,
    pub control: mpsc::Receiver<Control>,
    /// Set for a specialist's session: the escalated session it continues.
    pub escalation: Option<Link>,
}

pub async fn run_session(shared: Arc<Shared>, setup: SessionSetup) {
    let mut task = SessionTask::new(shared, setup);
    task.run().await;
    task.end_handover().await;
    task.farewell().await;
}

/// What woke the loop.
enum Wake {
    Arrival(Result<AgentArrival, oneshot::error::RecvError>),
    Viewer(Option<Result<ClientMsg, NetError>>),
    Agent(Option<Result<ClientMsg, NetError>>),
    Control(Option<Control>),
    Shutdown,
    Timer,
    PathTick,
}

struct SessionTask {
    shared: Arc<Shared>,
    id: String,
    technician: String,
    technician_key: PublicKey,
    invite: Invite,
    request: InviteRequest,
    machine: SessionMachine,
    viewer: Side,
    agent: Option<Agent>,
    arrival: Option<oneshot::Receiver<AgentArrival>>,
    control: mpsc::Receiver<Control>,
    shutdown: watch::Receiver<bool>,
    offer_bytes: Vec<u8>,
    forwarders: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
    last_seen_bytes: u64,
    /// The agent's signed receipt for the decision it sent, kept until the
    /// machine says which decision to record (a late answer is recorded as a
    /// timeout, and then this receipt does not apply).
    pending_receipt: Option<(ConsentDecision, String)>,
    scope_changes: u32,
    handshakes_from_viewer: usize,
    handshakes_from_agent: usize,
    /// Chat messages each side reported sending (never their text).
    chat_from_viewer: u32,
    chat_from_agent: u32,
    /// Number of the last user validation on record.
    last_validation: u32,
    /// The user's answers on record, for the note.
    answers: UserAnswers,
    /// Whether the technician's note is on record (a later answer of the
    /// user is then appended as `session_note_update`).
    note_filed: bool,
    /// Set for a specialist's session: the escalated session it continues.
    escalation: Option<Link>,
    /// The handover this session offered, while it is pending.
    offered: Option<escalation::Offered>,
    /// The specialist's session that took over, once the user said yes.
    escalated_to: Option<String>,
    paths: paths::Paths,
    path_tick: tokio::time::Interval,
    privacy: privacy::PrivacyLog,
    permissions: permissions::PermissionLog,
    /// Each side's resume credential, once live.
    credentials: Option<reconnect::Credentials>,
}

impl SessionTask {
    fn new(shared: Arc<Shared>, setup: SessionSetup) -> SessionTask {
        let limits = shared.limits().session();
        let counters = shared
            .lock()
            .sessions
            .get(&setup.session)
            .map(|e| e.counters.clone())
            .unwrap_or_default();
        let shutdown = shared.shutdown.clone();
        SessionTask {
            machine: SessionMachine::new(setup.request.scope, setup.invite.expires, limits),
            shared,
            id: setup.session,
            technician: setup.technician,
            technician_key: setup.technician_key,
            invite: setup.invite,
            request: setup.request,
            viewer: Side::new(setup.viewer),
            agent: None,
            arrival: Some(setup.arrival),
            control: setup.control,
            shutdown,
            offer_bytes: Vec::new(),
            forwarders: Vec::new(),
            counters,
            last_seen_bytes: 0,
            pending_receipt: None,
            scope_changes: 0,
            handshakes_from_viewer: 0,
            handshakes_from_agent: 0,
            chat_from_viewer: 0,
            chat_from_agent: 0,
            last_validation: 0,
            answers: UserAnswers::default(),
            note_filed: false,
            escalation: setup.escalation,
            offered: None,
            escalated_to: None,
            paths: paths::Paths::new(),
            privacy: privacy::PrivacyLog::default(),
            permissions: Default::default(),
            credentials: None,
            path_tick: {
                let mut tick = tokio::time::interval(paths::PATH_POLL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick
            },
        }
    }

    async fn run(&mut self) {
        if *self.shutdown.borrow() {
            self.dispatch(Event::RelayShutdown).await;
        }
        while !self.machine.is_over() {
            let event = match self.next_wake().await {
                Wake::Arrival(a) => self.on_arrival(a),
                Wake::Viewer(msg) => self.on_viewer_msg(msg).await,
                Wake::Agent(msg) => self.on_agent_msg(msg).await,
                Wake::Control(c) => self.on_control(c).await,
                Wake::Shutdown => Some(Event::RelayShutdown),
                Wake::Timer => Some(self.on_tick().await),
                Wake::PathTick => self.on_path_tick(),
            };
            if let Some(event) = event {
                self.dispatch(event).await;
            }
        }
    }

    async fn next_wake(&mut self) -> Wake {
        let deadline = self
            .machine
            .next_deadline()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + ACTIVITY_POLL);
        let wake = if self.machine.may_forward() {
            deadline.min(tokio::time::Instant::now() + ACTIVITY_POLL)
        } else {
            deadline
        };
        let wake = match self.handover_deadline() {
            Some(expires) => wake.min(tokio::time::Instant::from_std(expires)),
            None => wake,
        };
        let arrival = async {
            match self.arrival.as_mut() {
                Some(a) => a.await,
                None => std::future::pending().await,
            }
        };
        let agent = async {
            match self.agent.as_mut() {
                Some(a) => a.side.messages.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            a = arrival => Wake::Arrival(a),
            msg = self.viewer.messages.recv() => Wake::Viewer(msg),
            msg = agent => Wake::Agent(msg),
            ev = self.control.recv() => Wake::Control(ev),
            _ = self.shutdown.changed() => Wake::Shutdown,
            _ = tokio::time::sleep_until(wake) => Wake::Timer,
            _ = self.path_tick.tick() => Wake::PathTick,
        }
    }

    fn on_arrival(&mut self, a: Result<AgentArrival, oneshot::error::RecvError>) -> Option<Event> {
        self.arrival = None;
        // Err: the invite was withdrawn; the deadline or a control event
        // ends the session.
        let a = a.ok()?;
        self.agent = Some(Agent {
            side: Side::new(a.peer),
            device: a.device,
            device_key: a.device_key,
        });
        Some(Event::AgentJoined)
    }

    async fn on_viewer_msg(&mut self, msg: Option<Result<ClientMsg, NetError>>) -> Option<Event> {
        match msg {
            Some(Ok(ClientMsg::End)) => Some(Event::ViewerClosed),
            Some(Ok(
                m @ (ClientMsg::RecordingStarted
                | ClientMsg::RecordingStopped { .. }
                | ClientMsg::ScreenshotTaken { .. }),
            )) => {
                self.on_recording_report(m).await;
                None
            }
            Some(Ok(ClientMsg::ChatSent)) => {
                if self.machine.may_forward() {
                    self.chat_from_viewer = self.chat_from_viewer.saturating_add(1);
                }
                None
            }
            Some(Ok(ClientMsg::Handshake(bytes))) => {
                if let Some(a) = self.agent.as_mut() {
                    let n = &mut self.handshakes_from_viewer;
                    if handshake_allowed(&self.id, &self.machine, n, &bytes) {
                        a.side.tell(&RelayMsg::Handshake(bytes)).await;
                    }
                }
                None
            }
            Some(Ok(ClientMsg::Escalate {
                specialist,
                trigger,
                scope,
            })) => {
                self.on_escalate(specialist, trigger, scope).await;
                None
            }
            Some(Ok(ClientMsg::ListSpecialists)) => {
                self.on_list_specialists().await;
                None
            }
            Some(Ok(ClientMsg::SessionNote { fields })) => {
                let answers = self.answers;
                self.note_filed |=
                    record_note(&self.shared, &self.id, &self.machine, fields, answers).await;
                None
            }
            Some(Ok(_)) => {
                warn!(session = %self.id, "viewer sent an unexpected message; ignored");
                None
            }
            Some(Err(e)) if lost_or_closed(&e) => Some(Event::ViewerClosed),
            Some(Err(e)) => {
                info!(session = %self.id, error = %e, "viewer connection lost");
                Some(Event::ViewerLost)
            }
            None => Some(Event::ViewerLost),
        }
    }

    async fn on_agent_msg(&mut self, msg: Option<Result<ClientMsg, NetError>>) -> Option<Event> {
        match msg? {
            Ok(ClientMsg::Consent { decision, receipt }) => {
                Some(self.on_consent(decision, receipt).await)
            }
            Ok(ClientMsg::Handshake(bytes)) => {
                let n = &mut self.handshakes_from_agent;
                if handshake_allowed(&self.id, &self.machine, n, &bytes) {
                    self.viewer.tell(&RelayMsg::Handshake(bytes)).await;
                }
                None
            }
            Ok(ClientMsg::End) => Some(Event::AgentEnded),
            Ok(ClientMsg::ChatSent) => {
                if self.machine.may_forward() {
                    self.chat_from_agent = self.chat_from_agent.saturating_add(1);
                }
                None
            }
            Ok(ClientMsg::UserValidation {
                number,
                answer,
                receipt,
            }) => {
                let validation = Receipted {
                    number,
                    answer,
                    receipt,
                };
                self.on_user_validation(validation).await;
                None
            }
            Ok(ClientMsg::ScopeChange {
                scope,
                change,
                receipt,
            }) => {
                self.on_scope_change(ScopeChange {
                    scope,
                    change,
                    receipt,
                })
                .await;
                None
            }
            Ok(
                m @ (ClientMsg::PermissionChanged(_)
                | ClientMsg::ClipboardTransfer(_)
                | ClientMsg::FileTransfer(_)),
            ) => {
                self.on_permission_report(m).await;
                None
            }
            Ok(ClientMsg::PrivacyChanged(counts)) => {
                let (shared, id, machine) = (&self.shared, &self.id, &self.machine);
                self.privacy.record(shared, id, machine, counts).await;
                None
            }
            Ok(_) => {
                warn!(session = %self.id, "agent sent an unexpected message; ignored");
                None
            }
            Err(e) if lost_or_closed(&e) => Some(Event::AgentEnded),
            Err(e) => {
                info!(session = %self.id, error = %e, "agent connection lost");
                Some(Event::AgentLost)
            }
        }
    }

    async fn on_user_validation(&mut self, validation: Receipted<Validation>) {
        let Some(a) = self.agent.as_ref() else { return };
        let session = (self.id.as_str(), &self.machine, self.offer_bytes.as_slice());
        let ctx = ReceiptCtx::new(&self.shared, session, a);
        if let Some(answer) = record_validation(&ctx, &mut self.last_validation, validation).await {
            self.answers.validation = Some(answer);
        }
    }

    /// The user's signed answer: believed only with a receipt from the
    /// device key the offer named.
    async fn on_consent(&mut self, decision: ConsentDecision, receipt: Vec<u8>) -> Event {
        let Some(a) = self.agent.as_ref() else {
            return Event::AgentLost;
        };
        let payload = identity::consent_payload(&self.offer_bytes, decision);
        if a.device_key.verify(&payload, &receipt).is_ok() {
            self.pending_receipt = Some((decision, hex::encode(&receipt)));
            return Event::Consent(decision);
        }
        warn!(session = %self.id, "consent receipt does not verify; treating the agent as lost");
        let fields = fields! {
            "role" => "agent", "peer" => a.side.addr.to_string(),
            "reason" => "bad_consent_receipt", "session" => self.id,
        };
        let _ = self.shared.audit.record("auth_failed", fields).await;
        Event::AgentLost
    }

    async fn on_tick(&mut self) -> Event {
        self.expire_handover().await;
        let total = self.counters.to_viewer.load(Ordering::Relaxed)
            + self.counters.to_agent.load(Ordering::Relaxed);
        if total != self.last_seen_bytes {
            self.last_seen_bytes = total;
            self.machine.handle(Event::Activity, Instant::now());
        }
        Event::Tick
    }

    /// Feeds one event and carries out the actions. A record action's
    /// outcome goes back into the machine as `Recorded` or `RecordFailed`
    /// (the remaining actions of a failed batch are skipped).
    async fn dispatch(&mut self, event: Event) {
        let mut queue = VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            for action in self.machine.handle(event, Instant::now()) {
                if let Some(feedback) = self.apply(action, event).await {
                    queue.push_back(feedback);
                    if feedback == Event::RecordFailed {
                        break;
                    }
                }
            }
        }
    }

    async fn apply(&mut self, action: Action, event: Event) -> Option<Event> {
        match action {
            Action::Ignored => {
                warn!(session = %self.id, ?event, "event ignored in this phase");
                None
            }
            Action::AskConsent => {
                self.ask_consent().await;
                None
            }
            Action::RecordConsent(decision) => self.record_consent(decision).await,
            Action::RecordStart(scope) => Some(self.record_start(scope).await),
            Action::Start(scope) => {
                if let Some(link) = &self.escalation {
                    let session = self.id.clone();
                    link.tell(Notice::Accepted { session }).await;
                }
                self.start(scope).await;
                None
            }
            Action::End(reason) => {
                self.record_end(reason).await;
                None
            }
            Action::RecordInterrupted(side) => {
                self.record_interrupted(side).await;
                None
            }
            Action::RecordResumed(side, outage) => {
                self.record_resumed(side, outage).await;
                None
            }
            Action::Abort(reason) => {
                let fields = fields! {
                    "session" => self.id, "invite" => self.invite.id,
                    "reason" => reason.as_str(),
                };
                let _ = self.shared.audit.record("invite_closed", fields).await;
                if let Some(link) = &self.escalation {
                    let reason = reason.as_str();
                    link.tell(Notice::Closed { reason }).await;
                }
                info!(session = %self.id, reason = reason.as_str(), "session closed before it started");
                None
            }
        }
    }

    /// Sends the relay-signed offer to the agent and tells the viewer who joined.
    async fn ask_consent(&mut self) {
        let Some(a) = self.agent.as_mut() else { return };
        let limits = self.shared.limits().session();
        let offer = SessionOffer {
            session: self.id.clone(),
            technician: self.technician.clone(),
            technician_key: self.technician_key.0,
            ticket: self.request.ticket.clone(),
            client: self.request.client.clone(),
            summary: self.request.summary.clone(),
            impact: self.request.impact,
            scope: self.request.scope,
            device: a.device.clone(),
            device_key: a.device_key.0,
            consent_timeout_secs: u32::try_from(limits.consent_timeout.as_secs())
                .unwrap_or(u32::MAX),
            escalated_from: self.escalation.as_ref().map(|l| l.from.clone()),
            permissions: self.request.permissions.clone(),
        };
        self.offer_bytes = offer.to_bytes();
        let relay_signature = self
            .shared
            .signing
            .sign(&identity::offer_payload(&self.offer_bytes));
        let request = RelayMsg::ConsentRequest {
            offer: self.offer_bytes.clone(),
            relay_signature,
        };
        a.side.tell(&request).await;
        let joined = RelayMsg::AgentJoined {
            session: self.id.clone(),
            device: a.device.clone(),
            device_key: a.device_key.0,
        };
        self.viewer.tell(&joined).await;
        self.shared.set_phase(&self.id, EntryPhase::AskingUser);
    }

    /// Writes `consent`; `RecordFailed` if it is not on disk.
    async fn record_consent(&mut self, decision: ConsentDecision) -> Option<Event> {
        let receipt = match self.pending_receipt.take() {
            Some((signed, receipt)) if signed == decision => receipt,
            _ => String::new(),
        };
        let (device, device_fp) = self
            .agent
            .as_ref()
            .map(|a| (a.device.clone(), a.device_key.fingerprint()))
            .unwrap_or_default();
        let fields = fields! {
            "session" => self.id, "decision" => decision.as_str(),
            "receipt" => receipt, "technician" => self.technician,
            "ticket" => self.request.ticket, "device" => device,
            "device_key" => device_fp,
        };
        if let Err(e) = self.shared.audit.record("consent", fields).await {
            warn!(session = %self.id, error = %e, "consent not recorded; the session will not start");
            return Some(Event::RecordFailed);
        }
        self.viewer
            .tell(&RelayMsg::ConsentResult { decision })
            .await;
        None
    }

    /// Writes `session_start`: `Recorded` once on disk, else `RecordFailed`.
    async fn record_start(&mut self, scope: Scope) -> Event {
        let Some(a) = self.agent.as_ref() else {
            return Event::RecordFailed;
        };
        let fields = fields! {
            "session" => self.id, "technician" => self.technician,
            "technician_key" => self.technician_key.fingerprint(),
            "ticket" => self.request.ticket, "device" => a.device,
            "device_key" => a.device_key.fingerprint(),
            "scope" => scope.as_str(),
            "agent_peer" => a.side.addr.to_string(),
            "viewer_peer" => self.viewer.addr.to_string(),
        };
        let mut fields = fields;
        if let Some(link) = &self.escalation {
            fields.insert("escalated_from".into(), link.from.session.clone().into());
        }
        match self.shared.audit.record("session_start", fields).await {
            Ok(_) => Event::Recorded,
            Err(e) => {
                warn!(session = %self.id, error = %e, "session_start not recorded; the session will not start");
                Event::RecordFailed
            }
        }
    }

    /// Both records are on disk: tell both sides, then open the data streams.
    async fn start(&mut self, scope: Scope) {
        let Some(a) = self.agent.as_mut() else { return };
        if let Some(e) = self.shared.lock().sessions.get_mut(&self.id) {
            e.started = Some(crate::now_rfc3339());
            e.scope = scope;
            e.phase = EntryPhase::Live;
        }
        info!(session = %self.id, scope = scope.as_str(), "session started");
        let started = RelayMsg::SessionStarted {
            session: self.id.clone(),
            scope,
        };
        self.viewer.tell(&started).await;
        a.side.tell(&started).await;
        self.hand_out_credentials().await;
        self.forward().await;
    }
}
