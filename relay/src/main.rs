//! `assent-relay`: the admin's command line. Exit codes: 0 success, 1 a
//! failure the admin must act on (stderr says what to do), 2 bad usage.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use assent_relay::admin::{self, AdminRequest, SessionInfo};
use assent_relay::registry::{self, Change};
use assent_relay::store::{self, DataDir};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "assent-relay",
    version,
    about = "Assent relay: pairs technicians with consenting users, forwards their end-to-end encrypted sessions, audits every start and end.",
    after_help = "Example:\n  assent-relay init --data-dir /var/lib/assent --public-name relay.example.com\n  assent-relay technician add --data-dir /var/lib/assent --name alice --key 'ed25519:AAAA... alice@laptop'\n  assent-relay serve --data-dir /var/lib/assent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: assent_cli::LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Create a relay data directory: config, CA, TLS certificate, signing key, audit dir.
    #[command(
        after_help = "Example:\n  assent-relay init --data-dir /var/lib/assent --listen 0.0.0.0:4433 --public-name relay.example.com"
    )]
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        /// UDP address to listen on.
        #[arg(long, default_value = "0.0.0.0:4433")]
        listen: SocketAddr,
        /// DNS name clients use to reach the relay (put in its certificate).
        #[arg(long, default_value = "localhost")]
        public_name: String,
        /// Fleet mode: issue this relay's certificate from the CA in DIR (another relay's `tls/`: ca.pem, ca.key, fleet.key) instead of a new CA, so one ca.pem trusts every relay of the fleet. The CA key is not copied.
        #[arg(long, value_name = "DIR")]
        ca_dir: Option<PathBuf>,
    },
    /// Run the relay until SIGTERM or SIGINT.
    #[command(
        after_help = "Example:\n  assent-relay serve --data-dir /var/lib/assent --listen 0.0.0.0:4433"
    )]
    Serve {
        #[arg(long)]
        data_dir: PathBuf,
        /// Overrides `listen` in relay.toml (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Enrol, list or revoke technicians.
    Technician {
        #[command(subcommand)]
        command: TechnicianCommand,
    },
    /// List live sessions and pending requests (waiting for the user to join, or asking the user).
    #[command(after_help = "Example:\n  assent-relay sessions --data-dir /var/lib/assent --json")]
    Sessions {
        #[arg(long)]
        data_dir: PathBuf,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End a live session or a pending request at once (audited as admin_killed).
    #[command(
        after_help = "Example:\n  assent-relay kill --data-dir /var/lib/assent 3f2a9c0e1b7d4a66"
    )]
    Kill {
        #[arg(long)]
        data_dir: PathBuf,
        session_id: String,
    },
    /// Check relay.toml, the keys, the technician registry and the audit log before serving.
    #[command(
        after_help = "Exit 0 when `serve` has everything it needs; 1 naming each problem.\n\nExample:\n  assent-relay check-config --data-dir /var/lib/assent-relay"
    )]
    CheckConfig {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Fleet mode ([fleet] in relay.toml): the shared PostgreSQL schema and the relays' leases.
    Fleet {
        #[command(subcommand)]
        command: assent_relay::fleet::cli::FleetCommand,
    },
    /// Verify or show the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum TechnicianCommand {
    /// Enrol a technician's public key (the line `assent-viewer keygen` printed).
    #[command(
        after_help = "Example:\n  assent-relay technician add --data-dir /var/lib/assent --name alice --key 'ed25519:AAAA... alice@laptop'"
    )]
    Add {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        key: String,
    },
    /// List enrolled technicians.
    #[command(after_help = "Example:\n  assent-relay technician list --data-dir /var/lib/assent")]
    List {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Allow or stop a technician receiving escalations from other technicians
    /// (they then appear in the viewer's "Escalate…" list; audited as technician_changed).
    #[command(
        after_help = "Example:\n  assent-relay technician escalations bob --allow --data-dir /var/lib/assent\n  assent-relay technician escalations bob --deny --data-dir /var/lib/assent"
    )]
    Escalations {
        name: String,
        /// Bob may receive escalations.
        #[arg(long, conflicts_with = "deny", required_unless_present = "deny")]
        allow: bool,
        /// Bob no longer receives escalations.
        #[arg(long)]
        deny: bool,
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Revoke a technician: refused at once, live sessions end (technician_revoked).
    #[command(
        after_help = "Example:\n  assent-relay technician revoke alice --data-dir /var/lib/assent"
    )]
    Revoke {
        name: String,
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain: `ok: N records`, or the first bad seq (exit 1).
    #[command(
        after_help = "Example:\n  assent-relay audit verify --data-dir /var/lib/assent\n  assent-relay audit verify --fleet --data-dir /var/lib/assent"
    )]
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
        /// Check the fleet's central audit instead: every relay's chain and signed checkpoints (`bad: relay R seq N: …`, exit 1).
        #[arg(long)]
        fleet: bool,
    },
    /// Print the records as a table, or the raw JSON lines.
    #[command(
        after_help = "Example:\n  assent-relay audit show --data-dir /var/lib/assent --session 3f2a9c0e1b7d4a66"
    )]
    Show {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        json: bool,
        /// Only records of this session.
        #[arg(long)]
        session: Option<String>,
        /// Every relay's records from the fleet's central audit, by time.
        #[arg(long)]
        fleet: bool,
    },
}

