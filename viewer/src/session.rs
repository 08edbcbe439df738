//! The technician's session, shared by the window and `--headless`: invite,
//! end-to-end handshake, the user's answer, then frames in and input out,
//! until someone ends it. State the window draws lives in [`ViewState`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use assent_client::{Viewer, ViewerEvent};
use assent_codec::{Decoder, Rect};
use assent_proto::identity::{PublicKey, SecretKey};
use assent_proto::wire::{ConsentDecision, ErrorKind, InviteRequest, Scope};
use tokio::sync::mpsc;
use tracing::info;

use crate::checklist::{Checklist, Fact, NoteProblem, Outcome};
use crate::live::{LiveEnd, LiveView};
use crate::record::{AuditWriter, SessionNote};

pub struct ConnectConfig {
    pub relay: String,
    pub ca: PathBuf,
    pub key: SecretKey,
    pub request: InviteRequest,
    pub audit_path: PathBuf,
    pub notes_dir: PathBuf,
    /// `--handover ID`: claim a specialist's handover instead of asking
    /// for an invite (the request comes from the escalated session).
    pub handover: Option<String>,
}

/// Where the session is, for the window's banner and status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The window asks how the requester's identity was verified.
    AskIdentity,
    Connecting,
    /// Waiting for the user to type the code.
    Invited {
        code: String,
    },
    /// The user's device joined; waiting for their answer.
    AwaitingConsent,
    Live,
    Ended(String),
}

/// The decoded remote screen and what changed since the window last looked.
#[derive(Debug, Default)]
pub struct Screen {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
    /// Regions changed since the window took them; `None` = everything.
    pub dirty: Option<Vec<Rect>>,
    pub version: u64,
}

/// Everything the window shows.
#[derive(Debug)]
pub struct ViewState {
    pub phase: Phase,
    pub device: String,
    pub verification_code: String,
    pub scope: Scope,
    pub paused: bool,
    pub screen: Screen,
    pub cursor: Option<(u32, u32)>,
    pub stats: Stats,
    pub note: SessionNote,
    pub ticket: String,
    /// Set on SIGTERM/SIGINT: the window closes itself (the session ends
    /// as when the technician closes it).
    pub quit: bool,
    /// The session's chat, both directions, kept only here and in the
    /// user's window.
    pub chat: Vec<ChatLine>,
    /// The user's answers to "please test", in order.
    pub validations: Vec<ValidationResult>,
    /// The completion checklist: facts the software knows, the
    /// technician's ticks.
    pub checklist: Checklist,
    /// The note's Result, required to file it.
    pub outcome: Option<Outcome>,
    /// Why the window did not close (the note is not ready), shown in the
    /// note panel; set when the technician tried.
    pub note_problem: Option<NoteProblem>,
    /// The user's answer, after the end, to "Was your problem solved?".
    pub user_confirmation: Option<assent_proto::wire::Confirmation>,
    /// Escalation to a specialist: who may receive one, where it stands.
    pub escalation: crate::escalate::EscalationView,
    /// Set for a specialist's session: who escalated it and why.
    pub escalated_from: Option<(String, String)>,
    /// Why the connection is interrupted, while it is.
    pub interrupted: Option<String>,
    /// Bumped at each change of `interrupted` (for `--headless`).
    pub interrupted_version: u32,
    /// Whether the user shares the clipboard, and what moved.
    pub clipboard: crate::clipboard::ClipboardView,
    /// Whether the user allows files, and the last transfer's news.
    pub files: crate::files::FilesView,
    /// Whether the user allows recording, and what is being recorded.
    pub recording: crate::recording::RecordingView,
}

/// The user's answer to one "please test".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationResult {
    pub number: u32,
    pub answer: assent_proto::wire::Validation,
    pub comment: String,
    /// `HH:MM:SS` UTC.
    pub at: String,
}

