//! The relay's single audit writer: one thread owns the log and commits
//! records in groups (one fsync for everything queued), so a thousand
//! sessions starting at once do not each pay a disk flush in series.
//! `record` returns only after the record is on disk: callers let the event
//! take effect after that, never before.

use std::sync::{mpsc, Arc};
use std::time::Instant;

use assent_audit::{AuditLog, Fields};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// Most records committed in one group.
const MAX_BATCH: usize = 512;

struct Request {
    event: String,
    fields: Fields,
    done: oneshot::Sender<Result<u64, String>>,
}

/// Called by the writer thread with what it just committed.
pub type Committed = Box<dyn FnMut(&[assent_audit::Record]) + Send>;

#[derive(Debug, thiserror::Error)]
#[error("audit log write failed: {0}")]
pub struct AuditFailed(pub String);

/// Cloneable handle to the writer thread. Every record the serving relay
/// writes passes here, so this is also where the metrics learn of it.
#[derive(Clone)]
pub struct AuditHandle {
    tx: mpsc::Sender<Request>,
    metrics: Arc<Metrics>,
}

impl AuditHandle {
    /// Starts the writer. It stops once every handle is dropped, after
    /// committing what was queued.
    pub fn spawn(
        log: AuditLog,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(AuditHandle, std::thread::JoinHandle<()>)> {
        AuditHandle::spawn_with(log, metrics, Box::new(|_| {}))
    }

    /// [`AuditHandle::spawn`], calling `committed` with each group of
    /// records once it is on disk and before anyone waiting is told so
    /// (the webhook outbox queues from there: `crate::webhook::Feed`).
    pub fn spawn_with(
        mut log: AuditLog,
        metrics: Arc<Metrics>,
        mut committed: Committed,
    ) -> std::io::Result<(AuditHandle, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    let (entries, waiters): (Vec<_>, Vec<_>) = batch
                        .into_iter()
                        .map(|r| ((r.event, r.fields), r.done))
                        .unzip();
                    match log.append_batch(entries) {
                        Ok(records) => {
                            committed(&records);
                            for (w, rec) in waiters.into_iter().zip(records) {
                                let _ = w.send(Ok(rec.seq));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "audit write failed");
                            for w in waiters {
                                let _ = w.send(Err(e.to_string()));
                            }
                        }
                    }
                }
            })?;
        Ok((AuditHandle { tx, metrics }, thread))
    }

    /// Appends a record and waits until it is fsynced. Returns its `seq`.
    pub async fn record(&self, event: &str, fields: Fields) -> Result<u64, AuditFailed> {
        let started = Instant::now();
        // Kept for the metrics, which count only what reached the disk.
        let copy = fields.clone();
        let result = self.append(event, fields).await;
        match &result {
            Ok(_) => self.metrics.observe(event, &copy, started.elapsed()),
            Err(_) => self.metrics.audit_failed(),
        }
        result
    }

    async fn append(&self, event: &str, fields: Fields) -> Result<u64, AuditFailed> {
        if injected_failure(event) {
            return Err(AuditFailed(format!("injected failure for {event}")));
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Request {
                event: event.to_string(),
                fields,
                done,
            })
            .map_err(|_| AuditFailed("writer stopped".into()))?;
        wait.await
            .map_err(|_| AuditFailed("writer stopped".into()))?
            .map_err(AuditFailed)
    }
}

/// Fault injection for the end-to-end tests, compiled into debug builds
/// only: `ASSENT_TEST_FAIL_AUDIT=consent,scope_changed` makes those records
/// fail as a full disk would (here, and in the offline technician commands,
/// which write their record without this thread). A release relay never
/// reads the variable.
#[cfg(debug_assertions)]
pub(crate) fn injected_failure(event: &str) -> bool {
    std::env::var("ASSENT_TEST_FAIL_AUDIT")
        .map(|v| v.split(',').any(|e| e.trim() == event))
        .unwrap_or(false)
}

#[cfg(not(debug_assertions))]
pub(crate) fn injected_failure(_event: &str) -> bool {
    false
}

/// Builds audit fields from `key => value` pairs.
#[macro_export]
macro_rules! fields {
    ($($k:expr => $v:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut m = assent_audit::Fields::new();
        $( m.insert($k.to_string(), serde_json::json!($v)); )*
        m
    }};
}
