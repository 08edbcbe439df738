//! The webhook outbox journal (`DATA_DIR/webhooks/outbox.jsonl`): one JSON
//! object a line, appended as deliveries are queued, tried and finished, so
//! what was queued survives a restart or a crash:
//!
//! - `{"op":"queued","key":K,"hook":NAME,"seq":N,"event":E,"queued_at":MS,"body":TEXT}`
//! - `{"op":"attempt","key":K,"hook":NAME,"attempts":N,"status":S}` (after a failure)
//! - `{"op":"done","key":K,"hook":NAME,"outcome":"delivered"|"failed"}`
//! - `{"op":"cursor","seq":N}` (the first line after compaction)
//!
//! [`Journal::parse`] takes any bytes: a line cut short by a crash, an
//! unknown or oversized line is skipped and counted, never a panic, and
//! what it keeps is bounded by the input.

use serde::{Deserialize, Serialize};

/// Longest body a delivery may carry.
pub const MAX_BODY: usize = 1024 * 1024;
/// Longest line read back (a body and its escapes fit).
pub const MAX_LINE: usize = 2 * MAX_BODY + 1024;
/// Deliveries waiting at most; beyond, the oldest count as skipped.
pub const MAX_PENDING: usize = 100_000;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    Queued(Queued),
    Attempt {
        key: String,
        hook: String,
        attempts: u32,
        /// The receiver's HTTP status, or 0 when none came (refused,
        /// timed out).
        status: u16,
    },
    Done {
        key: String,
        hook: String,
        outcome: Outcome,
    },
    Cursor {
        seq: u64,
    },
}

/// A delivery as queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queued {
    /// The idempotency key: 32 lowercase hex digits, the same on every attempt.
    pub key: String,
    /// The `[[webhooks]]` name it is for.
    pub hook: String,
    /// The audit record it reports.
    pub seq: u64,
    /// `note_filed`, `note_updated`, `session_summary` or `escalation`.
    pub event: String,
    /// Unix time in milliseconds.
    pub queued_at: u64,
    /// The exact JSON body POSTed (and signed).
    pub body: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Delivered,
    Failed,
}

/// A delivery not yet finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub queued: Queued,
    /// Attempts made so far (as far as the journal knows).
    pub attempts: u32,
    /// Status of the last failed attempt (0: no answer).
    pub last_status: u16,
}

/// What the journal says: the deliveries still to make, in the order they
/// were queued, and the highest audit `seq` ever queued.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Journal {
    pub pending: Vec<Pending>,
    pub fed_seq: u64,
    /// Lines that were not understood (a torn last line after a crash).
    pub skipped: usize,
}

impl Op {
    /// The line for this entry, without the newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("an outbox entry serialises")
    }
}

/// The key and hook name are what the relay writes: anything else is not a
/// line of ours.
fn plausible(key: &str, hook: &str) -> bool {
    key.len() == 32
        && key.bytes().all(|b| b.is_ascii_hexdigit())
        && !hook.is_empty()
        && hook.len() <= 64
}

impl Journal {
    /// Replays the journal's text.
    pub fn parse(text: &str) -> Journal {
        let mut j = Journal::default();
        // Index of each pending delivery by (key, hook), in `pending`.
        let mut index = std::collections::HashMap::new();
        for line in text.lines() {
            if line.trim().is_empty() {
                continue;
            }
            let op = (line.len() <= MAX_LINE)
                .then(|| serde_json::from_str::<Op>(line).ok())
                .flatten();
            if !op.as_ref().is_some_and(|op| j.apply(op, &mut index)) {
                j.skipped += 1;
            }
        }
        j.pending.retain(|p| !p.queued.key.is_empty());
        if j.pending.len() > MAX_PENDING {
            let extra = j.pending.len() - MAX_PENDING;
            j.pending.drain(..extra);
            j.skipped += extra;
        }
        j
    }

