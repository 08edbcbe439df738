//! `assent-agent`: the end user's program. Exit codes: 0 success, 1 a
//! failure the user must act on, 2 bad usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "assent-agent",
    version,
    about = "Assent agent: lets a technician see (and, if you allow it, use) your screen, only after you say yes.",
    after_help = "Example:\n  assent-agent join --relay relay.example.com:4433 --ca ca.pem 123-456-789-012-345"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Join a support session with the code your technician gave you.
    #[command(
        after_help = "Example:\n  assent-agent join --relay relay.example.com:4433 --ca ca.pem 123-456-789-012-345"
    )]
    Join {
        #[arg(long)]
        relay: String,
        #[arg(long)]
        ca: PathBuf,
        /// Seconds to answer the consent prompt before it denies by itself.
        #[arg(long, default_value_t = 60)]
        consent_timeout: u64,
        /// Ask on the terminal instead of in a window.
        #[arg(long)]
        tty: bool,
        /// Name to show the technician [default: this machine's hostname].
        #[arg(long)]
        device_name: Option<String>,
        /// The invite code (spaces and dashes are fine).
        code: String,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Join { .. } => {
            eprintln!("error: joining a session is not available in this build yet; see README.md for what works");
            ExitCode::from(1)
        }
    }
}
