//! The technician registry (`technicians.json`) and the one path every
//! change to it takes, whether the admin socket of a serving relay or the
//! offline command line makes it ([`apply`]):
//!
//! 1. the change is checked against the registry (a duplicate name or key,
//!    an unknown or already revoked technician is refused: nothing happens);
//! 2. its audit record (`technician_added`, `technician_revoked`) is written
//!    and on disk; if that fails nothing changes and the admin is told why;
//! 3. `technicians.json` is replaced atomically ([`store::write_file`]: temp
//!    file, fsync, rename, fsync of the directory);
//! 4. only then does the serving relay apply it in memory, and a revocation
//!    end the technician's sessions and pending invites (`admin.rs`).
//!
//! The format itself (parsing, the checks) is
//! `assent_relay_formats::technicians`, which the fuzz target runs.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use assent_audit::Fields;
use assent_proto::identity::PublicKey;
use tokio::sync::Mutex;

pub use assent_relay_formats::technicians::{KeyStatus, RegistryError, Technician, Technicians};

use crate::store::{self, DataDir, StoreError};
use assent_relay_formats::admin::AdminRequest;

/// Loads `technicians.json`; a missing file is an empty registry.
pub fn load(dir: &DataDir) -> Result<Technicians, StoreError> {
    let path = dir.technicians();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Technicians::default()),
        Err(e) => return Err(store::io(&path)(e)),
    };
    Technicians::parse(&text).map_err(|e| StoreError::Corrupt {
        path,
        detail: e.to_string(),
    })
}

fn save(dir: &DataDir, registry: &Technicians) -> Result<(), StoreError> {
    let text = registry.to_text().map_err(|e| StoreError::Corrupt {
        path: dir.technicians(),
        detail: e.to_string(),
    })?;
    store::write_file(&dir.technicians(), text.as_bytes(), 0o600)
}

/// A change to the registry an admin asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Add {
        name: String,
        key: String,
    },
    Revoke {
        name: String,
    },
    /// Whether the technician may receive escalations.
    Escalations {
        name: String,
        allowed: bool,
    },
}

