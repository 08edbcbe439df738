//! `assent-agent`: the end user's program. Exit codes: 0 success (including
//! a declined session), 1 a failure the user must act on, 2 bad usage.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use assent_agent::session::{self, JoinConfig, Stats};
use assent_agent::ui::{self, TtyUi, UiCommand, UiSink, WindowUi};
use clap::{Parser, Subcommand};
use tokio::sync::mpsc;

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
    #[command(flatten)]
    log: assent_cli::LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Join a support session with the code your technician gave you.
    #[command(
        after_help = "Example:\n  assent-agent join --relay relay.example.com:4433 --ca ca.pem 123-456-789-012-345\n  assent-agent join --relay relay.example.com:4433 --ca ca.pem --tty 123 456 789 012 345\n  assent-agent join 'assent://join?relay=relay.example.com:4433&code=123-456-789-012-345'"
    )]
    Join {
        /// The relay, as HOST:PORT (a join link names it).
        #[arg(long)]
        relay: Option<String>,
        /// The relay's CA certificate (ca.pem from your IT team) [default: $XDG_CONFIG_HOME/assent/ca.pem, else /etc/assent/ca.pem].
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Seconds to answer the consent prompt before it denies by itself.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=600))]
        consent_timeout: u64,
        /// Ask on the terminal instead of in a window.
        #[arg(long)]
        tty: bool,
        /// Name to show the technician [default: this machine's hostname].
        #[arg(long)]
        device_name: Option<String>,
        /// Always hide windows whose title or application (class) matches this glob (`*`, `?`; repeatable; added to `hide` in $XDG_CONFIG_HOME/assent/agent.toml).
        #[arg(long = "hide", value_name = "PATTERN")]
        hide: Vec<String>,
        #[command(flatten)]
        files: FileArgs,
        /// The invite code (spaces and dashes are fine), or the join link assent://join?relay=HOST:PORT&code=CODE.
        #[arg(required = true, num_args = 1..)]
        code: Vec<String>,
    },
}

/// Files the technician sends (only those you accept, only while you allow files).
#[derive(clap::Args)]
struct FileArgs {
    /// Where files you accept are saved [default: ~/Downloads/Assent].
    #[arg(long, value_name = "DIR")]
    download_dir: Option<PathBuf>,
    /// Largest file sent or received, in MB.
    #[arg(long, value_name = "MB", default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    max_file_mb: u64,
    /// Most MB of files moved in one session, both ways together.
    #[arg(long, value_name = "MB", default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    max_session_files_mb: u64,
}

impl FileArgs {
    fn settings(self) -> assent_agent::files::FileSettings {
        assent_agent::files::FileSettings {
            dir: self
                .download_dir
                .unwrap_or_else(assent_agent::files::default_download_dir),
            limits: assent_files::Limits {
                max_file: self.max_file_mb << 20,
                max_session: self.max_session_files_mb << 20,
            },
        }
    }
}

