//! Files, as the user sees them: a switch ("Allow files"), each offered
//! file with Accept / Decline (name, size, from whom), a path the user
//! picks to send, progress with Cancel, and how each transfer ended. The
//! terminal takes `accept`, `decline`, `send PATH`, `cancel`.

use std::path::PathBuf;

use assent_files::Way;
use assent_proto::files::FileOutcome;
use assent_proto::permission::Permission;
use assent_softwindow::egui;

use super::{AgentWindow, LiveInfo, Shared, UiCommand};

/// What happened to a file, as the user reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileNews {
    Offered {
        name: String,
        size: u64,
        from: String,
    },
    Progress {
        way: Way,
        name: String,
        done: u64,
        size: u64,
    },
    Ended {
        way: Way,
        name: String,
        outcome: FileOutcome,
        path: Option<String>,
    },
    /// Why a file cannot be sent.
    Problem(String),
}

/// The user's word on files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCommand {
    /// Accept (`true`) or decline the file offered.
    Answer(bool),
    /// Send the file at this path (picked by the user).
    Send(PathBuf),
    /// Stop what is moving.
    Cancel,
}

impl FileNews {
    pub fn text(&self) -> String {
        match self {
            FileNews::Offered { name, size, from } => format!(
                "{from} wants to send you the file {name} ({}). Accept it?",
                human(*size)
            ),
            FileNews::Progress {
                way,
                name,
                done,
                size,
            } => {
                let verb = if *way == Way::In {
                    "Receiving"
                } else {
                    "Sending"
                };
                format!(
                    "{verb} {name}: {}% of {}",
                    percent(*done, *size),
                    human(*size)
                )
            }
            FileNews::Ended {
                way,
                name,
                outcome,
                path,
            } => {
                let verb = if *way == Way::In {
                    "Receiving"
                } else {
                    "Sending"
                };
                let words = crate::files::outcome_words(*outcome);
                match path {
                    Some(p) => format!("{verb} {name}: {words}. Saved as {p}"),
                    None => format!("{verb} {name}: {words}."),
                }
            }
            FileNews::Problem(why) => format!("Files: {why}"),
        }
    }
}

pub fn percent(done: u64, size: u64) -> u64 {
    (done.saturating_mul(100)).checked_div(size).unwrap_or(100)
}

/// Sizes as people read them.
pub fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} kB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

/// `accept`, `decline`, `send PATH`, `cancel` typed on the terminal.
pub fn tty_command(line: &str) -> Option<UiCommand> {
    let line = line.trim();
    let cmd = match line {
        "accept" => FileCommand::Answer(true),
        "decline" => FileCommand::Answer(false),
        "cancel" => FileCommand::Cancel,
        // "send me the log" is a chat line, not a file: only a path that
        // names a file here is sent.
        _ => {
            let path = PathBuf::from(line.strip_prefix("send ")?.trim());
            if !path.is_file() {
                return None;
            }
            FileCommand::Send(path)
        }
    };
    Some(UiCommand::File(cmd))
}

/// Keeps file news for the window's panel.
pub(super) fn absorb(s: &mut Shared, news: FileNews) {
    match &news {
        FileNews::Offered { .. } => s.file_offer = Some(news.text()),
        FileNews::Progress { .. } => s.file_progress = Some(news.text()),
        FileNews::Ended { .. } | FileNews::Problem(_) => {
            if matches!(news, FileNews::Ended { way: Way::In, .. }) {
                s.file_offer = None;
            }
            s.file_progress = None;
            s.file_news = Some(news.text());
        }
    }
}

impl AgentWindow {
    /// The files row of the "session live" window.
    pub(super) fn live_files(&mut self, ui: &mut egui::Ui, info: &LiveInfo) {
        let (offer, progress, news) = {
            let s = self.ui.shared.lock().unwrap_or_else(|p| p.into_inner());
            (
                s.file_offer.clone(),
                s.file_progress.clone(),
                s.file_news.clone(),
            )
        };
        let allowed = info.permissions.contains(&Permission::Files);
        ui.horizontal(|ui| {
            if allowed {
                ui.colored_label(egui::Color32::from_rgb(255, 170, 60), "Files ALLOWED");
                if ui.button("Stop allowing files").clicked() {
                    self.send(UiCommand::Allow(Permission::Files, false));
                }
            } else {
                ui.label("Files not allowed");
                if ui.button("Allow files").clicked() {
                    self.send(UiCommand::Allow(Permission::Files, true));
                }
            }
        });
        if let Some(offer) = offer {
            ui.horizontal(|ui| {
                ui.strong(offer);
                if ui.button("Accept").clicked() {
                    self.send(UiCommand::File(FileCommand::Answer(true)));
                }
                if ui.button("Decline").clicked() {
                    self.send(UiCommand::File(FileCommand::Answer(false)));
                }
            });
        }
        if let Some(progress) = progress {
            ui.horizontal(|ui| {
                ui.label(progress);
                if ui.button("Cancel").clicked() {
                    self.send(UiCommand::File(FileCommand::Cancel));
                }
            });
        }
        if allowed {
            ui.horizontal(|ui| {
                ui.label("Send a file (path):");
                ui.text_edit_singleline(&mut self.send_path);
                if ui.button("Send").clicked() && !self.send_path.trim().is_empty() {
                    let path = PathBuf::from(self.send_path.trim());
                    self.send(UiCommand::File(FileCommand::Send(path)));
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
    fn terminal_words_for_files() {
        let send = |p: &str| Some(UiCommand::File(FileCommand::Send(PathBuf::from(p))));
        assert_eq!(
            tty_command("accept\n"),
            Some(UiCommand::File(FileCommand::Answer(true)))
        );
        assert_eq!(
            tty_command("decline"),
            Some(UiCommand::File(FileCommand::Answer(false)))
        );
        assert_eq!(
            tty_command("cancel"),
            Some(UiCommand::File(FileCommand::Cancel))
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a b.txt");
        std::fs::write(&file, b"x").unwrap();
        let typed = format!("send {}\n", file.display());
        assert_eq!(tty_command(&typed), send(file.to_str().unwrap()));
        assert_eq!(tty_command("send me the log please"), None, "a chat line");
        assert_eq!(tty_command("accepted it"), None);
        assert_eq!(human(1536), "1.5 kB");
        assert_eq!(percent(1, 4), 25);
        assert_eq!(percent(0, 0), 100);
    }
}
