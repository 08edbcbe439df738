use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::macros::datetime;
use time::OffsetDateTime;

use crate::*;

const FIXED: OffsetDateTime = datetime!(2026-11-23 14:00:00.123 UTC);

fn fields(v: Value) -> Fields {
    match v {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Fields that exercise nesting, arrays, numbers, escapes and non-ASCII.
fn sample_fields(i: u64) -> Fields {
    fields(json!({
        "session": format!("s-{i}"),
        "technician": "alice",
        "reason": "printer \"jam\"\nsecond line, café",
        "count": i * 7,
        "detail": {"z": [1, 2, {"b": true, "a": null}], "a": -3},
    }))
}

fn log_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("logs").join("audit.jsonl")
}

/// Writes `n` records with the fixed clock and returns the path.
fn write_log(dir: &tempfile::TempDir, n: u64) -> PathBuf {
    let path = log_path(dir);
    let mut log = AuditLog::open(&path).unwrap();
    for i in 1..=n {
        log.append_batch_at(vec![("session.start".into(), sample_fields(i))], FIXED)
            .unwrap();
    }
    path
}

/// The file's lines, each with its newline.
fn lines(path: &Path) -> Vec<Vec<u8>> {
    fs::read(path)
        .unwrap()
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn check(lines: &[Vec<u8>]) -> Result<u64, VerifyError> {
    verify_reader(&lines.concat()[..])
}

fn err(seq: u64, kind: VerifyErrorKind) -> Result<u64, VerifyError> {
    Err(VerifyError { seq, kind })
}

#[test]
fn append_three_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut log = AuditLog::open(&path).unwrap();
    for i in 1..=3 {
        let rec = log.append("session.start", sample_fields(i)).unwrap();
        assert_eq!(rec.seq, i);
    }
    assert_eq!(log.next_seq(), 4);
    assert_eq!(log.path(), path);
    assert_eq!(verify(&path), Ok(3));
    assert_eq!(read_records(&path).unwrap().len(), 3);
}

#[test]
fn chain_fields_are_linked() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut log = AuditLog::open(&path).unwrap();
    let written: Vec<Record> = (1..=4)
        .map(|i| log.append("consent.granted", sample_fields(i)).unwrap())
        .collect();
    assert_eq!(read_records(&path).unwrap(), written);

    assert_eq!(written[0].prev, ZERO_HASH);
    assert_eq!(ZERO_HASH.len(), 64);
    for pair in written.windows(2) {
        assert_eq!(pair[1].prev, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    for rec in &written {
        assert_eq!(rec.hash.len(), 64);
        assert!(rec
            .hash
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        assert!(rec.time.ends_with('Z'), "{}", rec.time);
        OffsetDateTime::parse(&rec.time, &time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(
            rec.get_str("session"),
            Some(format!("s-{}", rec.seq).as_str())
        );
        assert_eq!(rec.get_str("event"), Some("consent.granted"));
        assert_eq!(rec.get_str("count"), None);
        let obj = rec.to_json();
        assert_eq!(obj["seq"], json!(rec.seq));
        assert_eq!(obj["hash"], json!(rec.hash));
        assert_eq!(obj["technician"], json!("alice"));
    }
    assert_eq!(log.last_hash(), written[3].hash);
}

/// Pins the exact line format and hash input, for anyone checking the log
/// with other tools.
#[test]
fn line_format_and_hash_input_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut log = AuditLog::open(&path).unwrap();
    let f = fields(json!({"technician": "alice", "session": "s1", "x": {"b": 1, "a": [2.5]}}));
    let rec = log
        .append_batch_at(vec![("session.start".into(), f)], FIXED)
        .unwrap()
        .remove(0);
    let unhashed = format!(
        r#"{{"event":"session.start","prev":"{ZERO_HASH}","seq":1,"session":"s1","technician":"alice","time":"2026-11-23T14:00:00.123Z","x":{{"a":[2.5],"b":1}}}}"#
    );
    let hash = hex::encode(Sha256::digest(unhashed.as_bytes()));
    assert_eq!(rec.hash, hash);
    let line = format!(
        r#"{{"event":"session.start","hash":"{hash}","prev":"{ZERO_HASH}","seq":1,"session":"s1","technician":"alice","time":"2026-11-23T14:00:00.123Z","x":{{"a":[2.5],"b":1}}}}"#
    ) + "\n";
    assert_eq!(fs::read_to_string(&path).unwrap(), line);
}

#[test]
fn reopen_continues_seq_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(&dir, 2);
    let before = read_records(&path).unwrap();

    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!(log.next_seq(), 3);
    assert_eq!(log.last_hash(), before[1].hash);
    let rec = log.append("session.end", Fields::new()).unwrap();
    assert_eq!(rec.seq, 3);
    assert_eq!(rec.prev, before[1].hash);
    drop(log);

    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.next_seq(), 4);
    assert_eq!(log.last_hash(), rec.hash);
    assert_eq!(verify(&path), Ok(3));
}

#[test]
fn empty_or_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    assert!(matches!(
        verify(&path),
        Err(VerifyError {
            kind: VerifyErrorKind::Io(_),
            ..
        })
    ));
    let log = AuditLog::open(&path).unwrap();
    assert!(path.exists());
    assert_eq!(log.next_seq(), 1);
    assert_eq!(log.last_hash(), ZERO_HASH);
    assert_eq!(verify(&path), Ok(0));
    assert_eq!(verify_reader(&b""[..]), Ok(0));
    assert_eq!(read_records(&path).unwrap(), Vec::new());
}

