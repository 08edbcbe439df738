//! The agent's live session: frames out and input in, all through the
//! consent gate ([`Guarded`]), until someone ends it. The loop only waits
//! ([`LiveSession::next_wake`]) and dispatches to one handler per source;
//! a handler that ends the session returns the message the user reads.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use assent_client::e2e::{ChannelReader, ChannelWriter};
use assent_client::{ClientError, Control, ScopeReporter};
use assent_proto::session_msg::{Control as SessionControl, SessionMsg};
use assent_proto::text::sanitize;
use assent_proto::wire::{ClientMsg, ConsentDecision, EndReason, RelayMsg, Scope, SessionOffer};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::consent::{Grant, ScopeRequestAction, ScopeRequests};
use crate::escalation::{Accepted, Escalation, News, Rejoin};
use crate::flow::FlowWindow;
use crate::guarded::{CaptureResult, Guarded};
use crate::outage::Outage;
use crate::prompt::PromptText;
use crate::session::Stats;
use crate::ui::{LiveInfo, UiCommand, UiEvent, UiSink};

/// When nothing changed, look again after this long (caps polling at ~60 Hz).
const IDLE_POLL: Duration = Duration::from_millis(16);
/// How long a wider scope waits for the relay's record before the old
/// scope is kept.
const SCOPE_RECORD_WAIT: Duration = Duration::from_secs(5);

/// Why the session ends: the message the user reads.
type Ended = String;

/// What woke the loop.
enum Wake {
    Frame(Option<CaptureResult>),
    IdlePassed,
    ScopePromptTimedOut,
    /// A session message, or why the channel failed.
    Peer(Result<SessionMsg, String>),
    Relay(Result<RelayMsg, ClientError>),
    Command(Option<UiCommand>),
    /// The specialist's session joined (or could not be).
    SpecialistJoined(Result<(), String>),
    /// The specialist's connection while the user is asked.
    SpecialistRelay(Result<RelayMsg, ClientError>),
    EscalationTimedOut,
    PathTick,
    /// The user copied something while sharing the clipboard.
    Copied(Option<assent_clipboard::Copied>),
    /// A file going out has room for its next chunk.
    FileChunk,
    /// An attempt to carry on over a new connection ended.
    Reconnected(Box<Result<assent_client::resume::Resumed, ClientError>>),
}

/// How a live session ended.
pub enum LiveOutcome {
    /// Over: the message the user read.
    Ended(String),
    /// The user accepted a specialist: capture and input go on for their
    /// session (the gate already holds the new grant).
    HandedOver(Box<Handover>),
}

/// What the specialist's live session starts from.
pub struct Handover {
    pub accepted: Accepted,
    pub guarded: Guarded,
    pub frames: mpsc::Receiver<CaptureResult>,
}

/// Everything a live session holds.
pub struct LiveSession {
    pub guarded: Guarded,
    pub frames: mpsc::Receiver<CaptureResult>,
    pub tx: ChannelWriter,
    pub rx: ChannelReader,
    pub control: Control,
    pub reporter: ScopeReporter,
    pub ui: Arc<dyn UiSink>,
    pub offer: SessionOffer,
    pub verification_code: String,
    pub stats: Arc<Stats>,
    /// How long the user has to answer a mid-session question.
    pub consent_timeout: Duration,
    pub flow: FlowWindow,
    /// The JPEG quality photos go at: the technician's choice, the link's.
    pub quality: crate::quality::Quality,
    pub capturing: bool,
    pub want_keyframe: bool,
    pub poll_at: Option<tokio::time::Instant>,
    pub last_cursor: Option<(u32, u32)>,
    pub scope_requests: ScopeRequests,
    /// Set while the user is asked for more scope mid-session.
    pub scope_prompt_until: Option<Instant>,
    /// Chat messages this user sent.
    pub chat_sent: u32,
    /// The "please test" the user has not answered yet.
    pub validation_pending: Option<u32>,
    /// What is known of the end before it comes.
    pub end: EndSignals,
    /// A specialist asking to take over.
    pub escalation: Escalation,
    /// What joining a specialist's session needs.
    pub rejoin: Rejoin,
    /// A connection gone quiet: nothing is captured or injected meanwhile.
    pub outage: Outage,
    /// What the user allows beyond the scope (the clipboard).
    pub permissions: crate::permissions::Permissions,
    /// Coming back on a new connection after a long silence.
    pub reconnect: assent_client::resume::Reconnector,
}

