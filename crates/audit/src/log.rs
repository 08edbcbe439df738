//! The appending side: [`AuditLog`].

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use time::OffsetDateTime;

use crate::record::{Fields, Record, RESERVED_FIELDS};
use crate::verify::{check_head, read_head, walk_to, Tip, VerifyError, WalkError};
use crate::MAX_LINE_LEN;

/// Deepest array/object nesting accepted inside a field value. serde_json
/// refuses to parse JSON nested more than 128 levels, so a deeper value would
/// produce a line that fails verification and blocks every later `open`.
const MAX_FIELD_DEPTH: usize = 64;

/// Why opening, appending or reading a log failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("audit log {0} is locked by another handle or process")]
    Locked(PathBuf),
    #[error("audit log is corrupt: {0}")]
    Corrupt(VerifyError),
    #[error("field `{0}` is reserved for the record itself")]
    ReservedField(String),
    #[error("field `{0}` is nested more than {MAX_FIELD_DEPTH} levels deep")]
    FieldTooDeep(String),
    #[error("record seq {seq} would be a {len}-byte line, over the {MAX_LINE_LEN}-byte limit")]
    RecordTooLarge { seq: u64, len: usize },
    /// A failed write could not be rolled back, so the file may end in a
    /// partial line; drop this handle and `open` again, which verifies.
    #[error("audit log is unusable after a failed write that could not be undone")]
    Poisoned,
    /// From [`crate::read_records`]; `line` counts from 1.
    #[error("audit log {path} line {line}: {message}")]
    Unparsable {
        path: PathBuf,
        line: u64,
        message: String,
    },
}

/// An open, exclusively locked audit log positioned after its last record.
#[derive(Debug)]
pub struct AuditLog {
    file: File,
    path: PathBuf,
    next_seq: u64,
    last_hash: String,
    /// Length of the verified/committed content; a failed write is cut back
    /// to this.
    len: u64,
    poisoned: bool,
}

/// Where a log stood when its handle was dropped: [`AuditLog::reopen`]
/// continues from it without re-reading the chain, as long as nothing was
/// appended since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    len: u64,
    next_seq: u64,
    last_hash: String,
}

impl AuditLog {
    /// Where this log stands now (after its last append).
    pub fn position(&self) -> Position {
        Position {
            len: self.len,
            next_seq: self.next_seq,
            last_hash: self.last_hash.clone(),
        }
    }

    /// Opens a log this process had open before, at `pos`, taking the lock
    /// again. If the file is still exactly as long as it was, nobody
    /// appended in between and the chain is not walked again; otherwise
    /// (another process appended) it is verified as [`AuditLog::open`] does.
    /// For writers that release the lock between records so that several
    /// processes can share one log without re-verifying it every time.
    pub fn reopen(path: &Path, pos: &Position) -> Result<AuditLog, AuditError> {
        let io_err = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(AuditError::Locked(path.to_path_buf())),
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        if file.metadata().map_err(io_err)?.len() != pos.len {
            drop(file);
            return AuditLog::open(path);
        }
        Ok(AuditLog {
            file,
            path: path.to_path_buf(),
            next_seq: pos.next_seq,
            last_hash: pos.last_hash.clone(),
            len: pos.len,
            poisoned: false,
        })
    }

