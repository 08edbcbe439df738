//! The agent's session, from joining to the end: the end-to-end handshake
//! (before the prompt, so the user sees the verification code), the user's
//! decision, then frames out and input in, all through the consent gate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use assent_client::{AgentPending, ClientError};
use assent_proto::identity::{PublicKey, SecretKey};
use assent_proto::session_msg::{Control as SessionControl, SessionMsg};
use assent_proto::wire::{ClientMsg, ConsentDecision, ErrorKind, RelayMsg, Scope, SessionOffer};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::consent::{Grant, ScopeRequestAction, ScopeRequests};
use crate::guarded::{Guarded, InputFactory, ScreenFactory};
use crate::prompt::PromptText;
use crate::ui::{LiveInfo, UiCommand, UiEvent, UiSink};

/// When nothing changed, look again after this long (caps polling at ~60 Hz).
const IDLE_POLL: Duration = Duration::from_millis(16);
/// The handshake runs before the prompt; a viewer that does not finish it
/// in this time is not going to.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a wider scope waits for the relay's record before the old
/// scope is kept.
const SCOPE_RECORD_WAIT: Duration = Duration::from_secs(5);

pub struct JoinConfig {
    pub relay: String,
    pub ca: std::path::PathBuf,
    pub code: String,
    pub device: String,
    pub device_key: SecretKey,
    pub consent_timeout: Duration,
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
    pub inputs_injected: std::sync::atomic::AtomicU64,
    pub inputs_dropped: std::sync::atomic::AtomicU64,
}

