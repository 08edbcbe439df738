//! "Escalate…": hand the session to a specialist for one of the support
//! procedure's triggers. The relay lists who may receive escalations; the
//! user is asked afresh by the specialist's session, and this one stays as
//! it is until they say yes.

use assent_proto::escalation::TRIGGERS;
use assent_proto::wire::Scope;
use eframe::egui;

use super::ViewerWindow;
use crate::escalate::EscalationView;
use crate::session::Command;

/// What the technician is choosing in the panel.
#[derive(Debug, Clone)]
pub(super) struct EscalationDraft {
    pub(super) trigger: &'static str,
    pub(super) other: String,
    pub(super) specialist: String,
    pub(super) scope: Scope,
    /// The relay was asked who may receive escalations.
    pub(super) listed: bool,
}

impl Default for EscalationDraft {
    fn default() -> Self {
        EscalationDraft {
            trigger: TRIGGERS[0].0,
            other: String::new(),
            specialist: String::new(),
            scope: Scope::View,
            listed: false,
        }
    }
}

impl ViewerWindow {
    pub(super) fn escalation_panel(
        &mut self,
        ui: &mut egui::Ui,
        view: &EscalationView,
        live: bool,
    ) {
        egui::CollapsingHeader::new("Escalate to a specialist…")
            .default_open(false)
            .show(ui, |ui| {
                if live && !self.escalation.listed {
                    self.escalation.listed = true;
                    let _ = self.commands.send(Command::ListSpecialists);
                }
                ui.add_enabled_ui(live, |ui| self.escalation_form(ui, view));
                if let Some(status) = view.status() {
                    ui.label(status);
                }
            });
    }

    fn escalation_form(&mut self, ui: &mut egui::Ui, view: &EscalationView) {
        let draft = &mut self.escalation;
        let words = |key: &str| {
            TRIGGERS
                .iter()
                .find(|(k, _)| *k == key)
                .map_or("other", |(_, w)| *w)
        };
        egui::ComboBox::from_label("Why (support procedure trigger)")
            .selected_text(words(draft.trigger))
            .width(360.0)
            .show_ui(ui, |ui| {
                for (key, text) in TRIGGERS {
                    ui.selectable_value(&mut draft.trigger, key, *text);
                }
                ui.selectable_value(&mut draft.trigger, "other", "other (say why)");
            });
        if draft.trigger == "other" {
            ui.horizontal(|ui| {
                ui.label("Why:");
                ui.text_edit_singleline(&mut draft.other);
            });
        }
        let names = view.specialists.clone().unwrap_or_default();
        if names.is_empty() {
            ui.label("No technician on this relay may receive escalations yet (the relay admin sets that).");
        }
        egui::ComboBox::from_label("Specialist")
            .selected_text(if draft.specialist.is_empty() {
                "choose…"
            } else {
                &draft.specialist
            })
            .show_ui(ui, |ui| {
                for name in &names {
                    ui.selectable_value(&mut draft.specialist, name.clone(), name);
                }
            });
        ui.horizontal(|ui| {
            ui.label("Ask the user for:");
            ui.radio_value(&mut draft.scope, Scope::View, "view");
            ui.radio_value(&mut draft.scope, Scope::Control, "control");
        });
        let ready = !draft.specialist.is_empty();
        if ui
            .add_enabled(ready, egui::Button::new("Escalate"))
            .clicked()
        {
            let trigger = match draft.trigger {
                "other" => format!("other:{}", draft.other.trim()),
                key => key.to_string(),
            };
            let _ = self.commands.send(Command::Escalate {
                specialist: draft.specialist.clone(),
                trigger,
                scope: draft.scope,
            });
        }
    }
}
