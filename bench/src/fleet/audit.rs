//! The fleet group's look at the database: what it holds, and every
//! relay's local audit log against the central one.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use assent_fleet::testing::PgServer;

use super::{relay_id, BenchFleet, CATCH_UP_LIMIT, DB};

/// What the database holds: audit rows, directory rows (started, ended),
/// invites, database bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DbCounts {
    pub(super) audit: f64,
    pub(super) started: f64,
    pub(super) ended: f64,
    pub(super) invites: f64,
    pub(super) bytes: f64,
}

pub(super) fn db_counts(pg: &PgServer) -> anyhow::Result<DbCounts> {
    let out = pg.psql(
        DB,
        "SELECT (SELECT count(*) FROM audit_events), (SELECT count(*) FROM sessions), \
         (SELECT count(ended_ms) FROM sessions), (SELECT count(*) FROM invites), \
         pg_database_size(current_database())",
    )?;
    let v: Vec<f64> = out
        .split('|')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    let [audit, started, ended, invites, bytes] = v[..] else {
        anyhow::bail!("unexpected counts from the database: {out:?}");
    };
    Ok(DbCounts {
        audit,
        started,
        ended,
        invites,
        bytes,
    })
}

/// A relay's audit records: seq, hash, event, session.
type Rec = (u64, String, String, String);

fn local_records(dir: &Path) -> anyhow::Result<Vec<Rec>> {
    let text = std::fs::read_to_string(dir.join("audit/audit.jsonl"))?;
    let field = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            let seq = v["seq"].as_u64().context("record without seq")?;
            Ok((
                seq,
                field(&v, "hash"),
                field(&v, "event"),
                field(&v, "session"),
            ))
        })
        .collect()
}

/// The central audit, by relay.
fn central_records(pg: &PgServer) -> anyhow::Result<BTreeMap<String, Vec<Rec>>> {
    let sql = "SELECT relay_id, seq, hash, event, coalesce(record->>'session', '') \
               FROM audit_events ORDER BY relay_id, seq";
    let mut by_relay: BTreeMap<String, Vec<Rec>> = BTreeMap::new();
    for line in pg.psql(DB, sql)?.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('|').collect();
        let [relay, seq, hash, event, session] = f[..] else {
            anyhow::bail!("unexpected central row: {line:?}");
        };
        let rec = (seq.parse()?, hash.into(), event.into(), session.into());
        by_relay.entry(relay.into()).or_default().push(rec);
    }
    Ok(by_relay)
}

/// Waits until the central audit holds as many records as the local logs.
pub(super) async fn catch_up(f: &BenchFleet) -> anyhow::Result<Option<f64>> {
    let started = Instant::now();
    while started.elapsed() < CATCH_UP_LIMIT {
        let mut local = 0;
        for r in &f.relays {
            local += local_records(&r.dir)?.len() as u64;
        }
        if db_counts(&f.pg)?.audit as u64 >= local {
            return Ok(Some(started.elapsed().as_secs_f64()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(None)
}

/// Local logs against the central audit, after the relays stopped.
#[derive(Default)]
pub(super) struct Check {
    pub(super) lost: u64,
    pub(super) extra: u64,
    pub(super) unpaired: u64,
    pub(super) problems: Vec<String>,
}

pub(super) fn check(f: &BenchFleet) -> anyhow::Result<Check> {
    let mut central = central_records(&f.pg)?;
    let mut c = Check::default();
    for (i, r) in f.relays.iter().enumerate() {
        let id = relay_id(i);
        let local = local_records(&r.dir)?;
        let stored = central.remove(&id).unwrap_or_default();
        if local
            .iter()
            .enumerate()
            .any(|(k, rec)| rec.0 != k as u64 + 1)
        {
            c.problems
                .push(format!("{id}: local seqs are not 1..{}", local.len()));
        }
        let key = |r: &Rec| (r.0, r.1.clone());
        let (l, s): (HashSet<_>, HashSet<_>) = (
            local.iter().map(key).collect(),
            stored.iter().map(key).collect(),
        );
        let (lost, extra) = (
            l.difference(&s).count(),
            stored.len() - s.intersection(&l).count(),
        );
        if lost + extra > 0 {
            c.problems.push(format!(
                "{id}: {lost} local records not in the central audit, {extra} central records not in the local log ({} local, {} central)",
                local.len(), stored.len()
            ));
        }
        let mut ends: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
        for (_, _, event, session) in &stored {
            match event.as_str() {
                "session_start" => ends.entry(session).or_default().0 += 1,
                "session_end" => ends.entry(session).or_default().1 += 1,
                _ => {}
            }
        }
        let unpaired = ends.values().filter(|n| **n != (1, 1)).count();
        if unpaired > 0 {
            c.problems.push(format!(
                "{id}: {unpaired} sessions without exactly one session_start and one session_end"
            ));
        }
        (c.lost, c.extra, c.unpaired) = (
            c.lost + lost as u64,
            c.extra + extra as u64,
            c.unpaired + unpaired as u64,
        );
    }
    for (id, rows) in central {
        c.extra += rows.len() as u64;
        c.problems.push(format!(
            "{} central records of an unknown relay {id}",
            rows.len()
        ));
    }
    Ok(c)
}

/// `assent-relay audit verify --fleet` from the first relay; its output
/// when it does not exit 0.
pub(super) fn verify_fleet(f: &BenchFleet) -> anyhow::Result<Option<String>> {
    let out = std::process::Command::new(crate::procs::product_bin("assent-relay")?)
        .args(["audit", "verify", "--fleet", "--data-dir"])
        .arg(&f.relays[0].dir)
        .output()?;
    Ok((!out.status.success()).then(|| {
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }))
}
