//! Invites across relays, the shared throttle, pruning.

use std::time::Duration;

use assent_fleet::{NewInvite, RedeemError};

use crate::common::{migrated, relay};

fn invite(id: &str, digest: u8, technician: &str, expires_in: Duration) -> NewInvite {
    NewInvite {
        invite_id: id.into(),
        code_digest: [digest; 32],
        technician: technician.into(),
        session_id: format!("s-{id}"),
        expires_in,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_redeems_from_separate_connections_win_once() {
    let (_pg, url) = migrated().await;
    let a = relay(&url, "a").await;
    a.create_invite(&invite("i1", 7, "alice", Duration::from_secs(60)))
        .await
        .expect("create");
    let mut relays = Vec::new();
    for i in 0..20 {
        relays.push(relay(&url, &format!("r{i}")).await);
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = relays
        .into_iter()
        .map(|r| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                r.redeem(&[7; 32]).await
            })
        })
        .collect();
    let mut won = Vec::new();
    let mut used = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(r) => won.push(r),
            Err(RedeemError::Used) => used += 1,
            Err(e) => panic!("unexpected refusal: {e:?}"),
        }
    }
    assert_eq!((won.len(), used), (1, 19));
    let w = &won[0];
    assert_eq!(
        (
            w.invite_id.as_str(),
            w.session_id.as_str(),
            w.relay_id.as_str()
        ),
        ("i1", "s-i1", "a")
    );
    assert_eq!(w.public_address, "a.example:4433");
}

#[tokio::test]
async fn refusals_are_classified() {
    let (pg, url) = migrated().await;
    let a = relay(&url, "a").await;
    let b = relay(&url, "b").await;
    a.create_invite(&invite("used", 1, "alice", Duration::from_secs(60)))
        .await
        .unwrap();
    a.create_invite(&invite("gone", 2, "alice", Duration::from_secs(60)))
        .await
        .unwrap();
    a.create_invite(&invite("old", 3, "alice", Duration::from_millis(1)))
        .await
        .unwrap();
    a.create_invite(&invite("bob1", 4, "bob", Duration::from_secs(60)))
        .await
        .unwrap();
    a.create_invite(&invite("bob2", 5, "bob", Duration::from_secs(60)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    assert_eq!(b.redeem(&[1; 32]).await.unwrap().invite_id, "used");
    assert!(matches!(a.redeem(&[1; 32]).await, Err(RedeemError::Used)));
    assert!(b.withdraw("gone").await.unwrap());
    assert!(!b.withdraw("gone").await.unwrap());
    assert!(matches!(
        b.redeem(&[2; 32]).await,
        Err(RedeemError::Withdrawn)
    ));
    assert!(matches!(
        b.redeem(&[3; 32]).await,
        Err(RedeemError::Expired)
    ));
    assert!(matches!(
        b.redeem(&[9; 32]).await,
        Err(RedeemError::Unknown)
    ));
    assert!(
        !a.withdraw("used").await.unwrap(),
        "a redeemed invite stays redeemed"
    );

    assert_eq!(b.cancel_technician("bob").await.unwrap(), 2);
    assert!(matches!(
        a.redeem(&[4; 32]).await,
        Err(RedeemError::Withdrawn)
    ));
    // The code itself is never stored, only its digest.
    let stored = pg
        .psql(
            "fleet",
            "SELECT count(*) FROM invites WHERE length(code_digest) = 32",
        )
        .unwrap();
    assert_eq!(stored, "5");

    let report = a.prune(Duration::ZERO).await.unwrap();
    assert!(report.invites >= 1, "{report:?}");
    assert!(matches!(
        a.redeem(&[3; 32]).await,
        Err(RedeemError::Unknown)
    ));
}

#[tokio::test]
async fn wrong_codes_are_counted_fleet_wide() {
    let (_pg, url) = migrated().await;
    let a = relay(&url, "a").await;
    let b = relay(&url, "b").await;
    let window = Duration::from_secs(3600);
    assert_eq!(a.code_failures(window).await.unwrap(), 0);
    assert_eq!(a.code_failure(window).await.unwrap(), 1);
    assert_eq!(b.code_failure(window).await.unwrap(), 2);
    assert_eq!(a.code_failure(window).await.unwrap(), 3);
    assert_eq!(b.code_failures(window).await.unwrap(), 3);
    // Another window length counts separately; a zero window does not fail.
    assert_eq!(a.code_failures(Duration::from_secs(60)).await.unwrap(), 0);
    assert!(a.code_failure(Duration::ZERO).await.unwrap() >= 1);
}
