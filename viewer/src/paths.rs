//! Where the viewer keeps its files (XDG base directories).

use std::path::PathBuf;

use anyhow::Context as _;

fn xdg(var: &str, fallback: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(var).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("assent"));
    }
    let home =
        std::env::var_os("HOME").with_context(|| format!("neither {var} nor HOME is set"))?;
    Ok(PathBuf::from(home).join(fallback).join("assent"))
}

/// `$XDG_CONFIG_HOME/assent`.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    xdg("XDG_CONFIG_HOME", ".config")
}

/// `$XDG_DATA_HOME/assent`.
pub fn data_dir() -> anyhow::Result<PathBuf> {
    xdg("XDG_DATA_HOME", ".local/share")
}

pub fn default_key() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("technician.key"))
}

pub fn audit_log() -> anyhow::Result<PathBuf> {
    Ok(data_dir()?.join("audit.jsonl"))
}

pub fn notes_dir() -> anyhow::Result<PathBuf> {
    Ok(data_dir()?.join("notes"))
}
