//! Relays, leases and the session directory.

use std::time::Duration;

use assent_fleet::{Fleet, FleetError, NewSession, SessionState};

use crate::common::{config, migrated, relay};

fn session(id: &str) -> NewSession {
    NewSession {
        session_id: id.into(),
        technician: "alice".into(),
        technician_key_hex: "ab12".into(),
        device: Some("laptop".into()),
        phase: "waiting".into(),
    }
}

#[tokio::test]
async fn sessions_of_a_relay_whose_lease_expired_show_as_lost() {
    let (_pg, url) = migrated().await;
    let a = relay(&url, "a").await;
    let b = relay(&url, "b").await;
    a.session_started(&session("s1")).await.unwrap();
    a.session_started(&session("s1")).await.unwrap();
    b.session_started(&session("s2")).await.unwrap();
    assert!(matches!(
        b.session_started(&session("s1")).await,
        Err(FleetError::Db { .. })
    ));
    assert!(a.session_phase("s1", "live").await.unwrap());
    assert!(
        !b.session_phase("s1", "live").await.unwrap(),
        "not b's session"
    );

    let all = b.sessions().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].relay_id.as_str(), all[0].phase.as_str()),
        ("a", "live")
    );
    assert!(all.iter().all(|s| s.state == SessionState::Live));
    assert!(b.expired_relays().await.unwrap().is_empty());

    // a stops renewing.
    a.renew_lease(Duration::from_millis(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let expired = b.expired_relays().await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].relay_id, "a");
    let all = b.sessions().await.unwrap();
    let s1 = all.iter().find(|s| s.session_id == "s1").unwrap();
    let s2 = all.iter().find(|s| s.session_id == "s2").unwrap();
    assert_eq!(
        (s1.state, s2.state),
        (SessionState::Lost, SessionState::Live)
    );

    // a restarts: it ends what died with it, and is live again.
    let a = Fleet::connect(config(&url, "a")).await.unwrap();
    a.register("a-key", Duration::from_secs(60)).await.unwrap();
    let pending = a.pending_ends_for_me().await.unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|s| s.session_id.as_str())
            .collect::<Vec<_>>(),
        ["s1"]
    );
    assert!(a
        .session_ended("s1", "recovered_after_crash")
        .await
        .unwrap());
    assert!(!a
        .session_ended("s1", "recovered_after_crash")
        .await
        .unwrap());
    assert!(a.pending_ends_for_me().await.unwrap().is_empty());
    let all = b.sessions().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].session_id, "s2");
    assert_eq!(all[0].device.as_deref(), Some("laptop"));
}

#[tokio::test]
async fn a_relay_id_cannot_be_taken_with_another_key() {
    let (_pg, url) = migrated().await;
    let a = relay(&url, "a").await;
    a.register("a-key", Duration::from_secs(5)).await.unwrap();
    let impostor = Fleet::connect(config(&url, "a")).await.unwrap();
    let e = impostor
        .register("other-key", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(e, FleetError::KeyMismatch(ref id) if id == "a"),
        "{e:?}"
    );
    let ghost = Fleet::connect(config(&url, "ghost")).await.unwrap();
    let e = ghost.renew_lease(Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(e, FleetError::NotRegistered(_)), "{e:?}");
    assert_eq!(
        a.relay_keys().await.unwrap(),
        [("a".to_string(), "a-key".to_string())]
    );
}
