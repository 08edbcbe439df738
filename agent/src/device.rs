//! The device's identity: an ed25519 key created on first run (mode 0600)
//! and the name shown to the technician.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use assent_proto::identity::SecretKey;

pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("assent"));
    }
    let home = std::env::var_os("HOME").context("neither XDG_CONFIG_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".config/assent"))
}

/// Loads the device key, creating it on first run.
pub fn load_or_create(path: &Path) -> anyhow::Result<SecretKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => SecretKey::from_file_contents(&text).with_context(|| {
            format!(
                "{} is not a valid device key; move it aside to create a new one",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let key = SecretKey::generate()?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(key.to_file_contents().as_bytes())?;
            f.sync_all()?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// This machine's name, cleaned for display.
pub fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    assent_proto::text::sanitize(raw.trim(), assent_proto::text::MAX_NAME)
}

/// Validates a user-given device name.
pub fn device_name(given: Option<String>) -> anyhow::Result<String> {
    match given {
        Some(name) => match assent_proto::text::single_line(
            "device name",
            &name,
            assent_proto::text::MAX_NAME,
        ) {
            Ok(n) => Ok(n),
            Err(e) => bail!("--device-name: {e}"),
        },
        None => Ok(hostname()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn key_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/device.key");
        let k1 = load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let k2 = load_or_create(&path).unwrap();
        assert_eq!(k1.public(), k2.public());
        std::fs::write(&path, "garbage").unwrap();
        assert!(load_or_create(&path).is_err());
    }

    #[test]
    fn device_names() {
        assert_eq!(device_name(Some("pc-7".into())).unwrap(), "pc-7");
        assert!(device_name(Some("pc\x1b[31m".into())).is_err());
        assert!(!device_name(None).unwrap().is_empty());
    }
}

/// The OS account this agent runs as, and its real name (GECOS) when the
/// account has one: the "affected user" of the support procedure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub login: String,
    pub real_name: String,
}

impl Account {
    /// Read from /proc/self/status (the real uid) and /etc/passwd; the
    /// `USER` variable when those say nothing.
    pub fn current() -> Account {
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|v| v.split_whitespace().next().map(str::to_string))
            });
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        uid.and_then(|uid| Account::from_passwd(&passwd, &uid))
            .unwrap_or_else(|| Account {
                login: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
                real_name: String::new(),
            })
    }

    /// The entry for `uid` in passwd(5) text.
    fn from_passwd(passwd: &str, uid: &str) -> Option<Account> {
        passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            match f.as_slice() {
                [login, _, entry_uid, _, gecos, ..] if *entry_uid == uid => Some(Account {
                    login: login.to_string(),
                    real_name: gecos.split(',').next().unwrap_or("").trim().to_string(),
                }),
                _ => None,
            }
        })
    }

    /// "Ada Lovelace (ada)", or "ada" without a real name.
    pub fn display(&self) -> String {
        if self.real_name.is_empty() {
            self.login.clone()
        } else {
            format!("{} ({})", self.real_name, self.login)
        }
    }
}

#[cfg(test)]
mod account_tests {
    use super::Account;

    #[test]
    fn passwd_entries_give_login_and_real_name() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      ada:x:1000:1000:Ada Lovelace,Room 1,,:/home/ada:/bin/bash\n\
                      svc:x:1001:1001::/srv:/usr/sbin/nologin\n";
        let ada = Account::from_passwd(passwd, "1000").unwrap();
        assert_eq!(ada.display(), "Ada Lovelace (ada)");
        assert_eq!(
            Account::from_passwd(passwd, "1001").unwrap().display(),
            "svc"
        );
        assert_eq!(Account::from_passwd(passwd, "42"), None);
    }
}
