//! What the user sees: the consent prompt, then the live-session indicator,
//! as one window (winit allows one event loop per process) whose title
//! follows the phase, or the same on a terminal with `--tty`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assent_proto::permission::Permission;
use assent_proto::wire::{Confirmation, ConsentDecision, Scope, Validation};
use assent_softwindow::egui;
use tokio::sync::mpsc::UnboundedSender;

use crate::prompt::PromptText;
pub use crate::tty::{spawn_tty_reader, TtyUi};

mod arming;
pub mod ended;
pub mod files;
mod panels;
pub mod permissions;
mod privacy;

pub use ended::EndQuestion;
pub use files::{FileCommand, FileNews};
pub use permissions::ClipboardNews;

pub const PROMPT_TITLE: &str = "Assent — support request";
pub const LIVE_TITLE: &str = "Assent — session live";
/// Before the request is known (joining, secure handshake).
pub const CONNECTING_TITLE: &str = "Assent — connecting";
/// The request ended before the user's answer counted; the window says why.
pub const CLOSED_TITLE: &str = "Assent — request closed";
/// After the end, while the user is asked whether the problem was solved.
pub const ENDED_TITLE: &str = "Assent — session ended";
/// How long the "request closed" message stays if the user does not close it.
const CLOSED_MESSAGE_FOR: Duration = Duration::from_secs(6);

/// The session tells the user.
#[derive(Debug, Clone)]
pub enum UiEvent {
    Connecting,
    Prompt {
        text: PromptText,
        deadline: Instant,
    },
    Live(LiveInfo),
    Paused(bool),
    Ended(String),
    /// The request was withdrawn or cancelled before the answer counted.
    RequestClosed(String),
    /// A chat line, from the technician or the user's own.
    Chat(ChatLine),
    /// The technician asks the user to test the fix.
    Validation(ValidationAsk),
    /// The session is over (screen and input already stopped): "Was your
    /// problem solved?"
    Confirm(EndQuestion),
    /// The connection to the technician is interrupted (`true`: capture and
    /// input are stopped until it is back) or back (`false`).
    Interrupted(bool),
    /// The technician asks for a permission the user has not given.
    PermissionAsked(Permission),
    /// Clipboard text moved (or could not).
    Clipboard(ClipboardNews),
    /// A file offered, moving, or done.
    File(FileNews),
}

/// "Please test", as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationAsk {
    pub number: u32,
    pub technician: String,
    /// What to test; may be empty.
    pub what: String,
}

/// One line of the session's chat, as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// Who wrote it (the technician's name, or "You").
    pub from: String,
    pub text: String,
    /// When, `HH:MM` UTC.
    pub at: String,
    /// Written by this user.
    pub mine: bool,
}

/// Chat lines a window keeps (older ones scroll away).
const MAX_CHAT_LINES: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveInfo {
    pub technician: String,
    pub ticket: String,
    pub scope: Scope,
    pub verification_code: String,
    /// Permissions beyond the scope in force (the clipboard).
    pub permissions: Vec<Permission>,
}

/// The user tells the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiCommand {
    Decide(ConsentDecision),
    Pause,
    Resume,
    End,
    /// A chat message to the technician.
    Chat(String),
    /// The user's answer to "please test" number `number`.
    Validate {
        number: u32,
        answer: Validation,
        comment: String,
    },
    /// The user's answer, after the end, to "Was your problem solved?".
    Confirm(Confirmation),
    /// The terminal's input ended (`--tty`): nothing more can be asked there.
    InputClosed,
    /// The user turns a permission on or off (in the prompt: goes with the
    /// answer, for a permission the technician asked for).
    Allow(Permission, bool),
    /// The user answers a file offer, sends a file they picked, or cancels.
    File(FileCommand),
}

/// Where the session sends [`UiEvent`]s.
pub trait UiSink: Send + Sync {
    fn show(&self, event: UiEvent);
}

#[derive(Debug, Clone)]
enum Phase {
    Connecting,
    Prompt {
        text: PromptText,
        deadline: Instant,
        answered: bool,
        /// When the prompt asks for more scope mid-session: since when the
        /// session has been live (the indicator's clock carries on).
        live_since: Option<Instant>,
    },
    Live {
        info: LiveInfo,
        started: Instant,
        paused: bool,
    },
    Ended(String),
    /// After the end: "Was your problem solved?" until answered or closed.
    Confirm {
        question: EndQuestion,
        answered: bool,
    },
    /// Shown until the user closes it or `until` passes; keys answer nothing.
    RequestClosed {
        message: String,
        until: Instant,
    },
}

