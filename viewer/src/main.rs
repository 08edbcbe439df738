//! `assent-viewer`: the technician's program. Exit codes: 0 success, 1 a
//! failure the technician must act on, 2 bad usage.

#![forbid(unsafe_code)]

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
    #[command(flatten)]
    log: assent_cli::LogArgs,
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
    Connect(Box<ConnectArgs>),
    /// List the escalations other technicians handed to you (take one with `connect --handover ID`).
    #[command(
        after_help = "Example:\n  assent-viewer handovers --relay relay.example.com:4433 --ca ca.pem\n  assent-viewer connect --relay relay.example.com:4433 --ca ca.pem --handover 3f2a9c0e1b7d4a66"
    )]
    Handovers {
        /// The relay, as HOST:PORT.
        #[arg(long)]
        relay: String,
        /// The relay's CA certificate (ca.pem from the admin).
        #[arg(long)]
        ca: PathBuf,
        /// Technician key [default: $XDG_CONFIG_HOME/assent/technician.key].
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Play a recording (made with the user's yes) in a window.
    #[command(
        after_help = "Example:\n  assent-viewer replay ~/.local/share/assent/recordings/5f2a9c0e-1.assentrec"
    )]
    Replay {
        /// The recording (.assentrec).
        file: PathBuf,
    },
    /// Write a recording's frames as PNG files (frame-000001.png, …).
    #[command(after_help = "Example:\n  assent-viewer export 5f2a9c0e-1.assentrec --png frames/")]
    Export {
        /// The recording (.assentrec).
        file: PathBuf,
        /// The directory for the PNG files (created if missing).
        #[arg(long, value_name = "DIR")]
        png: PathBuf,
    },
    /// Check a recording's size and SHA-256 against this viewer's audit log.
    #[command(
        name = "verify-recording",
        after_help = "Example:\n  assent-viewer verify-recording 5f2a9c0e-1.assentrec"
    )]
    VerifyRecording {
        /// The recording (.assentrec).
        file: PathBuf,
        /// The audit log [default: $XDG_DATA_HOME/assent/audit.jsonl].
        #[arg(long)]
        audit: Option<PathBuf>,
    },
}

use assent_viewer::paths::default_key;

