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
