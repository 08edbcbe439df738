//! The control feed and the registry.

use std::time::Duration;

use assent_fleet::{Control, ControlEvent, ControlFeed, CONTROL_FEED_APPLICATION_NAME};
use serde_json::json;

use crate::common::{migrated, relay};

async fn next(feed: &mut ControlFeed) -> ControlEvent {
    tokio::time::timeout(Duration::from_secs(10), feed.recv())
        .await
        .expect("a command within 10 s")
        .expect("feed open")
}

fn kill(s: &str) -> Control {
    Control::Kill {
        session_id: s.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_arrive_in_order_and_after_a_lost_connection() {
    let (pg, url) = migrated().await;
    let a = relay(&url, "a").await;
    let b = relay(&url, "b").await;
    let mut feed = b.control_feed(b.last_control_id().await.unwrap());
    for i in 0..5 {
        a.post(&kill(&format!("s{i}"))).await.unwrap();
    }
    let mut last = 0;
    for i in 0..5 {
        let ev = next(&mut feed).await;
        assert_eq!(ev.control, kill(&format!("s{i}")));
        assert_eq!(ev.issued_by, "a");
        assert!(ev.id > last);
        last = ev.id;
    }
    // Wait until the listener is connected, then kill its connection.
    for _ in 0..100 {
        if feed.is_connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = pg
        .psql(
            "fleet",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = '{CONTROL_FEED_APPLICATION_NAME}'"
            ),
        )
        .unwrap();
    assert_eq!(killed, "1");
    // Posted while the listener is down: its NOTIFY is lost, the row is not.
    a.post(&Control::Revoke {
        technician_key_hex: "k1".into(),
    })
    .await
    .unwrap();
    a.post(&kill("s5")).await.unwrap();
    let ev = next(&mut feed).await;
    assert_eq!(
        ev.control,
        Control::Revoke {
            technician_key_hex: "k1".into()
        }
    );
    assert_eq!(next(&mut feed).await.control, kill("s5"));
    // A revocation posted on the feed is also in the registry.
    assert!(b.is_revoked("k1").await.unwrap());
    // A feed resumed from an old id replays from there.
    let mut replay = b.control_feed(last - 1);
    assert_eq!(next(&mut replay).await.control, kill("s4"));
}

#[tokio::test]
async fn the_registry_is_versioned_and_revocation_is_one_read() {
    let (_pg, url) = migrated().await;
    let a = relay(&url, "a").await;
    let b = relay(&url, "b").await;
    assert_eq!(a.registry_version().await.unwrap(), 0);
    let v1 = a
        .put_technician("k1", &json!({"name": "alice"}), false)
        .await
        .unwrap();
    let v2 = b
        .put_technician("k2", &json!({"name": "bob"}), false)
        .await
        .unwrap();
    assert!(v2 > v1);
    assert!(!a.is_revoked("k1").await.unwrap());
    assert!(!a.is_revoked("unknown").await.unwrap());
    let v3 = b
        .put_technician("k1", &json!({"name": "alice"}), true)
        .await
        .unwrap();
    assert!(v3 > v2);
    assert!(a.is_revoked("k1").await.unwrap());
    assert_eq!(a.registry_version().await.unwrap(), v3);
    let all = a.technicians().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].key_hex.as_str(), all[0].revoked, all[0].version),
        ("k1", true, v3)
    );
    assert_eq!(all[1].document, json!({"name": "bob"}));
}
