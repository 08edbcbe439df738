//! The technician's own records: the viewer audit log (same hash-chained
//! format as the relay's) and the session note of the support procedure.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use assent_audit::{AuditError, AuditLog, Fields};

/// Appends one record to the viewer's audit log. The log is opened per
/// record (and its lock held only for the append) so two viewer windows of
/// the same technician can run side by side.
pub fn audit(path: &Path, event: &str, fields: Fields) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        match AuditLog::open(path) {
            Ok(mut log) => {
                log.append(event, fields)
                    .with_context(|| format!("writing {}", path.display()))?;
                return Ok(());
            }
            Err(AuditError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        }
    }
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
}

impl SessionNote {
    pub fn new() -> SessionNote {
        SessionNote {
            values: NOTE_FIELDS
                .iter()
                .map(|f| (f.to_string(), String::new()))
                .collect(),
        }
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
        out
    }

    /// Fields as the relay's `session_note` record takes them: snake_case
    /// keys, text validated (no control characters, bounded).
    pub fn to_wire(&self) -> Vec<(String, String)> {
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
        for i in 0..3 {
            let mut f = Fields::new();
            f.insert("n".into(), i.into());
            audit(&path, "test", f).unwrap();
        }
        assert_eq!(assent_audit::verify(&path).unwrap(), 3);
    }
}
