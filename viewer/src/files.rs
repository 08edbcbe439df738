//! The technician's side of files: while the user allows files, send one
//! the technician picks (it lands only if the user accepts it) and receive
//! the files the user sends (into `$XDG_DATA_HOME/assent/files/`, under a
//! safe name that replaces nothing, checked by SHA-256). Each transfer's
//! end is audited here by metadata: direction, name, size, SHA-256,
//! outcome.

use std::path::PathBuf;

use assent_files::{Event, Steps, Way};
use assent_proto::files::FileMsg;
use assent_proto::permission::Direction;
use assent_proto::session_msg::SessionMsg;
use tracing::{info, warn};

use crate::live::LiveView;
use crate::session::{fields, lock, SharedState};

/// What the technician is shown of files.
#[derive(Debug, Clone, Default)]
pub struct FilesView {
    /// The user allows files now.
    pub allowed: bool,
    /// Bumped at each change (for `--headless`).
    pub version: u32,
    /// The last change, as a JSON object.
    pub last: Option<serde_json::Value>,
    /// A file is moving now (the window offers Cancel).
    pub moving: bool,
    /// The window's words for the last transfer's state.
    pub status: Option<String>,
}

/// Where received files go: `$XDG_DATA_HOME/assent/files`.
pub fn received_dir() -> PathBuf {
    crate::paths::data_dir()
        .map(|d| d.join("files"))
        .unwrap_or_else(|_| PathBuf::from("assent-files"))
}

/// `--headless`: `send-file PATH`, `cancel-file`.
pub fn parse_line(line: &str) -> Option<crate::session::Command> {
    use crate::session::Command;
    let line = line.trim();
    if line == "cancel-file" {
        return Some(Command::CancelFile);
    }
    let path = line.strip_prefix("send-file ")?.trim();
    Some(Command::SendFile(PathBuf::from(path)))
}

/// `--headless`: each change, one JSON line on stdout (`{"file": {...}}`).
pub async fn print_headless(state: SharedState) {
    let mut shown = 0;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tick.tick().await;
        let view = lock(&state).files.clone();
        if view.version != shown {
            shown = view.version;
            if let Some(last) = view.last {
                println!("{}", serde_json::json!({ "file": last }));
            }
        }
    }
}

impl LiveView<'_> {
    /// A file message from the user's agent.
    pub(crate) async fn on_file_msg(&mut self, msg: FileMsg) {
        let allowed = lock(&self.state).files.allowed;
        // The user picked each file they send: no second question here.
        let steps = self.transfers.on_msg(msg, allowed, true);
        self.apply_file_steps(steps).await;
    }

    /// The agent says whether files are allowed now.
    pub(crate) async fn on_files_allowed(&mut self, allowed: bool) {
        if lock(&self.state).files.allowed == allowed {
            return;
        }
        info!(allowed, "the user changed the files permission");
        let f = fields! {"session" => self.session, "permission" => "files", "allowed" => allowed};
        self.audit.record("permission_changed", f);
        self.update_files(serde_json::json!({"allowed": allowed}), |v| {
            v.allowed = allowed
        });
        if !allowed {
            let steps = self.transfers.cancel_all();
            self.apply_file_steps(steps).await;
        }
    }

    /// The technician sends a file they picked.
    pub(crate) async fn send_file(&mut self, path: PathBuf) {
        let offered = if lock(&self.state).files.allowed {
            self.transfers.offer(&path)
        } else {
            Err("the user has not allowed files".to_string())
        };
        match offered {
            Ok(offer) => {
                let steps = Steps {
                    send: vec![offer],
                    events: Vec::new(),
                };
                self.apply_file_steps(steps).await;
            }
            Err(why) => {
                let json = serde_json::json!({"problem": why});
                self.update_files(json, |v| v.status = Some(format!("Cannot send: {why}")));
            }
        }
    }

    pub(crate) async fn cancel_files(&mut self) {
        let steps = self.transfers.cancel_all();
        self.apply_file_steps(steps).await;
    }

    pub(crate) async fn send_file_chunk(&mut self) {
        let steps = self.transfers.next_chunk();
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
            self.on_file_event(event);
        }
    }

    fn on_file_event(&mut self, event: Event) {
        let (json, moving, words) = match event {
            // Offers are accepted on the user's behalf: they picked the file.
            Event::Offered(_) => return,
            Event::Progress {
                way,
                name,
                done,
                size,
            } => {
                let pct = (done.saturating_mul(100)).checked_div(size).unwrap_or(100);
                let words = format!("{} {name}: {pct}%", verb(way));
                let json = serde_json::json!({
                    "direction": direction(way).as_str(), "name": name, "done": done, "size": size,
                });
                (json, true, words)
            }
            Event::Ended(e) => {
                let sha256 = crate::clipboard::hex(&e.sha256);
                let d = direction(e.way).as_str();
                let outcome = e.outcome.as_str();
                info!(
                    direction = d,
                    bytes = e.bytes,
                    outcome,
                    "file transfer ended"
                );
                let f = fields! {
                    "session" => self.session, "direction" => d, "name" => e.name,
                    "bytes" => e.bytes, "sha256" => sha256, "outcome" => outcome,
                };
                self.audit.record("file_transfer", f);
                let words = format!("{} {}: {outcome}", verb(e.way), e.name);
                let json = serde_json::json!({
                    "direction": d, "name": e.name, "bytes": e.bytes, "sha256": sha256,
                    "outcome": outcome, "path": e.path.map(|p| p.display().to_string()),
                });
                (json, false, words)
            }
        };
        self.update_files(json, |v| (v.moving, v.status) = (moving, Some(words)));
    }

    fn update_files(&mut self, last: serde_json::Value, change: impl FnOnce(&mut FilesView)) {
        {
            let mut s = lock(&self.state);
            change(&mut s.files);
            s.files.last = Some(last);
            s.files.version += 1;
            s.stats.files_allowed = s.files.allowed;
        }
        (self.repaint)();
    }
}

fn verb(way: Way) -> &'static str {
    match way {
        Way::Out => "Sending",
        Way::In => "Receiving",
    }
}

/// Seen from the user, as the relay's audit says it.
fn direction(way: Way) -> Direction {
    match way {
        Way::Out => Direction::ToUser,
        Way::In => Direction::FromUser,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Command;

    #[test]
    fn headless_file_lines() {
        match parse_line("send-file /tmp/report v2.pdf") {
            Some(Command::SendFile(p)) => assert_eq!(p, PathBuf::from("/tmp/report v2.pdf")),
            _ => panic!("send-file"),
        }
        assert!(matches!(
            parse_line(" cancel-file "),
            Some(Command::CancelFile)
        ));
        assert!(parse_line("send-files x").is_none());
    }
}
