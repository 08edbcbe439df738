//! The technician's live session: frames in, input out, until someone ends
//! it. The loop only waits ([`LiveView::next_wake`]) and dispatches to one
//! handler per source; a handler that ends the session returns why.

use std::sync::Arc;
use std::time::Instant;

use assent_client::e2e::{ChannelReader, ChannelWriter};
use assent_client::ClientError;
use assent_codec::Decoder;
use assent_proto::escalation::EscalationState;
use assent_proto::session_msg::{
    Control as SessionControl, SessionMsg, MAX_CHAT, MAX_VALIDATION_TEXT,
};
use assent_proto::text::sanitize;
use assent_proto::wire::{ClientMsg, EndReason, RelayMsg, Scope, Validation};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::checklist::Fact;
use crate::record::AuditWriter;
use crate::session::{fields, lock, ChatLine, Command, SharedState, ValidationResult};

/// How the live session ended.
pub struct LiveEnd {
    /// An INTERFACE.md end reason, or what broke.
    pub reason: String,
    /// The technician ended it (window closed, SIGTERM, stdin EOF).
    pub by_viewer: bool,
    /// Chat messages (sent, received) during the session.
    pub chat: (u32, u32),
}

enum Wake {
    /// A session message, or why the channel failed.
    Peer(Result<SessionMsg, String>),
    Relay(Result<RelayMsg, ClientError>),
    Command(Option<Command>),
    PathTick,
    /// The technician copied something while the clipboard is shared.
    Copied(Option<assent_clipboard::Copied>),
    /// A file going out has room for its next chunk.
    FileChunk,
    /// An attempt to carry on over a new connection ended.
    Reconnected(Box<Result<assent_client::resume::Resumed, ClientError>>),
}

pub struct LiveView<'a> {
    pub session: String,
    pub state: SharedState,
    pub tx: ChannelWriter,
    pub rx: ChannelReader,
    pub control: &'a mut assent_client::Control,
    pub audit: &'a AuditWriter,
    pub repaint: Arc<dyn Fn() + Send + Sync>,
    pub decoder: Decoder,
    pub last_input: Option<Instant>,
    /// Chat messages sent and received (counted for the audit, never kept).
    pub chat_sent: u32,
    pub chat_received: u32,
    /// "Please test" requests sent (the last one is the one answered).
    pub validations_asked: u32,
    /// How the technician verified the requester (`--identity-check`).
    pub identity_check: String,
    /// A connection gone quiet.
    pub outage: crate::outage::Outage,
    /// The technician's clipboard, open while the user shares theirs.
    pub clipboard: Option<assent_clipboard::SharedClipboard>,
    /// This session's file transfers.
    pub transfers: assent_files::Transfers,
    /// The recording being written, while the user allows it.
    pub recorder: Option<crate::recording::Recorder>,
    /// Coming back on a new connection, or following the agent onto one.
    pub reconnect: assent_client::resume::Reconnector,
}

