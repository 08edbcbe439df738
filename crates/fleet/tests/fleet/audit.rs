//! The central audit: shipping, the chain triggers, verification.

use assent_audit::ZERO_HASH;
use assent_fleet::{checkpoint_message, FleetError, ProblemKind};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::common::{migrated, records, relay};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

#[tokio::test]
async fn shipping_is_idempotent_and_a_different_hash_is_a_conflict() {
    let (_pg, url) = migrated().await;
    let a = relay(&url, "a").await;
    let b = relay(&url, "b").await;
    let log = records(6);
    assert_eq!(a.acked_seq().await.unwrap(), 0);
    assert_eq!(a.ship(&log[..4]).await.unwrap(), 4);
    // A lost reply: the relay resends an overlapping batch.
    assert_eq!(a.ship(&log[2..6]).await.unwrap(), 6);
    assert_eq!(a.ship(&log[..6]).await.unwrap(), 6);
    assert_eq!(a.ship(&[]).await.unwrap(), 6);
    // Another relay's chain is separate (the same records are fine there).
    assert_eq!(b.ship(&log[..2]).await.unwrap(), 2);

    let other = records(3); // same seqs, other times: other hashes
    let e = a.ship(&other[1..3]).await.unwrap_err();
    assert!(
        matches!(e, FleetError::Conflict { ref relay_id, seq: 2 } if relay_id == "a"),
        "{e:?}"
    );

    let all = a.audit_records(None, 100).await.unwrap();
    assert_eq!(all.len(), 8);
    let firsts: Vec<_> = all
        .iter()
        .filter(|r| r.record.seq == 1)
        .map(|r| r.relay_id.as_str())
        .collect();
    assert_eq!(firsts, ["a", "b"], "time, then relay id");
    assert_eq!(
        all[0].record, log[0],
        "stored byte for byte, NUL and floats included"
    );
    let since = a.audit_records(Some(&log[5].time), 100).await.unwrap();
    assert!(since.iter().all(|r| r.record.time >= log[5].time) && !since.is_empty());
    assert_eq!(a.audit_records(None, 3).await.unwrap().len(), 3);
}