    /// Opens (creating file and parent dirs if missing) and takes an
    /// exclusive advisory lock on the file (`File::try_lock`), held for the
    /// `AuditLog`'s lifetime; returns [`AuditError::Locked`] if another process
    /// or handle holds it. Reads the existing file to find the last seq and
    /// hash; if the existing chain does not verify (including a torn last line
    /// without trailing newline, or invalid JSON), returns
    /// [`AuditError::Corrupt`] rather than appending after damage.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        Self::open_inner(path, false).map(|(log, _)| log)
    }

    /// Like [`AuditLog::open`], but a log whose chain is intact up to a last
    /// line cut short (a crash in the middle of a write) is repaired instead
    /// of refused: the partial line is moved to a file beside the log, and an
    /// `audit_repaired` record naming that file, its size and its SHA-256 is
    /// appended, so the loss is on the record rather than silently dropped.
    /// Any other damage is still refused.
    pub fn open_repairing(path: &Path) -> Result<(AuditLog, Option<TornTail>), AuditError> {
        Self::open_inner(path, true)
    }

    fn open_inner(path: &Path, repair: bool) -> Result<(AuditLog, Option<TornTail>), AuditError> {
        let io_err = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        create_dirs_durably(dir).map_err(io_err)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(AuditError::Locked(path.to_path_buf())),
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        // The file may have just been created; its directory entry must be
        // durable before any append reports success.
        sync_dir(dir).map_err(io_err)?;
        // Verified only after locking, so no one can append in between.
        // A head anchor that leads the log means records were cut from its
        // end; appending would hide that, so it is refused like any damage.
        let head = read_head(&head_path(path));
        let (tip, torn) = match walk_to(BufReader::new(&file), head.as_ref().map(|h| h.0)) {
            Ok(tip) => (tip, None),
            Err(WalkError::TornTail(tip)) if repair => {
                let torn = set_aside_torn_tail(&file, path, dir, &tip).map_err(io_err)?;
                (tip, Some(torn))
            }
            Err(WalkError::TornTail(tip)) => {
                return Err(AuditError::Corrupt(VerifyError {
                    seq: tip.count + 1,
                    kind: crate::VerifyErrorKind::TruncatedLastLine,
                }))
            }
            Err(WalkError::Invalid(e)) => return Err(AuditError::Corrupt(e)),
            Err(WalkError::Io { source, .. }) => return Err(io_err(source)),
        };
        check_head(&tip, head.as_ref()).map_err(AuditError::Corrupt)?;
        let mut log = AuditLog {
            file,
            path: path.to_path_buf(),
            next_seq: tip.count + 1,
            last_hash: tip.last_hash,
            len: tip.len,
            poisoned: false,
        };
        if let Some(t) = &torn {
            let mut fields = Fields::new();
            fields.insert("torn_seq".into(), Value::from(t.seq));
            fields.insert("torn_bytes".into(), Value::from(t.bytes));
            fields.insert("torn_sha256".into(), Value::from(t.sha256.clone()));
            fields.insert(
                "saved_to".into(),
                Value::from(t.saved_to.display().to_string()),
            );
            log.append("audit_repaired", fields)?;
        }
        Ok((log, torn))
    }

    /// Appends one record; returns after it is written and `sync_data`ed.
    pub fn append(&mut self, event: &str, fields: Fields) -> Result<Record, AuditError> {
        let records = self.append_batch(vec![(event.to_string(), fields)])?;
        Ok(records
            .into_iter()
            .next()
            .expect("append_batch returns one record per entry"))
    }

    /// Group commit: appends all entries with one write and one `sync_data`.
    /// All or nothing: if any entry is rejected, nothing is written.
    pub fn append_batch(
        &mut self,
        entries: Vec<(String, Fields)>,
    ) -> Result<Vec<Record>, AuditError> {
        self.append_batch_at(entries, OffsetDateTime::now_utc())
    }

    /// [`Self::append_batch`] with the clock passed in, so tests can compare
    /// logs byte for byte.
    pub(crate) fn append_batch_at(
        &mut self,
        entries: Vec<(String, Fields)>,
        now: OffsetDateTime,
    ) -> Result<Vec<Record>, AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned);
        }
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        for (_, fields) in &entries {
            check_fields(fields)?;
        }
        let time = format_time(now);
        let mut seq = self.next_seq;
        let mut prev = self.last_hash.clone();
        let mut out = String::new();
        let mut records = Vec::with_capacity(entries.len());
        for (event, fields) in entries {
            let mut record = Record {
                seq,
                time: time.clone(),
                event,
                prev,
                hash: String::new(),
                fields,
            };
            record.hash = record.compute_hash();
            let start = out.len();
            record.write_line(&mut out);
            let len = out.len() - start;
            if len > MAX_LINE_LEN {
                return Err(AuditError::RecordTooLarge { seq, len });
            }
            out.push('\n');
            prev = record.hash.clone();
            seq += 1;
            records.push(record);
        }
        self.write_durably(out.as_bytes())?;
        self.next_seq = seq;
        self.last_hash = prev;
        self.len += out.len() as u64;
        // Best effort: a head that lags the log (a crash, a failed write)
        // is harmless; only one that leads it means records were removed.
        let _ = write_head(&self.path, self.next_seq - 1, &self.last_hash);
        Ok(records)
    }

    /// The `seq` the next appended record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// `hash` of the last record ([`crate::ZERO_HASH`] for an empty log).
    pub fn last_hash(&self) -> &str {
        &self.last_hash
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_durably(&mut self, bytes: &[u8]) -> Result<(), AuditError> {
        let result = self
            .file
            .write_all(bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = result {
            // Cut off whatever part reached the file so the log still ends on
            // a complete record and later appends continue a valid chain. The
            // caller sees the error and does not let the event take effect.
            let undone = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data());
            if undone.is_err() {
                self.poisoned = true;
            }
            return Err(AuditError::Io {
                path: self.path.clone(),
                source,
            });
        }
        Ok(())
    }
}

fn check_fields(fields: &Fields) -> Result<(), AuditError> {
    for (key, value) in fields {
        if RESERVED_FIELDS.contains(&key.as_str()) {
            return Err(AuditError::ReservedField(key.clone()));
        }
        if too_deep(value, MAX_FIELD_DEPTH) {
            return Err(AuditError::FieldTooDeep(key.clone()));
        }
    }
    Ok(())
}

