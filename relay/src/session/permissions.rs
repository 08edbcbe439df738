//! `permission_changed` and `clipboard_transfer`: what the agent reports of
//! the permissions its user grants beyond the scope, each with a receipt of
//! the device key. Metadata only: the relay never sees clipboard text (it
//! travels end to end), only its size and SHA-256 as the agent signed them.

use assent_proto::files::{FileOutcome, FileReport};
use assent_proto::identity;
use assent_proto::permission::{ClipboardReport, Permission, PermissionReport};
use assent_proto::session::Phase;
use assent_proto::wire::ClientMsg;
use tracing::warn;

use super::records::ReceiptCtx;
use super::SessionTask;
use crate::fields;

/// Records one session may write of these; later ones are logged (as
/// metadata) and dropped, so an agent cannot flood the audit log.
const MAX_RECORDS: u32 = 2000;

/// What a session remembers of its permission reports.
#[derive(Debug, Default)]
pub(super) struct PermissionLog {
    last_change: u32,
    last_transfer: u32,
    last_file: u32,
    clipboard: bool,
    files: bool,
    recording: bool,
    /// The viewer said it started a recording and has not closed it.
    recording_open: bool,
    written: u32,
}

impl SessionTask {
    /// A permission change or a clipboard transfer the agent reported.
    pub(super) async fn on_permission_report(&mut self, msg: ClientMsg) {
        let Some(a) = self.agent.as_ref() else { return };
        let session = (self.id.as_str(), &self.machine, self.offer_bytes.as_slice());
        let ctx = ReceiptCtx::new(&self.shared, session, a);
        if !matches!(ctx.machine.phase(), Phase::Live { .. }) {
            warn!(session = %ctx.session, "permission report outside a live session; ignored");
            return;
        }
        self.permissions.record(&ctx, msg).await;
    }
}

impl SessionTask {
    /// The viewer's word on its recording (a stop also just after the end:
    /// see `farewell.rs`).
    pub(super) async fn on_recording_report(&mut self, msg: ClientMsg) {
        let live = matches!(self.machine.phase(), Phase::Live { .. });
        if live || matches!(msg, ClientMsg::RecordingStopped { .. }) {
            let peer = self.viewer.addr;
            let log = &mut self.permissions;
            log.record_viewer(&self.shared, &self.id, peer, msg).await;
        }
    }
}

