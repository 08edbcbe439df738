//! The Assent viewer: the technician's side of a session. `session` runs the
//! protocol (invite, end-to-end handshake, consent, frames, input, end) for
//! both the window and `--headless`; `record` keeps the technician's own
//! audit log and writes the session note.

#![forbid(unsafe_code)]

pub mod checklist;
pub mod clipboard;
pub mod command;
pub mod ending;
pub mod escalate;
pub mod files;
pub mod handover;
pub mod headless;
pub mod identity_ask;
pub mod live;
pub mod monitors;
pub mod note_input;
pub mod outage;
pub mod paths;
pub mod privacy;
pub mod quality;
pub mod reconnect;
pub mod record;
pub mod recording;
pub mod replay;
pub mod session;
pub mod window;

/// RFC 3339 UTC, as the audit log writes times.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}
