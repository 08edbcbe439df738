//! Webhooks (`[[webhooks]]` in relay.toml): the note, the session's
//! summary and escalations POSTed to a ticket system, signed, through a
//! persistent outbox.
//!
//! The audit writer hands every committed group of records to [`Feed`]
//! (the one path every record takes), which queues the deliveries they
//! call for in the outbox, fsynced, before the records' writers are told
//! they are on disk. A crash between the audit's fsync and the outbox's is
//! caught up at the next start: the outbox knows the last record it looked
//! at, and [`prepare`] reads the audit log past it. One thread per webhook
//! then delivers ([`deliver`]), and audits `webhook_delivered` or
//! `webhook_failed`.

mod deliver;
mod outbox;
mod payload;

use std::io::BufRead as _;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use assent_audit::{Fields, Record, RESERVED_FIELDS};
use assent_relay_formats::outbox::{Outcome, Queued, MAX_BODY};
use assent_relay_formats::webhooks::Webhook;
use tracing::{info, warn};

pub use deliver::{agent as client, signature, SIGNATURE_HEADER};
use outbox::Outbox;
use payload::{Committed, Feeder};

use crate::audit_writer::AuditHandle;
use crate::config::RelayConfig;
use crate::fields;
use crate::store::DataDir;

/// The outbox's directory in the data directory.
pub fn outbox_dir(dir: &DataDir) -> std::path::PathBuf {
    dir.root.join("webhooks")
}

/// Turns committed audit records into queued deliveries.
pub struct Feed {
    feeder: Feeder,
    outbox: Arc<Outbox>,
    hooks: Vec<Webhook>,
}

impl Feed {
    /// For the audit writer: queues what `records` call for.
    pub fn committed(&mut self, records: &[Record]) {
        let mut queued = Vec::new();
        for r in records {
            let c = Committed {
                seq: r.seq,
                time: &r.time,
                event: &r.event,
                fields: &r.fields,
            };
            self.take(&c, true, &mut queued);
        }
        let seen = records.last().map_or(0, |r| r.seq);
        if let Err(e) = self.outbox.enqueue(queued, seen) {
            // Caught up from the audit log at the next start.
            tracing::error!(error = %e, "webhook outbox: could not queue deliveries");
        }
    }

    /// Learns from one record; when `emit`, adds its deliveries to `out`.
    fn take(&mut self, c: &Committed<'_>, emit: bool, out: &mut Vec<Queued>) {
        let Some(report) = self.feeder.feed(c) else {
            return;
        };
        let hooks: Vec<&Webhook> = self
            .hooks
            .iter()
            .filter(|h| h.wants(report.subscription))
            .collect();
        if !emit || hooks.is_empty() {
            return;
        }
        let Ok(key) = assent_proto::random_id(16) else {
            tracing::error!("webhook: no randomness for an idempotency key");
            return;
        };
        let body = self.feeder.body(c, report, &key);
        if body.len() > MAX_BODY {
            tracing::error!(
                seq = c.seq,
                "webhook: body over {MAX_BODY} bytes; not queued"
            );
            return;
        }
        let queued_at = deliver::unix_ms(SystemTime::now());
        for hook in hooks {
            out.push(Queued {
                key: key.clone(),
                hook: hook.name.clone(),
                seq: c.seq,
                event: report.kind.to_string(),
                queued_at,
                body: body.clone(),
            });
        }
    }
}

/// The outbox opened and caught up, the clients built: ready to start once
/// the audit writer runs.
pub struct Prepared {
    outbox: Arc<Outbox>,
    agents: Vec<(Webhook, ureq::Agent)>,
}