/// Changes one byte to another, keeping digits digits and letters letters so
/// the JSON still parses where the byte was inside a value or key.
fn flip(b: u8) -> u8 {
    match b {
        b'0'..=b'8' | b'a'..=b'y' | b'A'..=b'Y' => b + 1,
        b'9' => b'0',
        b'z' => b'a',
        b'Z' => b'A',
        // Punctuation or part of a multi-byte character: breaks the JSON
        // or its UTF-8.
        _ => b'x',
    }
}

#[test]
fn every_single_byte_edit_is_detected_at_its_record() {
    let dir = tempfile::tempdir().unwrap();
    // Past 9 records so some `seq` values have two digits.
    let original = lines(&write_log(&dir, 11));
    assert_eq!(check(&original), Ok(11));
    let mut edits = 0;
    for (i, line) in original.iter().enumerate() {
        let seq = i as u64 + 1;
        // Every byte but the newline.
        for pos in 0..line.len() - 1 {
            let mut tampered = original.clone();
            tampered[i][pos] = flip(line[pos]);
            // A parsable record is reported under the seq written in it,
            // which differs from its position only if the edit hit `seq`.
            let written_seq = serde_json::from_slice::<Value>(&tampered[i])
                .ok()
                .and_then(|v| v.get("seq")?.as_u64())
                .unwrap_or(seq);
            let e = check(&tampered).expect_err("edit not detected");
            assert_eq!(e.seq, written_seq, "line {seq} byte {pos}: {e}");
            if written_seq != seq {
                assert_eq!(
                    e.kind,
                    VerifyErrorKind::SeqOutOfOrder {
                        expected: seq,
                        found: written_seq
                    }
                );
            }
            edits += 1;
        }
    }
    assert!(edits > 11 * 200, "only {edits} edits tried");
}

#[test]
fn edits_report_the_right_kind() {
    let dir = tempfile::tempdir().unwrap();
    let original = lines(&write_log(&dir, 3));
    let edit = |from: &str, to: &str| {
        let mut l = original.clone();
        let s = String::from_utf8(l[1].clone()).unwrap();
        assert!(s.contains(from));
        l[1] = s.replacen(from, to, 1).into_bytes();
        check(&l)
    };
    assert_eq!(
        edit("alice", "mallory"),
        err(2, VerifyErrorKind::HashMismatch)
    );
    // An edited `prev` is a changed record, not a missing predecessor.
    let prev = format!("\"prev\":\"{}", &read_hash(&original[0])[..4]);
    assert_eq!(
        edit(&prev, "\"prev\":\"0000"),
        err(2, VerifyErrorKind::HashMismatch)
    );
    assert!(matches!(
        edit("\"event\":", "\"evnt\":"),
        Err(VerifyError { seq: 2, kind: VerifyErrorKind::Malformed(m) }) if m.contains("event")
    ));
}

