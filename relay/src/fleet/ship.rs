//! Ships the local audit log to the fleet's `audit_events` as it grows.
//!
//! The local log stays where an event takes effect (its fsync is the
//! moment); shipping follows from the file, so nothing is lost while the
//! database is down: the shipper resumes from the highest seq the database
//! acknowledged. The local file is never trimmed here (a local segment is
//! only ever dropped after the database holds it, and today never is).
//! Every few seconds the relay signs a checkpoint (relay id, seq, hash)
//! with its key, which `audit verify --fleet` checks: a database superuser
//! who rewrites history cannot forge it.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use assent_audit::Record;
use assent_fleet::{checkpoint_message, FleetError, NewSession};
use assent_proto::identity::SecretKey;
use tracing::warn;

use super::FleetLink;

/// How often the shipper looks at the file for new records.
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// Most records in one shipped batch (one transaction).
const MAX_BATCH: usize = 500;
/// Least time between two signed checkpoints.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

pub struct Shipper {
    link: Arc<FleetLink>,
    path: PathBuf,
    signing: SecretKey,
    /// Bytes of the file already read, and the unfinished line after them.
    offset: u64,
    partial: Vec<u8>,
    /// Read but not yet acknowledged, in seq order.
    queue: Vec<Record>,
    /// The highest seq the database holds (`None` until asked).
    acked: Option<u64>,
    /// The newest record shipped in this run: seq and hash.
    last_shipped: Option<(u64, String)>,
    /// The last checkpoint signed, and when (`None`: none yet).
    checkpointed: (u64, Option<Instant>),
    /// Set when a local line could not be read: the central chain cannot
    /// skip a record, so shipping stops after the last good one (said
    /// once, and by `fleet status`) rather than retrying a gap forever.
    damaged_after: Option<u64>,
}

impl Shipper {
    pub fn new(link: Arc<FleetLink>, path: &Path, signing: &SecretKey) -> anyhow::Result<Shipper> {
        let signing = SecretKey::from_file_contents(&signing.to_file_contents())?;
        Ok(Shipper {
            link,
            path: path.to_path_buf(),
            signing,
            offset: 0,
            partial: Vec::new(),
            queue: Vec::new(),
            acked: None,
            last_shipped: None,
            checkpointed: (0, None),
            damaged_after: None,
        })
    }

    /// Ships until aborted (the relay's shutdown).
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(LOOK_EVERY);
        let mut last_failure = String::new();
        loop {
            tick.tick().await;
            match self.round().await {
                Ok(()) => last_failure.clear(),
                // `saw` logs the database going away once; another failure
                // (a conflict) is logged when it first appears, not every
                // round it repeats.
                Err(FleetError::Unavailable(_)) => {}
                Err(e) => {
                    let text = e.to_string();
                    if text != last_failure {
                        warn!(error = %text, "audit shipping failed; retrying");
                        last_failure = text;
                    }
                }
            }
        }
    }

    /// Reads what is new, ships it in batches, follows the directory, and
    /// signs a checkpoint when due.
    async fn round(&mut self) -> Result<(), FleetError> {
        let acked = match self.acked {
            Some(a) => a,
            None => {
                let a = self.link.fleet.acked_seq().await;
                self.link.saw(&a);
                *self.acked.insert(a?)
            }
        };
        self.read_new(acked);
        while !self.queue.is_empty() {
            let n = self.queue.len().min(MAX_BATCH);
            let shipped = self.link.fleet.ship(&self.queue[..n]).await;
            self.link.saw(&shipped);
            let acked = shipped?;
            let batch: Vec<Record> = self.queue.drain(..n).collect();
            self.acked = Some(acked);
            self.last_shipped = batch.last().map(|r| (r.seq, r.hash.clone()));
            self.follow_directory(&batch).await?;
        }
        self.checkpoint().await
    }

    /// Appends the file's new complete records above `acked` to the queue.
    fn read_new(&mut self, acked: u64) {
        // Past a damaged line nothing more can ship: no reason to read on.
        if self.damaged_after.is_some() {
            return;
        }
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return;
        };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut bytes).is_err()
        {
            return;
        }
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let rest = self.partial.split_off(end + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let last = self.queue.last().map_or(acked, |r| r.seq).max(acked);
            match parse(line) {
                Some(r) if r.seq == last + 1 => self.queue.push(r),
                Some(r) if r.seq <= last => {}
                _ => {
                    self.damaged_after = Some(last);
                    tracing::error!(
                        shipped_through = last,
                        "the local audit log is damaged after this seq: fleet shipping stops there \
                         (`assent-relay audit verify` names the line; `fleet status` shows the gap)"
                    );
                    return;
                }
            }
        }
    }

    /// The directory of live sessions follows the shipped records.
    async fn follow_directory(&self, batch: &[Record]) -> Result<(), FleetError> {
        for r in batch {
            let session = r.get_str("session").unwrap_or_default().to_string();
            let result = match r.event.as_str() {
                "session_start" => {
                    self.link
                        .fleet
                        .session_started(&new_session(r, session))
                        .await
                }
                "session_end" => self
                    .link
                    .fleet
                    .session_ended(&session, r.get_str("reason").unwrap_or(""))
                    .await
                    .map(drop),
                _ => Ok(()),
            };
            self.link.saw(&result);
            result?;
        }
        Ok(())
    }

    /// Signs (relay id, seq, hash) of the newest acknowledged record.
    async fn checkpoint(&mut self) -> Result<(), FleetError> {
        let Some((seq, hash)) = self.last_shipped.clone() else {
            return Ok(());
        };
        let due = self
            .checkpointed
            .1
            .is_none_or(|at| at.elapsed() >= CHECKPOINT_EVERY);
        if seq <= self.checkpointed.0 || !due {
            return Ok(());
        }
        let acked = seq;
        let message = checkpoint_message(&self.link.relay_id, acked, &hash);
        let Ok(signature) = <[u8; 64]>::try_from(self.signing.sign(&message)) else {
            return Ok(());
        };
        let stored = self.link.fleet.checkpoint(acked, &hash, &signature).await;
        self.link.saw(&stored);
        stored?;
        self.checkpointed = (acked, Some(Instant::now()));
        Ok(())
    }
}

