//! The agent's session, from joining to the end: the end-to-end handshake
//! (before the prompt, so the user sees the verification code), the user's
//! decision, then frames out and input in, all through the consent gate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use assent_client::e2e::{ChannelReader, ChannelWriter, E2e};
use assent_client::resume::Reconnector;
use assent_client::{AgentPending, ClientError};
use assent_proto::identity::{PublicKey, SecretKey};
use assent_proto::permission::Permission;
use assent_proto::wire::{ConsentDecision, ErrorKind, RelayMsg, Role, SessionOffer};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::consent::{ConsentQuestion, ScopeRequests};
use crate::escalation::{Accepted, Escalation, Rejoin};
use crate::flow::FlowWindow;
use crate::guarded::{CaptureResult, Guarded, InputFactory, ScreenFactory};
use crate::live::{Handover, LiveOutcome, LiveSession};
use crate::prompt::PromptText;
use crate::ui::{UiCommand, UiEvent, UiSink};

/// The handshake runs before the prompt; a viewer that does not finish it
/// in this time is not going to.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

pub struct JoinConfig {
    pub relay: String,
    pub ca: std::path::PathBuf,
    pub code: String,
    pub device: String,
    pub device_key: SecretKey,
    pub consent_timeout: Duration,
    /// Where received files go, and the limits.
    pub files: crate::files::FileSettings,
}

/// How a run ended, for the exit code and the last message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The user said no, or did not answer.
    Declined(ConsentDecision),
    /// The session ran and is over.
    Ended(String),
    /// The request ended before the user's answer counted (withdrawn by
    /// the technician, cancelled by an admin, the relay restarting…).
    RequestClosed(String),
}

/// Counters a test (or the indicator) can read.
#[derive(Debug, Default)]
pub struct Stats {
    pub frames_sent: std::sync::atomic::AtomicU64,
    /// Screen captures made (a frame or "nothing changed").
    pub captures: std::sync::atomic::AtomicU64,
    pub inputs_injected: std::sync::atomic::AtomicU64,
    pub inputs_dropped: std::sync::atomic::AtomicU64,
    /// Clipboard text the technician's viewer sent without the user's yes.
    pub clipboard_dropped: std::sync::atomic::AtomicU64,
    /// Clipboard texts moved, either way, with the user's yes.
    pub clipboard_moved: std::sync::atomic::AtomicU64,
    /// File offers the technician's viewer sent while files were not allowed.
    pub files_refused: std::sync::atomic::AtomicU64,
}

pub async fn run(
    config: JoinConfig,
    screen: ScreenFactory,
    input: InputFactory,
    ui: Arc<dyn UiSink>,
    mut commands: mpsc::UnboundedReceiver<UiCommand>,
    stats: Arc<Stats>,
) -> anyhow::Result<Outcome> {
    ui.show(UiEvent::Connecting);
    // Reaching the relay can take long (an unreachable one: until QUIC
    // gives up); End (a SIGTERM, the window closed) stops it at once.
    let joined = tokio::select! {
        joined = join_and_shake_hands(&config) => joined?,
        () = ended(&mut commands) => {
            let message = "Stopped before the relay was reached: nothing was asked or shared.";
            info!("ended while connecting");
            ui.show(UiEvent::Ended(message.into()));
            return Ok(Outcome::Ended(message.into()));
        }
    };
    let (mut pending, e2e) = match joined {
        Ok(joined) => joined,
        // The request ended (withdrawn, cancelled) before the user was asked.
        Err((kind, offer)) => return Ok(close_request(&*ui, kind, &offer)),
    };
    let offer = pending.offer.clone();
    let code = e2e.verification_code().to_string();

    // Ask the user. The local timeout denies; so does closing the window.
    let deadline = Instant::now() + config.consent_timeout;
    ui.show(UiEvent::Prompt {
        text: PromptText::new(&offer, &code),
        deadline,
    });
    let mut chosen = Vec::new();
    let asked = ask_user(&mut pending, &mut commands, deadline, &mut chosen).await;
    let decision = match asked {
        Asked::Answer(d) => d,
        Asked::Closed(kind) => return Ok(close_request(&*ui, kind, &offer)),
    };
    info!(decision = decision.as_str(), "user answered");
    let Some(grant) = ConsentQuestion::for_offer(&offer).answer(decision) else {
        return Ok(decline(pending, decision, &*ui).await);
    };
    let pending_key = pending.device_key_clone();
    let joined_at = pending.relay.clone();
    // A yes starts nothing until the relay has it on record: a refusal
    // here (its audit failed, or the request ended meanwhile) leaves the
    // screen and input untouched.
    let live = match pending.answer(decision).await {
        Ok(live) => live,
        Err(e) if e.refusal().is_some() => return Ok(close_request(&*ui, e.refusal(), &offer)),
        Err(e) => return Err(explain(e)),
    };
    let rejoin = Rejoin {
        relay: joined_at,
        ca: config.ca.clone(),
        device: config.device.clone(),
        device_key: pending_key,
    };
    let ctx = LiveCtx {
        ui,
        stats,
        consent_timeout: config.consent_timeout,
        rejoin,
        files: config.files.clone(),
    };
    // Only what the technician asked for can be allowed in the prompt.
    chosen.retain(|p| offer.permissions.contains(p));
    let first = Accepted {
        live,
        e2e,
        offer,
        grant,
    };
    let capture = Capture::Start(screen, input);
    live_until_over((first, chosen), capture, &ctx, &mut commands).await
}

