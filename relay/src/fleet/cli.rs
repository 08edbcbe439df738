//! The admin's fleet commands: `fleet migrate`, `fleet status`, and the
//! `--fleet` forms of `audit verify` and `audit show`. Each reads the
//! `[fleet]` table of the relay's own relay.toml.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use assent_fleet::{Fleet, ProblemKind, RelayVerdict};
use ed25519_dalek::VerifyingKey;

use crate::store::DataDir;

/// `assent-relay fleet …`
#[derive(clap::Subcommand)]
pub enum FleetCommand {
    /// Create or upgrade the fleet's tables, triggers and writer role (idempotent; run once per upgrade, from any relay, as the database owner).
    #[command(after_help = "Example:\n  assent-relay fleet migrate --data-dir /var/lib/assent")]
    Migrate {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// List the fleet's relays, whether each holds its lease, and its key.
    Status {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Create tls/fleet.key (the fleet's secret for invite-code digests) for a relay made before `init` wrote one; copy it to every relay of the fleet. Refuses to replace one.
    #[command(after_help = "Example:\n  assent-relay fleet key --data-dir /var/lib/assent")]
    Key {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

pub async fn run(command: FleetCommand) -> anyhow::Result<()> {
    match command {
        FleetCommand::Migrate { data_dir } => migrate(&DataDir::new(&data_dir)).await,
        FleetCommand::Status { data_dir } => status(&DataDir::new(&data_dir)).await,
        FleetCommand::Key { data_dir } => {
            let dir = DataDir::new(&data_dir);
            dir.require_relay()?;
            crate::store::create_fleet_key(&dir)?;
            println!(
                "created {}: copy it (mode 0600) to tls/fleet.key on every relay of the fleet",
                dir.fleet_key().display()
            );
            Ok(())
        }
    }
}

/// Connects with the `[fleet]` settings of the relay at `dir`.
async fn open(dir: &DataDir) -> anyhow::Result<Fleet> {
    dir.require_relay()?;
    let config = crate::config::load(&dir.config())?;
    let Some(settings) = config.fleet else {
        bail!(
            "{} has no [fleet] table: this relay is not part of a fleet",
            dir.config().display()
        );
    };
    super::connect(&settings).await
}

/// Creates or upgrades the fleet's schema (idempotent; concurrent runs
/// wait for each other).
pub async fn migrate(dir: &DataDir) -> anyhow::Result<()> {
    let fleet = open(dir).await?;
    let report = fleet
        .migrate()
        .await
        .context("migrating the fleet schema")?;
    if report.from == report.to {
        println!("fleet schema is up to date (version {})", report.to);
    } else {
        println!(
            "fleet schema migrated from version {} to {}",
            report.from, report.to
        );
    }
    Ok(())
}

/// Every relay's lease and how much of its audit the database holds.
pub async fn status(dir: &DataDir) -> anyhow::Result<()> {
    let fleet = open(dir).await?;
    let expired = fleet.expired_relays().await?;
    println!("{:<24} {:<8} {:>10}  KEY", "RELAY", "LEASE", "SHIPPED");
    for (relay, key) in fleet.relay_keys().await? {
        let lease = match expired.iter().any(|e| e.relay_id == relay) {
            true => "expired",
            false => "held",
        };
        let shipped = fleet.shipped_seq(&relay).await?;
        println!("{relay:<24} {lease:<8} {shipped:>10}  {key}");
    }
    // The local log is what the central one must catch up with.
    match assent_audit::verify(&dir.audit()) {
        Ok(local) => {
            let shipped = fleet.acked_seq().await?;
            println!(
                "this relay ({}): {local} audit records here, {shipped} in the fleet's audit ({} to ship)",
                fleet.relay_id(),
                local.saturating_sub(shipped)
            );
        }
        Err(e) => println!(
            "this relay ({}): its local audit log is damaged ({e}); records after the damage are not shipped",
            fleet.relay_id()
        ),
    }
    Ok(())
}

/// Checks every relay's chain and signed checkpoints in the central audit;
/// exit 1 naming relay and seq of each problem.
pub async fn verify(dir: &DataDir) -> anyhow::Result<ExitCode> {
    let fleet = open(dir).await?;
    let own = crate::store::load_signing_key(dir)?.public();
    let keys: Vec<(String, String)> = fleet.relay_keys().await?;
    // This relay's key is its own, not the database's word for it.
    let mismatch = keys
        .iter()
        .any(|(id, k)| id == fleet.relay_id() && *k != hex::encode(own.0));
    if mismatch {
        eprintln!(
            "the fleet database holds another key for this relay ({}) than its signing.key",
            fleet.relay_id()
        );
    }
    let key_of = |relay: &str| {
        let hex_key = keys.iter().find(|(id, _)| id == relay).map(|(_, k)| k)?;
        let bytes: [u8; 32] = hex::decode(hex_key).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    };
    let verdicts = fleet.verify_fleet(key_of).await?;
    let bad = verdicts.iter().filter(|v| !v.problems.is_empty()).count();
    for v in &verdicts {
        print_verdict(v);
    }
    Ok(if bad > 0 || mismatch {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_verdict(v: &RelayVerdict) {
    if v.problems.is_empty() {
        println!(
            "ok: relay {}: {} records, {} signed checkpoints",
            v.relay_id, v.records, v.checkpoints
        );
        return;
    }
    for p in &v.problems {
        println!(
            "bad: relay {} seq {}: {}",
            v.relay_id,
            p.seq,
            describe(&p.kind)
        );
    }
}

fn describe(kind: &ProblemKind) -> String {
    match kind {
        ProblemKind::Malformed(why) => format!("malformed record ({why})"),
        ProblemKind::HashMismatch => "hash mismatch (record was changed)".into(),
        ProblemKind::ColumnMismatch => "columns disagree with the record".into(),
        ProblemKind::BrokenLink => "prev mismatch (record removed or reordered)".into(),
        ProblemKind::Gap { missing_from } => format!("records missing from seq {missing_from}"),
        ProblemKind::BadCheckpointSignature => "checkpoint signature is not the relay's".into(),
        ProblemKind::CheckpointMismatch => {
            "the signed checkpoint names another hash (history rewritten)".into()
        }
        ProblemKind::CheckpointBeyondChain => "records cut from the end".into(),
        ProblemKind::NoKey => "no key to check its checkpoints".into(),
    }
}

/// Every relay's records by time (`--json`: one line each, with `relay`).
pub async fn show(dir: &DataDir, json: bool, session: Option<&str>) -> anyhow::Result<()> {
    let fleet = open(dir).await?;
    let mut since: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    loop {
        let page = fleet.audit_records(since.as_deref(), 1000).await?;
        let fresh: Vec<_> = page
            .into_iter()
            .filter(|r| seen.insert((r.relay_id.clone(), r.record.seq)))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        for r in &fresh {
            if session.is_some_and(|s| r.record.get_str("session") != Some(s)) {
                continue;
            }
            let mut value = r.record.to_json();
            if json {
                value["relay"] = r.relay_id.clone().into();
                println!("{}", assent_audit::canonical_json(&value));
            } else {
                println!(
                    "{:<16} {:>6}  {:<24}  {}",
                    r.relay_id, r.record.seq, r.record.time, r.record.event
                );
            }
        }
        since = fresh.last().map(|r| r.record.time.clone());
    }
}
