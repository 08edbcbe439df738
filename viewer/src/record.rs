//! The technician's own records: the viewer audit log (same hash-chained
//! format as the relay's) and the session note of the support procedure.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use assent_audit::{AuditError, AuditLog, Fields, Position};
use tracing::warn;

use crate::checklist::{check, Checklist, NoteProblem, Outcome, ITEMS};

/// How long a record waits for another viewer window's lock before it is
/// reported as not written.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// The viewer's audit log, written on a thread of its own: the session loop
/// hands records over and never waits on the disk or on a lock another
/// viewer window of the same technician holds. The chain is verified when
/// the log is first opened; after that the writer reopens it at its own
/// position ([`AuditLog::reopen`]), so only what another window appended
/// meanwhile is read again. The lock is held only while writing, so several
/// windows share the log. Records queued together go out with one fsync.
pub struct AuditWriter {
    tx: Option<mpsc::Sender<(String, Fields)>>,
    thread: Option<JoinHandle<()>>,
}

impl AuditWriter {
    pub fn start(path: PathBuf) -> anyhow::Result<AuditWriter> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("viewer-audit".into())
            .spawn(move || write_loop(&path, rx))
            .context("starting the audit writer thread")?;
        Ok(AuditWriter {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues one record; returns at once.
    pub fn record(&self, event: &str, fields: Fields) {
        if let Some(tx) = &self.tx {
            if tx.send((event.to_string(), fields)).is_err() {
                warn!(event, "viewer audit writer stopped; record not written");
            }
        }
    }

    /// Waits until every queued record is written (or reported as failed).
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AuditWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_loop(path: &Path, rx: mpsc::Receiver<(String, Fields)>) {
    let mut pos: Option<Position> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        if let Err(e) = write_batch(path, &mut pos, batch) {
            warn!(error = %format!("{e:#}"), "viewer audit write failed");
        }
    }
}

fn write_batch(
    path: &Path,
    pos: &mut Option<Position>,
    batch: Vec<(String, Fields)>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut log = loop {
        let opened = match pos {
            Some(p) => AuditLog::reopen(path, p),
            None => AuditLog::open(path),
        };
        match opened {
            Ok(log) => break log,
            Err(AuditError::Locked(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        }
    };
    let written = log.append_batch(batch);
    *pos = Some(log.position());
    written.with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The 13 fields of the support procedure's session note, in its order.
pub const NOTE_FIELDS: [&str; 13] = [
    "Client",
    "Affected User",
    "Device",
    "Remote Tool Used",
    "Consent Confirmed",
    "Issue Summary",
    "Business Impact",
    "Actions Taken",
    "Changes Made",
    "Result",
    "Session Ended",
    "Next Action",
    "Technician",
];

/// A session note. Fields the software knows are filled in automatically;
/// the technician types the rest in the side panel (or they stay empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionNote {
    pub values: Vec<(String, String)>,
    /// The completion checklist, once the note is filed.
    pub checklist: Option<Checklist>,
    /// What the note lacks (`result`, `next_action`, unticked items):
    /// named in the note and the relay's record, never dropped silently.
    pub incomplete: Vec<&'static str>,
}

impl SessionNote {
    pub fn new() -> SessionNote {
        SessionNote {
            values: NOTE_FIELDS
                .iter()
                .map(|f| (f.to_string(), String::new()))
                .collect(),
            ..SessionNote::default()
        }
    }

    /// The note as filed: the Result chosen (with what the user said when
    /// testing), the checklist, and what is missing.
    pub fn finalized(&self, checklist: &Checklist, outcome: Option<Outcome>) -> SessionNote {
        let mut note = self.clone();
        let details = self.get("Result").trim().to_string();
        let result = match (outcome, details.is_empty()) {
            (Some(o), true) => o.words().to_string(),
            (Some(o), false) => format!("{}. {details}", o.words()),
            (None, _) => details,
        };
        note.set("Result", result);
        note.incomplete = match check(outcome, self.get("Next Action"), checklist) {
            None => Vec::new(),
            Some(NoteProblem::NoResult) => {
                let mut missing = vec!["result"];
                if self.get("Next Action").trim().is_empty() {
                    missing.push("next_action");
                }
                missing.extend(checklist.gaps());
                missing
            }
            Some(NoteProblem::NoNextAction) => {
                let mut missing = vec!["next_action"];
                missing.extend(checklist.gaps());
                missing
            }
            Some(NoteProblem::Gaps(gaps)) => gaps,
        };
        note.checklist = Some(checklist.clone());
        note
    }

    pub fn set(&mut self, field: &str, value: impl Into<String>) {
        if let Some(slot) = self.values.iter_mut().find(|(k, _)| k == field) {
            slot.1 = value.into();
        }
    }

    pub fn get(&self, field: &str) -> &str {
        self.values
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Markdown, one `**Field:** value` per field, as the template lists them.
    pub fn to_markdown(&self, session: &str, ticket: &str) -> String {
        let mut out =
            format!("# Remote support session note\n\nSession: {session}  \nTicket: {ticket}\n\n");
        for (k, v) in &self.values {
            let v = if v.trim().is_empty() { "N/A" } else { v.trim() };
            out.push_str(&format!("**{k}:** {v}  \n"));
        }
        if let Some(c) = &self.checklist {
            out.push_str("\n## Checklist\n\n");
            out.push_str(&c.to_markdown());
        }
        if !self.incomplete.is_empty() {
            out.push_str(&format!(
                "\n**Checklist incomplete:** {}\n",
                self.incomplete.join(", ")
            ));
        }
        out
    }

    /// Fields as the relay's `session_note` record takes them: snake_case
    /// keys, text validated (no control characters, bounded).
    pub fn to_wire(&self) -> Vec<(String, String)> {
        let checklist = self.checklist.as_ref().map(|c| {
            let done = ITEMS.len() - c.gaps().len();
            ("checklist".to_string(), format!("{done}/{}", ITEMS.len()))
        });
        let incomplete = (!self.incomplete.is_empty()).then(|| {
            (
                "checklist_incomplete".to_string(),
                self.incomplete.join(", "),
            )
        });
        self.values
            .iter()
            .map(|(k, v)| {
                let key = k.to_ascii_lowercase().replace(' ', "_");
                let value =
                    assent_proto::text::multi_line("note", v, assent_proto::text::MAX_NOTE_FIELD)
                        .unwrap_or_else(|_| {
                            assent_proto::text::sanitize(v, assent_proto::text::MAX_NOTE_FIELD)
                        });
                (key, value)
            })
            .chain(checklist)
            .chain(incomplete)
            .collect()
    }

    /// Writes `notes/<session>.md` (mode 0600: notes describe a client's systems).
    pub fn write(&self, dir: &Path, session: &str, ticket: &str) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let safe: String = session
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let path = dir.join(format!("{safe}.md"));
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        f.write_all(self.to_markdown(session, ticket).as_bytes())?;
        f.sync_all()?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_has_all_thirteen_fields_in_order() {
        let mut n = SessionNote::new();
        n.set("Client", "Acme");
        n.set("Technician", "alice");
        let md = n.to_markdown("abc", "T-1");
        let mut last = 0;
        for f in NOTE_FIELDS {
            let at = md
                .find(&format!("**{f}:**"))
                .unwrap_or_else(|| panic!("{f} missing"));
            assert!(at >= last, "{f} out of order");
            last = at;
        }
        assert!(md.contains("**Client:** Acme"));
        assert!(md.contains("**Changes Made:** N/A"));
        let wire = n.to_wire();
        assert_eq!(wire.len(), 13);
        assert!(wire
            .iter()
            .any(|(k, v)| k == "affected_user" && v.is_empty()));
        assert!(wire.iter().any(|(k, v)| k == "client" && v == "Acme"));
    }

    #[test]
    fn audit_appends_a_verifiable_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/audit.jsonl");
        let writer = AuditWriter::start(path.clone()).unwrap();
        for i in 0..3 {
            let mut f = Fields::new();
            f.insert("n".into(), i.into());
            writer.record("test", f);
        }
        writer.finish();
        assert_eq!(assent_audit::verify(&path).unwrap(), 3);
    }

    #[test]
    fn two_writers_share_one_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let a = AuditWriter::start(path.clone()).unwrap();
        let b = AuditWriter::start(path.clone()).unwrap();
        for i in 0..20 {
            let mut f = Fields::new();
            f.insert("n".into(), i.into());
            if i % 2 == 0 {
                a.record("a", f);
            } else {
                b.record("b", f);
            }
        }
        a.finish();
        b.finish();
        assert_eq!(assent_audit::verify(&path).unwrap(), 20);
    }
}
