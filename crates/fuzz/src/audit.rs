//! Target for `assent-audit`: verification of a hostile log file (an
//! attacker with write access to the file, or a damaged disk).

use assent_audit::{verify_reader, AuditLog, Fields, VerifyErrorKind};

use crate::alloc::Meter;
use crate::{linear_budget, outcome, Outcome};

pub fn audit_verify(data: &[u8]) -> Outcome {
    let meter = Meter::start();
    let verified = verify_reader(data);
    meter.check("audit_verify", linear_budget(data.len()));
    match verified {
        Ok(count) => {
            // One record per line, every line complete.
            let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
            assert_eq!(count, lines, "audit_verify: count differs from lines");
            assert!(data.is_empty() || data.ends_with(b"\n"));
            append_continues_the_chain(data, count);
            outcome("ok")
        }
        Err(e) => {
            // The seq named is a record the file got to, never past the end.
            let lines = data.split(|&b| b == b'\n').count() as u64;
            if !matches!(e.kind, VerifyErrorKind::SeqOutOfOrder { .. }) {
                assert!(
                    e.seq >= 1 && e.seq <= lines.max(1),
                    "audit_verify: names seq {} in a file of {lines} lines",
                    e.seq
                );
            }
            outcome(&e.kind.to_string())
        }
    }
}

/// A log that verifies can be opened and appended to, and the result still
/// verifies with one more record.
fn append_continues_the_chain(data: &[u8], count: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, data).expect("write log");
    let mut log = AuditLog::open(&path).expect("a verified log opens");
    assert_eq!(log.next_seq(), count + 1);
    log.append("fuzz.appended", Fields::new()).expect("append");
    drop(log);
    let after = std::fs::read(&path).expect("read log");
    assert_eq!(verify_reader(&after[..]), Ok(count + 1));
}
