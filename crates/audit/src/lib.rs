//! Append-only, SHA-256 hash-chained JSON-lines audit log.
//!
//! Every line of the file is one JSON object with five standard keys plus any
//! event-specific fields placed flat beside them:
//!
//! - `seq`: 1, 2, 3… as a JSON number;
//! - `time`: RFC 3339 UTC with milliseconds, e.g. `2026-11-23T14:00:00.123Z`;
//! - `event`: a string such as `session.start`;
//! - `prev`: the previous record's `hash` (64 zeros for the first record);
//! - `hash`: lowercase hex SHA-256 of this record's canonical form without
//!   the `hash` key.
//!
//! The canonical form is compact JSON with object keys sorted by byte order
//! at every nesting level (see [`canonical_json`]). Lines are written in that
//! same form (with `hash` in its sorted place), so a record's line is stable.
//!
//! [`AuditLog::append`] returns only after the line is written and
//! `sync_data` has succeeded, so a caller that lets an event take effect only
//! after `append` returns never acts on an unrecorded event.
//!
//! A hash chain detects changed, removed, inserted and reordered records, but
//! not records cut off from the end at a line boundary. For those the writer
//! keeps a head anchor beside the log (`audit.jsonl.head`: the last `seq` and
//! `hash`, replaced after every commit), which [`verify`] and
//! [`AuditLog::open`] compare with the log: a head that leads the log means
//! records were removed. The anchor may lag the log after a crash, which is
//! harmless. Neither stops someone who can rewrite both files from scratch;
//! for that, ship the last `seq` and `hash` ([`AuditLog::next_seq`],
//! [`AuditLog::last_hash`]) to another machine.

#![forbid(unsafe_code)]

mod canonical;
pub(crate) mod log;
mod record;
mod verify;

#[cfg(test)]
mod tests;

pub use canonical::canonical_json;
pub use log::{head_path, AuditError, AuditLog, Position, TornTail};
pub use record::{Fields, Record, RESERVED_FIELDS};
pub use verify::{read_records, verify, verify_reader, VerifyError, VerifyErrorKind};

/// `prev` of the first record: the hash of "no previous record".
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest line (without its newline) that verification accepts. The writer
/// refuses to produce longer records, so it never writes a log that fails
/// verification, and readers never buffer more than this per line.
pub const MAX_LINE_LEN: usize = 1024 * 1024;
