//! The session window: the remote screen (a texture updated from changed
//! tiles only), a status bar, banners for pause and end, and the session
//! note in a side panel. Mouse and keyboard are forwarded only when the
//! session is in `control` scope.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assent_proto::session_msg::{InputEvent, Key, MouseButton};
use assent_proto::wire::Scope;
use eframe::egui;
use tokio::sync::mpsc::UnboundedSender;

use crate::checklist::{check, Fact};
use crate::session::{Command, Phase, SharedState, Stats};

mod escalate_panel;
mod panels;

pub type RepaintSlot = Arc<Mutex<Option<Box<dyn Fn() + Send + Sync>>>>;

/// `Assent — <device> — <ticket>`, the title INTERFACE.md promises.
pub fn title(device: &str, ticket: &str) -> String {
    let device = if device.is_empty() {
        "waiting for the user"
    } else {
        device
    };
    format!("Assent — {device} — {ticket}")
}

pub fn run(
    state: SharedState,
    commands: UnboundedSender<Command>,
    repaint: RepaintSlot,
) -> Result<(), String> {
    let initial = {
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        title(&s.device, &s.ticket)
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(initial.clone())
            .with_inner_size([1200.0, 800.0]),
        ..Default::default()
    };
    eframe::run_native(
        "assent-viewer",
        options,
        Box::new(move |cc| {
            let ctx = cc.egui_ctx.clone();
            *repaint.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Box::new(move || ctx.request_repaint()));
            use raw_window_handle::HasWindowHandle as _;
            let titles = cc
                .window_handle()
                .ok()
                .and_then(|h| assent_wintitle::TitleSetter::new(h.as_raw()));
            if let Some(t) = &titles {
                t.set(&initial);
            }
            Ok(Box::new(ViewerWindow {
                state,
                commands,
                texture: None,
                texture_version: 0,
                title: initial,
                titles,
                one_to_one: false,
                last_pointer: None,
                stats_before: (Instant::now(), Stats::default()),
                rates: (0.0, 0.0),
                chat_draft: String::new(),
                test_draft: String::new(),
                identity_other: String::new(),
                escalation: Default::default(),
                send_path: String::new(),
            }))
        }),
    )
    .map_err(|e| e.to_string())
}

struct ViewerWindow {
    state: SharedState,
    commands: UnboundedSender<Command>,
    texture: Option<egui::TextureHandle>,
    texture_version: u64,
    title: String,
    titles: Option<assent_wintitle::TitleSetter>,
    one_to_one: bool,
    last_pointer: Option<(u32, u32)>,
    stats_before: (Instant, Stats),
    /// fps, kbit/s over the last second.
    rates: (f64, f64),
    /// The chat message being typed.
    chat_draft: String,
    /// What the user is asked to test.
    test_draft: String,
    /// "Other" way the requester's identity was verified, being typed.
    identity_other: String,
    /// The escalation being chosen.
    escalation: escalate_panel::EscalationDraft,
    /// The path of a file to send, as typed.
    send_path: String,
}

impl ViewerWindow {
    fn send(&self, ev: InputEvent) {
        let _ = self.commands.send(Command::Input(ev));
    }

