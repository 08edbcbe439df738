//! "Your windows" in the prompt and the "session live" window: each
//! top-level window (title and application) with "Hide" and "Share only
//! this", the ones the organisation's policy hides ticked for good, and a
//! notice with a one-click Hide for each window that opens during the
//! session. The choices go straight to the agent's privacy state, which the
//! capture thread reads before every frame.

use assent_softwindow::egui;

use super::AgentWindow;
use crate::privacy::{Entry, Privacy};

impl AgentWindow {
    /// The window list, at most `max_height` tall (it scrolls).
    pub(super) fn privacy(&mut self, ui: &mut egui::Ui, max_height: f32) {
        let Some(privacy) = crate::privacy::installed() else {
            return;
        };
        if !privacy.has_news_hook() {
            let ctx = ui.ctx().clone();
            privacy.on_news(Box::new(move |_, _| ctx.request_repaint()));
        }
        ui.separator();
        for (number, title) in privacy.news() {
            ui.horizontal(|ui| {
                ui.colored_label(
                    egui::Color32::from_rgb(255, 170, 60),
                    format!("New window shared: {title}"),
                );
                if ui.button("Hide it").clicked() {
                    let _ = privacy.hide(number);
                }
                if ui.small_button("OK").clicked() {
                    privacy.dismiss(number);
                }
            });
        }
        let entries = privacy.entries();
        let hidden = entries.iter().filter(|e| e.hidden).count();
        ui.strong(format!(
            "Your windows ({hidden} of {} hidden from the technician)",
            entries.len()
        ));
        let only = privacy.only_active();
        if only && ui.button("Share all my windows again").clicked() {
            let _ = privacy.only(None);
        }
        egui::ScrollArea::vertical()
            .id_salt("privacy-windows")
            .max_height(max_height)
            .show(ui, |ui| {
                for entry in &entries {
                    window_row(ui, privacy, entry, only);
                }
            });
        // The list follows windows opening and closing.
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_secs(2));
    }
}

/// One window: Hide (fixed for the policy's), Share only this, its name.
fn window_row(ui: &mut egui::Ui, privacy: &Privacy, e: &Entry, only: bool) {
    ui.horizontal(|ui| {
        let mut hide = e.hidden && !e.only;
        let hide_box = egui::Checkbox::new(&mut hide, "Hide");
        let fixed = e.by_policy || only;
        if ui.add_enabled(!fixed, hide_box).changed() {
            let _ = if hide {
                privacy.hide(e.number)
            } else {
                privacy.show(e.number)
            };
        }
        if !e.by_policy && ui.radio(e.only, "Share only this").clicked() && !e.only {
            let _ = privacy.only(Some(e.number));
        }
        let class = if e.class.is_empty() {
            String::new()
        } else {
            format!(" — {}", e.class)
        };
        let policy = if e.by_policy {
            " (always hidden by your organisation)"
        } else {
            ""
        };
        ui.label(format!("{}{class}{policy}", e.title));
    });
}