    /// `false` when the line makes no sense here.
    fn apply(
        &mut self,
        op: &Op,
        index: &mut std::collections::HashMap<(String, String), usize>,
    ) -> bool {
        match op {
            Op::Queued(q) => {
                if !plausible(&q.key, &q.hook) || q.body.len() > MAX_BODY {
                    return false;
                }
                let id = (q.key.clone(), q.hook.clone());
                if index.contains_key(&id) {
                    return false;
                }
                self.fed_seq = self.fed_seq.max(q.seq);
                index.insert(id, self.pending.len());
                self.pending.push(Pending {
                    queued: q.clone(),
                    attempts: 0,
                    last_status: 0,
                });
                true
            }
            Op::Attempt {
                key,
                hook,
                attempts,
                status,
            } => match index.get(&(key.clone(), hook.clone())) {
                Some(&i) => {
                    let p = &mut self.pending[i];
                    p.attempts = p.attempts.max(*attempts);
                    p.last_status = *status;
                    true
                }
                None => false,
            },
            Op::Done { key, hook, .. } => match index.remove(&(key.clone(), hook.clone())) {
                // Emptied in place (indexes stay valid); dropped at the end.
                Some(i) => {
                    self.pending[i].queued.key.clear();
                    self.pending[i].queued.body.clear();
                    true
                }
                None => false,
            },
            Op::Cursor { seq } => {
                self.fed_seq = self.fed_seq.max(*seq);
                true
            }
        }
    }

    /// The journal rewritten with only what is still pending: the cursor
    /// first, then each delivery and its attempts so far.
    pub fn compacted(&self) -> String {
        let mut out = Op::Cursor { seq: self.fed_seq }.to_line();
        out.push('\n');
        for p in &self.pending {
            out.push_str(&Op::Queued(p.queued.clone()).to_line());
            out.push('\n');
            if p.attempts > 0 || p.last_status != 0 {
                let attempt = Op::Attempt {
                    key: p.queued.key.clone(),
                    hook: p.queued.hook.clone(),
                    attempts: p.attempts,
                    status: p.last_status,
                };
                out.push_str(&attempt.to_line());
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(key: char, seq: u64) -> Op {
        Op::Queued(Queued {
            key: key.to_string().repeat(32),
            hook: "hd".into(),
            seq,
            event: "note_filed".into(),
            queued_at: 1,
            body: "{\"a\":\"line\\nbreak\"}".into(),
        })
    }

    #[test]
    fn replay_keeps_what_is_pending_and_survives_a_torn_line() {
        let done = Op::Done {
            key: "a".repeat(32),
            hook: "hd".into(),
            outcome: Outcome::Delivered,
        };
        let attempt = Op::Attempt {
            key: "b".repeat(32),
            hook: "hd".into(),
            attempts: 3,
            status: 503,
        };
        let mut text = String::new();
        for op in [queued('a', 7), queued('b', 9), attempt, done] {
            text.push_str(&op.to_line());
            text.push('\n');
        }
        let torn = queued('c', 12).to_line();
        text.push_str(&torn[..torn.len() / 2]);
        let j = Journal::parse(&text);
        assert_eq!(j.pending.len(), 1);
        assert_eq!(j.pending[0].queued.seq, 9);
        assert_eq!((j.pending[0].attempts, j.pending[0].last_status), (3, 503));
        assert_eq!(j.fed_seq, 9);
        assert_eq!(j.skipped, 1);
        let again = Journal::parse(&j.compacted());
        assert_eq!(again.pending, j.pending);
        assert_eq!(again.fed_seq, 9);
        assert_eq!(again.skipped, 0);
    }

    #[test]
    fn foreign_lines_are_skipped() {
        let j = Journal::parse("{}\nnot json\n{\"op\":\"queued\"}\n\u{0}\n");
        assert_eq!(j.skipped, 4);
        assert!(j.pending.is_empty());
    }
}