struct Shared {
    phase: Phase,
    ctx: Option<egui::Context>,
    chat: Vec<ChatLine>,
    /// Technician lines not seen yet (the window was not focused).
    unread: usize,
    /// A "please test" waiting for the user's answer.
    validation: Option<ValidationAsk>,
    /// The connection is interrupted: nothing is shared meanwhile.
    interrupted: bool,
    /// A permission the technician asked for, until answered.
    permission_asked: Option<Permission>,
    /// The last thing that happened to the clipboard.
    clipboard_news: Option<String>,
    /// A file offered, waiting for the user's answer.
    file_offer: Option<String>,
    /// A file moving now.
    file_progress: Option<String>,
    /// How the last transfer ended (or why a file cannot be sent).
    file_news: Option<String>,
}

/// The window's side of the UI.
#[derive(Clone)]
pub struct WindowUi {
    shared: Arc<Mutex<Shared>>,
}

impl Default for WindowUi {
    fn default() -> Self {
        WindowUi {
            shared: Arc::new(Mutex::new(Shared {
                phase: Phase::Connecting,
                ctx: None,
                chat: Vec::new(),
                unread: 0,
                validation: None,
                interrupted: false,
                permission_asked: None,
                clipboard_news: None,
                file_offer: None,
                file_progress: None,
                file_news: None,
            })),
        }
    }
}

impl UiSink for WindowUi {
    fn show(&self, event: UiEvent) {
        let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let phase_event =
            permissions::absorb(&mut s, event).and_then(|e| absorb_panel_event(&mut s, e));
        let Some(event) = phase_event else {
            if let Some(ctx) = &s.ctx {
                ctx.request_repaint();
            }
            return;
        };
        s.phase = match (event, &s.phase) {
            (UiEvent::Connecting, _) => Phase::Connecting,
            (UiEvent::Prompt { text, deadline }, phase) => Phase::Prompt {
                text,
                deadline,
                answered: false,
                live_since: match phase {
                    Phase::Live { started, .. } => Some(*started),
                    _ => None,
                },
            },
            (UiEvent::Live(info), phase) => Phase::Live {
                info,
                started: match phase {
                    Phase::Prompt {
                        live_since: Some(t),
                        ..
                    } => *t,
                    _ => Instant::now(),
                },
                paused: false,
            },
            (UiEvent::Paused(p), Phase::Live { info, started, .. }) => Phase::Live {
                info: info.clone(),
                started: *started,
                paused: p,
            },
            (UiEvent::Paused(_), other) => other.clone(),
            (UiEvent::Ended(msg), _) => Phase::Ended(msg),
            (UiEvent::Confirm(question), _) => Phase::Confirm {
                question,
                answered: false,
            },
            (UiEvent::RequestClosed(message), _) => Phase::RequestClosed {
                message,
                until: Instant::now() + CLOSED_MESSAGE_FOR,
            },
            (
                UiEvent::Chat(_)
                | UiEvent::Validation(_)
                | UiEvent::Interrupted(_)
                | UiEvent::PermissionAsked(_)
                | UiEvent::Clipboard(_)
                | UiEvent::File(_),
                other,
            ) => other.clone(),
        };
        if let Some(ctx) = &s.ctx {
            ctx.request_repaint();
        }
    }
}

/// Keeps the events the side panels show (the phase stays); hands back
/// the rest.
fn absorb_panel_event(s: &mut Shared, event: UiEvent) -> Option<UiEvent> {
    match event {
        UiEvent::Validation(ask) => s.validation = Some(ask),
        UiEvent::Interrupted(on) => s.interrupted = on,
        UiEvent::Chat(line) => {
            s.unread += usize::from(!line.mine);
            s.chat.push(line);
            let excess = s.chat.len().saturating_sub(MAX_CHAT_LINES);
            s.chat.drain(..excess);
        }
        other => return Some(other),
    }
    None
}