fn read_hash(line: &[u8]) -> String {
    let v: Value = serde_json::from_slice(line).unwrap();
    v["hash"].as_str().unwrap().to_string()
}

#[test]
fn deleted_record_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let original = lines(&write_log(&dir, 6));
    let mut l = original.clone();
    l.remove(4);
    assert_eq!(
        check(&l),
        err(
            6,
            VerifyErrorKind::SeqOutOfOrder {
                expected: 5,
                found: 6
            }
        )
    );
    let mut l = original.clone();
    l.remove(0);
    assert_eq!(
        check(&l),
        err(
            2,
            VerifyErrorKind::SeqOutOfOrder {
                expected: 1,
                found: 2
            }
        )
    );
}

#[test]
fn inserted_copy_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let original = lines(&write_log(&dir, 5));
    let mut l = original.clone();
    l.insert(3, original[1].clone());
    assert_eq!(
        check(&l),
        err(
            2,
            VerifyErrorKind::SeqOutOfOrder {
                expected: 4,
                found: 2
            }
        )
    );
    // Appended after the end, too.
    let mut l = original.clone();
    l.push(original[4].clone());
    assert_eq!(
        check(&l),
        err(
            5,
            VerifyErrorKind::SeqOutOfOrder {
                expected: 6,
                found: 5
            }
        )
    );
}

#[test]
fn swapped_records_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = lines(&write_log(&dir, 5));
    l.swap(2, 3);
    assert_eq!(
        check(&l),
        err(
            4,
            VerifyErrorKind::SeqOutOfOrder {
                expected: 3,
                found: 4
            }
        )
    );
}

/// A record that is intact and correctly numbered but was written after a
/// different predecessor (e.g. spliced in from another log).
#[test]
fn spliced_record_is_a_prev_mismatch() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let a = lines(&write_log(&dir_a, 3));
    let path_b = log_path(&dir_b);
    let mut log_b = AuditLog::open(&path_b).unwrap();
    for i in 1..=3 {
        log_b
            .append_batch_at(vec![("other".into(), sample_fields(i))], FIXED)
            .unwrap();
    }
    let b = lines(&path_b);
    assert_eq!(check(&b), Ok(3));
    let spliced = vec![a[0].clone(), b[1].clone(), b[2].clone()];
    assert_eq!(check(&spliced), err(2, VerifyErrorKind::PrevMismatch));
}

#[test]
fn truncated_last_line_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(&dir, 3);
    let bytes = fs::read(&path).unwrap();
    // Only the newline missing: the JSON is complete but the write was not.
    let no_newline = &bytes[..bytes.len() - 1];
    assert_eq!(
        verify_reader(no_newline),
        err(3, VerifyErrorKind::TruncatedLastLine)
    );
    let half = &bytes[..bytes.len() - 40];
    assert_eq!(
        verify_reader(half),
        err(3, VerifyErrorKind::TruncatedLastLine)
    );
    fs::write(&path, half).unwrap();
    assert_eq!(verify(&path), err(3, VerifyErrorKind::TruncatedLastLine));
}

#[test]
fn malformed_lines_are_reported_at_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let original = lines(&write_log(&dir, 2));
    for junk in [
        &b"not json\n"[..],
        b"\n",
        b"[1,2]\n",
        b"{\"seq\":\"3\"}\n",
        b"{\"seq\":3.0,\"time\":\"t\",\"event\":\"e\",\"prev\":\"p\",\"hash\":\"h\"}\n",
    ] {
        let mut l = original.clone();
        l.push(junk.to_vec());
        assert!(
            matches!(
                check(&l),
                Err(VerifyError {
                    seq: 3,
                    kind: VerifyErrorKind::Malformed(_)
                })
            ),
            "{:?}",
            String::from_utf8_lossy(junk)
        );
    }
    // Deep nesting must be an error, not a stack overflow.
    let mut deep = vec![b'['; 100_000];
    deep.push(b'\n');
    assert!(matches!(
        verify_reader(&deep[..]),
        Err(VerifyError {
            seq: 1,
            kind: VerifyErrorKind::Malformed(_)
        })
    ));
    let path = dir.path().join("junk.jsonl");
    fs::write(&path, "{}\n").unwrap();
    assert!(matches!(
        read_records(&path),
        Err(AuditError::Unparsable { line: 1, .. })
    ));
}

