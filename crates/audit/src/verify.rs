//! Reading and verifying a log file.

// A decoder of untrusted bytes: no panicking shortcuts (its tests may).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use crate::log::AuditError;
use crate::record::Record;
use crate::{MAX_LINE_LEN, ZERO_HASH};

/// The first record at which verification failed.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("record seq {seq}: {kind}")]
pub struct VerifyError {
    /// The bad record's `seq` as written in the file when it could be parsed,
    /// otherwise the `seq` the record at that position should have had.
    pub seq: u64,
    pub kind: VerifyErrorKind,
}

/// What was wrong with the record named by [`VerifyError::seq`].
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum VerifyErrorKind {
    #[error("hash mismatch (record was changed)")]
    HashMismatch,
    #[error("prev mismatch (record removed, inserted or reordered before it)")]
    PrevMismatch,
    #[error("seq out of order (expected {expected}, found {found})")]
    SeqOutOfOrder { expected: u64, found: u64 },
    #[error("malformed record: {0}")]
    Malformed(String),
    #[error("truncated last line (no trailing newline)")]
    TruncatedLastLine,
    #[error("line longer than {MAX_LINE_LEN} bytes")]
    LineTooLong,
    /// The head anchor beside the log names a later record than the log
    /// holds: records were cut from the end.
    #[error("records missing at the end (the head anchor names seq {head_seq})")]
    MissingTail { head_seq: u64 },
    /// The record the head anchor names is not the one it recorded.
    #[error("record differs from the one the head anchor recorded")]
    HeadMismatch,
    /// The file could not be opened or read; the chain up to here was fine.
    #[error("read error: {0}")]
    Io(String),
}

/// Verifies the log at `path`; returns the number of records. When the head
/// anchor the writer keeps beside it exists, also checks that no record was
/// cut from the end.
pub fn verify(path: &Path) -> Result<u64, VerifyError> {
    let file = File::open(path).map_err(|e| VerifyError {
        seq: 1,
        kind: VerifyErrorKind::Io(e.to_string()),
    })?;
    let head = read_head(&crate::log::head_path(path));
    let tip = match walk_to(BufReader::new(file), head.as_ref().map(|h| h.0)) {
        Ok(tip) => tip,
        Err(WalkError::Invalid(e)) => return Err(e),
        Err(WalkError::TornTail(tip)) => {
            return Err(VerifyError {
                seq: tip.count + 1,
                kind: VerifyErrorKind::TruncatedLastLine,
            })
        }
        Err(WalkError::Io { seq, source }) => {
            return Err(VerifyError {
                seq,
                kind: VerifyErrorKind::Io(source.to_string()),
            })
        }
    };
    check_head(&tip, head.as_ref())?;
    Ok(tip.count)
}

/// Compares a walked chain with the head anchor, if there is one.
pub(crate) fn check_head(tip: &Tip, head: Option<&(u64, String)>) -> Result<(), VerifyError> {
    let Some((head_seq, head_hash)) = head else {
        return Ok(());
    };
    if *head_seq > tip.count {
        return Err(VerifyError {
            seq: tip.count + 1,
            kind: VerifyErrorKind::MissingTail {
                head_seq: *head_seq,
            },
        });
    }
    if tip.hash_at_anchor.as_deref() != Some(head_hash.as_str()) {
        return Err(VerifyError {
            seq: *head_seq,
            kind: VerifyErrorKind::HeadMismatch,
        });
    }
    Ok(())
}

/// The head anchor's `seq` and `hash`, if the file exists and reads.
pub(crate) fn read_head(path: &Path) -> Option<(u64, String)> {
    let mut text = String::new();
    // A head is one short line; never read more of whatever is there.
    File::open(path)
        .ok()?
        .take(4096)
        .read_to_string(&mut text)
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    Some((
        v.get("seq")?.as_u64()?,
        v.get("hash")?.as_str()?.to_string(),
    ))
}

/// Verifies a log read from `r`; returns the number of records. An empty
/// input is a valid log of zero records.
pub fn verify_reader(r: impl BufRead) -> Result<u64, VerifyError> {
    match walk(r) {
        Ok(tip) => Ok(tip.count),
        Err(WalkError::Invalid(e)) => Err(e),
        Err(WalkError::TornTail(tip)) => Err(VerifyError {
            seq: tip.count + 1,
            kind: VerifyErrorKind::TruncatedLastLine,
        }),
        Err(WalkError::Io { seq, source }) => Err(VerifyError {
            seq,
            kind: VerifyErrorKind::Io(source.to_string()),
        }),
    }
}