fn main() -> ExitCode {
    // Before any thread: a session's big frames must not stay resident
    // once sent (crates/heap).
    assent_heap::give_back_freed_memory();
    assent_cli::assets::generate_if_asked(<Cli as clap::CommandFactory>::command);
    let cli = Cli::parse();
    let Command::Join {
        relay,
        ca,
        consent_timeout,
        tty,
        device_name,
        hide,
        files,
        code,
    } = cli.command;
    let mut filter = assent_cli::env_filter("warn");
    // The input libraries log what they type (enigo prints the text at
    // debug): whatever RUST_LOG says, they stay at warn, so no password
    // typed by the technician ever reaches a log.
    for quiet in ["enigo=warn", "x11rb=warn", "x11rb_protocol=warn"] {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    assent_cli::init_logging(cli.log.log_format, filter);
    let target = match assent_agent::link::resolve(relay, ca, &code) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    let (relay, ca, code) = (target.relay.clone(), target.ca.clone(), target.code.clone());
    let privacy = match privacy_policy(&hide) {
        Ok(p) => assent_agent::privacy::Privacy::new(p),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    let options = JoinOptions {
        consent_timeout,
        tty,
        device_name,
        privacy,
        files: files.settings(),
    };
    match join(relay, ca, options, code) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {:#}", assent_agent::link::explain(e, &target));
            ExitCode::from(1)
        }
    }
}

/// The organisation's hide patterns: `agent.toml`'s `hide` and `--hide`.
fn privacy_policy(hide: &[String]) -> anyhow::Result<assent_agent::privacy::Policy> {
    let file = assent_agent::device::config_dir()?.join("agent.toml");
    assent_agent::privacy::Policy::load(&file, hide)
}

struct JoinOptions {
    consent_timeout: u64,
    tty: bool,
    device_name: Option<String>,
    privacy: Arc<assent_agent::privacy::Privacy>,
    files: assent_agent::files::FileSettings,
}

fn join(relay: String, ca: PathBuf, options: JoinOptions, code: String) -> anyhow::Result<()> {
    let JoinOptions {
        consent_timeout,
        tty,
        device_name,
        privacy,
        files,
    } = options;
    let device = assent_agent::device::device_name(device_name)?;
    let key_path = assent_agent::device::config_dir()?.join("device.key");
    let device_key = assent_agent::device::load_or_create(&key_path)?;
    if !tty && std::env::var_os("DISPLAY").is_none() {
        anyhow::bail!("no display to show the consent window on (DISPLAY is not set); use --tty to answer on this terminal");
    }
    let config = JoinConfig {
        relay,
        ca,
        code,
        device,
        device_key,
        consent_timeout: Duration::from_secs(consent_timeout),
        files,
    };
    let (commands_tx, commands_rx) = mpsc::unbounded_channel::<UiCommand>();
    let window = WindowUi::default();
    let sink: Arc<dyn UiSink> = if tty {
        Arc::new(TtyUi)
    } else {
        Arc::new(window.clone())
    };
    if tty {
        // The reader starts at once; decisions before the prompt are ignored
        // because the session only listens for them during the prompt.
        ui::spawn_tty_reader(
            Arc::new(Mutex::new(Some(assent_proto::wire::Scope::Control))),
            commands_tx.clone(),
        );
    }
    assent_agent::privacy::start(&privacy, tty);
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let signal_commands = commands_tx.clone();
    let session = runtime.spawn(async move {
        tokio::spawn(end_on_signal(signal_commands));
        session::run(
            config,
            Box::new(move || {
                let screen = Box::new(assent_capture::X11Source::new()?);
                let masked = assent_agent::privacy::masked::MaskedSource::new(screen, privacy)?;
                Ok(Box::new(masked) as Box<dyn assent_capture::ScreenSource>)
            }),
            Box::new(|| {
                assent_input::EnigoSink::new()
                    .map(|s| Box::new(s) as Box<dyn assent_input::InputSink>)
            }),
            sink,
            commands_rx,
            Arc::new(Stats::default()),
        )
        .await
    });
    if !tty {
        // The window runs on the main thread until the session ends or the
        // user closes it (which ends the session).
        if let Err(e) = ui::run_window(window, commands_tx.clone()) {
            let _ = commands_tx.send(UiCommand::End);
            eprintln!("error: cannot open the consent window: {e:#}");
        }
        let _ = commands_tx.send(UiCommand::End);
    }
    let outcome = runtime
        .block_on(session)
        .context("the session task failed")??;
    report(outcome, tty);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// SIGTERM/SIGINT end the session cleanly (the relay records agent_ended);
/// after the end, one skips the question about it.
async fn end_on_signal(commands: mpsc::UnboundedSender<UiCommand>) {
    loop {
        assent_client::termination_signal().await;
        if commands.send(UiCommand::End).is_err() {
            return;
        }
    }
}

/// The last words on stderr.
fn report(outcome: session::Outcome, tty: bool) {
    match outcome {
        session::Outcome::Declined(d) => {
            eprintln!("Session declined ({}). Nothing was shared.", d.as_str())
        }
        session::Outcome::Ended(msg) => eprintln!("{msg}"),
        // The tty UI printed it already; the window showed it.
        session::Outcome::RequestClosed(msg) if !tty => eprintln!("{msg}"),
        session::Outcome::RequestClosed(_) => {}
    }
}