/// Opens the outbox and catches up with the audit log (records after the
/// last one it looked at, whose deliveries a crash may have lost).
/// `last_seq` is the audit log's last record. `None` when no webhook is
/// configured and none ever was.
pub fn prepare(
    dir: &DataDir,
    config: &RelayConfig,
    last_seq: u64,
) -> anyhow::Result<Option<(Feed, Prepared)>> {
    let path = outbox_dir(dir);
    if config.webhooks.is_empty() && !path.exists() {
        return Ok(None);
    }
    let agents = config
        .webhooks
        .iter()
        .map(|h| Ok((h.clone(), deliver::agent(h)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opened =
        Outbox::open(&path, last_seq).with_context(|| format!("opening {}", path.display()))?;
    if opened.skipped > 0 {
        warn!(
            lines = opened.skipped,
            "webhook outbox: skipped lines it could not read (a write cut short by a crash)"
        );
    }
    let outbox = Arc::new(opened.outbox);
    let mut feed = Feed {
        feeder: Feeder::new(&config.public_name),
        outbox: outbox.clone(),
        hooks: config.webhooks.clone(),
    };
    let caught_up = catch_up(&mut feed, &dir.audit())?;
    info!(
        webhooks = config.webhooks.len(),
        pending = opened.pending + caught_up,
        caught_up,
        "webhook outbox open"
    );
    Ok(Some((feed, Prepared { outbox, agents })))
}

/// Reads the audit log through the feed (so it knows every session), and
/// queues what the records after the outbox's cursor call for. Returns how
/// many deliveries that queued.
fn catch_up(feed: &mut Feed, log: &std::path::Path) -> anyhow::Result<usize> {
    let cursor = feed.outbox.fed_seq();
    let file = match std::fs::File::open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", log.display())),
    };
    let mut queued = Vec::new();
    let mut last = cursor;
    for line in std::io::BufReader::new(file).lines() {
        let line = line.with_context(|| format!("reading {}", log.display()))?;
        let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(&line) else {
            continue;
        };
        let seq = fields.get("seq").and_then(serde_json::Value::as_u64);
        let time = string(&fields, "time");
        let event = string(&fields, "event");
        fields.retain(|k, _| !RESERVED_FIELDS.contains(&k.as_str()));
        let Some(seq) = seq else { continue };
        let c = Committed {
            seq,
            time: &time,
            event: &event,
            fields: &fields,
        };
        feed.take(&c, seq > cursor, &mut queued);
        last = last.max(seq);
    }
    let n = queued.len();
    feed.outbox
        .enqueue(queued, last)
        .context("queueing webhook deliveries caught up from the audit log")?;
    Ok(n)
}

fn string(fields: &Fields, key: &str) -> String {
    fields
        .get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The delivery threads.
pub struct Webhooks {
    outbox: Arc<Outbox>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Prepared {
    /// Starts one delivery thread per webhook; deliveries left for a
    /// webhook no longer in relay.toml are given up (`webhook_failed`,
    /// `webhook_removed`).
    pub fn start(self, audit: &AuditHandle) -> anyhow::Result<Webhooks> {
        let runtime = tokio::runtime::Handle::current();
        let mut threads = Vec::new();
        let removed: Vec<String> = self
            .outbox
            .hooks()
            .into_iter()
            .filter(|h| !self.agents.iter().any(|(w, _)| w.name == *h))
            .collect();
        if !removed.is_empty() {
            let (outbox, audit, rt) = (self.outbox.clone(), audit.clone(), runtime.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("webhook-removed".into())
                    .spawn(move || give_up_removed(&outbox, &audit, &rt, &removed))?,
            );
        }
        for (hook, agent) in self.agents {
            let worker = deliver::Worker {
                hook,
                agent,
                outbox: self.outbox.clone(),
                audit: audit.clone(),
                runtime: runtime.clone(),
            };
            let name = format!("webhook-{}", worker.hook.name);
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || worker.run())?,
            );
        }
        Ok(Webhooks {
            outbox: self.outbox,
            threads,
        })
    }
}

fn give_up_removed(
    outbox: &Outbox,
    audit: &AuditHandle,
    runtime: &tokio::runtime::Handle,
    removed: &[String],
) {
    for hook in removed {
        while let Some(p) = outbox.next(hook, std::time::Duration::ZERO) {
            outbox.finish(hook, Outcome::Failed);
            let fields = fields! {
                "webhook" => hook, "type" => p.queued.event, "key" => p.queued.key,
                "audit_seq" => p.queued.seq, "status" => p.last_status,
                "attempts" => p.attempts, "error" => "webhook_removed",
            };
            warn!(webhook = %hook, "a queued delivery's webhook is no longer in relay.toml; given up");
            let _ = runtime.block_on(audit.record("webhook_failed", fields));
        }
    }
}

impl Webhooks {
    /// Stops the threads (an attempt under way finishes first, within its
    /// timeout); what is still queued stays in the outbox for the next start.
    pub fn stop(self) {
        self.outbox.stop();
        for t in self.threads {
            let _ = t.join();
        }
    }
}