/// What the live session learns that matters once it ends.
#[derive(Debug, Default)]
pub struct EndSignals {
    /// Why the relay says the session ended, once it said so.
    pub relay_end: Option<EndReason>,
    /// The terminal's input ended: nothing can be asked after the end.
    pub input_closed: bool,
    /// The end-to-end channel closed under the session.
    pub channel_closed: bool,
}

impl LiveSession {
    /// Runs until the session ends; stops capture and input, and returns
    /// the message the user reads.
    pub async fn run(mut self, commands: &mut mpsc::UnboundedReceiver<UiCommand>) -> LiveOutcome {
        self.ui.show(self.live_info());
        self.tell_scope().await;
        self.tell_permissions().await;
        for p in std::mem::take(&mut self.permissions.chosen_at_prompt) {
            self.set_permission(p, true).await;
        }
        let account = crate::device::Account::current();
        let who = SessionMsg::AffectedUser {
            login: account.login.chars().take(128).collect(),
            real_name: account.real_name.chars().take(128).collect(),
        };
        let _ = self.tx.send(&who).await;
        self.capturing = self.guarded.request_frame(true, self.quality.jpeg());
        let end_message = loop {
            let ended = match self.next_wake(commands).await {
                Wake::Frame(frame) => self.on_frame(frame).await,
                Wake::IdlePassed => {
                    self.poll_at = None;
                    Ok(())
                }
                Wake::ScopePromptTimedOut => self.on_scope_answer(ConsentDecision::Timeout).await,
                Wake::Peer(msg) => self.on_peer_msg(msg).await,
                Wake::Relay(msg) => self.on_relay_msg(msg).await,
                Wake::Command(cmd) => self.on_command(cmd).await,
                Wake::SpecialistJoined(joined) => {
                    match joined {
                        Ok(()) => self.show_escalation(),
                        Err(why) => warn!(%why, "the specialist's session could not be joined"),
                    }
                    Ok(())
                }
                Wake::SpecialistRelay(msg) => self.on_specialist_msg(msg),
                Wake::EscalationTimedOut => {
                    self.on_escalation_answer(ConsentDecision::Timeout).await
                }
                Wake::PathTick => {
                    self.on_path_tick();
                    Ok(())
                }
                Wake::Copied(copied) => {
                    self.on_copied(copied).await;
                    Ok(())
                }
                Wake::FileChunk => {
                    self.send_file_chunk().await;
                    Ok(())
                }
                Wake::Reconnected(result) => self.on_reconnected(*result).await,
            };
            if let Err(message) = ended {
                break message;
            }
        };
        match self.escalation.accepted.take() {
            Some(accepted) => LiveOutcome::HandedOver(Box::new(self.hand_over(accepted).await)),
            None => LiveOutcome::Ended(self.finish(end_message, commands).await),
        }
    }

