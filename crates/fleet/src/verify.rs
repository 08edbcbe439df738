//! Verifying the central audit: every relay's chain and checkpoints.
//!
//! The triggers keep honest writers honest; a superuser can still switch
//! them off and rewrite rows. So verification trusts nothing stored: it
//! recomputes each record's hash from the stored text exactly as
//! `assent_audit` does, follows the `prev` links seq by seq, and checks each
//! signed checkpoint against the relay's key and against the chain's hash at
//! that seq. Rows are read in pages, so memory stays flat however long the
//! log.

use std::collections::{BTreeMap, HashMap};

use assent_audit::ZERO_HASH;
use ed25519_dalek::VerifyingKey;

use crate::audit::{checkpoint_signed, parse_record};
use crate::{col, unsigned, Fleet, FleetError};

/// Rows read per page.
const PAGE: i64 = 2000;

/// What was found wrong at one seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The stored record is not a valid record (bad JSON, missing keys).
    Malformed(String),
    /// The record's content does not hash to its `hash`: it was changed.
    HashMismatch,
    /// The indexed columns (seq, prev, hash) disagree with the record.
    ColumnMismatch,
    /// `prev` is not the hash of the record before (or, for seq 1, zeros).
    BrokenLink,
    /// Records are missing before this seq.
    Gap { missing_from: u64 },
    /// The checkpoint's signature is not the relay's.
    BadCheckpointSignature,
    /// The checkpoint is signed but names another hash than the chain's.
    CheckpointMismatch,
    /// A checkpoint names a seq the chain does not reach: records were
    /// removed from the end.
    CheckpointBeyondChain,
    /// Checkpoints exist but no key was given for this relay.
    NoKey,
}

/// One problem of one relay's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub seq: u64,
    pub kind: ProblemKind,
}

/// The verdict on one relay's part of the central audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayVerdict {
    pub relay_id: String,
    pub records: u64,
    pub last_seq: u64,
    pub checkpoints: u64,
    /// Empty when the chain and every checkpoint verify.
    pub problems: Vec<Problem>,
}

/// A stored checkpoint.
struct Checkpoint {
    hash: String,
    signature: Vec<u8>,
}

/// The walk along one relay's chain.
struct Walk {
    verdict: RelayVerdict,
    last_hash: String,
    checkpoints: BTreeMap<u64, Checkpoint>,
    key: Option<VerifyingKey>,
}

impl Walk {
    fn new(
        relay_id: String,
        checkpoints: BTreeMap<u64, Checkpoint>,
        key: Option<VerifyingKey>,
    ) -> Walk {
        Walk {
            verdict: RelayVerdict {
                relay_id,
                records: 0,
                last_seq: 0,
                checkpoints: checkpoints.len() as u64,
                problems: Vec::new(),
            },
            last_hash: ZERO_HASH.to_string(),
            checkpoints,
            key,
        }
    }

    fn problem(&mut self, seq: u64, kind: ProblemKind) {
        self.verdict.problems.push(Problem { seq, kind });
    }

    /// One stored row: its columns and its record text.
    fn step(&mut self, seq: u64, prev: &str, hash: &str, line: &str) {
        let expected = self.verdict.last_seq + 1;
        if seq != expected {
            self.problem(
                seq,
                ProblemKind::Gap {
                    missing_from: expected,
                },
            );
        }
        // The hash the next record must link to: the record's own claim,
        // or the column's if the record cannot be read.
        let mut chain_hash = hash.to_string();
        match parse_record(line) {
            Ok(record) => {
                if record.recompute_hash() != record.hash {
                    self.problem(seq, ProblemKind::HashMismatch);
                }
                if record.seq != seq || record.prev != prev || record.hash != hash {
                    self.problem(seq, ProblemKind::ColumnMismatch);
                }
                if seq == expected && record.prev != self.last_hash {
                    self.problem(seq, ProblemKind::BrokenLink);
                }
                chain_hash = record.hash;
            }
            Err(why) => self.problem(seq, ProblemKind::Malformed(why)),
        }
        if let Some(cp) = self.checkpoints.remove(&seq) {
            self.check_point(seq, &cp);
            if cp.hash != chain_hash {
                self.problem(seq, ProblemKind::CheckpointMismatch);
            }
        }
        self.verdict.records += 1;
        self.verdict.last_seq = seq;
        self.last_hash = chain_hash;
    }

