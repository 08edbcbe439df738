//! `assent-viewer`: the technician's program. Exit codes: 0 success, 1 a
//! failure the technician must act on, 2 bad usage.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use assent_proto::identity::SecretKey;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "assent-viewer",
    version,
    about = "Assent viewer: the technician's window onto a consenting user's screen.",
    after_help = "Example:\n  assent-viewer keygen\n  assent-viewer connect --relay relay.example.com:4433 --ca ca.pem --ticket T-1042 --scope control"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create your technician key and print the line to send to the relay admin.
    #[command(
        after_help = "Example:\n  assent-viewer keygen\n  assent-viewer keygen --key ~/alice.key"
    )]
    Keygen {
        /// Where to write the private key [default: $XDG_CONFIG_HOME/assent/technician.key].
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Ask the relay for a one-time code for a ticket, then open the session window.
    #[command(
        after_help = "Example:\n  assent-viewer connect --relay relay.example.com:4433 --ca ca.pem --ticket T-1042 --client 'Acme Ltd' --summary 'Outlook crashes' --impact high --scope control"
    )]
    Connect {
        #[arg(long)]
        relay: String,
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        ticket: String,
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long, default_value = "")]
        client: String,
        #[arg(long, default_value = "")]
        summary: String,
        #[arg(long, default_value = "normal", value_parser = ["low", "normal", "high", "critical"])]
        impact: String,
        #[arg(long, default_value = "view", value_parser = ["view", "control"])]
        scope: String,
        /// No window: JSON statistics on stdout each second.
        #[arg(long)]
        headless: bool,
    },
}

fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("assent"));
    }
    let home = std::env::var_os("HOME").context("neither XDG_CONFIG_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".config/assent"))
}

fn default_key() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("technician.key"))
}

fn keygen(path: Option<PathBuf>) -> anyhow::Result<()> {
    let path = match path {
        Some(p) => p,
        None => default_key()?,
    };
    if path.exists() {
        bail!(
            "{} already exists; refusing to overwrite a technician key (use --key for another path)",
            path.display()
        );
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let key = SecretKey::generate()?;
    // create_new: never clobber a key that appeared since the check above.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(key.to_file_contents().as_bytes())?;
    file.sync_all()?;
    let user = std::env::var("USER").unwrap_or_else(|_| "technician".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    eprintln!(
        "Technician key written to {} (keep it private). Send this line to your relay admin:",
        path.display()
    );
    println!("{} {user}@{host}", key.public().to_line());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen { key } => keygen(key),
        Command::Connect { .. } => Err(anyhow::anyhow!(
            "the session window is not available in this build yet; see README.md for what works"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
