//! The network and the relay as adversaries: a rogue relay certificate and
//! a key swap (scenario 12), a lossy link (14), session and connection
//! limits (15).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use assent_agent::ui::UiCommand;
use assent_proto::wire::{ConsentDecision, Scope};
use assent_tests::viewer;
use assent_tests::TestRelay;

use crate::agent::start_agent;
use crate::common::WAIT;

/// Scenario 12 (certificates): a relay whose certificate is not from the
/// configured CA is refused by viewer and agent. The relay that swaps keys
/// in pairing is `s12_a_relay_swapping_keys_is_caught_by_the_handshake`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_a_rogue_relay_certificate_is_refused_by_viewer_and_agent() {
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    // A CA the relay's certificate does not chain to: the throwaway one from
    // certs/gen-test-ca (which also proves that script works).
    let other_dir = relay.tmp.path().join("other-ca");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs/gen-test-ca");
    let out = std::process::Command::new(script)
        .arg(&other_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other_ca = other_dir.join("ca.pem");
    let err = assent_client::Viewer::connect(
        &relay.addr,
        &other_ca,
        &key,
        crate::common::request("T", Scope::View),
    )
    .await
    .unwrap_err();
    match &err {
        assent_client::ClientError::Net(n) => assert!(n.is_untrusted_relay(), "{n}"),
        other => panic!("expected a TLS refusal, got {other}"),
    }
    let err = assent_client::AgentPending::join(
        &relay.addr,
        &other_ca,
        assent_proto::identity::SecretKey::generate().unwrap(),
        "pc",
        "123-456-789-012-345",
    )
    .await
    .expect_err("agent refuses the relay");
    assert!(
        matches!(&err, assent_client::ClientError::Net(n) if n.is_untrusted_relay()),
        "{err}"
    );
    assert!(
        relay_audited_auth_failed(&relay, "tls_handshake_failed"),
        "{}",
        relay.log_text()
    );
}

/// Scenario 12 (keys): a relay (or anyone in the middle) that gives the
/// agent a channel signed with another key than the technician's is caught
/// by the end-to-end handshake before the user is asked anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_a_relay_swapping_keys_is_caught_by_the_handshake() {
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let v = viewer::connect(&relay.addr, &relay.ca(), &key, Scope::Control)
        .await
        .unwrap();
    let agent = start_agent(
        &relay,
        &v.invite.code.clone(),
        Some(ConsentDecision::Control),
        Duration::from_secs(30),
    );
    // The channel is signed with a key other than the one the relay
    // attested: what a relay (or anyone) substituting keys would produce.
    let impostor = assent_proto::identity::SecretKey::generate().unwrap();
    let pairing = tokio::time::timeout(WAIT, viewer::pair(v, &impostor))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(pairing, viewer::Pairing::Refused(_)),
        "{pairing:?}"
    );
    let result = tokio::time::timeout(WAIT, agent.task)
        .await
        .unwrap()
        .unwrap();
    let err = result.expect_err("the agent refuses");
    assert!(format!("{err:#}").to_lowercase().contains("key"), "{err:#}");
    assert!(agent.ui.prompt_code().is_none(), "the user was never asked");
    assert_eq!(agent.stats.frames_sent.load(Relaxed), 0);
    assert!(!relay.events().iter().any(|e| e == "session_start"));
}

/// Scenario 14: over a link that loses 2% of datagrams and delays each by
/// 100 ms in each direction (a loopback UDP proxy: this kernel has no
/// netem), the session stays up and the viewer keeps at least 15 fps of
/// office-like content (a small region changing every frame).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s14_lossy_link_keeps_the_session_up_at_15_fps() {
    use assent_tests::lossy::LossyProxy;
    let relay = TestRelay::started(&[]);
    let upstream: std::net::SocketAddr = relay.addr.parse().unwrap();
    let proxy = LossyProxy::start(upstream, 2.0, Duration::from_millis(100)).await;
    let via = proxy.addr.to_string();
    let key = relay.enrol("lossy");
    let v = viewer::connect(&via, &relay.ca(), &key, Scope::View)
        .await
        .unwrap();
    let agent = crate::agent::start_agent_via(
        &via,
        &relay,
        &v.invite.code.clone(),
        Some(ConsentDecision::View),
        Duration::from_secs(30),
        (1280, 720),
    );
    let mut v = match tokio::time::timeout(Duration::from_secs(30), viewer::pair(v, &key))
        .await
        .unwrap()
        .unwrap()
    {
        viewer::Pairing::Live(l) => *l,
        viewer::Pairing::Refused(r) => panic!("refused: {r}"),
    };
    assert!(v.next_frame(WAIT).await.unwrap());
    let frames_before = v.frames;
    // The measurement: frames over these 10 s.
    let started = Instant::now();
    let run = Duration::from_secs(10);
    while started.elapsed() < run {
        assert!(
            v.next_frame(Duration::from_secs(3)).await.unwrap(),
            "frames stopped on the lossy link"
        );
    }
    let fps = (v.frames - frames_before) as f64 / started.elapsed().as_secs_f64();
    let dropped = proxy.counts.dropped.load(Relaxed);
    let forwarded = proxy.counts.forwarded.load(Relaxed);
    println!(
        "lossy link: {fps:.1} fps over {run:?}; proxy dropped {dropped} of {} datagrams",
        dropped + forwarded
    );
    assert!(dropped > 0, "the proxy dropped nothing");
    assert!(fps >= 15.0, "{fps:.1} fps on the lossy link");
    assert!(
        !relay.events().iter().any(|e| e == "session_end"),
        "session dropped"
    );
    agent.commands.send(UiCommand::End).unwrap();
    agent.task.await.unwrap().unwrap();
}

