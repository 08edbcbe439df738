//! Shipping the relay's local audit log to the central, append-only store.
//!
//! The relay's JSONL log stays the first record of everything; shipping
//! copies it. A batch goes in one transaction and one multi-row INSERT, and
//! is idempotent: records already stored with the same hash are skipped, so
//! after a lost reply the relay just resends from its last acked seq. The
//! triggers (see `schema.rs`) refuse gaps and wrong links; a record stored
//! with another hash is a [`FleetError::Conflict`] that needs a human.

use assent_audit::Record;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use crate::{col, signed, unsigned, Fleet, FleetError};

/// One record of the central audit with the relay that wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRecord {
    pub relay_id: String,
    pub record: Record,
}

/// The bytes a relay signs for a checkpoint: `relay_id|seq|hash`.
pub fn checkpoint_message(relay_id: &str, seq: u64, hash: &str) -> Vec<u8> {
    format!("{relay_id}|{seq}|{hash}").into_bytes()
}

/// A batch in the column arrays the INSERT unnests.
#[derive(Default)]
struct Columns {
    seq: Vec<i64>,
    time: Vec<String>,
    event: Vec<String>,
    prev: Vec<String>,
    hash: Vec<String>,
    line: Vec<String>,
}

impl Columns {
    /// Checks the batch before it leaves: each record's hash must be its
    /// content's hash and seqs must follow each other, so the database only
    /// ever holds records the relay's own verifier would accept.
    fn of(records: &[Record]) -> Result<Columns, FleetError> {
        let mut c = Columns::default();
        for (i, r) in records.iter().enumerate() {
            let bad = |reason: &str| FleetError::BadRecord {
                seq: r.seq,
                reason: reason.into(),
            };
            if r.seq == 0 {
                return Err(bad("seq 0"));
            }
            if i > 0 && r.seq != records[i - 1].seq + 1 {
                return Err(bad("seqs in a batch must be consecutive"));
            }
            if r.recompute_hash() != r.hash {
                return Err(bad("hash does not match the record"));
            }
            c.seq.push(signed(r.seq)?);
            c.time.push(r.time.clone());
            c.event.push(r.event.clone());
            c.prev.push(r.prev.clone());
            c.hash.push(r.hash.clone());
            c.line.push(r.to_line());
        }
        Ok(c)
    }
}

impl Fleet {
    /// Ships consecutive records of this relay's log; returns the highest
    /// seq the central store now holds for this relay (everything up to it
    /// is stored, since gaps are refused).
    pub async fn ship(&self, records: &[Record]) -> Result<u64, FleetError> {
        if records.is_empty() {
            return self.acked_seq().await;
        }
        let c = Columns::of(records)?;
        let mut client = self.client().await?;
        let pg = |e| self.pg(e);
        let tx = client.transaction().await.map_err(pg)?;
        let existing = tx
            .query(
                "SELECT seq, hash FROM audit_events WHERE relay_id = $1 AND seq = ANY($2)",
                &[&self.relay_id(), &c.seq],
            )
            .await
            .map_err(pg)?;
        for row in &existing {
            let seq: i64 = col(row, 0)?;
            let hash: String = col(row, 1)?;
            let ours = c.seq.iter().position(|s| *s == seq).map(|i| &c.hash[i]);
            if ours != Some(&hash) {
                return Err(FleetError::Conflict {
                    relay_id: self.relay_id().to_string(),
                    seq: unsigned(seq, "seq")?,
                });
            }
        }
        if existing.len() < records.len() {
            tx.execute(
                "INSERT INTO audit_events (relay_id, seq, time, event, prev, hash, record, received_ms)
                 SELECT $1, u.seq, u.time, u.event, u.prev, u.hash, u.line::json, fleet_now_ms()
                 FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
                      AS u(seq, time, event, prev, hash, line)
                 ORDER BY u.seq
                 ON CONFLICT (relay_id, seq) DO NOTHING",
                &[&self.relay_id(), &c.seq, &c.time, &c.event, &c.prev, &c.hash, &c.line],
            )
            .await
            .map_err(pg)?;
        }
        let row = tx
            .query_one(
                "SELECT coalesce(max(seq), 0) FROM audit_events WHERE relay_id = $1",
                &[&self.relay_id()],
            )
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        unsigned(col(&row, 0)?, "seq")
    }

    /// The highest seq of this relay in the central store (0 if none): where
    /// shipping resumes.
    pub async fn acked_seq(&self) -> Result<u64, FleetError> {
        self.shipped_seq(self.relay_id()).await
    }

    /// The highest seq of `relay_id` in the central store (0 if none).
    pub async fn shipped_seq(&self, relay_id: &str) -> Result<u64, FleetError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT coalesce(max(seq), 0) FROM audit_events WHERE relay_id = $1",
                &[&relay_id],
            )
            .await
            .map_err(|e| self.pg(e))?;
        unsigned(col(&row, 0)?, "seq")
    }

    /// Stores a signed checkpoint of this relay's chain: `signature` is the
    /// relay's ed25519 signature over [`checkpoint_message`]. A checkpoint
    /// lives outside the hash chain, so someone who rewrites the chain and
    /// recomputes every hash still cannot forge it without the relay's key.
    /// Storing the same checkpoint again is harmless.
    pub async fn checkpoint(
        &self,
        seq: u64,
        hash: &str,
        signature: &[u8; 64],
    ) -> Result<(), FleetError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO audit_checkpoints (relay_id, seq, hash, signature, at_ms)
                 VALUES ($1, $2, $3, $4, fleet_now_ms())
                 ON CONFLICT (relay_id, seq) DO NOTHING",
                &[&self.relay_id(), &signed(seq)?, &hash, &&signature[..]],
            )
            .await
            .map_err(|e| self.pg(e))?;
        Ok(())
    }

    /// Every relay's records from `since` (an RFC 3339 time as in the
    /// records, inclusive) in time order, then relay id, then seq; at most
    /// `limit`. For `audit show --fleet`.
    pub async fn audit_records(
        &self,
        since: Option<&str>,
        limit: u32,
    ) -> Result<Vec<FleetRecord>, FleetError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT relay_id, record::text FROM audit_events
                 WHERE $1::text IS NULL OR time >= $1
                 ORDER BY time, relay_id, seq LIMIT $2",
                &[&since, &i64::from(limit)],
            )
            .await
            .map_err(|e| self.pg(e))?;
        rows.iter()
            .map(|r| {
                let line: String = col(r, 1)?;
                Ok(FleetRecord {
                    relay_id: col(r, 0)?,
                    record: parse_record(&line).map_err(FleetError::Corrupt)?,
                })
            })
            .collect()
    }
}

/// A stored record's text back into a [`Record`].
pub(crate) fn parse_record(line: &str) -> Result<Record, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    Record::from_json(value)
}

/// Whether `signature` is `key`'s over the checkpoint message.
pub(crate) fn checkpoint_signed(
    key: &VerifyingKey,
    relay_id: &str,
    seq: u64,
    hash: &str,
    signature: &[u8],
) -> bool {
    let Ok(sig) = Signature::from_slice(signature) else {
        return false;
    };
    key.verify(&checkpoint_message(relay_id, seq, hash), &sig)
        .is_ok()
}
