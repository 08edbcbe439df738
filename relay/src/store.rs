//! The relay's data directory: its layout, `init`, key files, and the
//! atomic file writes everything in it goes through. The technician
//! registry is `registry.rs`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use assent_net::pki::RelayPki;
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
    /// The fleet's shared secret for invite-code digests: the same on
    /// every relay of a fleet, copied with the CA by `init --ca-dir`.
    pub fn fleet_key(&self) -> PathBuf {
        self.root.join("tls/fleet.key")
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
    // The io error is in the message and deliberately not a `source`, so
    // `error: {e:#}` does not print it twice.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("certificate: {0}")]
    Pki(String),
    #[error("{0}")]
    BadInput(String),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_path_buf(),
        error,
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

/// Creates a relay data directory with its own new CA. Refuses if one is
/// already there.
pub fn init(
    dir: &DataDir,
    listen: SocketAddr,
    public_name: &str,
) -> Result<InitReport, StoreError> {
    init_with_ca(dir, listen, public_name, None)
}

/// Creates a relay data directory; with `ca_dir` (a directory holding
/// `ca.pem`, `ca.key` and `fleet.key`: another relay's `tls/`), its
/// certificate is issued by that CA and it shares that fleet key, so one
/// `ca.pem` trusts every relay of the fleet. The CA key is not copied.
pub fn init_with_ca(
    dir: &DataDir,
    listen: SocketAddr,
    public_name: &str,
    ca_dir: Option<&Path>,
) -> Result<InitReport, StoreError> {
    if dir.is_relay() {
        return Err(StoreError::AlreadyInitialised(dir.root.clone()));
    }
    let public_name = assent_proto::text::single_line("public name", public_name, 253)
        .map_err(|e| StoreError::BadInput(e.to_string()))?;
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
    let (pki, fleet_key) = match ca_dir {
        Some(from) => issued_by(from, &names)?,
        None => new_ca(&names, &public_name)?,
    };
    let ca_fingerprint = assent_net::pki::fingerprint(&pki.ca_cert_pem)
        .map_err(|e| StoreError::Pki(e.to_string()))?;
    // Only now, with everything it needs at hand: a refused `--ca-dir`
    // leaves nothing behind.
    for sub in ["", "tls", "audit"] {
        let p = dir.root.join(sub);
        std::fs::create_dir_all(&p).map_err(io(&p))?;
    }
    std::fs::set_permissions(&dir.root, std::fs::Permissions::from_mode(0o700))
        .map_err(io(&dir.root))?;
    write_file(&dir.ca_cert(), pki.ca_cert_pem.as_bytes(), 0o644)?;
    if let Some(ca_key) = &pki.ca_key_pem {
        write_file(&dir.ca_key(), ca_key.as_bytes(), 0o600)?;
    }
    write_file(&dir.fleet_key(), fleet_key.as_bytes(), 0o600)?;
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

/// A new CA, its relay certificate, and a new fleet key.
fn new_ca(names: &[String], public_name: &str) -> Result<(RelayPki, String), StoreError> {
    let pki = assent_net::pki::generate(names, &format!("Assent relay CA ({public_name})"))
        .map_err(|e| StoreError::Pki(e.to_string()))?;
    Ok((pki, new_fleet_key()?))
}

fn new_fleet_key() -> Result<String, StoreError> {
    let mut secret = [0u8; 32];
    assent_proto::random_bytes(&mut secret).map_err(|e| StoreError::Pki(e.to_string()))?;
    Ok(format!("{}\n", hex::encode(secret)))
}

/// `fleet key`: a fleet key for a relay created before `init` wrote one.
pub fn create_fleet_key(dir: &DataDir) -> Result<(), StoreError> {
    if dir.fleet_key().exists() {
        return Err(StoreError::BadInput(format!(
            "{} exists already (refusing to replace the fleet's key)",
            dir.fleet_key().display()
        )));
    }
    write_file(&dir.fleet_key(), new_fleet_key()?.as_bytes(), 0o600)
}

/// A relay certificate from the CA in `from`, and that fleet's key.
fn issued_by(from: &Path, names: &[String]) -> Result<(RelayPki, String), StoreError> {
    let read = |name: &str| {
        let path = from.join(name);
        std::fs::read_to_string(&path).map_err(|e| {
            StoreError::BadInput(format!(
                "--ca-dir: cannot read {} ({e}); the directory must hold the fleet CA's ca.pem \
                 and ca.key and the fleet's fleet.key (the first relay's tls/)",
                path.display()
            ))
        })
    };
    let pki = assent_net::pki::issue(names, &read("ca.pem")?, &read("ca.key")?)
        .map_err(|e| StoreError::Pki(e.to_string()))?;
    let fleet_key = read("fleet.key")?;
    parse_fleet_key(&fleet_key).map_err(|detail| StoreError::Corrupt {
        path: from.join("fleet.key"),
        detail,
    })?;
    Ok((pki, fleet_key))
}

/// The fleet key's 32 bytes from its file's text (64 hex digits).
pub fn parse_fleet_key(text: &str) -> Result<[u8; 32], String> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key)
        .map_err(|_| "expected 64 hex digits (32 random bytes)".to_string())?;
    Ok(key)
}