impl LiveView<'_> {
    /// Runs until the session ends. The end-to-end channel comes back with
    /// the end: the caller keeps it open until the relay has heard of the
    /// end, so that a technician's close is recorded as theirs (the agent,
    /// seeing the channel close first, could otherwise reach the relay
    /// first).
    pub async fn run(
        mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> (LiveEnd, ChannelWriter, ChannelReader) {
        loop {
            let ended = match self.next_wake(commands).await {
                Wake::Peer(msg) => self.on_peer_msg(msg).await,
                Wake::Relay(msg) => self.on_relay_msg(msg).await,
                Wake::Command(cmd) => self.on_command(cmd).await,
                Wake::PathTick => {
                    self.on_path_tick();
                    None
                }
                Wake::Copied(copied) => {
                    self.on_copied(copied).await;
                    None
                }
                Wake::FileChunk => {
                    self.send_file_chunk().await;
                    None
                }
                Wake::Reconnected(result) => self.on_reconnected(*result).await,
            };
            if let Some(mut end) = ended {
                self.stop_recording().await;
                end.chat = (self.chat_sent, self.chat_received);
                return (end, self.tx, self.rx);
            }
        }
    }

    async fn next_wake(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) -> Wake {
        tokio::select! {
            msg = self.rx.recv() => Wake::Peer(msg.map_err(|e| e.to_string())),
            msg = self.control.recv() => Wake::Relay(msg),
            cmd = commands.recv() => Wake::Command(cmd),
            _ = self.outage.clock.tick() => Wake::PathTick,
            copied = next_copied(&mut self.clipboard) => Wake::Copied(copied),
            resumed = self.reconnect.finished() => Wake::Reconnected(Box::new(resumed)),
            // Between frames and input, not ahead of them: one chunk per turn.
            _ = std::future::ready(()), if self.transfers.may_send() => Wake::FileChunk,
        }
    }

    async fn on_peer_msg(&mut self, msg: Result<SessionMsg, String>) -> Option<LiveEnd> {
        let session = self.session.clone();
        match msg {
            Ok(SessionMsg::Frame(bytes)) => self.on_frame(&bytes).await,
            Ok(SessionMsg::Cursor { x, y }) => lock(&self.state).cursor = Some((x, y)),
            Ok(SessionMsg::Control(SessionControl::Paused)) => {
                lock(&self.state).paused = true;
                self.audit
                    .record("session_paused", fields! {"session" => session});
                (self.repaint)();
            }
            Ok(SessionMsg::Control(SessionControl::Resumed)) => {
                lock(&self.state).paused = false;
                self.audit
                    .record("session_resumed", fields! {"session" => session});
                (self.repaint)();
            }
            Ok(SessionMsg::Control(SessionControl::Scope(s))) => {
                let changed = std::mem::replace(&mut lock(&self.state).scope, s) != s;
                if changed {
                    let f = fields! {"session" => session, "scope" => s.as_str()};
                    self.audit.record("scope_changed", f);
                }
            }
            Ok(SessionMsg::Control(SessionControl::End)) => return Some(ended("agent_ended")),
            Ok(SessionMsg::Privacy { hidden, only_one }) => {
                let mut s = lock(&self.state);
                (s.stats.hidden_windows, s.stats.only_one_window) = (hidden, only_one);
                drop(s);
                (self.repaint)();
            }
            Ok(SessionMsg::AffectedUser { login, real_name }) => {
                let login = sanitize(&login, 128);
                let who = if real_name.trim().is_empty() {
                    login
                } else {
                    format!("{} ({login})", sanitize(&real_name, 128))
                };
                let mut s = lock(&self.state);
                let device = s.device.clone();
                let check = crate::session::identity_note(&self.identity_check);
                s.note
                    .set("Affected User", format!("{who} on {device}{check}"));
            }
            Ok(SessionMsg::ValidationAnswer {
                number,
                answer,
                comment,
            }) => {
                info!(number, "test answer from the user");
                self.on_validation_answer(number, answer, comment)
            }
            Ok(SessionMsg::Permissions(in_force)) => {
                self.on_permissions(&in_force);
                use assent_proto::permission::Permission;
                self.on_files_allowed(in_force.contains(&Permission::Files))
                    .await;
                let recording = in_force.contains(&Permission::Recording);
                self.on_recording_allowed(recording).await;
            }
            Ok(SessionMsg::File(m)) => self.on_file_msg(m).await,
            Ok(SessionMsg::Clipboard(text)) => self.on_clipboard_text(text),
            Ok(SessionMsg::Chat(text)) => {
                info!("chat message from the user");
                self.chat_received = self.chat_received.saturating_add(1);
                self.push_chat("user", sanitize(&text, MAX_CHAT));
            }
            Ok(_) => {}
            Err(e) => {
                info!(error = %e, "session channel closed");
                return self.relay_reason().await;
            }
        }
        None
    }

    /// Decodes a frame into the shared screen and acknowledges it; a frame
    /// that does not decode asks for a keyframe instead.
    async fn on_frame(&mut self, bytes: &[u8]) {
        let started = Instant::now();
        let update = match self.decoder.decode(bytes) {
            Ok(u) => u,
            Err(e) => {
                warn!(error = %e, "frame did not decode; asking for a keyframe");
                let ask = SessionMsg::Control(SessionControl::KeyframeRequest);
                let _ = self.tx.send(&ask).await;
                return;
            }
        };
        let decode_ms = started.elapsed().as_secs_f64() * 1000.0;
        let latency = self
            .last_input
            .take()
            .map(|t| t.elapsed().as_secs_f64() * 1000.0);
        {
            let mut s = lock(&self.state);
            let resized = s.screen.width != update.width || s.screen.height != update.height;
            s.screen.width = update.width;
            s.screen.height = update.height;
            s.screen.pixels.clear();
            s.screen.pixels.extend_from_slice(self.decoder.pixels());
            // Accumulate until the window uploads; `None` (full upload)
            // absorbs any partial update.
            if update.keyframe || resized {
                s.screen.dirty = None;
            } else if let Some(d) = &mut s.screen.dirty {
                d.extend(update.dirty.iter().copied());
            }
            s.screen.version += 1;
            if update.keyframe {
                crate::monitors::shown_part(
                    &mut s.stats.screens,
                    self.decoder.view(),
                    (update.width, update.height),
                );
            }
            s.stats.frames += 1;
            s.stats.bytes += bytes.len() as u64;
            if update.jpeg_rects > 0 {
                s.stats.jpeg_frames += 1;
                s.stats.last_jpeg = Some(Instant::now());
            }
            s.stats.decode_ms = decode_ms;
            if latency.is_some() {
                s.stats.latency_ms = latency;
            }
        }
        (self.repaint)();
        self.record_update(bytes, update.keyframe);
        let _ = self
            .tx
            .send(&SessionMsg::FrameAck { seq: update.seq })
            .await;
    }

    /// Asks the agent for another scope (it asks its user), another
    /// monitor or another screen quality.
    async fn ask_agent(&mut self, ask: SessionControl) {
        info!(?ask, "asking the agent");
        let _ = self.tx.send(&SessionMsg::Control(ask)).await;
    }

    async fn on_relay_msg(&mut self, msg: Result<RelayMsg, ClientError>) -> Option<LiveEnd> {
        match msg {
            Ok(RelayMsg::PeerReconnected { .. }) => self.follow_agent().await,
            Ok(RelayMsg::ResumeCredential { credential }) => {
                self.reconnect.credential(&self.session, credential);
                None
            }
            Err(_) if self.carried_on().await => None,
            Ok(RelayMsg::SessionEnded { reason }) => Some(ended(reason.as_str())),
            Ok(RelayMsg::PeerInterrupted { .. }) => {
                self.on_peer_path(true);
                None
            }
            Ok(RelayMsg::PeerResumed { .. }) => {
                self.on_peer_path(false);
                None
            }
            Ok(msg) => {
                if crate::escalate::on_relay_msg(&self.state, self.audit, &self.session, &msg) {
                    (self.repaint)();
                }
                None
            }
            Err(e) => Some(ended(&format!("relay connection lost: {e}"))),
        }
    }

    async fn on_command(&mut self, cmd: Option<Command>) -> Option<LiveEnd> {
        match cmd {
            Some(Command::Input(ev)) => {
                // View-only sessions send nothing (the agent would drop it anyway).
                let (scope, paused, interrupted) = {
                    let s = lock(&self.state);
                    (s.scope, s.paused, s.interrupted.is_some())
                };
                if scope == Scope::Control && !paused && !interrupted {
                    self.last_input = Some(Instant::now());
                    let _ = self.tx.send(&SessionMsg::Input(ev)).await;
                }
                None
            }
            Some(Command::RequestScope(s)) => {
                self.ask_agent(SessionControl::ScopeRequest(s)).await;
                None
            }
            Some(Command::Chat(text)) => {
                self.send_chat(text).await;
                None
            }
            Some(Command::AskValidation(what)) => {
                self.ask_validation(what).await;
                None
            }
            // Asked before the invite only.
            Some(Command::IdentityCheck(_)) => None,
            Some(Command::Quality(q)) => {
                lock(&self.state).stats.quality = q;
                self.ask_agent(SessionControl::Quality(q)).await;
                None
            }
            Some(Command::ShowMonitor(m)) => {
                self.ask_agent(SessionControl::ShowMonitor(m)).await;
                None
            }
            Some(Command::ListSpecialists) => {
                let _ = self.control.send(&ClientMsg::ListSpecialists).await;
                None
            }
            Some(Command::Escalate {
                specialist,
                trigger,
                scope,
            }) => {
                self.escalate((specialist, trigger, scope)).await;
                None
            }
            Some(Command::AskPermission(p)) => {
                self.ask_permission(p).await;
                None
            }
            Some(Command::SendFile(path)) => {
                self.send_file(path).await;
                None
            }
            Some(Command::CancelFile) => {
                self.cancel_files().await;
                None
            }
            Some(Command::Record(true)) => {
                self.start_recording().await;
                None
            }
            Some(Command::Record(false)) => {
                self.stop_recording().await;
                None
            }
            Some(Command::Screenshot) => {
                self.take_screenshot().await;
                None
            }
            Some(Command::End) | None => Some(LiveEnd {
                reason: EndReason::ViewerClosed.as_str().into(),
                by_viewer: true,
                chat: (0, 0),
            }),
        }
    }
}