    async fn next_wake(&mut self, commands: &mut mpsc::UnboundedReceiver<UiCommand>) -> Wake {
        // Ask for the next frame when the last one is out, the window of
        // unacknowledged frames has room, and any idle wait has passed.
        let may_capture = !self.outage.suspended();
        if may_capture && !self.capturing && self.poll_at.is_none() {
            let held_back = self.flow.held_back_by_bytes();
            self.quality.observe(held_back, Instant::now());
            if self.flow.may_send() {
                let keyframe = std::mem::take(&mut self.want_keyframe);
                let jpeg = self.quality.jpeg();
                self.capturing = self.guarded.request_frame(keyframe, jpeg);
            }
        }
        let idle = sleep_until_opt(self.poll_at);
        let scope_prompt = sleep_until_opt(self.scope_prompt_until.map(Into::into));
        let escalation_prompt = sleep_until_opt(self.escalation.deadline());
        tokio::select! {
            _ = scope_prompt => Wake::ScopePromptTimedOut,
            _ = escalation_prompt => Wake::EscalationTimedOut,
            _ = self.outage.clock.tick() => Wake::PathTick,
            news = self.escalation.next() => match news {
                News::Joined(joined) => Wake::SpecialistJoined(joined),
                News::Relay(msg) => Wake::SpecialistRelay(msg),
            },
            frame = self.frames.recv(), if self.capturing => Wake::Frame(frame),
            _ = idle => Wake::IdlePassed,
            msg = self.rx.recv() => Wake::Peer(msg.map_err(|e| e.to_string())),
            msg = self.control.recv() => Wake::Relay(msg),
            cmd = commands.recv() => Wake::Command(cmd),
            copied = self.permissions.next_copied() => Wake::Copied(copied),
            resumed = self.reconnect.finished() => Wake::Reconnected(Box::new(resumed)),
            // Between frames, not ahead of them: one chunk per turn.
            _ = std::future::ready(()), if self.permissions.transfers.may_send() => Wake::FileChunk,
        }
    }

    async fn on_frame(&mut self, frame: Option<CaptureResult>) -> Result<(), Ended> {
        self.capturing = false;
        self.stats.captures.fetch_add(1, Relaxed);
        let captured = match frame {
            None => return Err("Screen capture stopped.".into()),
            Some(Err(e)) => {
                warn!(error = %e, "capture failed");
                // Ended here, by this side: the relay records agent_ended.
                let _ = self.control.send(&ClientMsg::End).await;
                return Err(format!("Screen capture failed: {e}"));
            }
            Some(Ok(c)) => c,
        };
        if let Some(r) = captured.privacy {
            crate::privacy::report(&mut self.tx, &mut self.control, r).await;
        }
        if captured.cursor.is_some() && captured.cursor != self.last_cursor {
            self.last_cursor = captured.cursor;
            if let Some((x, y)) = self.last_cursor {
                let _ = self.tx.send(&SessionMsg::Cursor { x, y }).await;
            }
        }
        let Some(encoded) = captured.frame else {
            self.poll_at = Some(tokio::time::Instant::now() + IDLE_POLL);
            return Ok(());
        };
        self.flow
            .on_sent(encoded.seq, encoded.bytes.len(), Instant::now());
        if let Err(e) = self.tx.send(&SessionMsg::Frame(encoded.bytes)).await {
            if self.carried_on().await {
                return Ok(());
            }
            self.end.channel_closed = true;
            return Err(format!("The connection to the technician failed: {e}"));
        }
        self.stats.frames_sent.fetch_add(1, Relaxed);
        Ok(())
    }

    async fn on_peer_msg(&mut self, msg: Result<SessionMsg, String>) -> Result<(), Ended> {
        match msg {
            Ok(SessionMsg::Input(ev)) => {
                // Input sent while the path was down arrives late: not for
                // a screen the technician could not see.
                let admitted = !self.outage.suspended() && self.guarded.input(ev);
                let counter = if admitted {
                    &self.stats.inputs_injected
                } else {
                    &self.stats.inputs_dropped
                };
                counter.fetch_add(1, Relaxed);
            }
            Ok(SessionMsg::FrameAck { seq }) => self.flow.on_ack(seq, Instant::now()),
            Ok(SessionMsg::Control(SessionControl::KeyframeRequest)) => self.want_keyframe = true,
            Ok(SessionMsg::Control(SessionControl::ShowMonitor(m))) => self.guarded.show_monitor(m),
            Ok(SessionMsg::Control(SessionControl::Quality(q))) => {
                info!(
                    quality = q.as_str(),
                    "the technician chose the screen quality"
                );
                self.quality.set_mode(q);
            }
            Ok(SessionMsg::Control(SessionControl::ScopeRequest(requested))) => {
                self.on_scope_request(requested).await
            }
            Ok(SessionMsg::Control(SessionControl::End)) => {
                return Err(crate::prompt::session_ended(
                    EndReason::ViewerClosed,
                    &self.technician(),
                ))
            }
            Ok(SessionMsg::Chat(text)) => self.show_chat(&text),
            Ok(SessionMsg::ValidationRequest { number, what }) => {
                self.ask_validation(number, &what)
            }
            Ok(SessionMsg::Clipboard(text)) => self.on_clipboard_text(text).await,
            Ok(SessionMsg::File(m)) => self.on_file_msg(m).await,
            Ok(SessionMsg::Control(SessionControl::PermissionRequest(p))) => {
                self.on_permission_request(p).await
            }
            Ok(_) => {}
            Err(_) if self.carried_on().await || self.viewer_came_back().await => {}
            Err(e) => {
                // Usually the other side ended: the relay says how (see `finish`).
                self.end.channel_closed = true;
                return Err(format!("The session channel closed: {e}"));
            }
        }
        Ok(())
    }

