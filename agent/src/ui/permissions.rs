//! Permissions beyond the scope, as the user sees and sets them: a tick
//! box per permission the technician asked for in the prompt (off unless
//! ticked), and in the "session live" window the clipboard's state with a
//! one-click switch, the technician's request when they ask mid-session,
//! and the last thing that moved. The terminal gets the same as lines and
//! takes `clipboard on` / `clipboard off`.

use assent_proto::permission::{Direction, Permission};
use assent_softwindow::egui;

use super::{AgentWindow, LiveInfo, Shared, UiCommand, UiEvent};

/// What happened to the clipboard, as the user reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClipboardNews {
    Moved {
        direction: Direction,
        bytes: u64,
        technician: String,
    },
    /// Copied text over the limit was not shared.
    TooLarge { bytes: usize },
    /// The clipboard could not be opened (no display?): sharing stays off.
    Unavailable,
}

impl ClipboardNews {
    pub fn text(&self) -> String {
        match self {
            ClipboardNews::Moved {
                direction: Direction::ToUser,
                bytes,
                technician,
            } => format!("Clipboard: {technician} put {bytes} bytes of text on your clipboard."),
            ClipboardNews::Moved {
                direction: Direction::FromUser,
                bytes,
                technician,
            } => format!("Clipboard: the {bytes} bytes of text you copied went to {technician}."),
            ClipboardNews::TooLarge { bytes } => format!(
                "Clipboard: what you copied ({bytes} bytes) is too large to share; nothing was sent."
            ),
            ClipboardNews::Unavailable => {
                "Clipboard: your clipboard cannot be shared here; it stays off.".into()
            }
        }
    }
}

/// The terminal's words for a permission's state, and how to change it.
pub fn tty_state(info: &LiveInfo) -> String {
    let clipboard = if info.permissions.contains(&Permission::Clipboard) {
        "Clipboard: SHARED with your technician (text both ways); `clipboard off` stops it."
    } else {
        "Clipboard: not shared; `clipboard on` would share it (text both ways)."
    };
    let files = if info.permissions.contains(&Permission::Files) {
        "Files: ALLOWED (`send PATH` sends one; offers are yours to `accept` or `decline`); `files off` stops them."
    } else {
        "Files: not allowed; `files on` would allow them."
    };
    let recording = if info.permissions.contains(&Permission::Recording) {
        "RECORDING: your technician may record the session and take screenshots; `recording off` stops it."
    } else {
        "Recording: not allowed; `recording on` would allow it."
    };
    format!("{clipboard}\n{files}\n{recording}")
}

/// `clipboard on` / `clipboard off` typed on the terminal.
pub fn tty_command(line: &str) -> Option<UiCommand> {
    let mut words = line.split_whitespace();
    let permission: Permission = words.next()?.parse().ok()?;
    let on = match (words.next()?, words.next()) {
        ("on", None) => true,
        ("off", None) => false,
        _ => return None,
    };
    Some(UiCommand::Allow(permission, on))
}

/// Keeps the events only the permission panel shows; hands back the rest.
pub(super) fn absorb(s: &mut Shared, event: UiEvent) -> Option<UiEvent> {
    match event {
        UiEvent::PermissionAsked(p) => s.permission_asked = Some(p),
        UiEvent::Clipboard(news) => s.clipboard_news = Some(news.text()),
        UiEvent::File(news) => super::files::absorb(s, news),
        UiEvent::Live(info) => {
            // Granted since it was asked: nothing left to ask.
            if s.permission_asked
                .is_some_and(|p| info.permissions.contains(&p))
            {
                s.permission_asked = None;
            }
            return Some(UiEvent::Live(info));
        }
        other => return Some(other),
    }
    None
}

impl AgentWindow {
    /// In the prompt: a box per permission asked, unticked until the user
    /// ticks it; the choice goes with the answer.
    pub(super) fn prompt_permissions(&mut self, ui: &mut egui::Ui, asked: &[Permission]) {
        for p in asked {
            let mut on = self.prompt_allowed.contains(p);
            let label = format!("Also allow them to {}", p.plain_words());
            if ui.checkbox(&mut on, label).changed() {
                self.prompt_allowed.retain(|q| q != p);
                if on {
                    self.prompt_allowed.push(*p);
                }
                self.send(UiCommand::Allow(*p, on));
            }
        }
    }

    /// In the "session live" window: the clipboard's state and its switch,
    /// the technician's request, and the clipboard's last news.
    /// "Recording" in red at the top of the window while it is allowed.
    pub(super) fn recording_banner(&mut self, ui: &mut egui::Ui, info: &LiveInfo) {
        if !info.permissions.contains(&Permission::Recording) {
            return;
        }
        ui.horizontal(|ui| {
            let red = egui::Color32::from_rgb(230, 40, 40);
            ui.label(
                egui::RichText::new("Recording")
                    .color(red)
                    .strong()
                    .size(18.0),
            );
            ui.label("Your technician may record the session and take screenshots.");
        });
        if ui.button("Stop allowing recording").clicked() {
            self.send(UiCommand::Allow(Permission::Recording, false));
        }
    }

    /// Under the files row: "Allow recording" while it is not (when it is,
    /// the banner at the top has the way back).
    pub(super) fn recording_switch(&mut self, ui: &mut egui::Ui, info: &LiveInfo) {
        if info.permissions.contains(&Permission::Recording) {
            return;
        }
        ui.horizontal(|ui| {
            ui.label("Recording not allowed");
            if ui.button("Allow recording").clicked() {
                self.send(UiCommand::Allow(Permission::Recording, true));
            }
        });
    }

    pub(super) fn live_permissions(&mut self, ui: &mut egui::Ui, info: &LiveInfo) {
        let (asked, news) = {
            let s = self.ui.shared.lock().unwrap_or_else(|p| p.into_inner());
            (s.permission_asked, s.clipboard_news.clone())
        };
        ui.separator();
        ui.horizontal(|ui| {
            if info.permissions.contains(&Permission::Clipboard) {
                ui.colored_label(egui::Color32::from_rgb(255, 170, 60), "Clipboard SHARED");
                if ui.button("Stop sharing the clipboard").clicked() {
                    self.send(UiCommand::Allow(Permission::Clipboard, false));
                }
            } else {
                ui.label("Clipboard not shared");
                if ui.button("Share the clipboard").clicked() {
                    self.send(UiCommand::Allow(Permission::Clipboard, true));
                }
            }
        });
        if let Some(p) = asked.filter(|p| !info.permissions.contains(p)) {
            ui.horizontal(|ui| {
                ui.strong(format!("{} asks to {}.", info.technician, p.plain_words()));
                if ui.button("Allow").clicked() {
                    self.send(UiCommand::Allow(p, true));
                }
                if ui.button("Not now").clicked() {
                    self.ui
                        .shared
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .permission_asked = None;
                }
            });
        }
        if let Some(news) = news {
            ui.label(news);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_switches_permissions_and_nothing_else() {
        assert_eq!(
            tty_command("clipboard on\n"),
            Some(UiCommand::Allow(Permission::Clipboard, true))
        );
        assert_eq!(
            tty_command(" clipboard   off "),
            Some(UiCommand::Allow(Permission::Clipboard, false))
        );
        assert_eq!(
            tty_command("files on"),
            Some(UiCommand::Allow(Permission::Files, true))
        );
        for other in [
            "clipboard",
            "clipboard on now",
            "file on",
            "please clipboard on",
            "",
        ] {
            assert_eq!(tty_command(other), None, "{other:?}");
        }
    }
}
