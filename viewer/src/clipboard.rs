//! The technician's side of the shared clipboard. It follows what the
//! user's agent says is allowed (`SessionMsg::Permissions`): only then is
//! the technician's own clipboard watched and text from the user put on it.
//! The agent enforces the permission whatever this side does; this side
//! keeps to it so nothing is sent to be dropped. Each move is audited here
//! by metadata (direction, size, SHA-256), never the text.

use assent_clipboard::{Copied, SharedClipboard};
use assent_proto::permission::{Direction, Permission};
use assent_proto::session_msg::{Control as SessionControl, SessionMsg, MAX_CLIPBOARD};
use tracing::{info, warn};

use crate::live::LiveView;
use crate::session::{fields, lock, SharedState};

/// What the technician is shown of the clipboard.
#[derive(Debug, Clone, Default)]
pub struct ClipboardView {
    /// The user allows the clipboard now.
    pub shared: bool,
    /// Bumped at each change of `shared`, `moves` or `problem` (for
    /// `--headless`).
    pub version: u32,
    /// Each move: which way and how many bytes (never the text).
    pub moves: Vec<(Direction, u64)>,
    /// Why this side's clipboard cannot be used (no display, too large…).
    pub problem: Option<String>,
}

/// The status bar's words.
pub fn status_text(shared: bool) -> &'static str {
    if shared {
        "Clipboard shared by the user"
    } else {
        "Clipboard not shared"
    }
}

impl ClipboardView {
    /// `--headless`: the JSON line for this state's last change.
    pub fn json(&self) -> serde_json::Value {
        match self.moves.last() {
            Some((direction, bytes)) => serde_json::json!({"clipboard": {
                "shared": self.shared, "direction": direction.as_str(), "bytes": bytes,
                "moves": self.moves.len(), "problem": self.problem,
            }}),
            None => serde_json::json!({"clipboard": {
                "shared": self.shared, "moves": 0, "problem": self.problem,
            }}),
        }
    }
}

/// `--headless`: `ask clipboard` asks the user for the clipboard.
pub fn parse_line(line: &str) -> Option<Permission> {
    line.trim().strip_prefix("ask ")?.trim().parse().ok()
}

/// `--headless`: each change of the clipboard's state, one JSON line on
/// stdout (`{"clipboard": {"shared": true, "direction": ..., "bytes": ...}}`).
pub async fn print_headless(state: SharedState) {
    let mut shown = 0;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tick.tick().await;
        let view = lock(&state).clipboard.clone();
        if view.version != shown {
            shown = view.version;
            println!("{}", view.json());
        }
    }
}

impl LiveView<'_> {
    /// The agent says what the user allows now.
    pub(crate) fn on_permissions(&mut self, in_force: &[Permission]) {
        let shared = in_force.contains(&Permission::Clipboard);
        if shared == lock(&self.state).clipboard.shared {
            return;
        }
        let problem = if shared {
            match SharedClipboard::open(MAX_CLIPBOARD) {
                Ok(c) => {
                    c.watch(true);
                    self.clipboard = Some(c);
                    None
                }
                Err(e) => {
                    warn!(error = %e, "the technician's clipboard cannot be used");
                    Some(e.to_string())
                }
            }
        } else {
            self.clipboard = None;
            None
        };
        info!(shared, "the user changed the clipboard permission");
        let f =
            fields! {"session" => self.session, "permission" => "clipboard", "allowed" => shared};
        self.audit.record("permission_changed", f);
        self.update_clipboard(|v| {
            v.shared = shared;
            v.problem = problem;
        });
    }

    /// The technician asks the user for a permission.
    pub(crate) async fn ask_permission(&mut self, permission: Permission) {
        info!(
            permission = permission.as_str(),
            "asking the user for a permission"
        );
        let ask = SessionMsg::Control(SessionControl::PermissionRequest(permission));
        let _ = self.tx.send(&ask).await;
    }

    /// Text the user copied: onto the technician's clipboard.
    pub(crate) fn on_clipboard_text(&mut self, text: String) {
        let Some(clipboard) = &self.clipboard else {
            warn!("clipboard text while the clipboard is not shared; dropped");
            return;
        };
        let (bytes, sha256) = assent_clipboard::fingerprint(&text);
        clipboard.put(text);
        self.record_move(Direction::FromUser, bytes, sha256);
    }

    /// What the technician copied while shared: to the user.
    pub(crate) async fn on_copied(&mut self, copied: Option<Copied>) {
        match copied {
            None => {
                self.clipboard = None;
                self.update_clipboard(|v| v.problem = Some("the clipboard watcher stopped".into()));
            }
            Some(Copied::TooLarge { bytes }) => self.update_clipboard(|v| {
                v.problem = Some(format!("copied text too large to share ({bytes} bytes)"));
            }),
            Some(Copied::Text(text)) => {
                let (bytes, sha256) = assent_clipboard::fingerprint(&text);
                if let Err(e) = self.tx.send(&SessionMsg::Clipboard(text)).await {
                    warn!(error = %e, "copied text not sent");
                    return;
                }
                self.record_move(Direction::ToUser, bytes, sha256);
            }
        }
    }

    fn record_move(&mut self, direction: Direction, bytes: u64, sha256: [u8; 32]) {
        info!(
            direction = direction.as_str(),
            bytes, "clipboard text moved"
        );
        let f = fields! {
            "session" => self.session, "direction" => direction.as_str(),
            "bytes" => bytes, "sha256" => hex(&sha256),
        };
        self.audit.record("clipboard_transfer", f);
        self.update_clipboard(|v| v.moves.push((direction, bytes)));
    }

    fn update_clipboard(&mut self, change: impl FnOnce(&mut ClipboardView)) {
        {
            let mut s = lock(&self.state);
            change(&mut s.clipboard);
            s.clipboard.version += 1;
            s.stats.clipboard_shared = s.clipboard.shared;
        }
        (self.repaint)();
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headless_lines_ask_only_for_known_permissions() {
        assert_eq!(parse_line("ask clipboard"), Some(Permission::Clipboard));
        assert_eq!(parse_line("  ask  clipboard "), Some(Permission::Clipboard));
        assert_eq!(parse_line("ask files"), Some(Permission::Files));
        for other in ["ask", "ask file", "clipboard", "chat ask clipboard"] {
            assert_eq!(parse_line(other), None, "{other:?}");
        }
    }

    #[test]
    fn the_headless_line_names_sizes_never_text() {
        let mut v = ClipboardView::default();
        assert_eq!(v.json()["clipboard"]["moves"], 0);
        v.shared = true;
        v.moves.push((Direction::FromUser, 12));
        let json = v.json();
        assert_eq!(json["clipboard"]["direction"], "from_user");
        assert_eq!(json["clipboard"]["bytes"], 12);
    }
}