impl LiveView<'_> {
    /// Hands the session to a specialist; a bad request is shown, not sent.
    async fn escalate(&mut self, ask: (String, String, Scope)) {
        let msg = crate::escalate::request(&self.state, self.audit, &self.session, ask);
        match msg {
            Ok(msg) => {
                let _ = self.control.send(&msg).await;
            }
            Err(message) => {
                let mut s = lock(&self.state);
                s.escalation.state = Some(EscalationState::Refused { message });
            }
        }
        (self.repaint)();
    }

    /// The technician's chat line: to the user end to end, to the relay
    /// only that one was sent.
    async fn send_chat(&mut self, text: String) {
        let text: String = text.trim().chars().take(MAX_CHAT).collect();
        if text.is_empty() {
            return;
        }
        if let Err(e) = self.tx.send(&SessionMsg::Chat(text.clone())).await {
            warn!(error = %e, "chat message not sent");
            return;
        }
        let _ = self
            .control
            .send(&assent_proto::wire::ClientMsg::ChatSent)
            .await;
        self.chat_sent = self.chat_sent.saturating_add(1);
        self.push_chat("technician", text);
    }

    fn push_chat(&mut self, from: &'static str, text: String) {
        let at = clock_time();
        lock(&self.state).chat.push(ChatLine { from, text, at });
        (self.repaint)();
    }

    /// "Please test": the user answers in their window; the answer, signed,
    /// goes to the relay's audit, and with the comment comes back here.
    async fn ask_validation(&mut self, what: String) {
        let what: String = what.trim().chars().take(MAX_VALIDATION_TEXT).collect();
        let number = self.validations_asked + 1;
        let msg = SessionMsg::ValidationRequest { number, what };
        if let Err(e) = self.tx.send(&msg).await {
            warn!(error = %e, "test request not sent");
            return;
        }
        self.validations_asked = number;
        info!(number, "asked the user to test");
        let f = fields! {"session" => self.session, "number" => number};
        self.audit.record("validation_requested", f);
    }

    fn on_validation_answer(&mut self, number: u32, answer: Validation, comment: String) {
        // Only the answer to the last question counts (and only once).
        let answered = lock(&self.state)
            .validations
            .iter()
            .any(|v| v.number == number);
        if number != self.validations_asked || answered {
            warn!(number, "test answer for no open request; ignored");
            return;
        }
        let comment = if comment.trim().is_empty() {
            String::new()
        } else {
            sanitize(&comment, MAX_VALIDATION_TEXT)
        };
        let at = clock_time();
        let f =
            fields! {"session" => self.session, "number" => number, "answer" => answer.as_str()};
        self.audit.record("user_validation", f);
        {
            let mut s = lock(&self.state);
            let mut line = format!("Tested with the user at {at} UTC: {}", answer.plain_words());
            if !comment.is_empty() {
                line.push_str(&format!(" ({comment})"));
            }
            let kept: Vec<&str> = s
                .note
                .get("Result")
                .lines()
                .filter(|l| !l.starts_with("Tested with the user"))
                .collect();
            let result = kept
                .into_iter()
                .chain([line.as_str()])
                .collect::<Vec<_>>()
                .join("\n");
            s.note.set("Result", result);
            // The last answer is what counts for "resolution tested".
            match answer {
                Validation::Works => s.checklist.know(Fact::TestedWorks),
                Validation::StillBroken => s.checklist.forget(Fact::TestedWorks),
            }
            s.validations.push(ValidationResult {
                number,
                answer,
                comment,
                at,
            });
        }
        (self.repaint)();
    }
}