pub async fn run(
    config: JoinConfig,
    screen: ScreenFactory,
    input: InputFactory,
    ui: Arc<dyn UiSink>,
    mut commands: mpsc::UnboundedReceiver<UiCommand>,
    stats: Arc<Stats>,
) -> anyhow::Result<Outcome> {
    use std::sync::atomic::Ordering::Relaxed;
    ui.show(UiEvent::Connecting);
    let mut pending = AgentPending::join(
        &config.relay,
        &config.ca,
        config.device_key,
        &config.device,
        &config.code,
    )
    .await
    .map_err(explain)?;
    let offer = pending.offer.clone();
    let technician_key = PublicKey(offer.technician_key);
    info!(technician = %offer.technician, ticket = %offer.ticket, "joined; running the end-to-end handshake");

    let e2e = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        assent_client::e2e::respond(&mut pending, technician_key),
    )
    .await
    {
        Err(_) => {
            anyhow::bail!("the technician's viewer did not complete the secure handshake in time")
        }
        // The request ended (withdrawn, cancelled) before the user was asked.
        Ok(Err(e)) if e.refusal().is_some() => return Ok(close_request(&*ui, e.refusal(), &offer)),
        Ok(Err(e)) => return Err(anyhow::Error::new(e).context("the secure handshake failed")),
        Ok(Ok(e2e)) => e2e,
    };
    let code = e2e.verification_code().to_string();

    // Ask the user. The local timeout denies; so does closing the window.
    let deadline = Instant::now() + config.consent_timeout;
    ui.show(UiEvent::Prompt {
        text: PromptText::new(&offer, &code),
        deadline,
    });
    let decision = match ask_user(&mut pending, &mut commands, deadline).await {
        Asked::Answer(d) => d,
        Asked::Closed(kind) => return Ok(close_request(&*ui, kind, &offer)),
    };
    info!(decision = decision.as_str(), "user answered");
    let Some(grant) = Grant::from_decision(decision, offer.scope) else {
        // Signed and sent so the relay records it; nothing was captured.
        let _ = pending.answer(decision).await;
        let msg = match decision {
            ConsentDecision::Timeout => "No answer in time: the session was declined.",
            _ => "You declined the session.",
        };
        ui.show(UiEvent::Ended(msg.into()));
        return Ok(Outcome::Declined(decision));
    };
    // A yes starts nothing until the relay has it on record: a refusal
    // here (its audit failed, or the request ended meanwhile) leaves the
    // screen and input untouched.
    let mut live = match pending.answer(decision).await {
        Ok(live) => live,
        Err(e) if e.refusal().is_some() => return Ok(close_request(&*ui, e.refusal(), &offer)),
        Err(e) => return Err(explain(e)),
    };
    let mut scope_reporter = live.scope_reporter();
    let (mut tx, mut rx) = e2e.into_channel(live.data.send, live.data.recv);

    let (mut guarded, mut frames) =
        Guarded::start(grant, screen, input).context("starting screen capture and input")?;
    let live_info = |scope| {
        UiEvent::Live(LiveInfo {
            technician: offer.technician.clone(),
            ticket: offer.ticket.clone(),
            scope,
            verification_code: code.clone(),
        })
    };
    ui.show(live_info(guarded.gate().scope()));
    let _ = tx
        .send(&SessionMsg::Control(SessionControl::Scope(
            guarded.gate().scope(),
        )))
        .await;

    let mut flow = crate::flow::FlowWindow::default();
    let mut capturing = guarded.request_frame(true);
    let mut want_keyframe = false;
    let mut poll_at: Option<tokio::time::Instant> = None;
    let mut last_cursor: Option<(u32, u32)> = None;
    let mut scope_requests = ScopeRequests::default();
    // Set while the user is asked for more scope mid-session.
    let mut scope_prompt_until: Option<Instant> = None;
    let end_message;
    loop {
        // Ask for the next frame when the last one is out, the window of
        // unacknowledged frames has room, and any idle wait has passed.
        if !capturing && flow.may_send() && poll_at.is_none() {
            capturing = guarded.request_frame(std::mem::take(&mut want_keyframe));
        }
        let idle = async {
            match poll_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let scope_prompt_timeout = async {
            match scope_prompt_until {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        // What the user's answer (or silence) to a scope question changes.
        let mut scope_answer: Option<ConsentDecision> = None;
        tokio::select! {
            _ = scope_prompt_timeout => scope_answer = Some(ConsentDecision::Timeout),
            frame = frames.recv(), if capturing => {
                capturing = false;
                if let Some(Ok(captured)) = &frame {
                    if captured.cursor.is_some() && captured.cursor != last_cursor {
                        last_cursor = captured.cursor;
                        if let Some((x, y)) = last_cursor {
                            let _ = tx.send(&SessionMsg::Cursor { x, y }).await;
                        }
                    }
                }
                match frame.map(|r| r.map(|c| c.frame)) {
                    Some(Ok(Some(encoded))) => {
                        flow.on_sent(encoded.seq, Instant::now());
                        if let Err(e) = tx.send(&SessionMsg::Frame(encoded.bytes)).await {
                            end_message = format!("The connection to the technician failed: {e}");
                            break;
                        }
                        stats.frames_sent.fetch_add(1, Relaxed);
                    }
                    Some(Ok(None)) => poll_at = Some(tokio::time::Instant::now() + IDLE_POLL),
                    Some(Err(e)) => {
                        warn!(error = %e, "capture failed");
                        end_message = format!("Screen capture failed: {e}");
                        break;
                    }
                    None => {
                        end_message = "Screen capture stopped.".into();
                        break;
                    }
                }
            }
            _ = idle => poll_at = None,
            msg = rx.recv() => match msg {
                Ok(SessionMsg::Input(ev)) => {
                    if guarded.input(ev) {
                        stats.inputs_injected.fetch_add(1, Relaxed);
                    } else {
                        stats.inputs_dropped.fetch_add(1, Relaxed);
                    }
                }
                Ok(SessionMsg::FrameAck { seq }) => flow.on_ack(seq, Instant::now()),
                Ok(SessionMsg::Control(SessionControl::KeyframeRequest)) => want_keyframe = true,
                Ok(SessionMsg::Control(SessionControl::ScopeRequest(requested))) => {
                    let in_force = guarded.gate().grant();
                    match scope_requests.on_request(in_force, requested, Instant::now()) {
                        ScopeRequestAction::Reply => {
                            info!(requested = requested.as_str(), "scope request answered with the scope in force");
                            let _ = tx.send(&SessionMsg::Control(SessionControl::Scope(in_force.scope()))).await;
                        }
                        ScopeRequestAction::Narrow(grant) => {
                            // Less never waits for the relay, so it cannot end here.
                            let _ = change_scope(&mut guarded, &mut scope_reporter, &mut live.control, &mut tx, grant).await;
                            ui.show(live_info(grant.scope()));
                        }
                        ScopeRequestAction::Ask => {
                            info!(requested = requested.as_str(), "asking the user about a scope change");
                            let until = Instant::now() + config.consent_timeout;
                            scope_prompt_until = Some(until);
                            ui.show(UiEvent::Prompt {
                                text: PromptText::scope_change(&offer, &code, in_force.scope(), requested),
                                deadline: until,
                            });
                        }
                    }
                }
                Ok(SessionMsg::Control(SessionControl::End)) => {
                    end_message = "The technician ended the session.".into();
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    end_message = format!("The session channel closed: {e}");
                    break;
                }
            },
            msg = live.control.recv() => {
                end_message = match msg {
                    Ok(RelayMsg::SessionEnded { reason }) => format!("The session ended ({}).", reason.as_str()),
                    Ok(_) => continue,
                    Err(e) => format!("The connection to the relay was lost: {e}"),
                };
                break;
            }
            cmd = commands.recv() => match cmd {
                Some(UiCommand::Pause) => {
                    if guarded.pause() {
                        want_keyframe = true;
                        ui.show(UiEvent::Paused(true));
                        let _ = tx.send(&SessionMsg::Control(SessionControl::Paused)).await;
                    }
                }
                Some(UiCommand::Resume) => {
                    if guarded.resume() {
                        want_keyframe = true;
                        ui.show(UiEvent::Paused(false));
                        let _ = tx.send(&SessionMsg::Control(SessionControl::Resumed)).await;
                    }
                }
                Some(UiCommand::End) | None => {
                    end_message = "You ended the session.".into();
                    // The relay records `agent_ended` from this.
                    let _ = live.control.send(&ClientMsg::End).await;
                    let _ = tx.send(&SessionMsg::Control(SessionControl::End)).await;
                    break;
                }
                Some(UiCommand::Decide(d)) => scope_answer = Some(d),
            },
        }
        if let Some(decision) = scope_answer {
            if scope_requests.asking() {
                scope_prompt_until = None;
                info!(
                    decision = decision.as_str(),
                    "user answered the scope request"
                );
                match scope_requests.on_answer(decision, Instant::now()) {
                    Some(grant) => {
                        let changed = change_scope(
                            &mut guarded,
                            &mut scope_reporter,
                            &mut live.control,
                            &mut tx,
                            grant,
                        )
                        .await;
                        if let Err(message) = changed {
                            end_message = message;
                            break;
                        }
                    }
                    None => {
                        let _ = tx
                            .send(&SessionMsg::Control(SessionControl::Scope(
                                guarded.gate().scope(),
                            )))
                            .await;
                    }
                }
                ui.show(live_info(guarded.gate().scope()));
            }
        }
    }
    stats
        .inputs_dropped
        .store(guarded.gate().dropped_inputs(), Relaxed);
    // Stop capturing and release held keys before anything else.
    tokio::task::spawn_blocking(move || guarded.end())
        .await
        .ok();
    ui.show(UiEvent::Ended(end_message.clone()));
    // The End the relay records was sent above if the user ended; if the
    // technician did, their viewer tells the relay, and saying End here
    // too could reach the relay first and be recorded as the user's.
    live.control.close_when_ended(Duration::from_secs(2)).await;
    Ok(Outcome::Ended(end_message))
}

/// Puts a new scope in force. Less applies at once (and is reported); more
/// applies only once the relay acknowledges its `scope_changed` record, so
/// a failed or missing record keeps the old scope. The viewer is told the
/// scope in force either way. `Err` carries the reason if the relay ended
/// the session meanwhile.
async fn change_scope(
    guarded: &mut Guarded,
    reporter: &mut assent_client::ScopeReporter,
    control: &mut assent_client::Control,
    tx: &mut assent_client::e2e::ChannelWriter,
    grant: Grant,
) -> Result<(), String> {
    let scope = grant.scope();
    let widening = scope == Scope::Control && guarded.gate().scope() == Scope::View;
    if widening {
        match reporter
            .report_recorded(control, scope, SCOPE_RECORD_WAIT)
            .await
        {
            Ok(true) => guarded.regrant(grant),
            Ok(false) => warn!("the relay did not record the scope change; the old scope stays"),
            Err(ClientError::Ended(reason)) => {
                return Err(format!("The session ended ({}).", reason.as_str()))
            }
            Err(e) => warn!(error = %e, "could not report the scope change; the old scope stays"),
        }
    } else {
        guarded.regrant(grant);
        if let Err(e) = reporter.report(control, scope).await {
            warn!(error = %e, "could not report the scope change to the relay");
        }
    }
    let in_force = guarded.gate().scope();
    info!(scope = in_force.as_str(), "scope in force");
    let _ = tx
        .send(&SessionMsg::Control(SessionControl::Scope(in_force)))
        .await;
    Ok(())
}

/// How the prompt phase ended.
enum Asked {
    Answer(ConsentDecision),
    /// The relay closed the request first (its refusal kind; `None` when
    /// the connection was lost without one).
    Closed(Option<ErrorKind>),
}

/// Waits for the user's answer, the local deadline, or the relay closing
/// the request (withdrawn, cancelled, shutting down, technician lost).
async fn ask_user(
    pending: &mut AgentPending,
    commands: &mut mpsc::UnboundedReceiver<UiCommand>,
    deadline: Instant,
) -> Asked {
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(UiCommand::Decide(d)) => return Asked::Answer(d),
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
