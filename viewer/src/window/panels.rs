//! The session window's side panel: the note with its Result and the
//! completion checklist, "Ask the user to test", and the chat.

use eframe::egui;

use super::ViewerWindow;
use crate::checklist::{Fact, Outcome, TickedBy, ITEMS};
use crate::identity_ask::CHOICES;
use crate::session::{Command, Phase, ValidationResult};

/// The note fields the technician types (the rest are filled in).
const TYPED_FIELDS: [&str; 6] = [
    "Issue Summary",
    "Business Impact",
    "Actions Taken",
    "Changes Made",
    "Result",
    "Next Action",
];

impl ViewerWindow {
    pub(super) fn note_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Session note");
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(problem) = &s.note_problem {
            ui.colored_label(egui::Color32::LIGHT_RED, problem.message());
        }
        let mut outcome = s.outcome;
        egui::ComboBox::from_label("Result (required)")
            .selected_text(outcome.map_or("choose…", Outcome::words))
            .show_ui(ui, |ui| {
                for o in Outcome::ALL {
                    ui.selectable_value(&mut outcome, Some(o), o.words());
                }
            });
        if outcome != s.outcome {
            s.outcome = outcome;
            s.note_problem = None;
        }
        for field in TYPED_FIELDS {
            let label = match field {
                "Result" => "Result details (the user's test answers land here)",
                "Next Action" if s.outcome != Some(Outcome::Resolved) => "Next Action (required)",
                other => other,
            };
            ui.label(label);
            let mut value = s.note.get(field).to_string();
            if ui
                .add(egui::TextEdit::multiline(&mut value).desired_rows(2))
                .changed()
            {
                s.note.set(field, value);
                s.note_problem = None;
            }
        }
        ui.small(
            "Client, user, device, tool, consent, end time and technician are filled in for you.",
        );
        egui::CollapsingHeader::new("Completion checklist")
            .default_open(true)
            .show(ui, |ui| {
                for item in &ITEMS {
                    // "Notes documented" becomes true as the note is filed.
                    let mut on = s.checklist.is_ticked(item)
                        || item.ticked_by == TickedBy::Fact(Fact::NoteDocumented);
                    let fact = matches!(item.ticked_by, TickedBy::Fact(_));
                    // Facts are ticked by the software and cannot be changed.
                    let changed = ui
                        .add_enabled(!fact, egui::Checkbox::new(&mut on, item.label))
                        .changed();
                    if changed {
                        s.checklist.set(item.key, on);
                        s.note_problem = None;
                    }
                }
            });
        let live = s.phase == Phase::Live;
        let last_test = s.validations.last().cloned();
        let escalation = s.escalation.clone();
        let escalated_from = s.escalated_from.clone();
        drop(s);
        ui.separator();
        self.test_panel(ui, last_test, live);
        ui.separator();
        if let Some((from, why)) = escalated_from {
            ui.label(format!("Escalated to you by {from}, because {why}."));
        }
        self.escalation_panel(ui, &escalation, live);
    }

    /// "Ask the user to test": the user answers in their window; the last
    /// answer shows here and goes into the note's Result.
    fn test_panel(&mut self, ui: &mut egui::Ui, last: Option<ValidationResult>, live: bool) {
        ui.heading("Validate the fix with the user");
        ui.add_enabled_ui(live, |ui| {
            ui.horizontal(|ui| {
                ui.label("What to test:");
                ui.text_edit_singleline(&mut self.test_draft);
            });
            if ui.button("Ask the user to test").clicked() {
                let what = std::mem::take(&mut self.test_draft);
                let _ = self.commands.send(Command::AskValidation(what));
            }
        });
        if let Some(v) = last {
            let comment = if v.comment.is_empty() {
                String::new()
            } else {
                format!(" — {}", v.comment)
            };
            ui.label(format!(
                "User ({}): {}{comment}",
                v.at,
                v.answer.plain_words()
            ));
        }
    }

    /// The chat with the user: kept only in this window and theirs.
    pub(super) fn chat_panel(&mut self, ui: &mut egui::Ui) {
        let (lines, live) = {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            (s.chat.clone(), s.phase == Phase::Live)
        };
        ui.heading("Chat with the user");
        egui::ScrollArea::vertical()
            .id_salt("chat")
            .max_height(160.0)
            .stick_to_bottom(true)
            .show(ui, |ui| {
                for line in &lines {
                    ui.label(format!("[{}] {}: {}", line.at, line.from, line.text));
                }
            });
        ui.add_enabled_ui(live, |ui| {
            ui.horizontal(|ui| {
                let edit = ui.add(
                    egui::TextEdit::singleline(&mut self.chat_draft)
                        .hint_text("Message to the user")
                        .desired_width(ui.available_width() - 60.0),
                );
                let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if (ui.button("Send").clicked() || enter) && !self.chat_draft.trim().is_empty() {
                    let text = std::mem::take(&mut self.chat_draft);
                    let _ = self.commands.send(Command::Chat(text));
                    edit.request_focus();
                }
            });
        });
    }

    /// Before the invite: how the technician verified who is asking for
    /// help. The buttons come first so the keyboard reaches them (Tab,
    /// Space); "Other" takes a short text.
    pub(super) fn identity_form(&mut self, ui: &mut egui::Ui) {
        ui.heading("Before the invite: how did you verify who is asking for help?");
        ui.label("The support procedure asks you to confirm the user's identity first. Your answer goes into the relay's record and the session note.");
        let mut chosen = None;
        for (check, words) in CHOICES {
            if ui.button(words).clicked() {
                chosen = Some(check.to_string());
            }
        }
        ui.horizontal(|ui| {
            ui.label("Other:");
            ui.text_edit_singleline(&mut self.identity_other);
            if ui.button("Use this").clicked() {
                chosen = Some(format!("other:{}", self.identity_other.trim()));
            }
        });
        if ui.button("Not verified (the note will say so)").clicked() {
            chosen = Some(String::new());
        }
        let Some(check) = chosen else { return };
        match assent_proto::text::identity_check(&check) {
            Ok(check) => {
                let _ = self.commands.send(Command::IdentityCheck(check));
            }
            Err(e) => {
                ui.colored_label(egui::Color32::LIGHT_RED, e);
            }
        }
    }
}