fn main() -> ExitCode {
    assent_cli::assets::generate_if_asked(<Cli as clap::CommandFactory>::command);
    let cli = Cli::parse();
    // The webhook client logs URLs (with any token in them) at trace:
    // whatever RUST_LOG says, it stays at warn.
    let mut filter = assent_cli::env_filter("info,quinn=warn");
    for quiet in ["ureq=warn", "ureq_proto=warn"] {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    assent_cli::init_logging(cli.log.log_format, filter);
    let runtime = match runtime(&cli) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `serve` runs on relay.toml's `workers` threads (one per core when
/// unset); every other command on the default. A relay.toml that does not
/// load is reported by `serve` itself.
fn runtime(cli: &Cli) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = match &cli.command {
        Command::Serve { data_dir, .. } => {
            let config = assent_relay::config::load(&DataDir::new(data_dir).config());
            config.ok().and_then(|c| c.workers)
        }
        _ => None,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder.enable_all().build()
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init {
            data_dir,
            listen,
            public_name,
            ca_dir,
        } => {
            let dir = DataDir::new(&data_dir);
            let report = store::init_with_ca(&dir, listen, &public_name, ca_dir.as_deref())?;
            println!("Relay created in {}", data_dir.display());
            println!(
                "CA certificate (give it to agents and viewers): {}",
                report.ca_path.display()
            );
            println!("CA SHA-256 fingerprint: {}", report.ca_fingerprint);
            println!("Certificate valid for: {}", report.names.join(", "));
            println!(
                "Next: enrol a technician with `assent-relay technician add --data-dir {} --name NAME --key 'ed25519:...'`, then `assent-relay serve --data-dir {}`",
                data_dir.display(),
                data_dir.display()
            );
        }
        Command::Serve { data_dir, listen } => {
            let dir = DataDir::new(&data_dir);
            assent_relay::serve(dir, listen, |addr| {
                // A stable line scripts and tests wait for.
                println!("listening on {addr}");
            })
            .await?;
        }
        Command::Technician { command } => technician(command).await?,
        Command::Sessions { data_dir, json } => {
            let dir = DataDir::new(&data_dir);
            dir.require_relay()?;
            let sessions =
                match admin::request(&dir.admin_socket(), &AdminRequest::Sessions).await? {
                    Some(r) if r.ok => {
                        if let Some(warning) = &r.message {
                            eprintln!("{warning}");
                        }
                        r.sessions.unwrap_or_default()
                    }
                    Some(r) => bail!("{}", r.error.unwrap_or_default()),
                    None => bail!(
                        "the relay is not running (no answer on {})",
                        dir.admin_socket().display()
                    ),
                };
            print_sessions(&sessions, json)?;
        }
        Command::Kill {
            data_dir,
            session_id,
        } => {
            let dir = DataDir::new(&data_dir);
            dir.require_relay()?;
            let req = AdminRequest::Kill {
                session: session_id,
            };
            match admin::request(&dir.admin_socket(), &req).await? {
                Some(r) if r.ok => println!("{}", r.message.unwrap_or_default()),
                Some(r) => bail!("{}", r.error.unwrap_or_default()),
                None => bail!("the relay is not running, so no session is live"),
            }
        }
        Command::Audit { command } => return audit(command).await,
        Command::Fleet { command } => assent_relay::fleet::cli::run(command).await?,
        Command::CheckConfig { data_dir } => return Ok(check_config(&data_dir)),
    }
    Ok(ExitCode::SUCCESS)
}

async fn technician(command: TechnicianCommand) -> anyhow::Result<()> {
    match command {
        TechnicianCommand::Add {
            data_dir,
            name,
            key,
        } => println!(
            "{}",
            change_technician(&data_dir, Change::Add { name, key }).await?
        ),
        TechnicianCommand::List { data_dir } => {
            let dir = DataDir::new(&data_dir);
            dir.require_relay()?;
            let reg = registry::load(&dir)?;
            if reg.list.is_empty() {
                println!("no technicians enrolled");
            }
            println!(
                "{:<24} {:<52} {:<26} STATUS",
                "NAME", "KEY FINGERPRINT", "ADDED"
            );
            for t in &reg.list {
                let status = match &t.revoked {
                    Some(when) => format!("revoked {when}"),
                    None if t.can_receive_escalations => "active, receives escalations".into(),
                    None => "active".into(),
                };
                println!(
                    "{:<24} {:<52} {:<26} {status}",
                    t.name,
                    t.fingerprint(),
                    t.added
                );
            }
        }
        TechnicianCommand::Escalations {
            name,
            allow,
            deny: _,
            data_dir,
        } => {
            let change = Change::Escalations {
                name,
                allowed: allow,
            };
            println!("{}", change_technician(&data_dir, change).await?)
        }
        TechnicianCommand::Revoke { name, data_dir } => {
            println!(
                "{}",
                change_technician(&data_dir, Change::Revoke { name }).await?
            )
        }
    }
    Ok(())
}

/// Enrols or revokes through the serving relay's admin socket (so it takes
/// effect at once), or on the files directly when no relay serves
/// `data_dir`. Both go through the same audit-first path
/// (`registry::apply`). Returns the line to print.
async fn change_technician(data_dir: &Path, change: Change) -> anyhow::Result<String> {
    let dir = DataDir::new(data_dir);
    dir.require_relay()?;
    if let Some(r) = admin::request(&dir.admin_socket(), &change.request()).await? {
        if !r.ok {
            bail!("{}", r.error.unwrap_or_default());
        }
        return Ok(r.message.unwrap_or_default());
    }
    let t = registry::change_offline(&dir, &change).await?;
    Ok(match change {
        Change::Add { .. } => format!("enrolled {} ({})", t.name, t.fingerprint()),
        Change::Revoke { .. } => format!("revoked {}", t.name),
        Change::Escalations { .. } => admin::escalations_line(&t),
    })
}

/// Prints every finding; exit 1 when any is a problem.
fn check_config(data_dir: &Path) -> ExitCode {
    let findings = assent_relay::check::check(&DataDir::new(data_dir));
    let problems = findings.iter().filter(|f| !f.ok).count();
    for f in &findings {
        if f.ok {
            println!("ok: {}", f.what);
        } else {
            eprintln!("error: {}", f.what);
        }
    }
    if problems == 0 {
        println!("{} is ready to serve", data_dir.display());
        ExitCode::SUCCESS
    } else {
        eprintln!("{problems} problem(s) in {}", data_dir.display());
        ExitCode::from(1)
    }
}

fn print_sessions(sessions: &[SessionInfo], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(sessions)?);
        return Ok(());
    }
    if sessions.is_empty() {
        println!("no live sessions or pending requests");
        return Ok(());
    }
    // Fleet mode: which relay holds each session.
    let fleet = sessions.iter().any(|s| s.relay.is_some());
    println!(
        "{:<18} {:<16} {:<16} {:<20} {:<8} {:<26} {:>12} {:>12} {:>7} {:<28} {:>21} {:>15}{}",
        "SESSION",
        "TECHNICIAN",
        "TICKET",
        "DEVICE",
        "SCOPE",
        "STARTED",
        "TO VIEWER",
        "TO AGENT",
        "AGE",
        "STATE",
        "RATE TO VIEWER/AGENT",
        "RTT VIEWER/AGENT",
        if fleet { "  RELAY" } else { "" }
    );
    for s in sessions {
        let rate = format!(
            "{}/{}",
            per_second(s.rate_to_viewer),
            per_second(s.rate_to_agent)
        );
        let rtt = format!("{}/{}", millis(s.rtt_viewer_ms), millis(s.rtt_agent_ms));
        println!(
            "{:<18} {:<16} {:<16} {:<20} {:<8} {:<26} {:>12} {:>12} {:>6}s {:<28} {:>21} {:>15}{}",
            s.id,
            clip(&s.technician, 16),
            clip(&s.ticket, 16),
            clip(&s.device, 20),
            s.scope,
            if s.started.is_empty() {
                "-"
            } else {
                &s.started
            },
            s.bytes_to_viewer,
            s.bytes_to_agent,
            s.age_secs,
            s.state,
            rate,
            rtt,
            s.relay
                .as_deref()
                .map(|r| format!("  {}", clip(r, 24)))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// A rate for people: `0 B/s`, `512 kB/s`, `12.5 MB/s`.
fn per_second(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB/s", b as f64 / 1e6),
        b if b >= 1_000 => format!("{} kB/s", b / 1_000),
        b => format!("{b} B/s"),
    }
}

fn millis(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".to_string(), |ms| format!("{ms} ms"))
}

/// Shortens and neutralises a value for a terminal table: values were
/// validated on the way in, but the audit file may have been edited.
fn clip(value: &str, width: usize) -> String {
    if value.trim().is_empty() {
        return String::new();
    }
    let clean = assent_proto::text::sanitize(value, width.max(2));
    if clean.chars().count() >= width && value.chars().count() > width {
        let mut s: String = clean.chars().take(width - 1).collect();
        s.push('…');
        s
    } else {
        clean
    }
}

/// `audit verify|show --fleet`: the fleet's central audit.
async fn fleet_audit(command: AuditCommand) -> anyhow::Result<ExitCode> {
    use assent_relay::fleet::cli as fleet;
    match command {
        AuditCommand::Verify { data_dir, .. } => fleet::verify(&DataDir::new(&data_dir)).await,
        AuditCommand::Show {
            data_dir,
            json,
            session,
            ..
        } => {
            fleet::show(&DataDir::new(&data_dir), json, session.as_deref()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn audit(command: AuditCommand) -> anyhow::Result<ExitCode> {
    if matches!(
        command,
        AuditCommand::Verify { fleet: true, .. } | AuditCommand::Show { fleet: true, .. }
    ) {
        return fleet_audit(command).await;
    }
    match command {
        AuditCommand::Verify { data_dir, .. } => {
            let dir = DataDir::new(&data_dir);
            dir.require_relay()?;
            match assent_audit::verify(&dir.audit()) {
                Ok(n) => {
                    println!("ok: {n} records");
                    if n > 0 && !assent_audit::head_path(&dir.audit()).exists() {
                        eprintln!(
                            "warning: {} is missing, so records cut from the end of the log \
                             could not be checked for",
                            assent_audit::head_path(&dir.audit()).display()
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("audit log {} is damaged: {e}", dir.audit().display());
                    println!("bad: seq {}", e.seq);
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCommand::Show {
            data_dir,
            json,
            session,
            ..
        } => {
            let dir = DataDir::new(&data_dir);
            dir.require_relay()?;
            let records = assent_audit::read_records(&dir.audit())
                .with_context(|| format!("reading {}", dir.audit().display()))?;
            let records = records.into_iter().filter(|r| {
                session
                    .as_deref()
                    .is_none_or(|s| r.get_str("session") == Some(s))
            });
            for r in records {
                if json {
                    println!("{}", assent_audit::canonical_json(&r.to_json()));
                } else {
                    let details: Vec<String> = r
                        .fields
                        .iter()
                        .map(|(k, v)| {
                            let v = match v {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            format!("{}={}", clip(k, 32), clip(&v, 80))
                        })
                        .collect();
                    println!(
                        "{:>6}  {:<24}  {:<18}  {}",
                        r.seq,
                        clip(&r.time, 24),
                        clip(&r.event, 18),
                        details.join(" ")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
