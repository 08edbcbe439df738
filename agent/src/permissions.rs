//! Permissions beyond the scope, enforced here at the agent: the clipboard
//! is shared only while the user allows it. A technician's request only
//! asks; text a (patched) viewer sends without the user's yes is dropped
//! and counted. Each change and each transfer goes to the relay as signed
//! metadata (size and SHA-256, never the text).

use std::sync::atomic::Ordering::Relaxed;

use assent_clipboard::{Copied, SharedClipboard};
use assent_proto::permission::{Direction, Permission};
use assent_proto::session_msg::{SessionMsg, MAX_CLIPBOARD};
use tracing::{info, warn};

use crate::live::LiveSession;
use crate::ui::{ClipboardNews, UiEvent};

/// What the user allows beyond the scope, in this session.
pub struct Permissions {
    /// Open while the user allows the clipboard.
    clipboard: Option<SharedClipboard>,
    files: bool,
    /// The technician's viewer may record and take screenshots (the viewer
    /// does the recording; the user sees "Recording" while this is on).
    recording: bool,
    /// This session's file transfers.
    pub transfers: assent_files::Transfers,
    /// Chosen in the prompt, put in force once the session is live.
    pub chosen_at_prompt: Vec<Permission>,
}

impl Permissions {
    pub fn new(files: &crate::files::FileSettings) -> Permissions {
        Permissions {
            clipboard: None,
            files: false,
            recording: false,
            transfers: assent_files::Transfers::new(files.dir.clone(), files.limits),
            chosen_at_prompt: Vec::new(),
        }
    }

    pub fn allows(&self, p: Permission) -> bool {
        match p {
            Permission::Clipboard => self.clipboard.is_some(),
            Permission::Files => self.files,
            Permission::Recording => self.recording,
        }
    }

    pub fn in_force(&self) -> Vec<Permission> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.allows(*p))
            .collect()
    }

    /// The next text the user copied while sharing (never, when not).
    pub async fn next_copied(&mut self) -> Option<Copied> {
        match &mut self.clipboard {
            Some(c) => c.copied().await,
            None => std::future::pending().await,
        }
    }

    /// Pausing stops the clipboard from moving; resuming watches again
    /// from what the clipboard holds then.
    pub fn paused(&self, paused: bool) {
        if let Some(c) = &self.clipboard {
            c.watch(!paused);
        }
    }
}

impl LiveSession {
    /// The user turns a permission on or off (in the prompt, the window or
    /// the terminal): in force at once, reported to the relay (signed) and
    /// told to the viewer.
    pub(crate) async fn set_permission(&mut self, permission: Permission, on: bool) {
        if self.permissions.allows(permission) == on {
            return;
        }
        match permission {
            Permission::Clipboard if on => match SharedClipboard::open(MAX_CLIPBOARD) {
                Ok(c) => {
                    c.watch(!self.guarded.gate().paused());
                    self.permissions.clipboard = Some(c);
                }
                Err(e) => {
                    warn!(error = %e, "the clipboard cannot be shared");
                    self.ui.show(UiEvent::Clipboard(ClipboardNews::Unavailable));
                    return;
                }
            },
            Permission::Clipboard => self.permissions.clipboard = None,
            Permission::Recording => self.permissions.recording = on,
            Permission::Files => {
                self.permissions.files = on;
                if !on {
                    self.stop_transfers().await;
                }
            }
        }
        info!(
            permission = permission.as_str(),
            allowed = on,
            "permission changed by the user"
        );
        let reported = self
            .reporter
            .report_permission(&mut self.control, permission, on)
            .await;
        if let Err(e) = reported {
            warn!(error = %e, "could not report the permission change to the relay");
        }
        self.tell_permissions().await;
        self.ui.show(self.live_info());
    }

    pub(crate) async fn tell_permissions(&mut self) {
        let msg = SessionMsg::Permissions(self.permissions.in_force());
        let _ = self.tx.send(&msg).await;
    }

    /// The technician asks: the user is asked (nothing changes until they
    /// say yes); already allowed, the viewer is reminded.
    pub(crate) async fn on_permission_request(&mut self, permission: Permission) {
        if self.permissions.allows(permission) {
            self.tell_permissions().await;
            return;
        }
        info!(
            permission = permission.as_str(),
            "the technician asks for a permission"
        );
        self.ui.show(UiEvent::PermissionAsked(permission));
    }

    /// Clipboard text from the technician: onto the user's clipboard only
    /// while they allow it and the session is not paused.
    pub(crate) async fn on_clipboard_text(&mut self, text: String) {
        let paused = self.guarded.gate().paused();
        let Some(clipboard) = self.permissions.clipboard.as_ref().filter(|_| !paused) else {
            let dropped = self.stats.clipboard_dropped.fetch_add(1, Relaxed) + 1;
            warn!(
                dropped,
                paused, "clipboard text from the technician dropped: not allowed by the user now"
            );
            return;
        };
        let (bytes, sha256) = assent_clipboard::fingerprint(&text);
        clipboard.put(text);
        self.report_transfer(Direction::ToUser, bytes, sha256).await;
    }

    /// Something the user copied while sharing: to the technician.
    pub(crate) async fn on_copied(&mut self, copied: Option<Copied>) {
        match copied {
            None => {
                warn!("the clipboard watcher stopped; clipboard sharing is off");
                self.set_permission(Permission::Clipboard, false).await;
            }
            Some(Copied::TooLarge { bytes }) => {
                info!(bytes, "copied text too large to share");
                self.ui
                    .show(UiEvent::Clipboard(ClipboardNews::TooLarge { bytes }));
            }
            Some(Copied::Text(text)) => {
                let (bytes, sha256) = assent_clipboard::fingerprint(&text);
                if let Err(e) = self.tx.send(&SessionMsg::Clipboard(text)).await {
                    warn!(error = %e, "copied text not sent");
                    return;
                }
                self.report_transfer(Direction::FromUser, bytes, sha256)
                    .await;
            }
        }
    }

    async fn report_transfer(&mut self, direction: Direction, bytes: u64, sha256: [u8; 32]) {
        info!(
            direction = direction.as_str(),
            bytes, "clipboard text moved"
        );
        self.stats.clipboard_moved.fetch_add(1, Relaxed);
        let reported = self
            .reporter
            .report_clipboard(&mut self.control, direction, bytes, sha256)
            .await;
        if let Err(e) = reported {
            warn!(error = %e, "could not report the clipboard transfer to the relay");
        }
        let technician = assent_proto::text::sanitize(&self.offer.technician, 64);
        let news = ClipboardNews::Moved {
            direction,
            bytes,
            technician,
        };
        self.ui.show(UiEvent::Clipboard(news));
    }
}
