//! Files, enforced here at the agent: while the user allows files, the
//! technician may offer one, which lands only if the user accepts it (in
//! the download folder, under a safe name that replaces nothing; partial
//! data never under that name), and the user may send one they pick (the
//! technician cannot name a path here). Each transfer ends with a signed
//! report to the relay: direction, safe name, size, SHA-256, outcome.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

use assent_files::{Event, Limits, Steps, Way};
use assent_proto::files::{FileMsg, FileOutcome, FileReport};
use assent_proto::permission::{Direction, Permission};
use assent_proto::session_msg::SessionMsg;
use tracing::{info, warn};

use crate::live::LiveSession;
use crate::ui::{FileCommand, FileNews, UiEvent};

/// Where received files go and how much may move.
#[derive(Debug, Clone)]
pub struct FileSettings {
    pub dir: PathBuf,
    pub limits: Limits,
}

impl Default for FileSettings {
    fn default() -> Self {
        FileSettings {
            dir: default_download_dir(),
            limits: Limits::default(),
        }
    }
}

/// `~/Downloads/Assent` (`$XDG_DOWNLOAD_DIR/Assent` when set).
pub fn default_download_dir() -> PathBuf {
    let downloads = std::env::var_os("XDG_DOWNLOAD_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join("Downloads")))
        .unwrap_or_else(|| PathBuf::from("Downloads"));
    downloads.join("Assent")
}

impl LiveSession {
    /// A file message from the technician's viewer.
    pub(crate) async fn on_file_msg(&mut self, msg: FileMsg) {
        let allowed = self.permissions.allows(Permission::Files);
        if !allowed && matches!(msg, FileMsg::Offer { .. }) {
            let dropped = self.stats.files_refused.fetch_add(1, Relaxed) + 1;
            warn!(
                dropped,
                "file offer from the technician refused: files not allowed by the user now"
            );
        }
        let steps = self.permissions.transfers.on_msg(msg, allowed, false);
        self.apply_file_steps(steps).await;
    }

    /// The user's answer, pick or cancel.
    pub(crate) async fn on_file_command(&mut self, cmd: FileCommand) {
        let steps = match cmd {
            FileCommand::Answer(accept) => self.permissions.transfers.answer(accept),
            FileCommand::Cancel => self.permissions.transfers.cancel_all(),
            FileCommand::Send(_) if !self.permissions.allows(Permission::Files) => {
                let why = "Files are not shared: allow files first.".to_string();
                self.ui.show(UiEvent::File(FileNews::Problem(why)));
                return;
            }
            FileCommand::Send(path) => match self.permissions.transfers.offer(&path) {
                Ok(offer) => Steps {
                    send: vec![offer],
                    events: Vec::new(),
                },
                Err(why) => {
                    self.ui.show(UiEvent::File(FileNews::Problem(why)));
                    return;
                }
            },
        };
        self.apply_file_steps(steps).await;
    }

    /// The next chunk of the file going out (the loop calls this while the
    /// window has room, between frames).
    pub(crate) async fn send_file_chunk(&mut self) {
        let steps = self.permissions.transfers.next_chunk();
        self.apply_file_steps(steps).await;
    }

    /// Files turned off, or the session ends: nothing stays half done.
    pub(crate) async fn stop_transfers(&mut self) {
        let steps = self.permissions.transfers.cancel_all();
        self.apply_file_steps(steps).await;
    }

    async fn apply_file_steps(&mut self, steps: Steps) {
        for msg in steps.send {
            if let Err(e) = self.tx.send(&SessionMsg::File(msg)).await {
                warn!(error = %e, "file message not sent");
                break;
            }
        }
        for event in steps.events {
            self.on_file_event(event).await;
        }
    }

    async fn on_file_event(&mut self, event: Event) {
        let news = match event {
            Event::Offered(o) => FileNews::Offered {
                name: o.name,
                size: o.size,
                from: self.technician(),
            },
            Event::Progress {
                way,
                name,
                done,
                size,
            } => FileNews::Progress {
                way,
                name,
                done,
                size,
            },
            Event::Ended(ended) => {
                let direction = match ended.way {
                    Way::In => Direction::ToUser,
                    Way::Out => Direction::FromUser,
                };
                info!(
                    direction = direction.as_str(),
                    bytes = ended.bytes,
                    outcome = ended.outcome.as_str(),
                    "file transfer ended"
                );
                let report = FileReport {
                    number: 0,
                    direction,
                    name: ended.name.clone(),
                    bytes: ended.bytes,
                    sha256: ended.sha256,
                    outcome: ended.outcome,
                    receipt: Vec::new(),
                };
                let reported = self.reporter.report_file(&mut self.control, report).await;
                if let Err(e) = reported {
                    warn!(error = %e, "could not report the file transfer to the relay");
                }
                FileNews::Ended {
                    way: ended.way,
                    name: ended.name,
                    outcome: ended.outcome,
                    path: ended.path.map(|p| p.display().to_string()),
                }
            }
        };
        self.ui.show(UiEvent::File(news));
    }
}

/// The user's words for how a transfer ended.
pub fn outcome_words(outcome: FileOutcome) -> &'static str {
    match outcome {
        FileOutcome::Completed => "complete, checked",
        FileOutcome::Declined => "declined",
        FileOutcome::Cancelled => "cancelled",
        FileOutcome::Corrupted => "damaged in transit and deleted",
        FileOutcome::TooLarge => "too large",
        FileOutcome::Failed => "failed",
        FileOutcome::NotAllowed => "refused: files are not shared",
    }
}
