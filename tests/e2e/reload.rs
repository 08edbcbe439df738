//! SIGHUP: new limits and a new technician registry take effect without
//! dropping the live session, audited first; a file that does not load
//! changes nothing.

use assent_proto::identity::SecretKey;
use assent_proto::wire::{ConsentDecision, ErrorKind, Scope};
use assent_tests::TestRelay;

use crate::common::*;

fn hangup(relay: &TestRelay) {
    relay
        .proc
        .as_ref()
        .expect("relay running")
        .signal(libc::SIGHUP);
}

async fn wait_event(relay: &TestRelay, event: &str, nth: usize) -> serde_json::Value {
    relay
        .wait_record_async(WAIT, |_| {
            relay
                .records()
                .iter()
                .filter(|r| r["event"] == event)
                .count()
                >= nth
        })
        .await
        .unwrap_or_else(|| panic!("no {event} #{nth}: {:?}", relay.events()));
    relay
        .records()
        .into_iter()
        .filter(|r| r["event"] == event)
        .nth(nth - 1)
        .unwrap()
}

/// Bytes still pass both ways in a live session.
async fn still_forwards(
    vdata: &mut assent_client::DataStream,
    agent: &mut assent_client::DataStream,
) {
    vdata.send.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    agent.recv.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
    agent.send.write_all(b"pong").await.unwrap();
    vdata.recv.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_limits_and_technicians_without_dropping_sessions() {
    let mut relay = TestRelay::started(&[("max_pending_invites_per_technician", "3")]);
    let key = relay.enrol("alice");
    let (viewer_a, mut vdata, mut live) =
        pair(&relay, &key, Scope::View, ConsentDecision::View).await;

    // Tighter limits, and a technician added by editing the registry.
    relay.set_limits(&[("max_pending_invites_per_technician", "1")]);
    let bob = SecretKey::generate().unwrap();
    let path = relay.dir.join("technicians.json");
    let mut list: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut entry = list[0].clone();
    entry["name"] = "bob".into();
    entry["key"] = bob.public().to_line().into();
    list.push(entry);
    std::fs::write(&path, serde_json::to_string_pretty(&list).unwrap()).unwrap();
    hangup(&relay);
    let reloaded = wait_event(&relay, "config_reloaded", 1).await;
    assert_eq!(
        reloaded["limits_changed"],
        "max_pending_invites_per_technician"
    );
    assert_eq!(reloaded["technicians_active"], 2);

    still_forwards(&mut vdata, &mut live.data).await;
    let _pending = viewer(&relay, &bob, Scope::View).await;
    let _first = viewer(&relay, &key, Scope::View).await;
    let err =
        assent_client::Viewer::connect(&relay.addr, &relay.ca(), &key, request("T-2", Scope::View))
            .await
            .unwrap_err();
    assert_eq!(err.refusal(), Some(ErrorKind::LimitReached), "{err}");

    // A relay.toml that does not load: refused, recorded, nothing changes.
    let toml = relay.dir.join("relay.toml");
    let good = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, "[limits]\nmax_sessions = 0\n").unwrap();
    hangup(&relay);
    let failed = wait_event(&relay, "config_reload_failed", 1).await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("limits.max_sessions"),
        "{failed}"
    );
    std::fs::write(&toml, good).unwrap();
    still_forwards(&mut vdata, &mut live.data).await;

    viewer_a.control.end().await;
    let end = wait_event(&relay, "session_end", 1).await;
    assert_eq!(end["reason"], "viewer_closed");
    assert_eq!(relay.stop().map(|s| s.success()), Some(true));
    let out = assent_tests::run(
        "assent-relay",
        &["audit", "verify", "--data-dir", relay.data_dir()],
    );
    assert!(out.status.success());
}