/// Redeems the code and runs the end-to-end handshake; `Err` with the
/// refusal when the request ended before the user could be asked.
async fn join_and_shake_hands(
    config: &JoinConfig,
) -> anyhow::Result<Result<(AgentPending, E2e), (Option<ErrorKind>, SessionOffer)>> {
    let key = config.device_key.clone();
    let (relay, ca, device, code) = (&config.relay, &config.ca, &config.device, &config.code);
    let mut pending = AgentPending::join(relay, ca, key, device, code)
        .await
        .map_err(explain)?;
    let offer = pending.offer.clone();
    if pending.relay != *relay {
        info!(relay = %pending.relay, "the code belongs to another relay of the fleet: joined there");
    }
    info!(technician = %offer.technician, ticket = %offer.ticket, "joined; running the end-to-end handshake");
    Ok(
        match handshake(&mut pending, PublicKey(offer.technician_key)).await? {
            Ok(e2e) => Ok((pending, e2e)),
            Err(kind) => Err((kind, offer)),
        },
    )
}

/// Until the user ends (End, or the window and its commands gone); other
/// commands before the prompt answer nothing.
async fn ended(commands: &mut mpsc::UnboundedReceiver<UiCommand>) {
    while let Some(cmd) = commands.recv().await {
        if matches!(cmd, UiCommand::End) {
            return;
        }
    }
}

/// The live session, and each specialist's session the user hands it to,
/// until one ends.
async fn live_until_over(
    (first, chosen): (Accepted, Vec<Permission>),
    capture: Capture,
    ctx: &LiveCtx,
    commands: &mut mpsc::UnboundedReceiver<UiCommand>,
) -> anyhow::Result<Outcome> {
    let mut next = live_session(first, capture, ctx).await?;
    next.permissions.chosen_at_prompt = chosen;
    loop {
        match next.run(commands).await {
            LiveOutcome::Ended(message) => return Ok(Outcome::Ended(message)),
            LiveOutcome::HandedOver(h) => {
                let Handover {
                    accepted,
                    guarded,
                    frames,
                } = *h;
                let capture = Capture::Running(guarded, frames);
                next = live_session(accepted, capture, ctx).await?;
            }
        }
    }
}

/// What every live session of this run shares.
struct LiveCtx {
    ui: Arc<dyn UiSink>,
    stats: Arc<Stats>,
    consent_timeout: Duration,
    rejoin: Rejoin,
    files: crate::files::FileSettings,
}

/// Capture and input: to start for the first session, running on for a
/// specialist's session after a handover.
enum Capture {
    Start(ScreenFactory, InputFactory),
    Running(Guarded, mpsc::Receiver<CaptureResult>),
}

/// A live session once the user's yes is on record: the screen format is
/// agreed before anything is captured for it.
async fn live_session(
    accepted: Accepted,
    capture: Capture,
    ctx: &LiveCtx,
) -> anyhow::Result<LiveSession> {
    let Accepted {
        live,
        e2e,
        offer,
        grant,
    } = accepted;
    let reporter = live.scope_reporter();
    let code = e2e.verification_code().to_string();
    let reconnect = Reconnector::new(
        (&ctx.rejoin.relay, &ctx.rejoin.ca),
        Role::Agent,
        ctx.rejoin.device_key.clone(),
        PublicKey(offer.technician_key),
        e2e.resume_secret(),
    );
    let channel = e2e.into_channel(live.data.send, live.data.recv);
    let agreed = agree_screen_format(channel).await;
    let ((tx, rx), (guarded, frames)) = match (agreed, capture) {
        (Ok(channel), Capture::Start(screen, input)) => (
            channel,
            Guarded::start(grant, screen, input).context("starting screen capture and input")?,
        ),
        (Ok(channel), Capture::Running(guarded, frames)) => (channel, (guarded, frames)),
        (Err(e), Capture::Running(guarded, _)) => {
            tokio::task::spawn_blocking(move || guarded.end())
                .await
                .ok();
            return Err(e);
        }
        (Err(e), Capture::Start(..)) => return Err(e),
    };
    Ok(LiveSession {
        guarded,
        frames,
        tx,
        rx,
        control: live.control,
        reporter,
        ui: ctx.ui.clone(),
        offer,
        verification_code: code,
        stats: ctx.stats.clone(),
        consent_timeout: ctx.consent_timeout,
        flow: FlowWindow::default(),
        quality: Default::default(),
        capturing: false,
        want_keyframe: false,
        poll_at: None,
        last_cursor: None,
        scope_requests: ScopeRequests::default(),
        scope_prompt_until: None,
        chat_sent: 0,
        validation_pending: None,
        end: Default::default(),
        escalation: Escalation::default(),
        rejoin: ctx.rejoin.clone(),
        outage: Default::default(),
        permissions: crate::permissions::Permissions::new(&ctx.files),
        reconnect,
    })
}