    /// Uploads what changed since the last frame: whole texture on a
    /// keyframe or resize, otherwise only the dirty rectangles.
    fn sync_texture(&mut self, ctx: &egui::Context) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.screen.version == self.texture_version || s.screen.width == 0 {
            return;
        }
        let (w, h) = (s.screen.width as usize, s.screen.height as usize);
        let full =
            self.texture.as_ref().is_none_or(|t| t.size() != [w, h]) || s.screen.dirty.is_none();
        if full {
            let image = egui::ColorImage::from_rgba_unmultiplied([w, h], &s.screen.pixels);
            match &mut self.texture {
                Some(t) if t.size() == [w, h] => t.set(image, egui::TextureOptions::LINEAR),
                _ => {
                    self.texture =
                        Some(ctx.load_texture("remote-screen", image, egui::TextureOptions::LINEAR))
                }
            }
        } else if let (Some(t), Some(dirty)) = (&mut self.texture, &s.screen.dirty) {
            for r in dirty {
                let (x, y, rw, rh) = (
                    r.x as usize,
                    r.y as usize,
                    r.width as usize,
                    r.height as usize,
                );
                if x + rw > w || y + rh > h {
                    continue;
                }
                let mut patch = Vec::with_capacity(rw * rh * 4);
                for row in y..y + rh {
                    let start = (row * w + x) * 4;
                    patch.extend_from_slice(&s.screen.pixels[start..start + rw * 4]);
                }
                let image = egui::ColorImage::from_rgba_unmultiplied([rw, rh], &patch);
                t.set_partial([x, y], image, egui::TextureOptions::LINEAR);
            }
        }
        s.screen.dirty = Some(Vec::new());
        self.texture_version = s.screen.version;
    }

    fn forward_input(
        &mut self,
        ui: &egui::Ui,
        response: &egui::Response,
        rect: egui::Rect,
        size: (u32, u32),
    ) {
        let to_remote = |p: egui::Pos2| -> Option<(u32, u32)> {
            if !rect.contains(p) || rect.width() <= 0.0 || rect.height() <= 0.0 {
                return None;
            }
            let x =
                ((p.x - rect.min.x) / rect.width() * size.0 as f32).clamp(0.0, size.0 as f32 - 1.0);
            let y = ((p.y - rect.min.y) / rect.height() * size.1 as f32)
                .clamp(0.0, size.1 as f32 - 1.0);
            Some((x as u32, y as u32))
        };
        // The keyboard goes to the remote screen only after a click on it:
        // hovering must not pull focus away from the chat box (a user's
        // password typed there must never be typed on their machine).
        if response.clicked() || response.drag_started() {
            response.request_focus();
        }
        let events = ui.input(|i| i.events.clone());
        for ev in events {
            match ev {
                egui::Event::PointerMoved(p) => {
                    if let Some((x, y)) = to_remote(p) {
                        if self.last_pointer != Some((x, y)) {
                            self.last_pointer = Some((x, y));
                            self.send(InputEvent::MouseMove { x, y });
                        }
                    }
                }
                // Presses only over the screen; releases always, so nothing
                // stays held when the pointer leaves mid-drag.
                egui::Event::PointerButton {
                    pos,
                    button,
                    pressed,
                    ..
                } if to_remote(pos).is_some() || !pressed => {
                    let button = match button {
                        egui::PointerButton::Primary => MouseButton::Left,
                        egui::PointerButton::Secondary => MouseButton::Right,
                        egui::PointerButton::Middle => MouseButton::Middle,
                        _ => continue,
                    };
                    self.send(InputEvent::MouseButton { button, pressed });
                }
                egui::Event::MouseWheel { delta, .. } if response.hovered() => {
                    let (dx, dy) = (-delta.x.signum() as i32, -delta.y.signum() as i32);
                    if dx != 0 || dy != 0 {
                        self.send(InputEvent::Wheel { dx, dy });
                    }
                }
                egui::Event::Text(t) if response.has_focus() => self.send(InputEvent::Text(t)),
                egui::Event::Key {
                    key,
                    pressed,
                    modifiers,
                    ..
                } if response.has_focus() => {
                    for ev in key_events(key, pressed, modifiers) {
                        self.send(ev);
                    }
                }
                _ => {}
            }
        }
    }
}

/// What one key event of the window sends. Shortcuts (Ctrl+C...) produce
/// no Text event, so a modifier chord goes out as keys.
fn key_events(key: egui::Key, pressed: bool, modifiers: egui::Modifiers) -> Vec<InputEvent> {
    if let Some(k) = map_key(key) {
        return vec![InputEvent::Key { key: k, pressed }];
    }
    if !pressed || !(modifiers.ctrl || modifiers.alt) {
        return Vec::new();
    }
    let name = key.symbol_or_name();
    let (Some(c), 1) = (name.chars().next(), name.chars().count()) else {
        return Vec::new();
    };
    let c = c.to_ascii_lowercase();
    let modifier = if modifiers.ctrl {
        Key::Control
    } else {
        Key::Alt
    };
    [
        (modifier, true),
        (Key::Char(c), true),
        (Key::Char(c), false),
        (modifier, false),
    ]
    .into_iter()
    .map(|(key, pressed)| InputEvent::Key { key, pressed })
    .collect()
}