/// `HH:MM:SS` UTC, for chat lines and test answers.
fn clock_time() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

impl LiveView<'_> {
    /// The channel closed under the session: the relay says why in a
    /// moment (an admin's kill, a handover), else the user's side is lost.
    /// The channel closed: the relay says why, or that the agent is back
    /// on a new connection (the old channel's close came first).
    async fn relay_reason(&mut self) -> Option<LiveEnd> {
        if self.carried_on().await {
            return None;
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match tokio::time::timeout_at(deadline, self.control.recv()).await {
                Ok(Ok(RelayMsg::SessionEnded { reason })) => return Some(ended(reason.as_str())),
                Ok(Ok(RelayMsg::PeerReconnected { .. })) => return self.follow_agent().await,
                Ok(Ok(msg)) => {
                    crate::escalate::on_relay_msg(&self.state, self.audit, &self.session, &msg);
                }
                Ok(Err(_)) | Err(_) => return Some(ended("agent_lost")),
            }
        }
    }
}

/// The next thing the technician copied (never, while not shared).
async fn next_copied(
    clipboard: &mut Option<assent_clipboard::SharedClipboard>,
) -> Option<assent_clipboard::Copied> {
    match clipboard {
        Some(c) => c.copied().await,
        None => std::future::pending().await,
    }
}

pub(crate) fn ended(reason: &str) -> LiveEnd {
    LiveEnd {
        reason: reason.to_string(),
        by_viewer: false,
        chat: (0, 0),
    }
}