/// Before any frame: a viewer that cannot read this agent's frames ends
/// the session with the reason, not with a blank screen.
async fn agree_screen_format(
    (mut tx, mut rx): (ChannelWriter, ChannelReader),
) -> anyhow::Result<(ChannelWriter, ChannelReader)> {
    let formats = [assent_codec::FORMAT_VERSION];
    assent_client::e2e::offer_screen_formats(&mut tx, &mut rx, &formats)
        .await
        .context("agreeing on the screen format with the technician's viewer")?;
    Ok((tx, rx))
}

/// The end-to-end handshake, before the prompt so the user sees the
/// verification code. `Ok(Err(kind))`: the relay closed the request first.
async fn handshake(
    pending: &mut AgentPending,
    technician_key: PublicKey,
) -> anyhow::Result<Result<assent_client::e2e::E2e, Option<ErrorKind>>> {
    let respond = assent_client::e2e::respond(pending, technician_key);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, respond).await {
        Err(_) => {
            anyhow::bail!("the technician's viewer did not complete the secure handshake in time")
        }
        Ok(Err(e)) if e.refusal().is_some() => Ok(Err(e.refusal())),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context("the secure handshake failed")),
        Ok(Ok(e2e)) => Ok(Ok(e2e)),
    }
}

/// A no (or no answer): signed and sent so the relay records it; nothing
/// was captured.
async fn decline(pending: AgentPending, decision: ConsentDecision, ui: &dyn UiSink) -> Outcome {
    let _ = pending.answer(decision).await;
    let msg = match decision {
        ConsentDecision::Timeout => "No answer in time: the session was declined.",
        _ => "You declined the session.",
    };
    ui.show(UiEvent::Ended(msg.into()));
    Outcome::Declined(decision)
}

/// How the prompt phase ended.
enum Asked {
    Answer(ConsentDecision),
    /// The relay closed the request first (its refusal kind; `None` when
    /// the connection was lost without one).
    Closed(Option<ErrorKind>),
}

/// Waits for the user's answer, the local deadline, or the relay closing
/// the request (withdrawn, cancelled, shutting down, technician lost);
/// permissions ticked meanwhile go into `chosen`.
async fn ask_user(
    pending: &mut AgentPending,
    commands: &mut mpsc::UnboundedReceiver<UiCommand>,
    deadline: Instant,
    chosen: &mut Vec<Permission>,
) -> Asked {
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(UiCommand::Decide(d)) => return Asked::Answer(d),
                Some(UiCommand::Allow(p, on)) => {
                    chosen.retain(|c| *c != p);
                    if on {
                        chosen.push(p);
                    }
                }
                Some(UiCommand::End) | None => return Asked::Answer(ConsentDecision::Denied),
                Some(_) => continue,
            },
            _ = tokio::time::sleep_until(deadline.into()) => return Asked::Answer(ConsentDecision::Timeout),
            // Cancel-safe: a relay message half-read when the user answers
            // stays buffered for `answer`.
            msg = pending.control.recv() => match msg {
                Ok(RelayMsg::Handshake(_)) => continue,
                Ok(other) => {
                    warn!(?other, "unexpected relay message while the user is asked; ignored");
                    continue;
                }
                Err(ClientError::Ended(_)) => return Asked::Closed(None),
                Err(e) => return Asked::Closed(e.refusal()),
            },
        }
    }
}

/// The request ended before the user's answer counted: the prompt turns
/// into what happened, and nothing starts.
fn close_request(ui: &dyn UiSink, kind: Option<ErrorKind>, offer: &SessionOffer) -> Outcome {
    let message = crate::prompt::request_closed(kind, offer);
    info!(?kind, "the request was closed before the session started");
    ui.show(UiEvent::RequestClosed(message.clone()));
    Outcome::RequestClosed(message)
}

/// Turns relay refusals into what the user should do.
fn explain(e: ClientError) -> anyhow::Error {
    match e.refusal() {
        Some(ErrorKind::BadCode) | Some(ErrorKind::ExpiredCode) | Some(ErrorKind::UsedCode) | Some(ErrorKind::Throttled) => {
            anyhow::anyhow!("{e}")
        }
        _ => match &e {
            ClientError::Net(n) if n.is_untrusted_relay() => anyhow::anyhow!(
                "the relay's certificate is not signed by the CA in --ca: check that you were given the right ca.pem ({e})"
            ),
            _ => anyhow::Error::new(e),
        },
    }
}