/// One line of the session's chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// `technician` or `user`.
    pub from: &'static str,
    pub text: String,
    /// `HH:MM:SS` UTC.
    pub at: String,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub frames: u64,
    pub bytes: u64,
    pub decode_ms: f64,
    pub latency_ms: Option<f64>,
    /// Windows the user keeps private (a count from the agent, never titles).
    pub hidden_windows: u32,
    /// The user shares only one window.
    pub only_one_window: bool,
    /// The user shares the clipboard.
    pub clipboard_shared: bool,
    /// The user allows files.
    pub files_allowed: bool,
    /// The user allows recording and screenshots.
    pub recording_allowed: bool,
    /// A recording is being written.
    pub recording: bool,
    /// The user's screen, its monitors and the one shown.
    pub screens: crate::monitors::Screens,
    /// The technician's screen quality, and the frames that carried
    /// photos as JPEG (shown softened until the agent resends them exactly).
    pub quality: assent_proto::session_msg::ScreenQuality,
    pub jpeg_frames: u64,
    pub last_jpeg: Option<std::time::Instant>,
}

impl ViewState {
    pub fn new(request: &InviteRequest) -> ViewState {
        let mut note = SessionNote::new();
        note.set("Client", request.client.clone());
        note.set("Issue Summary", request.summary.clone());
        note.set("Business Impact", capitalised(request.impact.as_str()));
        note.set(
            "Remote Tool Used",
            format!("Assent {}", env!("CARGO_PKG_VERSION")),
        );
        let mut checklist = Checklist::default();
        checklist.know(Fact::TicketRecorded);
        checklist.know(Fact::ApprovedTool);
        if !request.identity_check.is_empty() {
            checklist.know(Fact::IdentityChecked);
        }
        ViewState {
            phase: Phase::Connecting,
            device: String::new(),
            verification_code: String::new(),
            scope: request.scope,
            paused: false,
            screen: Screen::default(),
            cursor: None,
            stats: Stats::default(),
            note,
            ticket: request.ticket.clone(),
            quit: false,
            chat: Vec::new(),
            validations: Vec::new(),
            checklist,
            outcome: None,
            note_problem: None,
            user_confirmation: None,
            escalation: Default::default(),
            escalated_from: None,
            interrupted: None,
            interrupted_version: 0,
            clipboard: Default::default(),
            files: Default::default(),
            recording: Default::default(),
        }
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

pub use crate::command::Command;

pub type SharedState = Arc<Mutex<ViewState>>;

pub(crate) fn lock(state: &SharedState) -> std::sync::MutexGuard<'_, ViewState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

macro_rules! fields {
    ($($k:expr => $v:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut m = assent_audit::Fields::new();
        $( m.insert($k.to_string(), serde_json::json!($v)); )*
        m
    }};
}
pub(crate) use fields;

/// How a session ended, for the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub session: Option<String>,
    pub reason: String,
    pub note_path: Option<PathBuf>,
    /// What the filed note lacks (`result`, `next_action`, unticked items).
    pub note_incomplete: Vec<&'static str>,
}

/// Runs a session until it ends. `on_invite` gets the code to print.
pub async fn run(
    config: ConnectConfig,
    state: SharedState,
    mut commands: mpsc::UnboundedReceiver<Command>,
    on_invite: impl FnOnce(&str, u32),
    repaint: Arc<dyn Fn() + Send + Sync>,
    wait_for_close: bool,
) -> anyhow::Result<Finished> {
    let mut config = config;
    let asks_identity = config.handover.is_none() && config.request.identity_check.is_empty();
    if wait_for_close && asks_identity {
        match crate::identity_ask::ask(&state, &mut commands, &repaint).await {
            Some(check) => config.request.identity_check = check,
            None => return Ok(finished(None, NOT_STARTED, None)),
        }
    }
    let audit = AuditWriter::start(config.audit_path.clone())?;
    let claimed = match config.handover.is_some() {
        true => Some(crate::handover::claim(&mut config, &state, &audit).await?),
        false => None,
    };
    let ctx = Ctx {
        config: &config,
        audit: &audit,
        state: &state,
        repaint: &repaint,
    };
    let result = run_session(&ctx, claimed, &mut commands, on_invite, wait_for_close).await;
    // Every record on disk before the process reports the end.
    tokio::task::spawn_blocking(move || audit.finish())
        .await
        .ok();
    result
}

/// What every step of a session reads.
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a ConnectConfig,
    pub(crate) audit: &'a AuditWriter,
    pub(crate) state: &'a SharedState,
    pub(crate) repaint: &'a Arc<dyn Fn() + Send + Sync>,
}

