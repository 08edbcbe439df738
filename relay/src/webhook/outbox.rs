//! The outbox on disk (`DATA_DIR/webhooks/outbox.jsonl`, mode 0600): a
//! delivery is appended and fsynced when its audit record is committed,
//! before anyone is told the record is on disk, and leaves the queue only
//! when the receiver answered 2xx or it was given up. The journal's format
//! is `assent_relay_formats::outbox` (fuzzed there).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use assent_relay_formats::outbox::{Journal, Op, Outcome, Pending, Queued};

/// Journal lines after which the file is rewritten with only what is
/// still pending.
const COMPACT_AFTER: usize = 4096;

/// The queue of every webhook, shared by the audit writer (which adds) and
/// the delivery threads (which take from the front).
pub struct Outbox {
    inner: Mutex<Inner>,
    wake: Condvar,
}

struct Inner {
    path: PathBuf,
    file: File,
    queues: HashMap<String, VecDeque<Pending>>,
    fed_seq: u64,
    /// The last audit record the feed looked at, written as the cursor on
    /// a clean stop.
    seen_seq: u64,
    lines: usize,
    stopping: bool,
}

/// What [`Outbox::open`] found.
pub struct Opened {
    pub outbox: Outbox,
    /// Lines not understood (a torn last line after a crash).
    pub skipped: usize,
    pub pending: usize,
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir` and rewrites it compacted. A
    /// new outbox starts after audit record `last_seq`: a relay that gains
    /// a webhook does not report its past.
    pub fn open(dir: &Path, last_seq: u64) -> std::io::Result<Opened> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let path = dir.join("outbox.jsonl");
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Op::Cursor { seq: last_seq }.to_line()
            }
            Err(e) => return Err(e),
        };
        let journal = Journal::parse(&text);
        let skipped = journal.skipped;
        let pending = journal.pending.len();
        let file = rewrite(&path, &journal)?;
        let mut queues: HashMap<String, VecDeque<Pending>> = HashMap::new();
        for p in journal.pending {
            queues
                .entry(p.queued.hook.clone())
                .or_default()
                .push_back(p);
        }
        let inner = Inner {
            path,
            file,
            queues,
            fed_seq: journal.fed_seq,
            seen_seq: journal.fed_seq,
            lines: 0,
            stopping: false,
        };
        let outbox = Outbox {
            inner: Mutex::new(inner),
            wake: Condvar::new(),
        };
        Ok(Opened {
            outbox,
            skipped,
            pending,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The highest audit `seq` ever queued: records after it were never
    /// looked at (a crash between the audit's fsync and the outbox's).
    pub fn fed_seq(&self) -> u64 {
        self.lock().fed_seq
    }

    /// Deliveries waiting for `hook`.
    pub fn queued(&self, hook: &str) -> usize {
        self.lock().queues.get(hook).map_or(0, VecDeque::len)
    }

    /// Webhook names with deliveries waiting.
    pub fn hooks(&self) -> Vec<String> {
        let inner = self.lock();
        inner
            .queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// Queues deliveries: on disk (fsynced) before this returns. `seen` is
    /// the last audit record looked at.
    pub fn enqueue(&self, entries: Vec<Queued>, seen: u64) -> std::io::Result<()> {
        let mut inner = self.lock();
        inner.seen_seq = inner.seen_seq.max(seen);
        if entries.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for q in &entries {
            text.push_str(&Op::Queued(q.clone()).to_line());
            text.push('\n');
        }
        inner.file.write_all(text.as_bytes())?;
        inner.file.sync_data()?;
        inner.lines += entries.len();
        for q in entries {
            inner.fed_seq = inner.fed_seq.max(q.seq);
            inner
                .queues
                .entry(q.hook.clone())
                .or_default()
                .push_back(Pending {
                    queued: q,
                    attempts: 0,
                    last_status: 0,
                });
        }
        drop(inner);
        self.wake.notify_all();
        Ok(())
    }

    /// The next delivery for `hook`, waiting up to `wait` for one; `None`
    /// when there is none yet or the relay is stopping.
    pub fn next(&self, hook: &str, wait: Duration) -> Option<Pending> {
        let mut inner = self.lock();
        if inner.stopping {
            return None;
        }
        if inner.queues.get(hook).is_none_or(VecDeque::is_empty) {
            inner = self
                .wake
                .wait_timeout(inner, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        if inner.stopping {
            return None;
        }
        inner.queues.get(hook).and_then(|q| q.front().cloned())
    }

    /// Sleeps up to `wait`; `false` when the relay is stopping.
    pub fn pause(&self, wait: Duration) -> bool {
        let inner = self.lock();
        if inner.stopping {
            return false;
        }
        let (inner, _) = self
            .wake
            .wait_timeout_while(inner, wait, |i| !i.stopping)
            .unwrap_or_else(|e| e.into_inner());
        !inner.stopping
    }

    /// Notes a failed attempt of the front delivery of `hook`.
    pub fn attempted(&self, hook: &str, attempts: u32, status: u16) {
        let mut inner = self.lock();
        let Some(front) = inner.queues.get_mut(hook).and_then(VecDeque::front_mut) else {
            return;
        };
        front.attempts = attempts;
        front.last_status = status;
        let op = Op::Attempt {
            key: front.queued.key.clone(),
            hook: hook.to_string(),
            attempts,
            status,
        };
        inner.append(&op, false);
    }

    /// Takes the front delivery of `hook` off the queue for good.
    pub fn finish(&self, hook: &str, outcome: Outcome) {
        let mut inner = self.lock();
        let Some(front) = inner.queues.get_mut(hook).and_then(VecDeque::pop_front) else {
            return;
        };
        let op = Op::Done {
            key: front.queued.key,
            hook: hook.to_string(),
            outcome,
        };
        inner.append(&op, true);
        if inner.lines >= COMPACT_AFTER {
            inner.compact();
        }
    }

    /// Wakes every delivery thread to stop, and notes how far the audit
    /// log was looked at (so the next start has nothing to catch up).
    pub fn stop(&self) {
        let mut inner = self.lock();
        inner.stopping = true;
        let cursor = Op::Cursor {
            seq: inner.seen_seq,
        };
        inner.append(&cursor, true);
        drop(inner);
        self.wake.notify_all();
    }
}

impl Inner {
    fn append(&mut self, op: &Op, sync: bool) {
        let line = format!("{}\n", op.to_line());
        let written = self.file.write_all(line.as_bytes()).and_then(|()| {
            if sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // The delivery may be made again after a restart: at least once.
            tracing::warn!(error = %e, "webhook outbox: could not note a delivery's progress");
        }
        self.lines += 1;
    }

    fn compact(&mut self) {
        let journal = Journal {
            pending: self.queues.values().flatten().cloned().collect(),
            fed_seq: self.fed_seq,
            skipped: 0,
        };
        match rewrite(&self.path, &journal) {
            Ok(file) => {
                self.file = file;
                self.lines = 0;
            }
            Err(e) => tracing::warn!(error = %e, "webhook outbox: compaction failed"),
        }
    }
}

/// Replaces the file with the journal's compacted form (written aside,
/// fsynced, renamed over), and returns it opened for appending.
fn rewrite(path: &Path, journal: &Journal) -> std::io::Result<File> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(journal.compacted().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    std::fs::OpenOptions::new().append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(key: char, hook: &str, seq: u64) -> Queued {
        Queued {
            key: key.to_string().repeat(32),
            hook: hook.into(),
            seq,
            event: "note_filed".into(),
            queued_at: 0,
            body: "{}".into(),
        }
    }

    #[test]
    fn what_is_queued_survives_a_reopen_and_finished_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path(), 2).unwrap().outbox;
        assert_eq!(o.fed_seq(), 2);
        let q = vec![
            queued('a', "hd", 3),
            queued('b', "hd", 4),
            queued('c', "x", 5),
        ];
        o.enqueue(q, 6).unwrap();
        let front = o.next("hd", Duration::ZERO).unwrap();
        assert_eq!(front.queued.seq, 3);
        o.attempted("hd", 2, 503);
        o.finish("x", Outcome::Delivered);
        drop(o);
        let opened = Outbox::open(dir.path(), 0).unwrap();
        assert_eq!((opened.pending, opened.skipped), (2, 0));
        let o = opened.outbox;
        assert_eq!(o.fed_seq(), 5);
        let front = o.next("hd", Duration::ZERO).unwrap();
        assert_eq!((front.attempts, front.last_status), (2, 503));
        o.finish("hd", Outcome::Failed);
        assert_eq!(o.next("hd", Duration::ZERO).unwrap().queued.seq, 4);
        assert!(o.next("x", Duration::ZERO).is_none());
        o.enqueue(Vec::new(), 9).unwrap();
        o.stop();
        assert!(!o.pause(Duration::from_secs(5)));
        drop(o);
        assert_eq!(Outbox::open(dir.path(), 0).unwrap().outbox.fed_seq(), 9);
    }
}