/// This relay's fleet key, for fleet mode.
pub fn load_fleet_key(dir: &DataDir) -> Result<[u8; 32], StoreError> {
    let path = dir.fleet_key();
    let text = std::fs::read_to_string(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            StoreError::BadInput(format!(
                "{} is missing: fleet mode needs the fleet's key, the same file on every relay \
                 (copy it from the first relay's tls/, or create this relay with \
                 `assent-relay init --ca-dir FIRST/tls`)",
                path.display()
            ))
        } else {
            io(&path)(source)
        }
    })?;
    parse_fleet_key(&text).map_err(|detail| StoreError::Corrupt { path, detail })
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
    fn a_relay_made_from_another_relays_ca_shares_its_fleet_key_but_not_its_ca_key() {
        let tmp = tempfile::tempdir().unwrap();
        let listen = "127.0.0.1:4433".parse().unwrap();
        let first = DataDir::new(&tmp.path().join("a"));
        init(&first, listen, "relay-a.test").unwrap();
        let mode = std::fs::metadata(first.fleet_key())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = DataDir::new(&tmp.path().join("b"));
        let tls = first.root.join("tls");
        let report = init_with_ca(&second, listen, "relay-b.test", Some(&tls)).unwrap();
        assert_eq!(
            std::fs::read(second.ca_cert()).unwrap(),
            std::fs::read(first.ca_cert()).unwrap()
        );
        assert!(!second.ca_key().exists());
        assert_eq!(
            load_fleet_key(&second).unwrap(),
            load_fleet_key(&first).unwrap()
        );
        assert_eq!(
            report.ca_fingerprint,
            assent_net::pki::fingerprint(&std::fs::read_to_string(first.ca_cert()).unwrap())
                .unwrap()
        );
        // A relay made from that one has no CA key to lend.
        let third = DataDir::new(&tmp.path().join("c"));
        let e = init_with_ca(&third, listen, "c.test", Some(&second.root.join("tls")))
            .err()
            .expect("refused");
        assert!(e.to_string().contains("ca.key"), "{e}");
        assert!(
            !third.config().exists(),
            "no half-made relay left behind as one"
        );
    }

    #[test]
    fn the_fleet_key_is_created_once_and_named_when_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(&tmp.path().join("relay"));
        init(&dir, "127.0.0.1:4433".parse().unwrap(), "relay.test").unwrap();
        let before = load_fleet_key(&dir).unwrap();
        assert!(create_fleet_key(&dir).is_err(), "refuses to replace it");
        assert_eq!(load_fleet_key(&dir).unwrap(), before);
        std::fs::remove_file(dir.fleet_key()).unwrap();
        let e = load_fleet_key(&dir).unwrap_err().to_string();
        assert!(
            e.contains("fleet.key is missing") && e.contains("--ca-dir"),
            "{e}"
        );
        create_fleet_key(&dir).unwrap();
        assert_ne!(load_fleet_key(&dir).unwrap(), before);
        std::fs::write(dir.fleet_key(), "not hex\n").unwrap();
        assert!(load_fleet_key(&dir).is_err());
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
