//! A session carried on over a new connection (issue 23): when the agent's
//! connection can reach nothing any more (its flow is dead for good, as
//! when an address is gone or a NAT forgot the mapping), QUIC migration
//! cannot carry it. The agent comes back on a new connection, proving the
//! session's resume credential and its device key; the viewer follows it
//! onto a new channel bound to the old one. Anyone else is refused and
//! audited.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use assent_client::{ClientError, Control};
use assent_proto::identity::SecretKey;
use assent_proto::session_msg::InputEvent;
use assent_proto::wire::{ClientMsg, ErrorKind, RelayMsg, ResumeCredential, Role};
use assent_tests::lossy::LossyProxy;
use assent_tests::TestRelay;

use crate::blips::{count, live_through_proxy, watch, Via};
use crate::common::WAIT;
use crate::people::{technician_via, user, Person};

/// A client that says `Resume` for `session` with `credential`, proving
/// `key`; what the relay answers.
async fn resume_as(
    relay: &TestRelay,
    role: Role,
    key: &SecretKey,
    session: &str,
    credential: ResumeCredential,
) -> Result<RelayMsg, ClientError> {
    let mut control = Control::open(&relay.addr, &relay.ca(), role).await?;
    let signature = control.sign_challenge(role, key)?;
    let session = session.to_string();
    control
        .send(&ClientMsg::Resume {
            session,
            credential,
            signature,
        })
        .await?;
    control.recv().await
}

fn refused_as(result: Result<RelayMsg, ClientError>, what: &str) {
    match result {
        Err(e) => assert_eq!(e.refusal(), Some(ErrorKind::NotResumable), "{what}: {e}"),
        Ok(m) => panic!("{what} was taken: {m:?}"),
    }
}