fn map_key(key: egui::Key) -> Option<Key> {
    use egui::Key as E;
    Some(match key {
        E::Enter => Key::Return,
        E::Tab => Key::Tab,
        E::Backspace => Key::Backspace,
        E::Escape => Key::Escape,
        E::Delete => Key::Delete,
        E::Insert => Key::Insert,
        E::Home => Key::Home,
        E::End => Key::End,
        E::PageUp => Key::PageUp,
        E::PageDown => Key::PageDown,
        E::ArrowLeft => Key::Left,
        E::ArrowRight => Key::Right,
        E::ArrowUp => Key::Up,
        E::ArrowDown => Key::Down,
        E::F1 => Key::F(1),
        E::F2 => Key::F(2),
        E::F3 => Key::F(3),
        E::F4 => Key::F(4),
        E::F5 => Key::F(5),
        E::F6 => Key::F(6),
        E::F7 => Key::F(7),
        E::F8 => Key::F(8),
        E::F9 => Key::F(9),
        E::F10 => Key::F(10),
        E::F11 => Key::F(11),
        E::F12 => Key::F(12),
        _ => return None,
    })
}

/// What one frame of the window draws, read under the lock once.
pub(crate) struct Snapshot {
    phase: Phase,
    device: String,
    ticket: String,
    scope: Scope,
    code: String,
    paused: bool,
    stats: Stats,
    size: (u32, u32),
    interrupted: Option<String>,
    files: crate::files::FilesView,
}

impl eframe::App for ViewerWindow {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        if ctx.input(|i| i.viewport().close_requested()) {
            self.on_close_requested(&ctx);
        }
        if self.state.lock().unwrap_or_else(|p| p.into_inner()).quit {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        self.sync_texture(&ctx);
        let snap = {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            Snapshot {
                phase: s.phase.clone(),
                device: s.device.clone(),
                ticket: s.ticket.clone(),
                scope: s.scope,
                code: s.verification_code.clone(),
                paused: s.paused,
                stats: s.stats.clone(),
                size: (s.screen.width, s.screen.height),
                interrupted: s.interrupted.clone(),
                files: s.files.clone(),
            }
        };
        self.update_title(&ctx, &snap);
        self.update_rates(&snap.stats);
        // Before the invite there is no session or note yet: the identity
        // question alone (and first for the keyboard).
        if snap.phase != Phase::AskIdentity {
            egui::Panel::bottom("status").show(ui, |ui| {
                ui.horizontal(|ui| self.status_bar(ui, &snap));
            });
            // Its own row: the status bar is full, and this is only there
            // when the user's screen has several monitors.
            if snap.phase == Phase::Live && snap.stats.screens.monitors.len() > 1 {
                egui::Panel::top("monitors").show(ui, |ui| {
                    ui.horizontal(|ui| self.monitor_pick(ui, &snap.stats.screens));
                });
            }
            egui::Panel::right("note")
                .default_size(280.0)
                .show(ui, |ui| {
                    // The chat stays in view at the bottom of the side
                    // panel, however long the note grows above it.
                    egui::Panel::bottom("chat").show(ui, |ui| self.chat_panel(ui));
                    egui::ScrollArea::vertical()
                        .id_salt("side")
                        .show(ui, |ui| self.note_panel(ui))
                });
            // Under the remote screen, a row of its own: what the user
            // allows beyond the scope (clipboard, files, recording).
            egui::Panel::bottom("permissions").show(ui, |ui| {
                ui.horizontal(|ui| self.permission_status(ui, &snap));
            });
        }
        egui::CentralPanel::default().show(ui, |ui| self.central(ui, &snap));
        ctx.request_repaint_after(Duration::from_millis(250));
    }
}

