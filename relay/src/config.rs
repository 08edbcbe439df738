//! `relay.toml`: read once at start. The format (typed settings, errors
//! naming the bad key, the template `init` writes) is
//! `assent_relay_formats::config`, the code the fuzz target runs.

use std::path::Path;

pub use assent_relay_formats::config::{Limits, RelayConfig, MAX_INVITES_TOTAL};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Invalid { path: String, detail: String },
}

/// Reads and parses `relay.toml`.
pub fn load(path: &Path) -> Result<RelayConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    RelayConfig::parse(&text).map_err(|e| ConfigError::Invalid {
        path: path.display().to_string(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        let err = load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        std::fs::write(&path, "[limits]\nmax_sessions = 0\n").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains("limits.max_sessions"), "{err}");
        std::fs::write(
            &path,
            RelayConfig::template(([127, 0, 0, 1], 9).into(), "r"),
        )
        .unwrap();
        assert_eq!(load(&path).unwrap().public_name, "r");
    }
}