    async fn on_relay_msg(&mut self, msg: Result<RelayMsg, ClientError>) -> Result<(), Ended> {
        match msg {
            Ok(RelayMsg::SessionEnded { reason }) => {
                self.end.relay_end = Some(reason);
                Err(crate::prompt::session_ended(reason, &self.technician()))
            }
            Ok(RelayMsg::EscalationCode { code, .. }) => {
                self.start_joining(code);
                Ok(())
            }
            Ok(RelayMsg::PeerInterrupted { .. }) => {
                self.on_peer_path(true);
                Ok(())
            }
            Ok(RelayMsg::PeerResumed { .. }) => {
                self.on_peer_path(false);
                Ok(())
            }
            Ok(RelayMsg::ResumeCredential { credential }) => {
                self.reconnect.credential(&self.offer.session, credential);
                Ok(())
            }
            Ok(RelayMsg::PeerReconnected { .. }) => self.follow_viewer().await,
            Ok(_) => Ok(()),
            Err(_) if self.carried_on().await => Ok(()),
            Err(e) => Err(format!("The connection to the relay was lost: {e}")),
        }
    }

    async fn on_command(&mut self, cmd: Option<UiCommand>) -> Result<(), Ended> {
        match cmd {
            Some(UiCommand::Pause) if self.guarded.pause() => {
                self.want_keyframe = true;
                self.permissions.paused(true);
                self.ui.show(UiEvent::Paused(true));
                let _ = self
                    .tx
                    .send(&SessionMsg::Control(SessionControl::Paused))
                    .await;
            }
            Some(UiCommand::Resume) if self.guarded.resume() => {
                self.want_keyframe = true;
                self.permissions.paused(false);
                self.ui.show(UiEvent::Paused(false));
                let _ = self
                    .tx
                    .send(&SessionMsg::Control(SessionControl::Resumed))
                    .await;
            }
            Some(UiCommand::Pause | UiCommand::Resume) => {}
            Some(UiCommand::End) | None => {
                // The relay records `agent_ended` from this.
                let _ = self.control.send(&ClientMsg::End).await;
                let _ = self
                    .tx
                    .send(&SessionMsg::Control(SessionControl::End))
                    .await;
                return Err("You ended the session.".into());
            }
            Some(UiCommand::Decide(d)) if self.escalation.shown() => {
                return self.on_escalation_answer(d).await
            }
            Some(UiCommand::Decide(d)) => return self.on_scope_answer(d).await,
            Some(UiCommand::InputClosed) => self.end.input_closed = true,
            // Only asked after the end (see `finish`).
            Some(UiCommand::Confirm(_)) => {}
            Some(UiCommand::Chat(text)) => self.send_chat(text).await,
            Some(UiCommand::Allow(p, on)) => self.set_permission(p, on).await,
            Some(UiCommand::File(c)) => self.on_file_command(c).await,
            Some(UiCommand::Validate {
                number,
                answer,
                comment,
            }) => self.send_validation(number, answer, comment).await,
        }
        Ok(())
    }