impl ViewerWindow {
    /// Closing while live ends the session and keeps the window for the
    /// note. Closing after the end files the note: not without a Result (or
    /// a Next Action unless resolved); with checklist gaps, only when asked
    /// a second time. SIGTERM closes regardless.
    fn on_close_requested(&mut self, ctx: &egui::Context) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let keep_open = match &s.phase {
            _ if s.quit => false,
            Phase::Live => true,
            Phase::Ended(_) => {
                let mut checklist = s.checklist.clone();
                checklist.know(Fact::NoteDocumented);
                match check(s.outcome, s.note.get("Next Action"), &checklist) {
                    None => false,
                    Some(p) if p.may_file_anyway() && s.note_problem.as_ref() == Some(&p) => false,
                    Some(p) => {
                        s.note_problem = Some(p);
                        true
                    }
                }
            }
            // Before the session: closing withdraws the request.
            _ => false,
        };
        let ended = matches!(s.phase, Phase::Ended(_));
        drop(s);
        if keep_open {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
        }
        // While live, End ends the session; after it, End files the note.
        if !(ended && keep_open) {
            let _ = self.commands.send(Command::End);
        }
    }

    fn update_title(&mut self, ctx: &egui::Context, snap: &Snapshot) {
        let want = title(&snap.device, &snap.ticket);
        if want != self.title {
            match &self.titles {
                Some(t) => t.set(&want),
                None => ctx.send_viewport_cmd(egui::ViewportCommand::Title(want.clone())),
            }
            self.title = want;
        }
    }

    fn update_rates(&mut self, stats: &Stats) {
        let elapsed = self.stats_before.0.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let prev = &self.stats_before.1;
            let secs = elapsed.as_secs_f64();
            self.rates = (
                (stats.frames - prev.frames) as f64 / secs,
                (stats.bytes - prev.bytes) as f64 * 8.0 / 1000.0 / secs,
            );
            self.stats_before = (Instant::now(), stats.clone());
        }
    }

    /// "The user's screen has N monitors. Show: All 1 2": what the
    /// technician sees of it (the agent crops; a keyframe brings the pick).
    fn monitor_pick(&mut self, ui: &mut egui::Ui, stats: &crate::monitors::Screens) {
        let n = stats.monitors.len();
        ui.label(format!("The user's screen has {n} monitors. Show:"));
        if ui
            .selectable_label(stats.monitor.is_none(), "All")
            .clicked()
        {
            let _ = self.commands.send(Command::ShowMonitor(None));
        }
        for (i, _) in stats.monitors.iter().enumerate() {
            let label = (i + 1).to_string();
            if ui
                .selectable_label(stats.monitor == Some(i), label)
                .clicked()
            {
                let _ = self
                    .commands
                    .send(Command::ShowMonitor(u8::try_from(i).ok()));
            }
        }
    }

    fn status_bar(&mut self, ui: &mut egui::Ui, snap: &Snapshot) {
        if let Some(why) = &snap.interrupted {
            ui.colored_label(
                egui::Color32::from_rgb(255, 170, 60),
                format!("Connection: {why}"),
            );
            ui.separator();
        }
        let device = if snap.device.is_empty() {
            "—"
        } else {
            &snap.device
        };
        ui.label(format!("Device: {device}"));
        ui.separator();
        ui.label(format!("Ticket: {}", snap.ticket));
        ui.separator();
        let (hidden, only) = (snap.stats.hidden_windows, snap.stats.only_one_window);
        if let Some(text) = crate::privacy::status_text(hidden, only) {
            ui.label(text);
            ui.separator();
        }
        ui.label(match snap.scope {
            Scope::View => "VIEW ONLY (input is not sent)",
            Scope::Control => "Control",
        });
        // The user answers in their own prompt; the scope shown changes
        // only when their agent says so.
        let (label, wanted) = match snap.scope {
            Scope::View => ("Ask for control", Scope::Control),
            Scope::Control => ("Give up control", Scope::View),
        };
        // Only a live session has a user to ask.
        let live = snap.phase == Phase::Live;
        if ui
            .add_enabled(live, egui::Button::new(label).small())
            .clicked()
        {
            let _ = self.commands.send(Command::RequestScope(wanted));
        }
        ui.separator();
        let code = if snap.code.is_empty() {
            "—"
        } else {
            &snap.code
        };
        ui.label(format!("Verification code: {code}"));
        ui.separator();
        let latency = snap
            .stats
            .latency_ms
            .map(|l| format!("{l:.0} ms latency"))
            .unwrap_or_else(|| "latency —".into());
        ui.label(format!(
            "{:.0} fps · {latency} · {:.0} kbit/s",
            self.rates.0, self.rates.1
        ));
        ui.separator();
        crate::quality::picker(ui, &snap.stats, &self.commands);
        ui.separator();
        ui.checkbox(&mut self.one_to_one, "1:1");
    }

    fn central(&mut self, ui: &mut egui::Ui, snap: &Snapshot) {
        match &snap.phase {
            Phase::AskIdentity => self.identity_form(ui),
            Phase::Connecting => {
                ui.heading("Connecting to the relay…");
            }
            Phase::Invited { code } => {
                ui.heading(format!("Invite code: {code}"));
                ui.label("Read it to the user; they run `assent-agent join` with it and accept the prompt.");
            }
            Phase::AwaitingConsent => {
                ui.heading(format!(
                    "{} joined: waiting for the user's answer",
                    snap.device
                ));
                ui.label(format!(
                    "Verification code: {} (the user sees the same code)",
                    snap.code
                ));
            }
            Phase::Ended(reason) => {
                ui.colored_label(
                    egui::Color32::LIGHT_RED,
                    format!("Session ended ({reason}). Choose the Result, finish the note and the checklist, then close the window to file it."),
                );
                let answered = self
                    .state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .user_confirmation;
                match answered {
                    Some(a) => ui.strong(format!(
                        "The user was asked \"Was your problem solved?\" and answered: {}",
                        a.plain_words()
                    )),
                    // A lost agent or a relay going away: nobody is asked.
                    None if !matches!(reason.as_str(), "agent_lost" | "relay_shutdown") => {
                        ui.label("The user is being asked whether the problem was solved.")
                    }
                    None => ui.label(""),
                };
            }
            Phase::Live => {}
        }
        if snap.paused {
            ui.colored_label(
                egui::Color32::YELLOW,
                "The user paused the session: you see a placeholder and input is not sent.",
            );
        }
        self.remote_screen(ui, snap);
    }

    /// The remote screen scaled to fit (or 1:1), the remote pointer, and
    /// input forwarded while live, in control and not paused.
    fn remote_screen(&mut self, ui: &mut egui::Ui, snap: &Snapshot) {
        let Some(texture) = &self.texture else { return };
        let avail = ui.available_size();
        let (tw, th) = (snap.size.0 as f32, snap.size.1 as f32);
        let scale = if self.one_to_one {
            1.0
        } else {
            (avail.x / tw).min(avail.y / th).min(1.0)
        };
        let mut image =
            egui::Image::new(texture).fit_to_exact_size(egui::vec2(tw * scale, th * scale));
        if matches!(snap.phase, Phase::Ended(_)) {
            // The last picture, dimmed: nothing here is live any more.
            image = image.tint(egui::Color32::from_gray(90));
        }
        let response = ui.add(image.sense(egui::Sense::click_and_drag()));
        let rect = response.rect;
        let cursor = self.state.lock().unwrap_or_else(|p| p.into_inner()).cursor;
        if let Some((cx, cy)) = cursor {
            let p = rect.min + egui::vec2(cx as f32 * scale, cy as f32 * scale);
            ui.painter()
                .circle_stroke(p, 4.0, egui::Stroke::new(1.5, egui::Color32::RED));
        }
        if snap.phase == Phase::Live && snap.scope == Scope::Control && !snap.paused {
            self.forward_input(ui, &response, rect, snap.size);
        }
    }
}