/// `replay`, `export`, `verify-recording`.
fn recordings(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Replay { file } => assent_viewer::replay::replay(file),
        Command::Export { file, png } => {
            let n = assent_viewer::replay::export(&file, &png)?;
            println!("{n} frames written to {}", png.display());
            Ok(())
        }
        Command::VerifyRecording { file, audit } => {
            let audit = match audit {
                Some(a) => a,
                None => assent_viewer::paths::audit_log()?,
            };
            println!("{}", assent_viewer::replay::verify(&file, &audit)?);
            Ok(())
        }
        _ => Ok(()),
    }
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
    assent_cli::assets::generate_if_asked(<Cli as clap::CommandFactory>::command);
    let cli = Cli::parse();
    assent_cli::init_logging(cli.log.log_format, assent_cli::env_filter("warn"));
    let result = match cli.command {
        Command::Keygen { key } => keygen(key),
        Command::Connect(args) => connect(*args),
        Command::Handovers { relay, ca, key } => handovers(relay, ca, key),
        other => recordings(other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[derive(clap::Args)]
struct ConnectArgs {
    /// The relay, as HOST:PORT.
    #[arg(long)]
    relay: String,
    /// The relay's CA certificate (ca.pem from the admin).
    #[arg(long)]
    ca: PathBuf,
    /// The support ticket this session is for.
    #[arg(long, required_unless_present = "handover")]
    ticket: Option<String>,
    /// Take over a session another technician escalated to you (the ID
    /// `assent-viewer handovers` lists): the user is asked afresh, naming you;
    /// the ticket and client come from the escalated session.
    #[arg(long, value_name = "ID", conflicts_with_all = ["ticket", "client", "summary"])]
    handover: Option<String>,
    /// Technician key [default: $XDG_CONFIG_HOME/assent/technician.key].
    #[arg(long)]
    key: Option<PathBuf>,
    /// The client (organisation), shown to the user and in the note.
    #[arg(long, default_value = "")]
    client: String,
    /// What the ticket is about, shown to the user and in the note.
    #[arg(long, default_value = "")]
    summary: String,
    #[arg(long, default_value = "normal", value_parser = ["low", "normal", "high", "critical"])]
    impact: String,
    /// What to ask the user for: seeing the screen, or also using mouse and keyboard.
    #[arg(long, default_value = "view", value_parser = ["view", "control"])]
    scope: String,
    /// How you verified who is asking for help, before the session (support
    /// procedure: confirm user identity): phone-callback, ticket-history, email,
    /// in-person, manager, or other:TEXT. Recorded in the relay's invite_created
    /// and in the note.
    #[arg(long, value_name = "HOW", value_parser = assent_proto::text::identity_check)]
    identity_check: Option<String>,
    /// Also ask the user to allow recording and screenshots (the record button
    /// stays disabled until they say yes; they see "Recording" while it is allowed).
    #[arg(long)]
    record: bool,
    /// Also ask the user to allow files (each file you send still needs their
    /// Accept; they send you only files they pick).
    #[arg(long)]
    files: bool,
    /// Also ask the user to share the clipboard (text, both ways). The prompt
    /// asks it separately; it is off unless the user ticks it, and they can
    /// turn it off at any time. Without it you can still ask mid-session.
    #[arg(long)]
    clipboard: bool,
    /// No window: JSON statistics on stdout each second; ends on SIGTERM or stdin EOF.
    /// A line `control` or `view` on stdin asks the user for that scope mid-session;
    /// `chat TEXT` sends TEXT to the user, whose chat lines come out on stdout as
    /// `{"chat": {"from": "user", "at": ..., "text": ...}}`; `validate [WHAT TO TEST]`
    /// asks the user to test the fix, whose answer comes out as `{"validation": {...}}`;
    /// `specialists` lists who may receive an escalation and `escalate SPECIALIST TRIGGER
    /// [view|control]` hands the session to one (triggers: identity-unverified, no-consent,
    /// compromise-or-malware, sensitive-data, admin-access, bypass-request, multiple-users,
    /// device-risk, outside-scope, unsure-if-safe, other:TEXT), with news as `{"escalation": ...}`.
    /// `ask recording` asks the user to allow recording; `record start` / `record stop` and
    /// `screenshot` work only while they allow it, each change printed as `{"recording": {...}}`.
    /// `ask files` asks the user to allow files; `send-file PATH` offers the user a file (it
    /// lands only if they accept), `cancel-file` stops transfers, and each change is printed as
    /// `{"file": {...}}` (files the user sends land in $XDG_DATA_HOME/assent/files).
    /// `ask clipboard` asks the user to share the clipboard; `{"permissions": [...]}` says what
    /// the user allows, and text the user copies lands in this display's clipboard (and the
    /// other way), each move printed as `{"clipboard": {"direction": ..., "bytes": ...}}`.
    #[arg(long)]
    headless: bool,
    /// The note's Result: resolved, monitoring, escalated or follow-up-required.
    /// Required to file a complete note (the window asks for it; `--headless`
    /// also takes a `result X` line on stdin).
    #[arg(long, value_name = "RESULT", value_parser = parse_outcome)]
    result: Option<assent_viewer::checklist::Outcome>,
    /// The note's Next Action (required unless the result is resolved; stdin:
    /// `next-action TEXT`).
    #[arg(long, value_name = "TEXT", default_value = "")]
    next_action: String,
    /// The note's Actions Taken (stdin: `actions-taken TEXT`).
    #[arg(long, value_name = "TEXT", default_value = "")]
    actions_taken: String,
    /// The note's Changes Made (stdin: `changes-made TEXT`).
    #[arg(long, value_name = "TEXT", default_value = "")]
    changes_made: String,
    /// Checklist items you confirmed, comma-separated, or `all`:
    /// client_user_confirmed, device_confirmed, issue_impact_confirmed,
    /// confidential_items_avoided, within_scope, credentials_not_exposed
    /// (stdin: `tick ITEMS`, `untick ITEMS`). The others are ticked from facts.
    #[arg(long, value_name = "ITEMS", value_parser = parse_ticks)]
    tick: Vec<String>,
}

fn parse_ticks(s: &str) -> Result<String, String> {
    let mut probe = assent_viewer::checklist::Checklist::default();
    for key in s
        .split(',')
        .map(str::trim)
        .filter(|k| *k != "all" && !k.is_empty())
    {
        if !probe.set(key, true) {
            return Err(format!(
                "{key:?} is not an item you tick; {}",
                assent_viewer::note_input::tickable()
            ));
        }
    }
    Ok(s.to_string())
}

fn parse_outcome(s: &str) -> Result<assent_viewer::checklist::Outcome, String> {
    s.parse()
}

fn connect(args: ConnectArgs) -> anyhow::Result<()> {
    use assent_viewer::session::{self, Command as SessionCommand, ViewState};
    use std::sync::{Arc, Mutex};

    let headless = args.headless;
    let note_args = NoteArgs {
        result: args.result,
        next_action: args.next_action.clone(),
        actions_taken: args.actions_taken.clone(),
        changes_made: args.changes_made.clone(),
        tick: args.tick.clone(),
    };
    let config = connect_config(args)?;
    let mut view = ViewState::new(&config.request);
    note_args.apply(&mut view)?;
    let state = Arc::new(Mutex::new(view));
    let (commands_tx, commands_rx) = tokio::sync::mpsc::unbounded_channel();
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let repaint: assent_viewer::window::RepaintSlot = Arc::new(Mutex::new(None));
    let repaint_hook = {
        let repaint = repaint.clone();
        Arc::new(move || {
            if let Some(f) = repaint.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                f();
            }
        }) as Arc<dyn Fn() + Send + Sync>
    };
    let on_signal = (commands_tx.clone(), state.clone(), repaint_hook.clone());
    let session_state = state.clone();
    // The relay as the technician named it, for the join link.
    let link_relay = config.relay.clone();
    let task = runtime.spawn(async move {
        tokio::spawn(end_on_signal(on_signal.0, on_signal.1, on_signal.2));
        session::run(
            config,
            session_state,
            commands_rx,
            move |code: &str, expires: u32| print_invite(&link_relay, code, expires),
            repaint_hook,
            !headless,
        )
        .await
    });
    if headless {
        assent_viewer::headless::spawn_stdin_reader(commands_tx.clone(), state.clone());
        runtime.spawn(assent_viewer::headless::print_stats(state.clone()));
        runtime.spawn(assent_viewer::headless::print_chat(state.clone()));
        runtime.spawn(assent_viewer::headless::print_escalation(state.clone()));
        runtime.spawn(assent_viewer::clipboard::print_headless(state.clone()));
        runtime.spawn(assent_viewer::files::print_headless(state.clone()));
        runtime.spawn(assent_viewer::recording::print_headless(state.clone()));
    } else {
        assent_viewer::window::run(state.clone(), commands_tx.clone(), repaint)
            .map_err(|e| anyhow::anyhow!("cannot open the session window: {e}"))?;
        // The window closed: end the session everywhere.
        let _ = commands_tx.send(SessionCommand::End);
    }
    let finished = runtime
        .block_on(task)
        .context("the session task failed")??;
    let complete = report(&finished);
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if !complete {
        std::process::exit(1);
    }
    Ok(())
}

/// The last words on stderr; `false` when the note lacks its Result.
fn report(finished: &assent_viewer::session::Finished) -> bool {
    use assent_viewer::session;
    match finished.reason.as_str() {
        session::NOT_STARTED => eprintln!("Closed before any invite was created."),
        session::WITHDRAWN => {
            eprintln!("Request withdrawn: the user's prompt was taken away; nothing was shared.")
        }
        "consent_denied" | "consent_timeout" => eprintln!(
            "The user did not accept ({}): nothing was shared.",
            finished.reason
        ),
        "escalated" => eprintln!("Session handed over: the user accepted the specialist."),
        reason => eprintln!("Session ended ({reason})."),
    }
    if let Some(p) = &finished.note_path {
        eprintln!("Session note: {}", p.display());
    }
    if finished.note_incomplete.contains(&"result") {
        eprintln!("error: the note was filed without a Result (give --result or a `result X` line: resolved, monitoring, escalated, follow-up-required); it names what is missing: {}", finished.note_incomplete.join(", "));
        return false;
    }
    if !finished.note_incomplete.is_empty() {
        eprintln!(
            "Note filed incomplete: {}",
            finished.note_incomplete.join(", ")
        );
    }
    true
}

/// The note as the command line fills it.
struct NoteArgs {
    result: Option<assent_viewer::checklist::Outcome>,
    next_action: String,
    actions_taken: String,
    changes_made: String,
    tick: Vec<String>,
}

impl NoteArgs {
    fn apply(self, view: &mut assent_viewer::session::ViewState) -> anyhow::Result<()> {
        view.outcome = self.result;
        for (field, value) in [
            ("Next Action", self.next_action),
            ("Actions Taken", self.actions_taken),
            ("Changes Made", self.changes_made),
        ] {
            view.note.set(field, value);
        }
        for keys in &self.tick {
            assent_viewer::note_input::tick(view, keys, true)
                .map_err(|e| anyhow::anyhow!("--tick: {e}"))?;
        }
        Ok(())
    }
}

/// The key, the validated request and the paths, from the command line.
fn read_key(path: Option<PathBuf>) -> anyhow::Result<SecretKey> {
    let key_path = match path {
        Some(p) => p,
        None => default_key()?,
    };
    let key_text = std::fs::read_to_string(&key_path).with_context(|| {
        format!(
            "reading the technician key {} (create one with `assent-viewer keygen`)",
            key_path.display()
        )
    })?;
    SecretKey::from_file_contents(&key_text)
        .with_context(|| format!("{} is not a technician key", key_path.display()))
}

/// `assent-viewer handovers`: the escalations waiting for this technician.
fn handovers(relay: String, ca: PathBuf, key: Option<PathBuf>) -> anyhow::Result<()> {
    let key = read_key(key)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let list = runtime.block_on(assent_viewer::handover::list(&relay, &ca, &key))?;
    print!("{}", assent_viewer::handover::table(&list));
    Ok(())
}

fn connect_config(args: ConnectArgs) -> anyhow::Result<assent_viewer::session::ConnectConfig> {
    use assent_proto::text;
    let key = read_key(args.key)?;
    // A handover's ticket comes from the escalated session, once claimed.
    let ticket = args.ticket.as_deref().unwrap_or("handover");
    let request = assent_proto::wire::InviteRequest {
        ticket: text::single_line("--ticket", ticket, text::MAX_TICKET)?,
        client: text::optional_line("--client", &args.client, text::MAX_CLIENT)?,
        summary: text::optional_line("--summary", &args.summary, text::MAX_SUMMARY)?,
        impact: args.impact.parse().map_err(anyhow::Error::msg)?,
        scope: args.scope.parse().map_err(anyhow::Error::msg)?,
        identity_check: args.identity_check.clone().unwrap_or_default(),
        permissions: [
            (
                args.clipboard,
                assent_proto::permission::Permission::Clipboard,
            ),
            (args.files, assent_proto::permission::Permission::Files),
            (args.record, assent_proto::permission::Permission::Recording),
        ]
        .into_iter()
        .filter_map(|(asked, p)| asked.then_some(p))
        .collect(),
    };
    if !args.headless && std::env::var_os("DISPLAY").is_none() {
        bail!("no display for the session window (DISPLAY is not set); use --headless for scripts");
    }
    Ok(assent_viewer::session::ConnectConfig {
        relay: args.relay,
        ca: args.ca,
        key,
        request,
        audit_path: assent_viewer::paths::audit_log()?,
        notes_dir: assent_viewer::paths::notes_dir()?,
        handover: args.handover,
    })
}

/// The code and its join link go to stdout only: stderr is the
/// diagnostics stream, which people capture into log files.
fn print_invite(relay: &str, code: &str, expires_in_secs: u32) {
    let link = assent_proto::link::JoinLink::url(relay, code);
    println!("Invite code: {code}");
    println!("Join link: {link}");
    // A message to paste into mail, chat or a web page: it holds the code,
    // so it goes to stdout with it.
    let message = assent_proto::link::JoinLink::message(relay, code, expires_in_secs / 60);
    println!(
        "--- message for the user (paste it into mail, chat or a web page; it holds the code) ---"
    );
    print!("{message}");
    println!("--- end of message ---");
    eprintln!(
        "Read this code to the user, or send them the join link. They run \
         `assent-agent join --relay ... --ca ca.pem CODE` and accept the prompt; the code \
         works once, for {} minutes.",
        expires_in_secs / 60
    );
    // The fallback for a computer where the link does not open (no agent
    // package, or a mail client that does not follow assent:// links). It
    // names the link without repeating it: stderr ends up in log files,
    // and the code stays on stdout only.
    eprintln!(
        "If the link does not open on their computer, they can run it in a terminal: \
         assent-agent join '<the join link>'. Nothing is shared until they say yes."
    );
}

/// SIGTERM/SIGINT end the session (or withdraw the request) as closing the
/// window does; the window closes itself.
async fn end_on_signal(
    commands: tokio::sync::mpsc::UnboundedSender<assent_viewer::session::Command>,
    state: assent_viewer::session::SharedState,
    repaint: std::sync::Arc<dyn Fn() + Send + Sync>,
) {
    assent_client::termination_signal().await;
    let _ = commands.send(assent_viewer::session::Command::End);
    state.lock().unwrap_or_else(|p| p.into_inner()).quit = true;
    repaint();
}