#[test]
fn overlong_line_is_rejected_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let original = lines(&write_log(&dir, 1));
    // An endless line: verification must stop after the limit.
    let endless = std::io::BufReader::new(std::io::repeat(b'a'));
    let first = std::io::Cursor::new(original[0].clone());
    assert_eq!(
        verify_reader(std::io::Read::chain(first, endless)),
        err(2, VerifyErrorKind::LineTooLong)
    );
    let mut long = vec![b' '; MAX_LINE_LEN + 1];
    long.push(b'\n');
    assert_eq!(
        verify_reader(&long[..]),
        err(1, VerifyErrorKind::LineTooLong)
    );
    // Exactly at the limit is a line like any other (here: malformed).
    assert!(matches!(
        verify_reader(&long[1..]),
        Err(VerifyError {
            kind: VerifyErrorKind::Malformed(_),
            ..
        })
    ));

    // The writer refuses to produce such a line.
    let path = log_path(&dir);
    let mut log = AuditLog::open(&path).unwrap();
    let huge = fields(json!({ "blob": "a".repeat(MAX_LINE_LEN) }));
    assert!(matches!(
        log.append("big", huge),
        Err(AuditError::RecordTooLarge { seq: 2, .. })
    ));
    assert_eq!(log.next_seq(), 2);
    assert_eq!(verify(&path), Ok(1));
}

#[test]
fn open_refuses_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(&dir, 3);
    let good = fs::read(&path).unwrap();

    let mut l = lines(&path);
    let pos = l[1].iter().position(|&b| b == b'a').unwrap();
    l[1][pos] = b'b';
    fs::write(&path, l.concat()).unwrap();
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::Corrupt(VerifyError {
            seq: 2,
            kind: VerifyErrorKind::HashMismatch
        }))
    ));
    // Nothing was appended after the damage.
    assert_eq!(fs::read(&path).unwrap(), l.concat());

    fs::write(&path, &good[..good.len() - 1]).unwrap();
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::Corrupt(VerifyError {
            seq: 3,
            kind: VerifyErrorKind::TruncatedLastLine
        }))
    ));

    fs::write(&path, b"garbage\n").unwrap();
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::Corrupt(VerifyError {
            seq: 1,
            kind: VerifyErrorKind::Malformed(_)
        }))
    ));

    fs::write(&path, &good).unwrap();
    assert_eq!(AuditLog::open(&path).unwrap().next_seq(), 4);
}

#[test]
fn second_open_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut first = AuditLog::open(&path).unwrap();
    match AuditLog::open(&path) {
        Err(AuditError::Locked(p)) => assert_eq!(p, path),
        other => panic!("expected Locked, got {other:?}"),
    }
    first.append("still.works", Fields::new()).unwrap();
    drop(first);
    let second = AuditLog::open(&path).unwrap();
    assert_eq!(second.next_seq(), 2);
}

#[test]
fn reserved_fields_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut log = AuditLog::open(&path).unwrap();
    for key in RESERVED_FIELDS {
        let mut f = sample_fields(1);
        f.insert(key.to_string(), json!(1));
        match log.append("x", f) {
            Err(AuditError::ReservedField(k)) => assert_eq!(k, key),
            other => panic!("{key}: expected ReservedField, got {other:?}"),
        }
    }
    // In a batch, one bad entry means nothing is written.
    let batch = vec![
        ("ok".to_string(), sample_fields(1)),
        ("bad".to_string(), fields(json!({"hash": "x"}))),
    ];
    assert!(matches!(
        log.append_batch(batch),
        Err(AuditError::ReservedField(k)) if k == "hash"
    ));
    // Nested keys with these names are just data.
    log.append("ok", fields(json!({"inner": {"seq": 9, "hash": "h"}})))
        .unwrap();
    assert_eq!(verify(&path), Ok(1));
}