/// Runs the window on this (the main) thread until the session ends or the
/// user closes it. Closing it answers `deny` at the prompt and `End` when live.
/// Drawn by the CPU (assent-softwindow), not OpenGL: on a machine without a
/// GPU, Mesa's software GL alone was most of the agent's memory.
pub fn run_window(ui: WindowUi, commands: UnboundedSender<UiCommand>) -> anyhow::Result<()> {
    let viewport = egui::ViewportBuilder::default()
        .with_title(CONNECTING_TITLE)
        .with_inner_size([520.0, 460.0])
        .with_always_on_top();
    assent_softwindow::run(viewport, move |ctx, window| {
        ui.shared.lock().unwrap_or_else(|p| p.into_inner()).ctx = Some(ctx.clone());
        use raw_window_handle::HasWindowHandle as _;
        let raw = window.window_handle().ok().map(|h| h.as_raw());
        // Covered in every frame (privacy::masked), also where the
        // window's pid does not say it is ours.
        let own = raw.and_then(assent_wintitle::x11_window);
        if let (Some(id), Some(privacy)) = (own, crate::privacy::installed()) {
            privacy.add_own_window(id);
        }
        let titles = raw.and_then(assent_wintitle::TitleSetter::new);
        if let Some(t) = &titles {
            t.set(CONNECTING_TITLE);
        }
        AgentWindow {
            ui,
            commands,
            title: CONNECTING_TITLE.to_string(),
            titles,
            arming: Arming::default(),
            chat_draft: String::new(),
            validation_comment: String::new(),
            prompt_allowed: Vec::new(),
            send_path: String::new(),
        }
    })
}

struct AgentWindow {
    ui: WindowUi,
    commands: UnboundedSender<UiCommand>,
    title: String,
    titles: Option<assent_wintitle::TitleSetter>,
    arming: Arming,
    /// The chat message being typed.
    chat_draft: String,
    /// The comment typed for a "please test" answer.
    validation_comment: String,
    /// Permissions ticked in the prompt.
    prompt_allowed: Vec<Permission>,
    /// The path of a file to send, as typed.
    send_path: String,
}

pub use arming::ARM_DELAY;
use arming::{pressed_answer, Arming};

impl AgentWindow {
    fn send(&self, cmd: UiCommand) {
        let _ = self.commands.send(cmd);
    }

    fn set_title(&mut self, ctx: &egui::Context, title: &str) {
        if self.title != title {
            self.title = title.to_string();
            match &self.titles {
                Some(t) => t.set(title),
                None => ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.to_string())),
            }
        }
    }
}

impl assent_softwindow::App for AgentWindow {
    fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        let phase = self
            .ui
            .shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .phase
            .clone();
        let close_requested = ctx.input(|i| i.viewport().close_requested());
        egui::CentralPanel::default().show(ui, |ui| match phase {
            Phase::Connecting => {
                self.set_title(&ctx, CONNECTING_TITLE);
                ui.heading("Connecting to your technician…");
            }
            Phase::Prompt {
                text,
                deadline,
                answered,
                live_since,
            } => {
                self.set_title(&ctx, PROMPT_TITLE);
                if close_requested && live_since.is_some() {
                    // The session is live: closing the window ends it.
                    self.send(UiCommand::End);
                } else if close_requested && !answered {
                    self.answer(ConsentDecision::Denied);
                }
                self.prompt(ui, &text, deadline, answered);
            }
            Phase::Live {
                info,
                started,
                paused,
            } => {
                // Unread chat shows in the title too (the taskbar), so a
                // user working in another window sees the technician wrote.
                let unread = self
                    .ui
                    .shared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .unread;
                match unread {
                    0 => self.set_title(&ctx, LIVE_TITLE),
                    n => self.set_title(&ctx, &format!("{LIVE_TITLE} ({n} new)")),
                }
                if close_requested {
                    self.send(UiCommand::End);
                }
                self.live(ui, &info, started, paused);
            }
            Phase::Ended(msg) => {
                ui.heading(msg);
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
            Phase::Confirm { question, answered } => {
                self.set_title(&ctx, ENDED_TITLE);
                if close_requested {
                    // Closing the window skips the question.
                    self.send(UiCommand::End);
                }
                self.confirm(ui, &question, answered);
            }
            Phase::RequestClosed { message, until } => {
                self.set_title(&ctx, CLOSED_TITLE);
                ui.heading("This support request was closed");
                ui.separator();
                ui.label(message);
                ui.label("You do not need to do anything.");
                if ui.button("Close").clicked() || Instant::now() >= until {
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                }
                ctx.request_repaint_after(Duration::from_millis(250));
            }
        });
    }
}