impl Change {
    /// The audit event that records it.
    pub fn event(&self) -> &'static str {
        match self {
            Change::Add { .. } => "technician_added",
            Change::Revoke { .. } => "technician_revoked",
            Change::Escalations { .. } => "technician_changed",
        }
    }

    /// The same change asked of a serving relay.
    pub fn request(&self) -> AdminRequest {
        match self.clone() {
            Change::Add { name, key } => AdminRequest::TechnicianAdd { name, key },
            Change::Revoke { name } => AdminRequest::TechnicianRevoke { name },
            Change::Escalations { name, allowed } => {
                AdminRequest::TechnicianEscalations { name, allowed }
            }
        }
    }

    fn apply_to(&self, registry: &mut Technicians, now: &str) -> Result<Technician, RegistryError> {
        match self {
            Change::Add { name, key } => registry.add(name, key, now),
            Change::Revoke { name } => registry.revoke(name, now),
            Change::Escalations { name, allowed } => registry.set_escalations(name, *allowed),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The registry refused the change; nothing was recorded or written.
    #[error(transparent)]
    Refused(#[from] RegistryError),
    /// The audit record could not be written; nothing changed.
    #[error("could not record {event} in the audit log, so nothing changed: {reason}")]
    NotRecorded { event: &'static str, reason: String },
    /// Recorded, but the registry file could not be replaced: the old one
    /// stands and the change did not take effect.
    #[error(
        "recorded {event} in the audit log, but the registry could not be written, \
         so the change did not take effect: {source}"
    )]
    NotSaved {
        event: &'static str,
        source: StoreError,
    },
}

/// The one path of every registry change: checks `change` against
/// `current`, has `record` write its audit record (returning once it is on
/// disk), then replaces `technicians.json`. Returns the new registry and the
/// technician the change concerned; on any error the file is untouched
/// (except [`ChangeError::NotSaved`], where the write itself failed and the
/// old file stands).
pub async fn apply<R>(
    dir: &DataDir,
    current: &Technicians,
    change: &Change,
    now: &str,
    record: R,
) -> Result<(Technicians, Technician), ChangeError>
where
    R: AsyncFnOnce(String, Fields) -> Result<(), String>,
{
    let mut updated = current.clone();
    let technician = change.apply_to(&mut updated, now)?;
    let event = change.event();
    let mut fields = crate::fields! {
        "technician" => technician.name, "technician_key" => technician.fingerprint(),
    };
    if let Change::Escalations { allowed, .. } = change {
        fields.insert("can_receive_escalations".into(), (*allowed).into());
    }
    record(event.to_string(), fields)
        .await
        .map_err(|reason| ChangeError::NotRecorded { event, reason })?;
    save(dir, &updated).map_err(|source| ChangeError::NotSaved { event, source })?;
    Ok((updated, technician))
}

/// The registry of a serving relay: read at every technician's
/// authentication, changed one change at a time through [`apply`].
pub struct Registry {
    current: RwLock<Technicians>,
    /// Held across a whole change (record, file, memory), so two admins'
    /// changes never interleave.
    changes: Mutex<()>,
}

impl Registry {
    pub fn new(technicians: Technicians) -> Registry {
        Registry {
            current: RwLock::new(technicians),
            changes: Mutex::new(()),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Technicians> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Technicians> {
        self.current.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the whole registry with `technicians.json` as read again
    /// (SIGHUP), between admin changes, never during one. Returns the
    /// technicians active before and not after (revoked or removed by hand).
    pub async fn replace(&self, technicians: Technicians) -> Vec<String> {
        let _one_at_a_time = self.changes.lock().await;
        let active = |t: &Technicians| -> Vec<String> {
            t.list
                .iter()
                .filter(|t| t.revoked.is_none())
                .map(|t| t.name.clone())
                .collect()
        };
        let after = active(&technicians);
        let before = active(&self.read());
        *self.write() = technicians;
        before.into_iter().filter(|n| !after.contains(n)).collect()
    }

    /// What the registry says of a key presented at authentication.
    pub fn status(&self, key: &PublicKey) -> KeyStatus {
        self.read().status(key)
    }

    /// The name of the technician with this key fingerprint, and whether
    /// they are revoked.
    pub fn name_of(&self, fingerprint: &str) -> Option<(String, bool)> {
        self.read()
            .list
            .iter()
            .find(|t| t.fingerprint() == fingerprint)
            .map(|t| (t.name.clone(), t.revoked.is_some()))
    }

    /// Active technicians who may receive escalations.
    pub fn specialists(&self) -> Vec<String> {
        self.read().specialists()
    }

    /// Applies `change` through [`apply`] and then in memory: a revoked key
    /// is refused from the moment this returns.
    pub async fn change<R>(
        &self,
        dir: &DataDir,
        change: &Change,
        record: R,
    ) -> Result<Technician, ChangeError>
    where
        R: AsyncFnOnce(String, Fields) -> Result<(), String>,
    {
        let _one_at_a_time = self.changes.lock().await;
        let current = self.read().clone();
        let (updated, technician) =
            apply(dir, &current, change, &crate::now_rfc3339(), record).await?;
        *self.write() = updated;
        Ok(technician)
    }
}

/// The command line's path when no relay serves `dir`: the audit log is
/// opened first (its exclusive lock keeps a relay from starting meanwhile),
/// then the change goes through [`apply`], the record written directly.
pub async fn change_offline(dir: &DataDir, change: &Change) -> anyhow::Result<Technician> {
    let mut log = crate::open_audit(dir)?;
    let current = load(dir)?;
    let record = async |event: String, fields: Fields| {
        if crate::audit_writer::injected_failure(&event) {
            return Err(format!("injected failure for {event}"));
        }
        log.append(&event, fields)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let (_, technician) = apply(dir, &current, change, &crate::now_rfc3339(), record).await?;
    Ok(technician)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use assent_proto::identity::SecretKey;

    use super::*;

    fn key_line(seed: u8) -> String {
        format!(
            "{} someone@laptop",
            SecretKey::from_seed(&[seed; 32]).public().to_line()
        )
    }

    fn add(name: &str, seed: u8) -> Change {
        Change::Add {
            name: name.into(),
            key: key_line(seed),
        }
    }

    /// A data directory whose registry holds alice.
    fn dir_with_alice() -> (tempfile::TempDir, DataDir, Technicians) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let mut reg = Technicians::default();
        reg.add("alice", &key_line(1), "then").unwrap();
        save(&dir, &reg).unwrap();
        (tmp, dir, reg)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_failed_record_changes_nothing() {
        let (_tmp, dir, reg) = dir_with_alice();
        let before = std::fs::read(dir.technicians()).unwrap();
        let revoke = Change::Revoke {
            name: "alice".into(),
        };
        for change in [add("bob", 2), revoke] {
            let failing = async |_: String, _: Fields| Err("disk full".to_string());
            let err = block_on(apply(&dir, &reg, &change, "now", failing)).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, ChangeError::NotRecorded { .. }), "{text}");
            assert!(
                text.contains(change.event()) && text.contains("disk full"),
                "{text}"
            );
            assert_eq!(std::fs::read(dir.technicians()).unwrap(), before);
        }
        // The serving relay's registry stays as it was too.
        let registry = Registry::new(reg.clone());
        let failing = async |_: String, _: Fields| Err("disk full".to_string());
        let change = Change::Revoke {
            name: "alice".into(),
        };
        block_on(registry.change(&dir, &change, failing)).unwrap_err();
        let alice = SecretKey::from_seed(&[1; 32]).public();
        assert_eq!(registry.status(&alice), KeyStatus::Enrolled("alice".into()));
        assert_eq!(load(&dir).unwrap(), reg);
    }

    #[test]
    fn the_record_is_written_before_the_file() {
        let (_tmp, dir, reg) = dir_with_alice();
        let before = std::fs::read(dir.technicians()).unwrap();
        let recorded = Cell::new(None);
        let record = async |event: String, fields: Fields| {
            // The file is still the old one while the record is written.
            assert_eq!(std::fs::read(dir.technicians()).unwrap(), before);
            recorded.set(Some((event, fields)));
            Ok(())
        };
        let (updated, t) = block_on(apply(&dir, &reg, &add("bob", 2), "now", record)).unwrap();
        let (event, fields) = recorded.take().expect("recorded");
        assert_eq!(event, "technician_added");
        assert_eq!(fields["technician"], "bob");
        assert_eq!(fields["technician_key"], t.fingerprint().as_str());
        assert_eq!(fields.len(), 2);
        assert_eq!(load(&dir).unwrap(), updated);
        assert_eq!(updated.list.len(), 2);
    }

    #[test]
    fn a_refused_change_records_nothing() {
        let (_tmp, dir, reg) = dir_with_alice();
        let called = Cell::new(false);
        let record = async |_: String, _: Fields| {
            called.set(true);
            Ok(())
        };
        let err = block_on(apply(&dir, &reg, &add("alice", 2), "now", record)).unwrap_err();
        assert!(matches!(
            err,
            ChangeError::Refused(RegistryError::DuplicateName(_))
        ));
        assert!(!called.get());
    }

    #[test]
    fn a_registry_that_cannot_be_written_is_reported_after_the_record() {
        let tmp = tempfile::tempdir().unwrap();
        // No such directory: the record succeeds, the file write cannot.
        let dir = DataDir::new(&tmp.path().join("gone"));
        let ok = async |_: String, _: Fields| Ok(());
        let reg = Technicians::default();
        let err = block_on(apply(&dir, &reg, &add("bob", 2), "now", ok)).unwrap_err();
        assert!(matches!(err, ChangeError::NotSaved { .. }), "{err}");
        assert!(err.to_string().contains("did not take effect"), "{err}");
    }

    #[test]
    fn offline_changes_record_then_write() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        std::fs::create_dir_all(tmp.path().join("audit")).unwrap();
        let t = block_on(change_offline(&dir, &add("bob", 2))).unwrap();
        let revoke = Change::Revoke { name: "bob".into() };
        block_on(change_offline(&dir, &revoke)).unwrap();
        let records = assent_audit::read_records(&dir.audit()).unwrap();
        let events: Vec<_> = records.iter().map(|r| r.event.as_str()).collect();
        assert_eq!(events, ["technician_added", "technician_revoked"]);
        for r in &records {
            assert_eq!(r.get_str("technician"), Some("bob"));
            assert_eq!(r.get_str("technician_key"), Some(t.fingerprint().as_str()));
        }
        let bob = SecretKey::from_seed(&[2; 32]).public();
        assert_eq!(
            load(&dir).unwrap().status(&bob),
            KeyStatus::Revoked("bob".into())
        );
    }
}