#[test]
fn overly_deep_field_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut log = AuditLog::open(&path).unwrap();
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    assert!(matches!(
        log.append("deep", fields(json!({ "d": deep }))),
        Err(AuditError::FieldTooDeep(k)) if k == "d"
    ));
    // As deep as allowed still verifies.
    let mut ok = json!(1);
    for _ in 0..64 {
        ok = json!({ "k": ok });
    }
    log.append("deep", fields(json!({ "d": ok }))).unwrap();
    assert_eq!(verify(&path), Ok(1));
}

#[test]
fn batch_makes_the_same_chain_as_single_appends() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let entries: Vec<(String, Fields)> = (1..=4)
        .map(|i| (format!("event.{i}"), sample_fields(i)))
        .collect();

    let path_a = log_path(&dir_a);
    let mut a = AuditLog::open(&path_a).unwrap();
    let mut single = Vec::new();
    for e in entries.clone() {
        single.extend(a.append_batch_at(vec![e], FIXED).unwrap());
    }
    let path_b = log_path(&dir_b);
    let mut b = AuditLog::open(&path_b).unwrap();
    let batched = b.append_batch_at(entries.clone(), FIXED).unwrap();

    assert_eq!(single, batched);
    assert_eq!(fs::read(&path_a).unwrap(), fs::read(&path_b).unwrap());
    assert_eq!(a.last_hash(), b.last_hash());
    assert_eq!(b.next_seq(), 5);

    // With the real clock, a batch continues an existing chain.
    let more = b.append_batch(entries).unwrap();
    assert_eq!(more.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 6, 7, 8]);
    assert_eq!(more[0].prev, batched[3].hash);
    assert!(b.append_batch(Vec::new()).unwrap().is_empty());
    assert_eq!(b.next_seq(), 9);
    assert_eq!(verify(&path_b), Ok(8));
}

