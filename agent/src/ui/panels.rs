//! The live window's panels beside the indicator: the technician's "please
//! test" and the chat.

use assent_proto::wire::Validation;
use assent_softwindow::egui;

use super::{AgentWindow, UiCommand};

impl AgentWindow {
    /// The technician's "please test", answered with a button and an
    /// optional comment.
    pub(super) fn validation(&mut self, ui: &mut egui::Ui) {
        let ask = self
            .ui
            .shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .validation
            .clone();
        let Some(ask) = ask else { return };
        ui.separator();
        ui.strong(format!(
            "{} asks you to test whether it works now",
            ask.technician
        ));
        if !ask.what.is_empty() {
            ui.label(format!("What to test: {}", ask.what));
        }
        ui.horizontal(|ui| {
            ui.label("Comment (optional):");
            ui.text_edit_singleline(&mut self.validation_comment);
        });
        ui.horizontal(|ui| {
            for answer in [Validation::Works, Validation::StillBroken] {
                if ui.button(answer.plain_words()).clicked() {
                    self.ui
                        .shared
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .validation = None;
                    let comment = std::mem::take(&mut self.validation_comment);
                    self.send(UiCommand::Validate {
                        number: ask.number,
                        answer,
                        comment,
                    });
                }
            }
        });
    }

    /// The chat with the technician: works while paused too (that is when
    /// "type your password now, tell me when done" happens).
    pub(super) fn chat(&mut self, ui: &mut egui::Ui, technician: &str) {
        let focused = ui.ctx().input(|i| i.viewport().focused).unwrap_or(true);
        let (lines, unread) = {
            let mut s = self.ui.shared.lock().unwrap_or_else(|p| p.into_inner());
            if focused {
                s.unread = 0;
            }
            (s.chat.clone(), s.unread)
        };
        match unread {
            0 => ui.label(format!("Chat with {technician}")),
            n => ui.strong(format!("Chat with {technician} ({n} new)")),
        };
        egui::ScrollArea::vertical()
            .max_height(110.0)
            .stick_to_bottom(true)
            .show(ui, |ui| {
                for line in &lines {
                    ui.label(format!("[{}] {}: {}", line.at, line.from, line.text));
                }
            });
        ui.horizontal(|ui| {
            let edit = ui.text_edit_singleline(&mut self.chat_draft);
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if (ui.button("Send").clicked() || enter) && !self.chat_draft.trim().is_empty() {
                let text = std::mem::take(&mut self.chat_draft);
                self.send(UiCommand::Chat(text.trim().to_string()));
                edit.request_focus();
            }
        });
    }
}
