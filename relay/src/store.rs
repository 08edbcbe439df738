//! The relay's data directory: its layout, `init`, key files and the
//! technician registry.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use assent_proto::identity::{PublicKey, SecretKey};
use serde::{Deserialize, Serialize};

use crate::config::RelayConfig;

/// Paths inside a relay's data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> DataDir {
        DataDir {
            root: root.to_path_buf(),
        }
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("relay.toml")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("tls/ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("tls/ca.key")
    }
    pub fn cert(&self) -> PathBuf {
        self.root.join("tls/relay.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.root.join("tls/relay.key")
    }
    pub fn signing_key(&self) -> PathBuf {
        self.root.join("signing.key")
    }
    pub fn technicians(&self) -> PathBuf {
        self.root.join("technicians.json")
    }
    pub fn audit(&self) -> PathBuf {
        self.root.join("audit/audit.jsonl")
    }
    pub fn admin_socket(&self) -> PathBuf {
        self.root.join("admin.sock")
    }
    pub fn is_relay(&self) -> bool {
        self.config().exists() || self.ca_cert().exists()
    }
    pub fn require_relay(&self) -> Result<(), StoreError> {
        if self.config().exists() {
            Ok(())
        } else {
            Err(StoreError::NotARelay(self.root.clone()))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already holds a relay (refusing to overwrite it)")]
    AlreadyInitialised(PathBuf),
    #[error("{0} is not a relay data directory (run `assent-relay init --data-dir {0}` first)")]
    NotARelay(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("certificate: {0}")]
    Pki(String),
    #[error("a technician named {0:?} is already enrolled")]
    DuplicateName(String),
    #[error("this key is already enrolled as technician {0:?}")]
    DuplicateKey(String),
    #[error("no technician named {0:?}")]
    UnknownTechnician(String),
    #[error("technician {0:?} is already revoked")]
    AlreadyRevoked(String),
    #[error("{0}")]
    BadInput(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a file atomically (temp file + rename) with the given mode, so a
/// crash never leaves half a key or half a registry.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io(&tmp))?;
    f.write_all(contents).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// What `init` reports.
pub struct InitReport {
    pub ca_path: PathBuf,
    pub ca_fingerprint: String,
    pub names: Vec<String>,
}

/// Creates a relay data directory. Refuses if one is already there.
pub fn init(
    dir: &DataDir,
    listen: SocketAddr,
    public_name: &str,
) -> Result<InitReport, StoreError> {
    if dir.is_relay() {
        return Err(StoreError::AlreadyInitialised(dir.root.clone()));
    }
    let public_name = assent_proto::text::single_line("public name", public_name, 253)
        .map_err(|e| StoreError::BadInput(e.to_string()))?;
    for sub in ["", "tls", "audit"] {
        let p = dir.root.join(sub);
        std::fs::create_dir_all(&p).map_err(io(&p))?;
    }
    std::fs::set_permissions(&dir.root, std::fs::Permissions::from_mode(0o700))
        .map_err(io(&dir.root))?;

    let mut names = vec![public_name.clone()];
    let ip = listen.ip();
    if ip.is_unspecified() {
        // Listening on all interfaces: loopback must work for local admins
        // and tests.
        for n in ["localhost", "127.0.0.1"] {
            if !names.iter().any(|x| x == n) {
                names.push(n.to_string());
            }
        }
    } else if !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    let pki = assent_net::pki::generate(&names, &format!("Assent relay CA ({public_name})"))
        .map_err(|e| StoreError::Pki(e.to_string()))?;
    let ca_fingerprint = assent_net::pki::fingerprint(&pki.ca_cert_pem)
        .map_err(|e| StoreError::Pki(e.to_string()))?;
    write_file(&dir.ca_cert(), pki.ca_cert_pem.as_bytes(), 0o644)?;
    write_file(&dir.ca_key(), pki.ca_key_pem.as_bytes(), 0o600)?;
    write_file(&dir.cert(), pki.cert_pem.as_bytes(), 0o644)?;
    write_file(&dir.key(), pki.key_pem.as_bytes(), 0o600)?;
    let signing = SecretKey::generate().map_err(|e| StoreError::Pki(e.to_string()))?;
    write_file(
        &dir.signing_key(),
        signing.to_file_contents().as_bytes(),
        0o600,
    )?;
    write_file(&dir.technicians(), b"[]\n", 0o600)?;
    // Config last: its presence is what marks the directory as a relay.
    write_file(
        &dir.config(),
        RelayConfig::template(listen, &public_name).as_bytes(),
        0o644,
    )?;
    Ok(InitReport {
        ca_path: dir.ca_cert(),
        ca_fingerprint,
        names,
    })
}

pub fn load_signing_key(dir: &DataDir) -> Result<SecretKey, StoreError> {
    let path = dir.signing_key();
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    SecretKey::from_file_contents(&text).map_err(|e| StoreError::Corrupt {
        path,
        detail: e.to_string(),
    })
}

/// One enrolled technician.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Technician {
    pub name: String,
    /// `ed25519:<base64>`.
    pub key: String,
    pub added: String,
    #[serde(default)]
    pub revoked: Option<String>,
}

impl Technician {
    pub fn public_key(&self) -> Option<PublicKey> {
        PublicKey::parse_line(&self.key).ok().map(|(k, _)| k)
    }
    pub fn fingerprint(&self) -> String {
        self.public_key()
            .map(|k| k.fingerprint())
            .unwrap_or_else(|| "invalid".into())
    }
}

/// The registry in `technicians.json`.
#[derive(Debug, Clone, Default)]
pub struct Technicians {
    pub list: Vec<Technician>,
}

/// What the registry says of a key presented at authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus {
    Enrolled(String),
    Revoked(String),
    Unknown,
}

impl Technicians {
    pub fn load(dir: &DataDir) -> Result<Technicians, StoreError> {
        let path = dir.technicians();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Technicians::default()),
            Err(e) => return Err(io(&path)(e)),
        };
        let list = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path,
            detail: e.to_string(),
        })?;
        Ok(Technicians { list })
    }

    pub fn save(&self, dir: &DataDir) -> Result<(), StoreError> {
        let mut text =
            serde_json::to_string_pretty(&self.list).map_err(|e| StoreError::Corrupt {
                path: dir.technicians(),
                detail: e.to_string(),
            })?;
        text.push('\n');
        write_file(&dir.technicians(), text.as_bytes(), 0o600)
    }

    pub fn status(&self, key: &PublicKey) -> KeyStatus {
        for t in &self.list {
            if t.public_key().as_ref() == Some(key) {
                return if t.revoked.is_some() {
                    KeyStatus::Revoked(t.name.clone())
                } else {
                    KeyStatus::Enrolled(t.name.clone())
                };
            }
        }
        KeyStatus::Unknown
    }

    /// Enrols a technician from the line `assent-viewer keygen` printed.
    pub fn add(&mut self, name: &str, key_line: &str, now: &str) -> Result<Technician, StoreError> {
        let name =
            assent_proto::text::single_line("technician name", name, assent_proto::text::MAX_NAME)
                .map_err(|e| StoreError::BadInput(e.to_string()))?;
        let (key, _hint) =
            PublicKey::parse_line(key_line).map_err(|e| StoreError::BadInput(e.to_string()))?;
        if self.list.iter().any(|t| t.name == name) {
            return Err(StoreError::DuplicateName(name));
        }
        if let Some(t) = self.list.iter().find(|t| t.public_key() == Some(key)) {
            return Err(StoreError::DuplicateKey(t.name.clone()));
        }
        let t = Technician {
            name,
            key: key.to_line(),
            added: now.to_string(),
            revoked: None,
        };
        self.list.push(t.clone());
        Ok(t)
    }

    pub fn revoke(&mut self, name: &str, now: &str) -> Result<Technician, StoreError> {
        let t = self
            .list
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| StoreError::UnknownTechnician(name.to_string()))?;
        if t.revoked.is_some() {
            return Err(StoreError::AlreadyRevoked(name.to_string()));
        }
        t.revoked = Some(now.to_string());
        Ok(t.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_creates_layout_with_private_modes_and_refuses_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(&tmp.path().join("relay"));
        let report = init(&dir, "127.0.0.1:4433".parse().unwrap(), "relay.test").unwrap();
        assert_eq!(report.names, vec!["relay.test", "127.0.0.1"]);
        for p in [dir.ca_key(), dir.key(), dir.signing_key()] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        assert!(dir.ca_cert().exists() && dir.cert().exists() && dir.root.join("audit").is_dir());
        RelayConfig::load(&dir.config()).unwrap();
        load_signing_key(&dir).unwrap();
        assert!(matches!(
            init(&dir, "127.0.0.1:4433".parse().unwrap(), "relay.test"),
            Err(StoreError::AlreadyInitialised(_))
        ));
    }

    #[test]
    fn technician_registry() {
        let mut t = Technicians::default();
        let key = SecretKey::from_seed(&[3; 32]).public();
        let line = format!("{} alice@laptop", key.to_line());
        t.add("alice", &line, "now").unwrap();
        assert_eq!(t.status(&key), KeyStatus::Enrolled("alice".into()));
        assert!(matches!(
            t.add("alice", &line, "now"),
            Err(StoreError::DuplicateName(_))
        ));
        assert!(matches!(
            t.add("bob", &line, "now"),
            Err(StoreError::DuplicateKey(_))
        ));
        assert!(matches!(
            t.add("bob", "ed25519:zz", "now"),
            Err(StoreError::BadInput(_))
        ));
        assert!(matches!(
            t.add("bad\x1bname", &line, "now"),
            Err(StoreError::BadInput(_))
        ));
        t.revoke("alice", "later").unwrap();
        assert_eq!(t.status(&key), KeyStatus::Revoked("alice".into()));
        assert!(matches!(
            t.revoke("alice", "x"),
            Err(StoreError::AlreadyRevoked(_))
        ));
        assert!(matches!(
            t.revoke("carol", "x"),
            Err(StoreError::UnknownTechnician(_))
        ));
        let other = SecretKey::from_seed(&[4; 32]).public();
        assert_eq!(t.status(&other), KeyStatus::Unknown);
    }
}