#[test]
fn canonical_form_sorts_keys_at_every_level() {
    let a: Value =
        serde_json::from_str(r#"{"b": 1, "a": {"d": [ {"y": 2, "x": 1} ], "c": "é\n"}}"#).unwrap();
    let b: Value =
        serde_json::from_str(r#"{"a": {"c": "é\n", "d": [{"x": 1, "y": 2}]}, "b": 1}"#).unwrap();
    let expected = r#"{"a":{"c":"é\n","d":[{"x":1,"y":2}]},"b":1}"#;
    assert_eq!(canonical_json(&a), expected);
    assert_eq!(canonical_json(&b), expected);
    // Byte order, not locale order: uppercase before lowercase.
    assert_eq!(
        canonical_json(&json!({"b": 0, "B": 0, "a": 0})),
        r#"{"B":0,"a":0,"b":0}"#
    );
    let tricky = json!("q\"\\\u{1}\u{8}\t\u{1f}/\u{7f}é");
    let escaped = canonical_json(&tricky);
    assert_eq!(escaped, "\"q\\\"\\\\\\u0001\\b\\t\\u001f/\u{7f}é\"");
    assert_eq!(serde_json::from_str::<Value>(&escaped).unwrap(), tricky);
}

#[test]
fn key_order_does_not_change_the_hash() {
    let forward: Fields =
        serde_json::from_str(r#"{"a": 1, "m": {"x": 1, "y": 2}, "z": 3}"#).unwrap();
    let backward: Fields =
        serde_json::from_str(r#"{"z": 3, "m": {"y": 2, "x": 1}, "a": 1}"#).unwrap();
    let hash_of = |f: Fields| {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(&log_path(&dir)).unwrap();
        log.append_batch_at(vec![("e".into(), f)], FIXED).unwrap()[0]
            .hash
            .clone()
    };
    assert_eq!(hash_of(forward), hash_of(backward));

    // The verifier hashes the canonical form, not the bytes on the line: the
    // same record written with its keys reversed and spaced out still
    // verifies.
    let dir = tempfile::tempdir().unwrap();
    let original = lines(&write_log(&dir, 2));
    let rewritten: Vec<Vec<u8>> = original
        .iter()
        .map(|line| {
            let v: Value = serde_json::from_slice(line).unwrap();
            let mut s = String::from("{ ");
            let obj = v.as_object().unwrap();
            let mut keys: Vec<&String> = obj.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().rev().enumerate() {
                if i > 0 {
                    s.push_str(" , ");
                }
                s.push_str(&format!("{} : {}", json!(k), obj[k]));
            }
            s.push_str(" }\n");
            s.into_bytes()
        })
        .collect();
    assert_ne!(rewritten, original);
    assert_eq!(check(&rewritten), Ok(2));
}

/// Valid lines of a 4-record log, for the fuzz tests.
fn valid_lines() -> &'static [Vec<u8>] {
    static LINES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    LINES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        lines(&write_log(&dir, 4))
    })
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Non-finite floats become null, as in serde_json.
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::from),
            btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn verify_reader_never_panics_on_bytes(bytes in vec(any::<u8>(), 0..4096)) {
        let _ = verify_reader(&bytes[..]);
    }

    /// Valid lines picked, repeated, reordered, byte-edited or replaced.
    #[test]
    fn verify_reader_never_panics_on_lines(
        picks in vec(
            (
                0usize..4,
                prop::option::weighted(0.2, any::<(usize, u8)>()),
                prop::option::weighted(0.1, any::<String>()),
            ),
            0..8,
        ),
        final_newline in any::<bool>(),
    ) {
        let valid = valid_lines();
        let mut text = Vec::new();
        let mut untouched = true;
        for (i, (pick, edit, replacement)) in picks.iter().enumerate() {
            let mut line = match replacement {
                Some(s) => s.clone().into_bytes(),
                None => valid[*pick].clone(),
            };
            if let (Some((pos, byte)), false) = (edit, line.is_empty()) {
                let pos = pos % line.len();
                line[pos] = *byte;
            }
            untouched &= *pick == i && edit.is_none() && replacement.is_none();
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
        if !final_newline {
            text.pop();
        }
        let result = verify_reader(&text[..]);
        if untouched && (final_newline || picks.is_empty()) {
            prop_assert_eq!(result, Ok(picks.len() as u64));
        }
    }
}

proptest! {
    // Each case creates and fsyncs a file.
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever JSON a caller logs, the line verifies and reads back equal:
    /// the writer never produces a log that later fails verification.
    #[test]
    fn any_fields_round_trip(
        map in btree_map(any::<String>(), arb_json(), 0..6),
        event in any::<String>(),
    ) {
        let f: Fields = map
            .into_iter()
            .filter(|(k, _)| !RESERVED_FIELDS.contains(&k.as_str()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut log = AuditLog::open(&path).unwrap();
        let rec = log.append(&event, f).unwrap();
        prop_assert_eq!(verify(&path), Ok(1));
        prop_assert_eq!(read_records(&path).unwrap(), vec![rec]);
    }
}

/// Floats the default serde_json parser reads back one ulp off (found by
/// `any_fields_round_trip`); they must still verify.
#[test]
fn floats_survive_the_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut log = AuditLog::open(&path).unwrap();
    let f = fields(json!({"x": [-3.440289262124924e-215, 0.1 + 0.2, 1e300, -0.0, 5.0]}));
    let rec = log.append("floats", f).unwrap();
    assert_eq!(verify(&path), Ok(1));
    assert_eq!(read_records(&path).unwrap(), vec![rec]);
}

#[test]
fn a_torn_last_line_is_set_aside_and_recorded_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(&dir, 3);
    let good = fs::read(&path).unwrap();
    let torn = b"{\"event\":\"session_start\",\"seq\":4,\"ti".to_vec();
    fs::write(&path, [good.clone(), torn.clone()].concat()).unwrap();
    // Plain open still refuses; repairing open sets the tail aside.
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::Corrupt(VerifyError {
            seq: 4,
            kind: VerifyErrorKind::TruncatedLastLine
        }))
    ));
    let (log, repaired) = AuditLog::open_repairing(&path).unwrap();
    drop(log);
    let repaired = repaired.expect("the torn tail is reported");
    assert_eq!(repaired.seq, 4);
    assert_eq!(repaired.bytes, torn.len() as u64);
    assert_eq!(repaired.sha256, hex::encode(Sha256::digest(&torn)));
    assert_eq!(fs::read(&repaired.saved_to).unwrap(), torn);
    // The chain goes on with a record of the repair in place of the torn one.
    assert_eq!(verify(&path), Ok(4));
    let records = read_records(&path).unwrap();
    let last = records.last().unwrap();
    assert_eq!(last.event, "audit_repaired");
    assert_eq!(last.fields["torn_bytes"], json!(torn.len()));
    assert_eq!(
        last.fields["saved_to"],
        json!(repaired.saved_to.display().to_string())
    );
    assert!(fs::read(&path).unwrap().starts_with(&good));
    // Nothing more to repair.
    let (_log, again) = AuditLog::open_repairing(&path).unwrap();
    assert_eq!(again, None);
}