/// Why pairing stopped without a session.
enum Unpaired {
    /// Refused, declined, expired: already recorded.
    Ended(Finished),
    /// The technician withdrew (the session id once the device joined).
    Withdrawn(Option<String>),
}

/// A session the user agreed to, about to go live.
struct Paired {
    session: String,
    device: String,
    device_key: PublicKey,
    e2e: assent_client::e2e::E2e,
    scope: Scope,
}

async fn run_session(
    ctx: &Ctx<'_>,
    claimed: Option<Viewer>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    on_invite: impl FnOnce(&str, u32),
    wait_for_close: bool,
) -> anyhow::Result<Finished> {
    let mut viewer = match claimed {
        Some(viewer) => viewer,
        None => invite(ctx, on_invite).await?,
    };
    let paired = match pair(ctx, &mut viewer, commands).await? {
        Ok(p) => p,
        Err(Unpaired::Ended(finished)) => return Ok(finished),
        Err(Unpaired::Withdrawn(session)) => return Ok(withdrawn(ctx, viewer, session).await),
    };
    let data = viewer
        .control
        .accept_data()
        .await
        .context("opening the session stream")?;
    let code = paired.e2e.verification_code().to_string();
    let reconnect = crate::reconnect::reconnector(ctx.config, paired.device_key, &paired.e2e);
    let (mut tx, mut rx) = paired.e2e.into_channel(data.send, data.recv);
    let session = paired.session;
    ctx.audit.record(
        "session_start",
        fields! {"session" => session, "device" => paired.device, "device_key" => paired.device_key.fingerprint(), "scope" => paired.scope.as_str(), "verification_code" => code},
    );
    // Before any frame: an agent whose frames this viewer cannot decode
    // ends the session with the reason, not with a blank screen.
    let formats = [assent_codec::FORMAT_VERSION];
    if let Err(e) = assent_client::e2e::choose_screen_format(&mut tx, &mut rx, &formats).await {
        tracing::warn!(error = %e, "no common screen format");
        let end = LiveEnd {
            reason: e.to_string(),
            by_viewer: true,
            chat: (0, 0),
        };
        return crate::ending::close_out(ctx, viewer, session, end, commands, wait_for_close).await;
    }
    {
        let mut s = lock(ctx.state);
        s.scope = paired.scope;
        s.phase = Phase::Live;
        s.checklist.know(Fact::ConsentObtained);
    }
    (ctx.repaint)();
    let live = LiveView {
        session: session.clone(),
        state: ctx.state.clone(),
        tx,
        rx,
        control: &mut viewer.control,
        audit: ctx.audit,
        repaint: ctx.repaint.clone(),
        decoder: Decoder::new(),
        last_input: None,
        chat_sent: 0,
        chat_received: 0,
        validations_asked: 0,
        identity_check: ctx.config.request.identity_check.clone(),
        outage: Default::default(),
        clipboard: None,
        transfers: assent_files::Transfers::new(
            crate::files::received_dir(),
            assent_files::Limits::default(),
        ),
        recorder: None,
        reconnect,
    };
    let (end, tx, rx) = live.run(commands).await;
    let finished =
        crate::ending::close_out(ctx, viewer, session, end, commands, wait_for_close).await;
    // Only now that the relay has the note and the End: see LiveView::run.
    drop((tx, rx));
    finished
}