/// Whether `value` nests arrays/objects deeper than `budget` levels. Recurses
/// at most `budget + 1` frames, however deep the value.
fn too_deep(value: &Value, budget: usize) -> bool {
    match value {
        Value::Array(items) => budget == 0 || items.iter().any(|v| too_deep(v, budget - 1)),
        Value::Object(map) => budget == 0 || map.values().any(|v| too_deep(v, budget - 1)),
        _ => false,
    }
}

/// RFC 3339 UTC with milliseconds: fixed width, so lines sort by time too.
/// Formatted by hand because it cannot fail, unlike `time`'s formatter.
fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Where the head anchor of the log at `path` lives: `audit.jsonl.head`.
pub fn head_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".head");
    path.with_file_name(name)
}

/// Records the last `seq` and `hash` beside the log (write and rename, so a
/// reader sees the old or the new head, never half of one). This detects
/// records cut from the end of the log, which the chain alone cannot; like
/// the chain, it does not stop someone who rewrites both files.
fn write_head(path: &Path, seq: u64, hash: &str) -> io::Result<()> {
    let head = head_path(path);
    let tmp = head.with_extension("head.tmp");
    fs::write(&tmp, format!("{{\"seq\":{seq},\"hash\":\"{hash}\"}}\n"))?;
    fs::rename(&tmp, &head)
}

/// A partial last line found and set aside by [`AuditLog::open_repairing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The `seq` the partial record would have had.
    pub seq: u64,
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the partial line.
    pub sha256: String,
    /// Where its bytes were kept.
    pub saved_to: PathBuf,
}

/// Copies everything after the verified `tip` to a new file beside the log
/// (durably), then cuts the log back to the tip.
fn set_aside_torn_tail(file: &File, path: &Path, dir: &Path, tip: &Tip) -> io::Result<TornTail> {
    use sha2::{Digest as _, Sha256};
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut reader = file;
    reader.seek(SeekFrom::Start(tip.len))?;
    // The walk stopped at a line shorter than MAX_LINE_LEN, so this is bounded.
    let mut bytes = Vec::new();
    reader
        .take(crate::MAX_LINE_LEN as u64 + 1)
        .read_to_end(&mut bytes)?;
    let seq = tip.count + 1;
    let stamp = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let name = format!(
        "{}.torn-seq{seq}-{stamp}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let saved_to = dir.join(name);
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&saved_to)?;
    out.write_all(&bytes)?;
    out.sync_all()?;
    sync_dir(dir)?;
    file.set_len(tip.len)?;
    file.sync_data()?;
    Ok(TornTail {
        seq,
        bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
        saved_to,
    })
}

/// Creates `dir` and any missing ancestors, syncing each new directory's
/// parent so the new entries survive a crash along with the log.
fn create_dirs_durably(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d);
        cur = d.parent();
    }
    fs::create_dir_all(dir)?;
    for d in missing.iter().rev() {
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => sync_dir(p)?,
            _ => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// std cannot open a directory as a `File` on Windows, so there is nothing
/// to sync there.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod reopen_tests {
    use super::*;

    fn fields(n: u64) -> Fields {
        let mut f = Fields::new();
        f.insert("n".into(), Value::from(n));
        f
    }

    #[test]
    fn reopen_continues_the_chain_where_it_stood() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path).unwrap();
        log.append("a", fields(1)).unwrap();
        let pos = log.position();
        drop(log);
        let mut log = AuditLog::reopen(&path, &pos).unwrap();
        log.append("b", fields(2)).unwrap();
        assert_eq!(log.position().next_seq, 3);
        drop(log);
        assert_eq!(crate::verify(&path).unwrap(), 2);
    }

    #[test]
    fn reopen_after_another_writer_appended_verifies_and_follows_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut mine = AuditLog::open(&path).unwrap();
        mine.append("mine", fields(1)).unwrap();
        let pos = mine.position();
        drop(mine);
        // Another process (another viewer window) appends in between.
        let mut other = AuditLog::open(&path).unwrap();
        other.append("other", fields(2)).unwrap();
        drop(other);
        let mut mine = AuditLog::reopen(&path, &pos).unwrap();
        assert_eq!(mine.position().next_seq, 3, "followed the other writer");
        mine.append("mine", fields(3)).unwrap();
        drop(mine);
        assert_eq!(crate::verify(&path).unwrap(), 3);
    }

    #[test]
    fn reopen_respects_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let pos = log.position();
        assert!(matches!(
            AuditLog::reopen(&path, &pos),
            Err(AuditError::Locked(_))
        ));
    }
}