#[tokio::test]
async fn gaps_and_wrong_links_are_refused() {
    let (pg, url) = migrated().await;
    let a = relay(&url, "a").await;
    let log = records(5);
    // Seq 3 without seq 1 and 2: a gap.
    let e = a.ship(&log[2..4]).await.unwrap_err();
    assert!(
        matches!(e, FleetError::ChainRefused(ref m) if m.contains("gap")),
        "{e:?}"
    );
    assert_eq!(
        a.acked_seq().await.unwrap(),
        0,
        "the whole batch was refused"
    );
    // A batch that is not consecutive never leaves the relay.
    let e = a.ship(&[log[0].clone(), log[2].clone()]).await.unwrap_err();
    assert!(matches!(e, FleetError::BadRecord { seq: 3, .. }), "{e:?}");
    // A record whose hash is not its content's.
    let mut forged = log[0].clone();
    forged.event = "forged".into();
    assert!(matches!(
        a.ship(&[forged]).await,
        Err(FleetError::BadRecord { seq: 1, .. })
    ));
    a.ship(&log[..2]).await.unwrap();

    // Straight SQL past the client checks: the triggers still refuse.
    let insert = |seq: u64, prev: &str| {
        let hash = "ab".repeat(32);
        format!(
            "INSERT INTO audit_events (relay_id, seq, time, event, prev, hash, record, received_ms)
             VALUES ('a', {seq}, 't', 'e', '{prev}', '{hash}',
                     '{{\"seq\":{seq},\"prev\":\"{prev}\",\"hash\":\"{hash}\"}}', 0)"
        )
    };
    let e = pg
        .psql("fleet", &insert(3, ZERO_HASH))
        .unwrap_err()
        .to_string();
    assert!(e.contains("prev does not match"), "{e}");
    let e = pg
        .psql("fleet", &insert(4, &log[2].hash))
        .unwrap_err()
        .to_string();
    assert!(e.contains("gap"), "{e}");
    let e = pg
        .psql("fleet", &insert(1, &"1".repeat(64)).replace("'a'", "'z'"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("64 zeros"), "{e}");
    assert_eq!(a.acked_seq().await.unwrap(), 2);
}

#[tokio::test]
async fn verify_fleet_finds_a_superuser_rewrite_and_bad_checkpoints() {
    let (pg, url) = migrated().await;
    let a = relay(&url, "a").await;
    let b = relay(&url, "b").await;
    let log = records(5);
    a.ship(&log).await.unwrap();
    b.ship(&log[..3]).await.unwrap();
    let (ka, kb) = (key(1), key(2));
    let sign = |k: &SigningKey, relay: &str, seq: u64, hash: &str| {
        k.sign(&checkpoint_message(relay, seq, hash)).to_bytes()
    };
    a.checkpoint(5, &log[4].hash, &sign(&ka, "a", 5, &log[4].hash))
        .await
        .unwrap();
    a.checkpoint(5, &log[4].hash, &sign(&ka, "a", 5, &log[4].hash))
        .await
        .unwrap();
    b.checkpoint(3, &log[2].hash, &sign(&kb, "b", 3, &log[2].hash))
        .await
        .unwrap();
    let keys = |relay: &str| -> Option<VerifyingKey> {
        match relay {
            "a" => Some(key(1).verifying_key()),
            "b" => Some(key(2).verifying_key()),
            _ => None,
        }
    };
    let clean = a.verify_fleet(keys).await.unwrap();
    assert_eq!(clean.len(), 2);
    for v in &clean {
        assert!(v.problems.is_empty(), "{v:?}");
    }
    assert_eq!(
        (clean[0].records, clean[0].last_seq, clean[0].checkpoints),
        (5, 5, 1)
    );

    // A superuser switches the triggers off and edits a stored record.
    pg.psql(
        "fleet",
        "SET session_replication_role = replica;
         UPDATE audit_events
         SET record = replace(record::text, 'session_note', 'session_nope')::json
         WHERE relay_id = 'a' AND seq = 2",
    )
    .unwrap();
    // b: a checkpoint signed by the wrong key, and one past the chain's end.
    b.checkpoint(2, &log[1].hash, &sign(&ka, "b", 2, &log[1].hash))
        .await
        .unwrap();
    b.checkpoint(9, &log[4].hash, &sign(&kb, "b", 9, &log[4].hash))
        .await
        .unwrap();

    let verdicts = a.verify_fleet(keys).await.unwrap();
    let (va, vb) = (&verdicts[0], &verdicts[1]);
    assert_eq!(va.relay_id, "a");
    assert!(
        va.problems
            .iter()
            .any(|p| p.seq == 2 && p.kind == ProblemKind::HashMismatch),
        "{va:?}"
    );
    assert_eq!(vb.relay_id, "b");
    let kinds: Vec<_> = vb
        .problems
        .iter()
        .map(|p| (p.seq, p.kind.clone()))
        .collect();
    assert!(
        kinds.contains(&(2, ProblemKind::BadCheckpointSignature)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(9, ProblemKind::CheckpointBeyondChain)),
        "{kinds:?}"
    );

    // Rewriting with a recomputed hash breaks the next link and the checkpoint.
    let mut rewritten = log[4].clone();
    rewritten.event = "quiet".into();
    rewritten.hash = rewritten.recompute_hash();
    let line = rewritten.to_line().replace('\'', "''");
    pg.psql(
        "fleet",
        &format!(
            "SET session_replication_role = replica;
             UPDATE audit_events SET record = '{line}', hash = '{}'
             WHERE relay_id = 'a' AND seq = 5",
            rewritten.hash
        ),
    )
    .unwrap();
    let va = &a.verify_fleet(keys).await.unwrap()[0];
    assert!(
        va.problems
            .iter()
            .any(|p| p.seq == 5 && p.kind == ProblemKind::CheckpointMismatch),
        "{va:?}"
    );
    // Without a key, checkpoints cannot be trusted and say so.
    let none = a.verify_fleet(|_| None).await.unwrap();
    assert!(none[1]
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::NoKey));
}
