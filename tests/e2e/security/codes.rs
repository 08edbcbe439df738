//! Invite codes: replayed, expired and another technician's (scenario 7),
//! and guessed by brute force (8).

use std::time::{Duration, Instant};

use assent_proto::wire::{ClientMsg, ConsentDecision, Scope};
use assent_tests::{eventually_async, TestRelay};

use super::signed_in_technician;
use crate::common::WAIT;

/// Scenario 7: a code already used, a code past its lifetime, and another
/// technician's code presented on a technician's connection are all
/// refused and audited; the other technician's code still belongs to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s07_code_replay_used_expired_and_another_technicians() {
    use assent_proto::wire::ErrorKind;
    let relay = TestRelay::started(&[
        ("invite_ttl_secs", "2"),
        // No lockout after a refused code: this scenario is about the
        // refusals, scenario 8 about the lockout.
        ("code_failure_base_delay_ms", "0"),
    ]);
    let auth_failed = |reason: &str| {
        relay
            .wait_record(WAIT, |r| {
                r["event"] == "auth_failed" && r["reason"] == reason
            })
            .is_some()
    };
    let alice = relay.enrol("alice");
    let bob = relay.enrol("bob");

    // Used: the code paired once; a second join is refused.
    let (v, _d, _live) =
        crate::common::pair(&relay, &alice, Scope::View, ConsentDecision::View).await;
    let err = crate::common::join(&relay, &v.invite.code)
        .await
        .unwrap_err();
    assert_eq!(err.refusal(), Some(ErrorKind::UsedCode), "{err}");
    assert!(auth_failed("used_code"));

    // Another technician's code, presented by bob on his own (viewer)
    // connection, as if to take over alice's invite.
    let alices = crate::common::viewer(&relay, &alice, Scope::Control).await;
    let mut control = signed_in_technician(&relay, &bob).await;
    let agent_key = assent_proto::identity::SecretKey::generate().unwrap();
    control
        .send(&ClientMsg::AgentJoin {
            code: alices.invite.code.clone(),
            device: "bobs-pc".into(),
            device_key: agent_key.public().0,
            signature: vec![0; 64],
        })
        .await
        .unwrap();
    let reply = tokio::time::timeout(WAIT, control.recv()).await.unwrap();
    assert!(
        !matches!(
            reply,
            Ok(assent_proto::wire::RelayMsg::ConsentRequest { .. })
        ),
        "{reply:?}"
    );
    assert!(auth_failed("code_on_technician_connection"));
    // The code is still alice's: the user who gets it is asked on her behalf.
    let pending = crate::common::join(&relay, &alices.invite.code)
        .await
        .unwrap();
    assert_eq!(pending.offer.technician, "alice");
    drop(pending);

    // Expired (the lifetime itself, to the instant, is proto's
    // `invite::tests::single_use_expiry_and_binding`): once the relay has
    // closed the invite for it, the code is refused as expired.
    let late = crate::common::viewer(&relay, &alice, Scope::View).await;
    crate::common::wait_invite_expired(&relay, &late.invite.id).await;
    let err = crate::common::join(&relay, &late.invite.code)
        .await
        .unwrap_err();
    assert_eq!(err.refusal(), Some(ErrorKind::ExpiredCode), "{err}");
    assert!(auth_failed("expired_code"));
}

/// Scenario 8: one address guessing codes as fast as it can is slowed to the
/// documented schedule (a lockout from 1 s, doubling), the measured rate
/// extrapolates to a success chance far below 1e-6 per code lifetime, and
/// meanwhile an honest technician and user from another address pair
/// normally. Default limits throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s08_brute_force_is_slowed_and_honest_users_still_get_in() {
    use assent_proto::wire::ErrorKind;
    use assent_tests::lossy::LossyProxy;
    let relay = TestRelay::started(&[]);
    let upstream: std::net::SocketAddr = relay.addr.parse().unwrap();
    // The attacker's traffic reaches the relay from 127.0.0.2.
    let attacker_path = LossyProxy::start_from(upstream, 0.0, Duration::ZERO, "127.0.0.2").await;
    let via = attacker_path.addr.to_string();
    let attack_for = Duration::from_secs(12);
    let ca = relay.ca();
    let attacker = tokio::spawn(async move {
        let (mut checked, mut throttled, mut refused) = (0u64, 0u64, 0u64);
        let start = Instant::now();
        let mut guess = 100_000_000_000_000u64;
        while start.elapsed() < attack_for {
            guess += 7_919;
            let code = guess.to_string();
            let key = assent_proto::identity::SecretKey::generate().unwrap();
            match assent_client::AgentPending::join(&via, &ca, key, "pc-x", &code).await {
                Err(e) if e.refusal() == Some(ErrorKind::BadCode) => checked += 1,
                Err(e) if e.refusal() == Some(ErrorKind::Throttled) => throttled += 1,
                Err(_) => refused += 1,
                Ok(_) => panic!("a guessed code was accepted"),
            }
        }
        (checked, throttled, refused, start.elapsed())
    });

    // Meanwhile, from 127.0.0.1: a technician and a user pair as usual, once
    // the attacker has had three codes checked (about 3 s in: its lockout is
    // doubling).
    let checked_so_far = || {
        let records = relay.records();
        let bad = records
            .iter()
            .filter(|r| r["event"] == "auth_failed" && r["reason"] == "bad_code");
        std::future::ready((bad.count() >= 3).then_some(()))
    };
    eventually_async(WAIT, checked_so_far)
        .await
        .expect("the attacker got three codes checked");
    let key = relay.enrol("honest");
    let honest = Instant::now();
    let (_v, _data, _live) =
        crate::common::pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let honest_took = honest.elapsed();

    let (checked, throttled, refused, took) = attacker.await.unwrap();
    // The documented schedule: after the n-th wrong code the address waits
    // base·2^(n-1), so in `took` at most k codes are checked, where
    // base·(2^(k-1) - 1) <= took.
    let base = 1.0_f64; // code_failure_base_delay_ms = 1000 (default)
    let allowed = (took.as_secs_f64() / base + 1.0).log2().floor() as u64 + 1;
    let rate = checked as f64 / took.as_secs_f64();
    // Extrapolated linearly over one code lifetime (600 s, the default),
    // which overstates it (the lockout keeps doubling), and over every code
    // that can be pending at once (10,000).
    let lifetime_guesses = rate * 600.0;
    let p_one_code = lifetime_guesses / 1e15;
    let p_any_code = p_one_code * 10_000.0;
    println!(
        "brute force over {took:.1?}: {checked} codes checked, {throttled} refused as throttled, \
         {refused} refused otherwise ({rate:.2} checked/s); extrapolated success per lifetime: \
         {p_one_code:.1e} for one code, {p_any_code:.1e} for any pending code; \
         the honest pair took {honest_took:.2?}"
    );
    assert!(
        checked >= 1,
        "the attack never got a code checked: {refused} refused"
    );
    assert!(
        checked <= allowed,
        "{checked} codes checked in {took:?}; the schedule allows {allowed}"
    );
    assert!(throttled > 0, "the attacker was never throttled");
    assert!(p_any_code <= 1e-6, "{p_any_code:e}");
    assert!(relay
        .records()
        .iter()
        .any(|r| r["event"] == "auth_failed" && r["reason"] == "throttled"));
}