    fn check_point(&mut self, seq: u64, cp: &Checkpoint) {
        match &self.key {
            None => self.problem(seq, ProblemKind::NoKey),
            Some(key) => {
                if !checkpoint_signed(key, &self.verdict.relay_id, seq, &cp.hash, &cp.signature) {
                    self.problem(seq, ProblemKind::BadCheckpointSignature);
                }
            }
        }
    }

    /// Checkpoints past the end of the chain are records cut off.
    fn finish(mut self) -> RelayVerdict {
        let rest = std::mem::take(&mut self.checkpoints);
        for (seq, cp) in rest {
            self.check_point(seq, &cp);
            self.problem(seq, ProblemKind::CheckpointBeyondChain);
        }
        self.verdict
    }
}

impl Fleet {
    /// Verifies every relay's chain in the central audit. `keys` gives each
    /// relay's checkpoint key (from the auditor's own trust, or from
    /// [`Fleet::relay_keys`] if the registry is trusted). Verdicts are
    /// sorted by relay id.
    pub async fn verify_fleet(
        &self,
        keys: impl Fn(&str) -> Option<VerifyingKey>,
    ) -> Result<Vec<RelayVerdict>, FleetError> {
        let mut checkpoints = self.load_checkpoints().await?;
        let client = self.client().await?;
        let mut verdicts = Vec::new();
        let mut walk: Option<Walk> = None;
        let (mut after_relay, mut after_seq) = (String::new(), 0i64);
        loop {
            let rows = client
                .query(
                    "SELECT relay_id, seq, prev, hash, record::text FROM audit_events
                     WHERE (relay_id, seq) > ($1, $2) ORDER BY relay_id, seq LIMIT $3",
                    &[&after_relay, &after_seq, &PAGE],
                )
                .await
                .map_err(|e| self.pg(e))?;
            for row in &rows {
                let relay_id: String = col(row, 0)?;
                let seq: i64 = col(row, 1)?;
                if walk.as_ref().map(|w| &w.verdict.relay_id) != Some(&relay_id) {
                    verdicts.extend(walk.take().map(Walk::finish));
                    let cps = checkpoints.remove(&relay_id).unwrap_or_default();
                    walk = Some(Walk::new(relay_id.clone(), cps, keys(&relay_id)));
                }
                if let Some(w) = walk.as_mut() {
                    let (prev, hash, line): (String, String, String) =
                        (col(row, 2)?, col(row, 3)?, col(row, 4)?);
                    w.step(unsigned(seq, "seq")?, &prev, &hash, &line);
                }
                (after_relay, after_seq) = (relay_id, seq);
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        verdicts.extend(walk.take().map(Walk::finish));
        // Relays with checkpoints but no records at all.
        for (relay_id, cps) in checkpoints {
            let key = keys(&relay_id);
            verdicts.push(Walk::new(relay_id, cps, key).finish());
        }
        verdicts.sort_by(|a, b| a.relay_id.cmp(&b.relay_id));
        Ok(verdicts)
    }

    async fn load_checkpoints(
        &self,
    ) -> Result<HashMap<String, BTreeMap<u64, Checkpoint>>, FleetError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT relay_id, seq, hash, signature FROM audit_checkpoints",
                &[],
            )
            .await
            .map_err(|e| self.pg(e))?;
        let mut out: HashMap<String, BTreeMap<u64, Checkpoint>> = HashMap::new();
        for row in &rows {
            let relay_id: String = col(row, 0)?;
            let seq = unsigned(col(row, 1)?, "checkpoint seq")?;
            out.entry(relay_id).or_default().insert(
                seq,
                Checkpoint {
                    hash: col(row, 2)?,
                    signature: col(row, 3)?,
                },
            );
        }
        Ok(out)
    }
}