fn session_id(relay: &TestRelay) -> String {
    let start = relay
        .records()
        .into_iter()
        .find(|r| r["event"] == "session_start");
    start.expect("session_start")["session"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_connection_is_replaced_by_a_new_one_and_strangers_are_refused() {
    let mut b = live_through_proxy(Via::Agent, "20").await;
    watch(&mut b.v, Duration::from_millis(500)).await;
    let session = session_id(&b.relay);
    b.proxy.strand();
    let stranded = Instant::now();
    // Strangers while the agent is away: the session id with a made-up
    // credential, an unknown session, and the viewer's own credential
    // (read off its control stream) under another key.
    let stranger = SecretKey::generate().unwrap();
    let guess = resume_as(
        &b.relay,
        Role::Agent,
        &stranger,
        &session,
        ResumeCredential([7; 32]),
    )
    .await;
    refused_as(guess, "a made-up credential");
    let unknown = resume_as(
        &b.relay,
        Role::Agent,
        &stranger,
        "no-such-session",
        ResumeCredential([7; 32]),
    )
    .await;
    refused_as(unknown, "an unknown session");
    let credential = loop {
        match tokio::time::timeout(WAIT, b.v.viewer.control.recv()).await {
            Ok(Ok(RelayMsg::ResumeCredential { credential })) => break credential,
            Ok(Ok(_)) => continue,
            other => panic!("no resume credential for the viewer: {other:?}"),
        }
    };
    let stolen = resume_as(&b.relay, Role::Viewer, &stranger, &session, credential).await;
    refused_as(stolen, "a credential under another key");
    // The true agent comes back.
    let rec = b
        .relay
        .wait_record_async(Duration::from_secs(15), |r| {
            r["event"] == "session_reconnected"
        })
        .await
        .unwrap_or_else(|| panic!("no session_reconnected: {:?}", b.relay.events()));
    println!("reconnected {:?} after the flow died", stranded.elapsed());
    assert_eq!(
        (rec["side"].as_str(), rec["session"].as_str()),
        (Some("agent"), Some(&*session))
    );
    let reasons: Vec<_> = b
        .relay
        .records()
        .into_iter()
        .filter(|r| r["event"] == "auth_failed")
        .map(|r| r["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        reasons,
        [
            "bad_resume_credential",
            "resume_unknown_session",
            "bad_signature"
        ]
    );
    // Frames flow again over the new channel, and input reaches the agent.
    let frames = b.v.frames;
    let captures = b.agent.stats.captures.load(Relaxed);
    let until = Instant::now() + Duration::from_secs(5);
    while b.v.frames < frames + 3 || b.agent.stats.captures.load(Relaxed) == captures {
        assert!(Instant::now() < until, "no frames after the reconnect");
        let _ = b.v.next_frame(Duration::from_millis(200)).await;
    }
    assert_eq!(b.v.reconnections, 1);
    let injected = b.agent.stats.inputs_injected.load(Relaxed);
    b.v.input(InputEvent::MouseMove { x: 9, y: 9 })
        .await
        .unwrap();
    let injected_now = assent_tests::eventually_async(WAIT, || {
        let n = b.agent.stats.inputs_injected.load(Relaxed);
        std::future::ready((n > injected).then_some(n))
    })
    .await;
    assert!(
        injected_now.is_some(),
        "input not injected after the reconnect"
    );
    // The same session throughout: one consent, one start, the outage on
    // record, no end; the user saw the interruption and its end.
    let resumed = b
        .relay
        .wait_record_async(WAIT, |r| r["event"] == "session_resumed")
        .await
        .expect("session_resumed");
    assert_eq!(resumed["side"], "agent");
    for (event, n) in [
        ("consent", 1),
        ("session_start", 1),
        ("session_interrupted", 1),
        ("session_end", 0),
    ] {
        assert_eq!(count(&b.relay, event), n, "{event}: {:?}", b.relay.events());
    }
    assert_eq!(b.agent.ui.interruptions(), [true, false]);
}

/// The frames count of the viewer's next statistics line.
fn frames(viewer: &Person) -> u64 {
    let line = viewer.hear("\"fps\"");
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    json["frames"].as_u64().unwrap()
}

/// The technician's side: the real headless viewer's connection is
/// stranded; it comes back on a new one, the real `--tty` agent follows it
/// onto a new channel, and a change on the user's screen reaches the
/// technician again. Both audits have it; the user is not asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_technicians_viewer_comes_back_on_a_new_connection() {
    let display = assent_xvfb::Xvfb::start_with_size(320, 200);
    let relay = TestRelay::started(&[("reconnect_grace_secs", "20")]);
    let proxy = LossyProxy::start(relay.addr.parse().unwrap(), 0.0, Duration::ZERO).await;
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let via = proxy.addr.to_string();
    let (viewer, code) = technician_via(
        None,
        &relay,
        &via,
        (home.path(), &key),
        "T-6101",
        &[],
        "info",
    );
    let mut agent = user(&relay, home.path(), display.display(), &code, "info");
    agent.say("v");
    assert!(frames(&viewer) > 0, "no first frame");
    proxy.strand();
    let rec = relay
        .wait_record_async(Duration::from_secs(15), |r| {
            r["event"] == "session_reconnected"
        })
        .await
        .unwrap_or_else(|| panic!("no session_reconnected: {:?}", relay.events()));
    assert_eq!(rec["side"], "viewer");
    // The agent followed: a change on the user's screen reaches the viewer.
    let before = frames(&viewer);
    let until = Instant::now() + Duration::from_secs(10);
    let mut colour = 0x20_40_60;
    while frames(&viewer) <= before {
        assert!(
            Instant::now() < until,
            "no frame after the viewer came back"
        );
        colour += 0x10;
        assent_tests::x11::paint_root(display.display(), colour);
    }
    agent.say("e");
    let end = relay
        .wait_record_async(WAIT, |r| r["event"] == "session_end")
        .await
        .expect("session_end");
    assert_eq!(end["reason"], "agent_ended", "{end}");
    assert_eq!(count(&relay, "consent"), 1);
    let audit = home.path().join("data/assent/audit.jsonl");
    let viewer_audit = std::fs::read_to_string(audit).unwrap_or_default();
    assert!(
        viewer_audit.contains("\"event\":\"session_reconnected\"")
            && viewer_audit.contains("\"side\":\"viewer\""),
        "{viewer_audit}"
    );
    // The credential is a secret: in no log.
    let logs =
        relay.log_text() + &std::fs::read_to_string(home.path().join("viewer-T-6101.log")).unwrap();
    assert!(!logs.contains("credential"), "a credential in a log");
}

/// A connection that stays dead past the grace: the relay ends the session
/// (`agent_lost`), and the agent's next attempt hears there is nothing to
/// carry on, so it ends at once and says why, instead of waiting out its
/// old connection's idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_after_the_grace_ends_the_agents_session() {
    let b = live_through_proxy(Via::Agent, "2").await;
    b.proxy.strand();
    let end = b
        .relay
        .wait_record_async(WAIT, |r| r["event"] == "session_end")
        .await
        .expect("session_end");
    assert_eq!(end["reason"], "agent_lost");
    let outcome = tokio::time::timeout(WAIT, b.agent.task)
        .await
        .expect("the agent did not end")
        .unwrap()
        .unwrap();
    match outcome {
        assent_agent::session::Outcome::Ended(m) => {
            assert!(m.contains("down for too long"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let refused = b.relay.records().into_iter().any(|r| {
        r["event"] == "auth_failed"
            && ["resume_unknown_session", "resume_not_live"]
                .contains(&r["reason"].as_str().unwrap_or(""))
    });
    assert!(refused, "{:?}", b.relay.events());
}