/// Reads every record without verifying the chain. Fails on the first line
/// that is not a parsable record (including one over [`MAX_LINE_LEN`]).
pub fn read_records(path: &Path) -> Result<Vec<Record>, AuditError> {
    let io_err = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut r = BufReader::new(File::open(path).map_err(io_err)?);
    let mut records = Vec::new();
    let mut buf = Vec::new();
    let mut line_no: u64 = 0;
    loop {
        line_no += 1;
        let parsed = match read_line(&mut r, &mut buf).map_err(io_err)? {
            LineRead::Eof => return Ok(records),
            // Not verifying: a final line lacking only its newline is still
            // a readable record.
            LineRead::Line | LineRead::Truncated => Record::parse_line(&buf),
            LineRead::TooLong => Err(format!("line longer than {MAX_LINE_LEN} bytes")),
        };
        match parsed {
            Ok(record) => records.push(record),
            Err(message) => {
                return Err(AuditError::Unparsable {
                    path: path.to_path_buf(),
                    line: line_no,
                    message,
                })
            }
        }
    }
}

/// Where a verified chain ends; what [`crate::AuditLog`] continues from.
pub(crate) struct Tip {
    pub count: u64,
    /// The hash of the record asked for in [`walk_to`], if reached.
    pub hash_at_anchor: Option<String>,
    pub last_hash: String,
    /// Bytes of verified content, i.e. the file length.
    pub len: u64,
}

pub(crate) enum WalkError {
    Invalid(VerifyError),
    /// The chain is intact up to `tip`, after which the file ends in a line
    /// without its newline: what a crash in the middle of a write leaves.
    TornTail(Tip),
    Io {
        seq: u64,
        source: io::Error,
    },
}

/// Verifies the whole chain in `r` and reports where it ends.
pub(crate) fn walk(r: impl BufRead) -> Result<Tip, WalkError> {
    walk_to(r, None)
}

/// [`walk`], also keeping the hash of record `anchor`.
pub(crate) fn walk_to(mut r: impl BufRead, anchor: Option<u64>) -> Result<Tip, WalkError> {
    let mut hash_at_anchor = None;
    let mut expected: u64 = 1;
    let mut last_hash = ZERO_HASH.to_string();
    let mut len: u64 = 0;
    let mut buf = Vec::new();
    let fail = |seq, kind| WalkError::Invalid(VerifyError { seq, kind });
    loop {
        match read_line(&mut r, &mut buf) {
            Err(source) => {
                return Err(WalkError::Io {
                    seq: expected,
                    source,
                })
            }
            Ok(LineRead::Eof) => break,
            Ok(LineRead::Truncated) => {
                return Err(WalkError::TornTail(Tip {
                    count: expected - 1,
                    hash_at_anchor,
                    last_hash,
                    len,
                }))
            }
            Ok(LineRead::TooLong) => return Err(fail(expected, VerifyErrorKind::LineTooLong)),
            Ok(LineRead::Line) => {}
        }
        let record =
            Record::parse_line(&buf).map_err(|m| fail(expected, VerifyErrorKind::Malformed(m)))?;
        if record.seq != expected {
            return Err(fail(
                record.seq,
                VerifyErrorKind::SeqOutOfOrder {
                    expected,
                    found: record.seq,
                },
            ));
        }
        // The record's own hash is checked before its link to the previous
        // one, so an edited `prev` is reported as a changed record, and
        // PrevMismatch is left to mean an intact record whose predecessor is
        // not the one it was written after.
        if record.compute_hash() != record.hash {
            return Err(fail(record.seq, VerifyErrorKind::HashMismatch));
        }
        if record.prev != last_hash {
            return Err(fail(record.seq, VerifyErrorKind::PrevMismatch));
        }
        if anchor == Some(record.seq) {
            hash_at_anchor = Some(record.hash.clone());
        }
        last_hash = record.hash;
        // `buf` lost its newline in read_line.
        len += buf.len() as u64 + 1;
        // Cannot overflow: it would take 2^64 lines.
        expected += 1;
    }
    Ok(Tip {
        count: expected - 1,
        hash_at_anchor,
        last_hash,
        len,
    })
}

pub(crate) enum LineRead {
    /// `buf` holds a complete line, newline removed.
    Line,
    /// End of input at a line boundary.
    Eof,
    /// `buf` holds a final line that has no newline.
    Truncated,
    /// The line is longer than [`MAX_LINE_LEN`]; `buf` holds a prefix.
    TooLong,
}

/// Reads one line into `buf` (cleared first), never buffering more than
/// `MAX_LINE_LEN` + 1 bytes, so a hostile file cannot exhaust memory.
pub(crate) fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<LineRead> {
    buf.clear();
    // Room for the longest allowed line plus its newline.
    let limit = MAX_LINE_LEN as u64 + 1;
    let n = Read::take(&mut *r, limit).read_until(b'\n', buf)?;
    if n == 0 {
        Ok(LineRead::Eof)
    } else if buf.last() == Some(&b'\n') {
        buf.pop();
        Ok(LineRead::Line)
    } else if n as u64 == limit {
        Ok(LineRead::TooLong)
    } else {
        Ok(LineRead::Truncated)
    }
}