/// A directory entry from a `session_start` record.
fn new_session(r: &Record, session: String) -> NewSession {
    NewSession {
        session_id: session,
        technician: r.get_str("technician").unwrap_or_default().to_string(),
        technician_key_hex: r.get_str("technician_key").unwrap_or_default().to_string(),
        device: r.get_str("device").map(str::to_string),
        phase: "live".into(),
    }
}

fn parse(line: &[u8]) -> Option<Record> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    Record::from_json(value).ok()
}

/// Ships what the last moments of a stopping relay wrote (its
/// `relay_stopped`), within `limit`; the rest waits for the next start.
pub async fn ship_rest(link: &Arc<FleetLink>, dir: &crate::store::DataDir, limit: Duration) {
    let Ok(signing) = crate::store::load_signing_key(dir) else {
        return;
    };
    let Ok(mut shipper) = Shipper::new(link.clone(), &dir.audit(), &signing) else {
        return;
    };
    let _ = tokio::time::timeout(limit, shipper.round()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn log_of(path: &Path, n: usize) -> assent_audit::AuditLog {
        let mut log = assent_audit::AuditLog::open(path).unwrap();
        for i in 0..n {
            let mut fields = assent_audit::Fields::new();
            fields.insert("n".into(), serde_json::json!(i));
            log.append("test_event", fields).unwrap();
        }
        log
    }

    fn shipper(path: &Path) -> Shipper {
        let key = SecretKey::generate().unwrap();
        Shipper::new(FleetLink::unconnected("relay-t"), path, &key).unwrap()
    }

    #[test]
    fn shipping_stops_before_a_damaged_line_instead_of_sending_a_gap() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("audit.jsonl");
        drop(log_of(&path, 3));
        let good = std::fs::read(&path).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"seq\": 4, damaged\n").unwrap();
        // Records after the damage, as a writer that went on would leave.
        let later = String::from_utf8(good.clone())
            .unwrap()
            .replace("\"seq\":1", "\"seq\":5");
        file.write_all(later.lines().next().unwrap().as_bytes())
            .unwrap();
        file.write_all(b"\n").unwrap();

        let mut s = shipper(&path);
        s.read_new(0);
        let seqs: Vec<u64> = s.queue.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3], "the good records before the damage");
        assert_eq!(s.damaged_after, Some(3));
        file.write_all(later.lines().nth(1).unwrap().as_bytes())
            .unwrap();
        file.write_all(b"\n").unwrap();
        s.read_new(0);
        assert_eq!(s.queue.len(), 3, "nothing after the damage is queued");
    }

    #[test]
    fn shipping_resumes_above_the_acknowledged_seq_and_refuses_a_gap() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("audit.jsonl");
        drop(log_of(&path, 5));
        let mut s = shipper(&path);
        s.read_new(2);
        let seqs: Vec<u64> = s.queue.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        assert_eq!(s.damaged_after, None);

        // A record missing from the middle: the lines after it wait.
        let gap = tmp.path().join("gap.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: Vec<&str> = text.lines().filter(|l| !l.contains("\"seq\":2,")).collect();
        assert_eq!(kept.len(), 4, "one line removed: {text}");
        std::fs::write(&gap, kept.join("\n") + "\n").unwrap();
        let mut s = shipper(&gap);
        s.read_new(0);
        assert_eq!(s.queue.len(), 1);
        assert_eq!(s.damaged_after, Some(1));
    }
}