    /// The technician asks for another scope: less applies at once, more is
    /// put to the user (one question at a time, not again soon after a no).
    async fn on_scope_request(&mut self, requested: Scope) {
        if self.escalation.shown() {
            // One question at a time: the scope in force is the answer.
            self.tell_scope().await;
            return;
        }
        let in_force = self.guarded.gate().grant();
        match self
            .scope_requests
            .on_request(in_force, requested, Instant::now())
        {
            ScopeRequestAction::Reply => {
                info!(
                    requested = requested.as_str(),
                    "scope request answered with the scope in force"
                );
                self.tell_scope().await;
            }
            ScopeRequestAction::Narrow(grant) => {
                // Less never waits for the relay, so it cannot end here.
                let _ = self.change_scope(grant).await;
                self.ui.show(self.live_info());
            }
            ScopeRequestAction::Ask => {
                info!(
                    requested = requested.as_str(),
                    "asking the user about a scope change"
                );
                let until = Instant::now() + self.consent_timeout;
                self.scope_prompt_until = Some(until);
                let text = PromptText::scope_change(
                    &self.offer,
                    &self.verification_code,
                    in_force.scope(),
                    requested,
                );
                self.ui.show(UiEvent::Prompt {
                    text,
                    deadline: until,
                });
            }
        }
    }

    /// The user's answer (or silence) to a mid-session question.
    async fn on_scope_answer(&mut self, decision: ConsentDecision) -> Result<(), Ended> {
        if !self.scope_requests.asking() {
            return Ok(());
        }
        self.scope_prompt_until = None;
        info!(
            decision = decision.as_str(),
            "user answered the scope request"
        );
        match self.scope_requests.on_answer(decision, Instant::now()) {
            Some(grant) => self.change_scope(grant).await?,
            None => self.tell_scope().await,
        }
        self.ui.show(self.live_info());
        // A specialist's question waiting behind this one comes now.
        self.show_escalation();
        Ok(())
    }

    /// Puts a new scope in force. Less applies at once (and is reported);
    /// more applies only once the relay acknowledges its `scope_changed`
    /// record, so a failed or missing record keeps the old scope. The
    /// viewer is told the scope in force either way.
    async fn change_scope(&mut self, grant: Grant) -> Result<(), Ended> {
        let scope = grant.scope();
        let widening = scope == Scope::Control && self.guarded.gate().scope() == Scope::View;
        if widening {
            let recorded = self
                .reporter
                .report_recorded(&mut self.control, scope, SCOPE_RECORD_WAIT)
                .await;
            match recorded {
                Ok(true) => self.guarded.regrant(grant),
                Ok(false) => {
                    warn!("the relay did not record the scope change; the old scope stays")
                }
                Err(ClientError::Ended(reason)) => {
                    self.end.relay_end = Some(reason);
                    return Err(crate::prompt::session_ended(reason, &self.technician()));
                }
                Err(e) => {
                    warn!(error = %e, "could not report the scope change; the old scope stays")
                }
            }
        } else {
            self.guarded.regrant(grant);
            if let Err(e) = self.reporter.report(&mut self.control, scope).await {
                warn!(error = %e, "could not report the scope change to the relay");
            }
        }
        info!(
            scope = self.guarded.gate().scope().as_str(),
            "scope in force"
        );
        self.tell_scope().await;
        Ok(())
    }

    async fn tell_scope(&mut self) {
        let scope = self.guarded.gate().scope();
        let _ = self
            .tx
            .send(&SessionMsg::Control(SessionControl::Scope(scope)))
            .await;
    }

    pub(crate) fn live_info(&self) -> UiEvent {
        UiEvent::Live(LiveInfo {
            technician: self.offer.technician.clone(),
            ticket: self.offer.ticket.clone(),
            scope: self.guarded.gate().scope(),
            verification_code: self.verification_code.clone(),
            permissions: self.permissions.in_force(),
        })
    }

    /// The technician's name as shown to the user.
    pub(crate) fn technician(&self) -> String {
        sanitize(&self.offer.technician, 64)
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