impl ViewerWindow {
    /// What the user allows beyond the scope (clipboard, files), with buttons to ask and a file to send.
    pub(super) fn permission_status(&mut self, ui: &mut egui::Ui, snap: &super::Snapshot) {
        let shared = snap.stats.clipboard_shared;
        ui.label(crate::clipboard::status_text(shared));
        let live = snap.phase == Phase::Live;
        let ask = egui::Button::new("Ask for the clipboard").small();
        if !shared && ui.add_enabled(live, ask).clicked() {
            let clipboard = assent_proto::permission::Permission::Clipboard;
            let _ = self.commands.send(Command::AskPermission(clipboard));
        }
        ui.separator();
        if let Some(status) = &snap.files.status {
            ui.label(status);
        }
        if snap.files.moving && ui.small_button("Cancel").clicked() {
            let _ = self.commands.send(Command::CancelFile);
        }
        if snap.stats.files_allowed {
            ui.label("Files allowed by the user");
            ui.add(
                egui::TextEdit::singleline(&mut self.send_path)
                    .desired_width(140.0)
                    .hint_text("file to send"),
            );
            if ui.small_button("Send file").clicked() && !self.send_path.trim().is_empty() {
                let path = std::path::PathBuf::from(self.send_path.trim());
                let _ = self.commands.send(Command::SendFile(path));
            }
        } else {
            ui.label("Files not allowed");
            let ask = egui::Button::new("Ask for files").small();
            if ui.add_enabled(live, ask).clicked() {
                let files = assent_proto::permission::Permission::Files;
                let _ = self.commands.send(Command::AskPermission(files));
            }
        }
        ui.separator();
        self.recording_status(ui, snap, live);
    }
}

impl ViewerWindow {
    /// Record and Screenshot: enabled only while the user allows recording.
    fn recording_status(&mut self, ui: &mut egui::Ui, snap: &super::Snapshot, live: bool) {
        let (allowed, active) = (snap.stats.recording_allowed, snap.stats.recording);
        if active {
            ui.colored_label(egui::Color32::from_rgb(230, 60, 60), "REC");
        }
        let label = if active { "Stop recording" } else { "Record" };
        if ui
            .add_enabled(allowed && live, egui::Button::new(label).small())
            .clicked()
        {
            let _ = self.commands.send(Command::Record(!active));
        }
        if ui
            .add_enabled(allowed && live, egui::Button::new("Screenshot").small())
            .clicked()
        {
            let _ = self.commands.send(Command::Screenshot);
        }
        if !allowed {
            let ask = egui::Button::new("Ask to record").small();
            if ui.add_enabled(live, ask).clicked() {
                let recording = assent_proto::permission::Permission::Recording;
                let _ = self.commands.send(Command::AskPermission(recording));
            }
        }
        ui.separator();
    }
}