/// Connects, gets the one-time code and hands it to `on_invite`.
async fn invite(ctx: &Ctx<'_>, on_invite: impl FnOnce(&str, u32)) -> anyhow::Result<Viewer> {
    let config = ctx.config;
    let ticket = &config.request.ticket;
    ctx.audit.record(
        "connect",
        fields! {"relay" => config.relay, "ticket" => ticket},
    );
    let viewer = Viewer::connect(
        &config.relay,
        &config.ca,
        &config.key,
        config.request.clone(),
    )
    .await
    .context("connecting to the relay")?;
    let technician = viewer.technician.clone();
    lock(ctx.state).note.set("Technician", technician.clone());
    ctx.audit.record(
        "invite_created",
        fields! {"invite" => viewer.invite.id, "ticket" => ticket, "technician" => technician, "scope" => config.request.scope.as_str()},
    );
    lock(ctx.state).phase = Phase::Invited {
        code: viewer.invite.code.clone(),
    };
    on_invite(&viewer.invite.code, viewer.invite.expires_in_secs);
    (ctx.repaint)();
    Ok(viewer)
}

/// From the invite to the user's answer. Until the session starts, closing
/// the window, SIGTERM/SIGINT or stdin EOF withdraws the request: the relay
/// takes the user's prompt away. `Err(Finished)`: no session.
async fn pair(
    ctx: &Ctx<'_>,
    viewer: &mut Viewer,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> anyhow::Result<Result<Paired, Unpaired>> {
    let joined = loop {
        match unless_withdrawn(commands, viewer.next_event()).await {
            None => break None,
            Some(ev) => match ev? {
                ViewerEvent::AgentJoined {
                    session,
                    device,
                    device_key,
                } => break Some((session, device, device_key)),
                ViewerEvent::Ended(r) => {
                    return Ok(Err(Unpaired::Ended(finished(None, r.as_str(), None))))
                }
                _ => continue,
            },
        }
    };
    let Some((session, device, device_key)) = joined else {
        return Ok(Err(Unpaired::Withdrawn(None)));
    };
    {
        let mut s = lock(ctx.state);
        s.device = device.clone();
        s.phase = Phase::AwaitingConsent;
        s.note.set("Device", device.clone());
        let check = identity_note(&ctx.config.request.identity_check);
        s.note
            .set("Affected User", format!("user of {device}{check}"));
    }
    (ctx.repaint)();
    let handshake = assent_client::e2e::initiate(viewer, &ctx.config.key, device_key);
    let Some(e2e) = unless_withdrawn(commands, handshake).await else {
        return Ok(Err(Unpaired::Withdrawn(Some(session))));
    };
    let e2e = e2e.context("secure handshake with the user's device")?;
    lock(ctx.state).verification_code = e2e.verification_code().to_string();
    (ctx.repaint)();
    info!(%session, %device, "device joined; waiting for the user's answer");
    let answer = await_answer(viewer, ctx.state, &session, &device, ctx.audit);
    match unless_withdrawn(commands, answer).await {
        None => Ok(Err(Unpaired::Withdrawn(Some(session)))),
        Some(Err(finished)) => Ok(Err(Unpaired::Ended(finished))),
        Some(Ok(scope)) => Ok(Ok(Paired {
            session,
            device,
            device_key,
            e2e,
            scope,
        })),
    }
}

/// The technician took the request back: tell the relay (which takes the
/// user's prompt away), and record it.
async fn withdrawn(ctx: &Ctx<'_>, viewer: Viewer, session: Option<String>) -> Finished {
    let invite = viewer.invite.id.clone();
    viewer.control.end().await;
    let f = fields! {"invite" => invite, "ticket" => ctx.config.request.ticket, "session" => session.clone().unwrap_or_default()};
    ctx.audit.record("invite_withdrawn", f);
    lock(ctx.state).phase = Phase::Ended(WITHDRAWN.into());
    (ctx.repaint)();
    finished(session, WITHDRAWN, None)
}

/// What the note adds to the affected user about how the technician
/// verified them.
pub(crate) fn identity_note(check: &str) -> String {
    match check {
        "" => "; identity verification not recorded".to_string(),
        c => format!("; identity verified by {}", c.trim_start_matches("other:")),
    }
}

/// The reason a request taken back before the session started ends with.
pub const WITHDRAWN: &str = "withdrawn";
/// The window was closed before any invite was asked for.
pub const NOT_STARTED: &str = "not_started";

/// Runs `fut` unless the technician gives up first (window closed,
/// SIGTERM/SIGINT, stdin EOF): then `None`. Other commands before the
/// session is live have nothing to act on and are dropped.
async fn unless_withdrawn<T>(
    commands: &mut mpsc::UnboundedReceiver<Command>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            v = &mut fut => return Some(v),
            cmd = commands.recv() => if matches!(cmd, Some(Command::End) | None) {
                return None;
            },
        }
    }
}

