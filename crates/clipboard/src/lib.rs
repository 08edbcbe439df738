//! The desktop clipboard a session shares while the user allows it.
//!
//! One thread owns the OS clipboard (arboard: X11 selections handled by a
//! well-kept crate, not by hand here). While watching, it looks at the
//! clipboard a few times a second and hands on text the local person copied
//! since the last look; text from the other side is put there without being
//! handed back (no echo). Watching starts from what the clipboard holds at
//! that moment: text copied *before* the user allowed sharing (a password,
//! say) never moves, only what is copied while sharing is on.
//!
//! Nothing here logs clipboard content: only sizes and errors.

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

/// How often the watcher looks at the clipboard. X has no portable "the
/// clipboard changed" event without an extension; a quarter second is
/// quicker than a person switches windows to paste.
pub const POLL: Duration = Duration::from_millis(250);

/// Something the local person copied while watching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Copied {
    Text(String),
    /// More than the limit: not handed on (the size is all that is said).
    TooLarge {
        bytes: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ClipboardError {
    #[error("the clipboard is not available (no display?): {0}")]
    Unavailable(String),
}

enum Command {
    Watch(bool),
    Put(String),
}

/// The clipboard thread's handle; dropping it stops the thread.
pub struct SharedClipboard {
    commands: std_mpsc::Sender<Command>,
    copied: mpsc::Receiver<Copied>,
}

impl SharedClipboard {
    /// Opens the clipboard on a thread of its own; text larger than
    /// `max_bytes` is reported as [`Copied::TooLarge`], never handed on.
    pub fn open(max_bytes: usize) -> Result<SharedClipboard, ClipboardError> {
        let (commands, command_rx) = std_mpsc::channel();
        let (copied_tx, copied) = mpsc::channel(8);
        let (opened_tx, opened_rx) = std_mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("clipboard".into())
            .spawn(move || {
                let clipboard = match arboard::Clipboard::new() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = opened_tx.send(Ok(()));
                Watcher {
                    clipboard,
                    max_bytes,
                    watching: false,
                    last: None,
                    copied: copied_tx,
                }
                .run(command_rx);
            })
            .map_err(|e| ClipboardError::Unavailable(e.to_string()))?;
        match opened_rx.recv() {
            Ok(Ok(())) => Ok(SharedClipboard { commands, copied }),
            Ok(Err(e)) => Err(ClipboardError::Unavailable(e)),
            Err(_) => Err(ClipboardError::Unavailable(
                "the clipboard thread died".into(),
            )),
        }
    }

    /// Starts (from what the clipboard holds now) or stops watching.
    pub fn watch(&self, on: bool) {
        let _ = self.commands.send(Command::Watch(on));
    }

    /// Puts text from the other side on this clipboard.
    pub fn put(&self, text: String) {
        let _ = self.commands.send(Command::Put(text));
    }

    /// The next thing copied while watching (`None`: the thread is gone).
    pub async fn copied(&mut self) -> Option<Copied> {
        self.copied.recv().await
    }
}

struct Watcher {
    clipboard: arboard::Clipboard,
    max_bytes: usize,
    watching: bool,
    /// The clipboard's text at the last look (or as last put), so only a
    /// change is handed on.
    last: Option<String>,
    copied: mpsc::Sender<Copied>,
}

impl Watcher {
    fn run(mut self, commands: std_mpsc::Receiver<Command>) {
        loop {
            match commands.recv_timeout(POLL) {
                Ok(Command::Watch(on)) => {
                    self.watching = on;
                    self.last = if on { self.read() } else { None };
                    continue;
                }
                Ok(Command::Put(text)) => self.put(text),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if self.watching && !self.look() {
                return;
            }
        }
    }

    fn read(&mut self) -> Option<String> {
        self.clipboard.get_text().ok()
    }

    fn put(&mut self, text: String) {
        match self.clipboard.set_text(text.as_str()) {
            Ok(()) => self.last = Some(text),
            Err(e) => warn!(error = %e, "could not put text on the clipboard"),
        }
    }

    /// Hands on a change; `false` once nobody listens any more.
    fn look(&mut self) -> bool {
        let Some(text) = self.read() else {
            return true;
        };
        if text.is_empty() || self.last.as_deref() == Some(text.as_str()) {
            return true;
        }
        let bytes = text.len();
        debug!(bytes, "clipboard changed");
        let copied = if bytes > self.max_bytes {
            self.last = Some(text);
            Copied::TooLarge { bytes }
        } else {
            self.last = Some(text.clone());
            Copied::Text(text)
        };
        !matches!(
            self.copied.try_send(copied),
            Err(mpsc::error::TrySendError::Closed(_))
        )
    }
}

/// What both sides record of a transfer instead of the text: its size in
/// bytes and its SHA-256.
pub fn fingerprint(text: &str) -> (u64, [u8; 32]) {
    use sha2::Digest as _;
    let bytes = u64::try_from(text.len()).unwrap_or(u64::MAX);
    (bytes, sha2::Sha256::digest(text.as_bytes()).into())
}

#[cfg(test)]
mod tests;
