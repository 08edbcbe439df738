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
        })
    }

    /// Ships until aborted (the relay's shutdown).
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(LOOK_EVERY);
        loop {
            tick.tick().await;
            if let Err(e) = self.round().await {
                // `saw` logs the database going away once; other failures
                // (a conflict, a bad record) are worth every line.
                if !matches!(e, FleetError::Unavailable(_)) {
                    warn!(error = %e, "audit shipping failed; retrying");
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
        let last_queued = self.queue.last().map_or(acked, |r| r.seq);
        for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match parse(line) {
                Some(r) if r.seq > last_queued.max(acked) => self.queue.push(r),
                Some(_) => {}
                None => {
                    warn!("an audit line could not be read for shipping; `audit verify` tells more")
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