/// Waits for the user's answer: the granted scope once the session
/// started, or how it ended without one.
async fn await_answer(
    viewer: &mut Viewer,
    state: &SharedState,
    session: &str,
    device: &str,
    audit: &AuditWriter,
) -> Result<Scope, Finished> {
    loop {
        match viewer.next_event().await {
            Ok(ViewerEvent::Consent(d)) => {
                audit.record(
                    "consent",
                    fields! {"session" => session, "decision" => d.as_str(), "device" => device},
                );
                let when = crate::now();
                let confirmed = match d {
                    ConsentDecision::View | ConsentDecision::Control => {
                        format!("Yes ({}, {when})", d.as_str())
                    }
                    _ => format!("No ({}, {when})", d.as_str()),
                };
                lock(state).note.set("Consent Confirmed", confirmed);
            }
            Ok(ViewerEvent::Started { scope, .. }) => return Ok(scope),
            Ok(ViewerEvent::Ended(r)) => {
                return Err(end_without_session(state, session, r.as_str(), audit))
            }
            Ok(_) => continue,
            Err(e) => {
                let reason = match e.refusal() {
                    Some(ErrorKind::ConsentDenied) => "consent_denied".to_string(),
                    Some(ErrorKind::ConsentTimeout) => "consent_timeout".to_string(),
                    _ => e.to_string(),
                };
                return Err(end_without_session(state, session, &reason, audit));
            }
        }
    }
}

pub(crate) fn finished(
    session: Option<String>,
    reason: &str,
    note_path: Option<PathBuf>,
) -> Finished {
    Finished {
        session,
        reason: reason.to_string(),
        note_path,
        note_incomplete: Vec::new(),
    }
}

fn end_without_session(
    state: &SharedState,
    session: &str,
    reason: &str,
    audit: &AuditWriter,
) -> Finished {
    audit.record(
        "session_refused",
        fields! {"session" => session, "reason" => reason},
    );
    lock(state).phase = Phase::Ended(reason.to_string());
    finished(Some(session.to_string()), reason, None)
}

/// Stats line for `--headless`, computed over the last interval.
pub fn stats_line(now: &Stats, before: &Stats, interval: Duration) -> serde_json::Value {
    let secs = interval.as_secs_f64().max(1e-6);
    serde_json::json!({
        "frames": now.frames,
        "fps": ((now.frames - before.frames) as f64 / secs * 10.0).round() / 10.0,
        "bytes": now.bytes,
        "kbps": (((now.bytes - before.bytes) as f64 * 8.0 / 1000.0 / secs) * 10.0).round() / 10.0,
        "decode_ms": (now.decode_ms * 100.0).round() / 100.0,
        "latency_ms": now.latency_ms.map(|l| (l * 100.0).round() / 100.0),
        "hidden_windows": now.hidden_windows,
        "only_one_window": now.only_one_window,
        "clipboard_shared": now.clipboard_shared,
        "files_allowed": now.files_allowed,
        "recording_allowed": now.recording_allowed,
        "recording": now.recording,
        "screen": now.screens.screen.map(|(w, h)| [w, h]),
        "monitors": now.screens.monitors.iter().map(|m| [m.0, m.1, m.2, m.3]).collect::<Vec<_>>(),
        "monitor": now.screens.monitor,
        "quality": now.quality.as_str(),
        "jpeg_frames": now.jpeg_frames,
    })
}