#[test]
fn repairing_open_still_refuses_damage_before_the_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(&dir, 3);
    let text = fs::read_to_string(&path).unwrap();
    let edited = text.replacen("alice", "mallory", 1);
    fs::write(&path, format!("{edited}{{\"partial")).unwrap();
    assert!(matches!(
        AuditLog::open_repairing(&path),
        Err(AuditError::Corrupt(VerifyError {
            seq: 1,
            kind: VerifyErrorKind::HashMismatch
        }))
    ));
}

#[test]
fn records_cut_from_the_end_are_caught_by_the_head_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(&dir, 5);
    assert_eq!(verify(&path), Ok(5));
    let l = lines(&path);
    // Cut the last two records at a line boundary: the chain alone is fine.
    fs::write(&path, l[..3].concat()).unwrap();
    assert_eq!(check(&l[..3]), Ok(3));
    assert_eq!(
        verify(&path),
        err(4, VerifyErrorKind::MissingTail { head_seq: 5 })
    );
    // And the writer refuses to append over the gap.
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::Corrupt(VerifyError {
            seq: 4,
            kind: VerifyErrorKind::MissingTail { head_seq: 5 }
        }))
    ));
    // Replacing the tail with other valid records does not fool it either.
    fs::write(&path, l[..4].concat()).unwrap();
    let head = fs::read_to_string(crate::log::head_path(&path)).unwrap();
    fs::remove_file(crate::log::head_path(&path)).unwrap();
    {
        let mut log = AuditLog::open(&path).unwrap();
        log.append("forged", Fields::new()).unwrap();
    }
    fs::write(crate::log::head_path(&path), head).unwrap();
    assert_eq!(verify(&path), err(5, VerifyErrorKind::HeadMismatch));
}

#[test]
fn a_head_that_lags_the_log_is_fine() {
    // What a crash between the log's fsync and the head's rename leaves.
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(&dir, 2);
    let head = fs::read_to_string(crate::log::head_path(&path)).unwrap();
    {
        let mut log = AuditLog::open(&path).unwrap();
        log.append("later", Fields::new()).unwrap();
    }
    fs::write(crate::log::head_path(&path), head).unwrap();
    assert_eq!(verify(&path), Ok(3));
    assert!(AuditLog::open(&path).is_ok());
}

#[test]
fn a_record_round_trips_through_its_line_for_other_stores() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(&dir, 3);
    let records = read_records(&path).unwrap();
    for (record, line) in records.iter().zip(lines(&path)) {
        let line = line.strip_suffix(b"\n").unwrap();
        assert_eq!(record.to_line().as_bytes(), line);
        assert_eq!(record.recompute_hash(), record.hash);
        let parsed = Record::from_json(serde_json::from_slice(line).unwrap()).unwrap();
        assert_eq!(&parsed, record);
    }
    assert!(Record::from_json(json!([1])).is_err());
    assert!(Record::from_json(json!({"seq": 1})).is_err());
}