/// Scenario 15 (session limits): idle timeout and maximum duration end
/// sessions with their reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s15_idle_timeout_and_max_duration_end_sessions_with_their_reasons() {
    let relay = TestRelay::started(&[("idle_timeout_secs", "2"), ("max_session_secs", "4")]);
    let key = relay.enrol("alice");
    // Idle: nothing sent.
    let (_v, _d, _live) =
        crate::common::pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let end = relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .unwrap();
    assert_eq!(end["reason"], "idle_timeout");
    // Busy past the maximum duration.
    let (_v2, mut d2, live2) =
        crate::common::pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let busy = tokio::spawn(async move {
        for _ in 0..100 {
            if d2.send.write_all(b"keepalive").await.is_err() {
                break;
            }
            // Pacing: traffic five times a second keeps the session busy.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let end = relay
        .wait_record(WAIT, |r| {
            r["event"] == "session_end" && r["session"] == live2.session.as_str()
        })
        .unwrap();
    assert_eq!(end["reason"], "max_duration");
    assert!(end["duration_ms"].as_u64().unwrap() >= 4000);
    busy.abort();
}

/// Scenario 15 (connections): the per-address connection rate limit holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s15_the_per_address_connection_rate_limit_holds() {
    let relay = TestRelay::started(&[("connections_per_minute_per_address", "5")]);
    let mut ok = 0;
    let mut refused = 0;
    for _ in 0..8 {
        match assent_client::Control::open(
            &relay.addr,
            &relay.ca(),
            assent_proto::wire::Role::Agent,
        )
        .await
        {
            Ok(c) => {
                ok += 1;
                c.conn.close(0u32.into(), b"");
            }
            Err(_) => refused += 1,
        }
    }
    assert_eq!((ok, refused), (5, 3));
}

fn relay_audited_auth_failed(relay: &TestRelay, reason: &str) -> bool {
    relay
        .wait_record(WAIT, |r| {
            r["event"] == "auth_failed" && r["reason"] == reason
        })
        .is_some()
}

/// Scenario 20: anti-amplification (RFC 9000 §8.1). A raw UDP client sends
/// one QUIC Initial (made by a real QUIC client whose later datagrams are
/// dropped) from an address that never answers; everything the relay sends
/// back to that address, retransmissions included, stays within three
/// times what it received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s20_an_unvalidated_address_gets_at_most_three_times_its_bytes() {
    let relay = TestRelay::started(&[]);
    let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front.local_addr().unwrap().to_string();
    let ca = relay.ca();
    let client = tokio::spawn(async move {
        let _ = tokio::time::timeout(
            Duration::from_secs(8),
            assent_net::connect(&front_addr, &ca),
        )
        .await;
    });
    let mut buf = vec![0u8; 65536];
    let (sent, _) = front.recv_from(&mut buf).await.unwrap();
    back.send_to(&buf[..sent], &relay.addr).await.unwrap();
    let mut answered = 0usize;
    let mut datagrams = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(until, back.recv_from(&mut buf)).await {
        answered += n;
        datagrams += 1;
    }
    client.abort();
    let ratio = answered as f64 / sent as f64;
    println!(
        "sent {sent} bytes, the relay answered {answered} in {datagrams} datagrams: {ratio:.2}x"
    );
    assert!(answered > 0, "the relay did not answer at all");
    assert!(ratio <= 3.0, "{answered} bytes for {sent}: {ratio:.2}x");
}
