//! The relay's data directory: its layout, `init`, key files, and the
//! atomic file writes everything in it goes through. The technician
//! registry is `registry.rs`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use assent_proto::identity::SecretKey;

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
    #[error("{0}")]
    BadInput(String),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a file atomically with the given mode: a temp file, fsynced, renamed
/// into place, then the directory fsynced, so a crash or a power cut leaves
/// either the old file or the new one (never half a key or half a registry),
/// and the new one stays once this returns.
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
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(path)
}

/// Fsyncs the directory holding `path`, so a rename into it is durable.
fn sync_dir(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
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
        crate::config::load(&dir.config()).unwrap();
        load_signing_key(&dir).unwrap();
        assert!(matches!(
            init(&dir, "127.0.0.1:4433".parse().unwrap(), "relay.test"),
            Err(StoreError::AlreadyInitialised(_))
        ));
    }

    #[test]
    fn write_file_replaces_atomically_with_the_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("technicians.json");
        write_file(&path, b"[]\n", 0o600).unwrap();
        write_file(&path, b"[1]\n", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"[1]\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!path.with_extension("tmp").exists());
        let err = write_file(&tmp.path().join("no/such/file"), b"x", 0o600).unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err}");
    }
}