type Record = (&'static str, assent_audit::Fields);

impl PermissionLog {
    /// Checks and records one report (also after the end, for a transfer
    /// the end cut short: see `farewell.rs`).
    pub(super) async fn record(&mut self, ctx: &ReceiptCtx<'_>, msg: ClientMsg) {
        if self.written >= MAX_RECORDS {
            warn!(session = %ctx.session, "too many permission reports; not recorded");
            return;
        }
        let (event, fields) = match msg {
            ClientMsg::PermissionChanged(r) => self.permission(ctx, r),
            ClientMsg::ClipboardTransfer(r) => self.clipboard(ctx, r),
            ClientMsg::FileTransfer(r) => self.file(ctx, r),
            _ => return,
        };
        self.written += 1;
        if let Err(e) = ctx.shared.audit.record(event, fields).await {
            warn!(session = %ctx.session, error = %e, "{event} not recorded");
        }
    }

    fn permission(&mut self, ctx: &ReceiptCtx<'_>, r: PermissionReport) -> Record {
        let payload =
            identity::permission_payload(ctx.offer_bytes, r.change, r.permission, r.allowed);
        if r.change <= self.last_change || ctx.device_key.verify(&payload, &r.receipt).is_err() {
            return refused(ctx, "bad_permission_receipt");
        }
        self.last_change = r.change;
        match r.permission {
            Permission::Clipboard => self.clipboard = r.allowed,
            Permission::Files => self.files = r.allowed,
            Permission::Recording => self.recording = r.allowed,
        }
        let fields = fields! {
            "session" => ctx.session, "permission" => r.permission.as_str(),
            "allowed" => r.allowed, "change" => r.change,
            "receipt" => hex::encode(&r.receipt), "device_key" => ctx.device_key.fingerprint(),
        };
        ("permission_changed", fields)
    }

    /// Believed only with the clipboard allowed on record: an agent that
    /// moves text without its user's yes is not a well-behaved agent.
    fn clipboard(&mut self, ctx: &ReceiptCtx<'_>, r: ClipboardReport) -> Record {
        let payload =
            identity::clipboard_payload(ctx.offer_bytes, r.number, r.direction, r.bytes, &r.sha256);
        if r.number <= self.last_transfer || ctx.device_key.verify(&payload, &r.receipt).is_err() {
            return refused(ctx, "bad_clipboard_receipt");
        }
        self.last_transfer = r.number;
        if !self.clipboard {
            return refused(ctx, "clipboard_not_allowed");
        }
        let fields = fields! {
            "session" => ctx.session, "direction" => r.direction.as_str(),
            "bytes" => r.bytes, "sha256" => hex::encode(r.sha256), "number" => r.number,
            "receipt" => hex::encode(&r.receipt), "device_key" => ctx.device_key.fingerprint(),
        };
        ("clipboard_transfer", fields)
    }
}

impl PermissionLog {
    /// A completed transfer is believed only with files allowed on record;
    /// any other outcome (declined, cancelled…) moved nothing.
    fn file(&mut self, ctx: &ReceiptCtx<'_>, r: FileReport) -> Record {
        let payload = identity::file_payload(ctx.offer_bytes, &r);
        if r.number <= self.last_file || ctx.device_key.verify(&payload, &r.receipt).is_err() {
            return refused(ctx, "bad_file_receipt");
        }
        self.last_file = r.number;
        if r.outcome == FileOutcome::Completed && !self.files {
            return refused(ctx, "files_not_allowed");
        }
        let name = assent_proto::text::sanitize(&r.name, 200);
        let fields = fields! {
            "session" => ctx.session, "direction" => r.direction.as_str(), "name" => name,
            "bytes" => r.bytes, "sha256" => hex::encode(r.sha256), "outcome" => r.outcome.as_str(),
            "number" => r.number, "receipt" => hex::encode(&r.receipt),
            "device_key" => ctx.device_key.fingerprint(),
        };
        ("file_transfer", fields)
    }
}

impl PermissionLog {
    /// What the viewer says of its recording: believed only while the user
    /// allows recording on record (a stop is recorded whenever one was
    /// started: the user's "no more" is often what stopped it).
    pub(super) async fn record_viewer(
        &mut self,
        shared: &crate::state::Shared,
        session: &str,
        peer: std::net::SocketAddr,
        msg: ClientMsg,
    ) {
        if self.written >= MAX_RECORDS {
            warn!(session = %session, "too many recording reports; not recorded");
            return;
        }
        let (event, fields) = match msg {
            ClientMsg::RecordingStopped {
                bytes,
                sha256,
                frames,
            } if self.recording_open => {
                self.recording_open = false;
                let fields = fields! {
                    "session" => session, "bytes" => bytes, "sha256" => hex::encode(sha256),
                    "frames" => frames,
                };
                ("recording_stopped", fields)
            }
            ClientMsg::RecordingStarted if self.recording => {
                self.recording_open = true;
                ("recording_started", fields! {"session" => session})
            }
            ClientMsg::ScreenshotTaken { sha256 } if self.recording => {
                let fields = fields! {"session" => session, "sha256" => hex::encode(sha256)};
                ("screenshot_taken", fields)
            }
            _ => {
                warn!(session = %session, "recording report without the user's yes on record; refused");
                let fields = fields! {
                    "role" => "viewer", "peer" => peer.to_string(),
                    "reason" => "recording_not_allowed", "session" => session,
                };
                ("auth_failed", fields)
            }
        };
        self.written += 1;
        if let Err(e) = shared.audit.record(event, fields).await {
            warn!(session = %session, error = %e, "{event} not recorded");
        }
    }
}

fn refused(ctx: &ReceiptCtx<'_>, reason: &str) -> Record {
    warn!(session = %ctx.session, reason, "permission report refused");
    let fields = fields! {
        "role" => "agent", "peer" => ctx.peer.to_string(),
        "reason" => reason, "session" => ctx.session,
    };
    ("auth_failed", fields)
}