impl AgentWindow {
    /// The question, its details, the countdown, and the answers (buttons
    /// and keys) until one is given. Answers count only once the question
    /// has been visible and focused for [`ARM_DELAY`]; Enter (the key a
    /// hurried user presses) refuses.
    fn prompt(&mut self, ui: &mut egui::Ui, text: &PromptText, deadline: Instant, answered: bool) {
        ui.heading(text.question());
        ui.separator();
        for line in text.lines().iter().skip(1) {
            ui.label(line);
        }
        // Above the answers and the arming line, so it never moves; the
        // choice goes with the answer.
        if !answered {
            self.prompt_permissions(ui, &text.permissions);
        }
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        ui.separator();
        ui.label(format!(
            "{}   ({} automatically in {left} s)",
            text.keys_hint(),
            text.timeout_hint()
        ));
        let ctx = ui.ctx().clone();
        let focused = ctx.input(|i| i.viewport().focused).unwrap_or(true);
        let arming_left = self.arming.left(deadline, focused, Instant::now());
        let armed = arming_left.is_zero();
        if !answered {
            if !armed {
                ui.label(format!(
                    "Please read the request: you can answer in {:.1} s.",
                    arming_left.as_secs_f32().max(0.1)
                ));
            }
            ui.add_enabled_ui(armed, |ui| {
                ui.horizontal(|ui| self.answer_buttons(ui, text));
            });
            match pressed_answer(&ctx, text.scope) {
                Some(d) if armed => self.answer(d),
                Some(d) => tracing::info!(
                    key_for = d.as_str(),
                    "a key pressed before the question was armed answers nothing"
                ),
                None => {}
            }
        }
        self.privacy(ui, 130.0);
        let repaint = if armed { 250 } else { 100 };
        ctx.request_repaint_after(Duration::from_millis(repaint));
    }

    fn answer_buttons(&mut self, ui: &mut egui::Ui, text: &PromptText) {
        if text.in_force.is_some() {
            if ui.button("Allow control (c)").clicked() {
                self.answer(ConsentDecision::Control);
            }
            if ui.button("Keep view only (v / d / Esc / Enter)").clicked() {
                self.answer(ConsentDecision::Denied);
            }
            return;
        }
        if ui.button("Allow view only (v)").clicked() {
            self.answer(ConsentDecision::View);
        }
        if text.scope == Scope::Control && ui.button("Allow control (c)").clicked() {
            self.answer(ConsentDecision::Control);
        }
        if ui.button("Deny (d / Esc / Enter)").clicked() {
            self.answer(ConsentDecision::Denied);
        }
    }

    /// The "session live" indicator with Pause/Resume and End.
    fn live(&mut self, ui: &mut egui::Ui, info: &LiveInfo, started: Instant, paused: bool) {
        let elapsed = started.elapsed();
        let minutes = elapsed.as_secs() / 60;
        let interrupted = self
            .ui
            .shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .interrupted;
        self.recording_banner(ui, info);
        // Same number of lines in every state, so the buttons stay put.
        if interrupted {
            ui.heading("Connection interrupted, reconnecting…");
            ui.label("Your technician cannot see your screen right now.");
        } else if paused {
            ui.heading("Session PAUSED");
            ui.label("The technician sees a placeholder and cannot type.");
        } else {
            ui.heading("A support session is live");
            ui.label("Pause at any time, e.g. to type a password privately.");
        }
        ui.label(format!("Technician: {}", info.technician));
        ui.label(format!("Ticket: {}", info.ticket));
        ui.label(format!("They can {}", info.scope.plain_words()));
        ui.label(format!("Verification code: {}", info.verification_code));
        ui.label(format!("Elapsed: {minutes} min"));
        ui.horizontal(|ui| {
            if paused {
                if ui.button("Resume").clicked() {
                    self.send(UiCommand::Resume);
                }
            } else if ui.button("Pause").clicked() {
                self.send(UiCommand::Pause);
            }
            if ui.button("End").clicked() {
                self.send(UiCommand::End);
            }
        });
        ui.separator();
        // Below the indicator and its buttons, which never move, the rest
        // scrolls: with a please-test request, a chat and the windows list
        // it is taller than the window, and the permissions at the bottom
        // were cut off out of the user's reach.
        egui::ScrollArea::vertical()
            .id_salt("live")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                self.validation(ui);
                self.chat(ui, &info.technician);
                self.privacy(ui, 70.0);
                // Last in the keyboard's order: Tab, Tab, Tab from the top
                // still reaches the chat line, and no stray Space turns a
                // permission on.
                self.live_permissions(ui, info);
                self.live_files(ui, info);
                self.recording_switch(ui, info);
            });
        // Redraw when the shown minute changes (events repaint at once):
        // a ticking clock would be a changed screen to capture and send.
        let next_minute = Duration::from_secs((minutes + 1) * 60).saturating_sub(elapsed);
        ui.ctx().request_repaint_after(next_minute);
    }
}

impl AgentWindow {
    fn answer(&mut self, d: ConsentDecision) {
        tracing::info!(decision = d.as_str(), "answer given in the window");
        let mut s = self.ui.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Phase::Prompt { answered, .. } = &mut s.phase {
            if !*answered {
                *answered = true;
                drop(s);
                self.send(UiCommand::Decide(d));
            }
        }
    }
}
