//! The relay: pairing, forwarding, refusals, limits, ends and audit.

use std::time::{Duration, Instant};

use assent_client::{ClientError, Control, ViewerEvent};
use assent_proto::identity::SecretKey;
use assent_proto::wire::{ClientMsg, ConsentDecision, ErrorKind, RelayMsg, Role, Scope};
use assent_tests::{eventually_async, run, Proc, TestRelay};

use crate::common::*;

fn record<'a>(records: &'a [serde_json::Value], event: &str) -> &'a serde_json::Value {
    records
        .iter()
        .find(|r| r["event"] == event)
        .unwrap_or_else(|| panic!("no {event} record in {records:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_forward_both_ways_and_audit_in_order() {
    let mut relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let (viewer, mut vdata, mut live) =
        pair(&relay, &key, Scope::Control, ConsentDecision::Control).await;
    assert_eq!(live.scope, Scope::Control);
    assert_eq!(live.offer.technician, "alice");
    assert_eq!(live.offer.ticket, "T-1042");
    assert_eq!(live.offer.client, "Acme Ltd");
    assert_eq!(live.offer.technician_key, key.public().0);

    // Bytes both ways, byte-exact.
    let to_agent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let to_viewer: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let (a, b) = tokio::join!(
        async {
            vdata.send.write_all(&to_agent).await.unwrap();
            let mut got = vec![0u8; to_viewer.len()];
            vdata.recv.read_exact(&mut got).await.unwrap();
            got
        },
        async {
            live.data.send.write_all(&to_viewer).await.unwrap();
            let mut got = vec![0u8; to_agent.len()];
            live.data.recv.read_exact(&mut got).await.unwrap();
            got
        }
    );
    assert_eq!(a, to_viewer);
    assert_eq!(b, to_agent);

    // `sessions --json` lists it while live.
    let out = run(
        "assent-relay",
        &["sessions", "--data-dir", relay.data_dir(), "--json"],
    );
    assert!(out.status.success());
    let sessions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sessions.as_array().unwrap().len(), 1);
    assert_eq!(sessions[0]["technician"], "alice");
    assert_eq!(sessions[0]["ticket"], "T-1042");
    assert_eq!(sessions[0]["device"], "pc-reception");
    assert_eq!(sessions[0]["scope"], "control");
    assert_eq!(sessions[0]["id"], live.session.as_str());

    viewer.control.end().await;
    let end = relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    assert_eq!(end["reason"], "viewer_closed");
    assert_eq!(end["bytes_to_viewer"], 300_000);
    assert_eq!(end["bytes_to_agent"], 200_000);
    assert!(end["duration_ms"].as_u64().is_some());
    // The agent is told (after the resume credential it got at the start).
    let msg = loop {
        match tokio::time::timeout(WAIT, live.control.recv())
            .await
            .unwrap()
        {
            Ok(RelayMsg::ResumeCredential { .. }) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(
            msg,
            Ok(RelayMsg::SessionEnded { .. }) | Err(ClientError::Net(_))
        ),
        "{msg:?}"
    );

    let records = relay.records();
    let order: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .filter(|e| ["invite_created", "consent", "session_start", "session_end"].contains(e))
        .collect();
    assert_eq!(
        order,
        ["invite_created", "consent", "session_start", "session_end"]
    );
    let invite = record(&records, "invite_created");
    assert_eq!(invite["technician"], "alice");
    assert_eq!(invite["ticket"], "T-1042");
    assert!(invite["invite"].as_str().unwrap().starts_with("inv-"));
    let consent = record(&records, "consent");
    assert_eq!(consent["decision"], "control");
    assert_eq!(consent["session"], live.session.as_str());
    assert_eq!(
        consent["receipt"].as_str().unwrap().len(),
        128,
        "hex ed25519 signature"
    );
    let start = record(&records, "session_start");
    for field in [
        "session",
        "technician",
        "technician_key",
        "ticket",
        "device",
        "device_key",
        "scope",
        "agent_peer",
        "viewer_peer",
    ] {
        assert!(start.get(field).is_some(), "session_start lacks {field}");
    }
    assert_eq!(start["technician_key"], key.public().fingerprint());
    assert_eq!(start["scope"], "control");
    for r in &records {
        for field in ["seq", "time", "event", "prev", "hash"] {
            assert!(r.get(field).is_some(), "{r} lacks {field}");
        }
    }

    let out = run(
        "assent-relay",
        &["audit", "verify", "--data-dir", relay.data_dir()],
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ok: {} records", records.len())
    );
    assert_eq!(relay.stop().map(|s| s.success()), Some(true));
    assert_eq!(
        relay.events().last().map(String::as_str),
        Some("relay_stopped")
    );
}

#[test]
fn audit_verify_names_the_edited_record() {
    let relay = TestRelay::init(&[]);
    // Some records, written by the CLI (no relay running).
    for name in ["a", "b", "c", "d"] {
        relay.enrol(name);
    }
    let out = run(
        "assent-relay",
        &["technician", "revoke", "b", "--data-dir", relay.data_dir()],
    );
    assert!(out.status.success());
    let path = relay.audit_path();
    let original = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert_eq!(lines.len(), 5);
    for (i, line) in lines.iter().enumerate() {
        // Change one character inside the value of `time` (still valid JSON).
        let pos = line.find("\"time\":\"").unwrap() + 10;
        let mut bytes = line.as_bytes().to_vec();
        bytes[pos] = if bytes[pos] == b'1' { b'2' } else { b'1' };
        let mut edited = lines.clone();
        let changed = String::from_utf8(bytes).unwrap();
        edited[i] = &changed;
        std::fs::write(&path, edited.join("\n") + "\n").unwrap();
        let out = run(
            "assent-relay",
            &["audit", "verify", "--data-dir", relay.data_dir()],
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "edit of record {} not detected",
            i + 1
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("seq {}", i + 1)), "{stderr}");
    }
    std::fs::write(&path, &original).unwrap();
    let out = run(
        "assent-relay",
        &["audit", "verify", "--data-dir", relay.data_dir()],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok: 5 records");
    let out = run(
        "assent-relay",
        &["audit", "show", "--data-dir", relay.data_dir(), "--json"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        original,
        "--json prints the raw lines"
    );
}

/// Connects as a viewer and authenticates with an arbitrary signature.
async fn raw_viewer_auth(relay: &TestRelay, public: [u8; 32], signature: Vec<u8>) -> ClientError {
    let mut c = Control::open(&relay.addr, &relay.ca(), Role::Viewer)
        .await
        .unwrap();
    c.send(&ClientMsg::ViewerAuth {
        public_key: public,
        signature,
    })
    .await
    .unwrap();
    c.recv().await.expect_err("must be refused")
}

fn auth_failed(relay: &TestRelay, reason: &str) -> bool {
    relay
        .wait_record(WAIT, |r| {
            r["event"] == "auth_failed" && r["reason"] == reason
        })
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn technician_refusals_are_clear_and_audited() {
    let relay = TestRelay::started(&[]);
    let alice = relay.enrol("alice");

    // Unknown key.
    let stranger = SecretKey::generate().unwrap();
    let err = assent_client::Viewer::connect(
        &relay.addr,
        &relay.ca(),
        &stranger,
        request("T", Scope::View),
    )
    .await
    .unwrap_err();
    assert_eq!(err.refusal(), Some(ErrorKind::UnknownTechnician), "{err}");
    assert!(err.to_string().contains("not enrolled"), "{err}");
    assert!(auth_failed(&relay, "unknown_key"));

    // A signature made on another connection (replay).
    let other = Control::open(&relay.addr, &relay.ca(), Role::Viewer)
        .await
        .unwrap();
    let sig = other.sign_challenge(Role::Viewer, &alice).unwrap();
    let err = raw_viewer_auth(&relay, alice.public().0, sig).await;
    assert_eq!(err.refusal(), Some(ErrorKind::BadSignature), "{err}");
    assert!(auth_failed(&relay, "bad_signature"));

    // Revoked key, while the relay runs.
    let out = run(
        "assent-relay",
        &[
            "technician",
            "revoke",
            "alice",
            "--data-dir",
            relay.data_dir(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err =
        assent_client::Viewer::connect(&relay.addr, &relay.ca(), &alice, request("T", Scope::View))
            .await
            .unwrap_err();
    assert_eq!(err.refusal(), Some(ErrorKind::TechnicianRevoked), "{err}");
    assert!(auth_failed(&relay, "technician_revoked"));
    assert!(has_event(&relay, "technician_revoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_refusals_wrong_used_expired() {
    let relay = TestRelay::started(&[
        ("invite_ttl_secs", "2"),
        // No lockout after a wrong code: this test is about the refusals,
        // `wrong_codes_are_throttled_per_address_and_relay_wide` about it.
        ("code_failure_base_delay_ms", "0"),
    ]);
    let key = relay.enrol("alice");

    let err = join(&relay, "000-000-000-000-000").await.unwrap_err();
    assert_eq!(err.refusal(), Some(ErrorKind::BadCode), "{err}");
    assert!(auth_failed(&relay, "bad_code"));

    // Used twice.
    let (viewer, _vdata, _live) = pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let err = join(&relay, &viewer.invite.code).await.unwrap_err();
    assert_eq!(err.refusal(), Some(ErrorKind::UsedCode), "{err}");
    assert!(auth_failed(&relay, "used_code"));

    // Expired (the lifetime itself, to the instant, is proto's
    // `invite::tests::single_use_expiry_and_binding`): once the relay has
    // closed the invite for it, the code is refused as expired.
    let v2 = viewer_for(&relay, &key).await;
    wait_invite_expired(&relay, &v2.invite.id).await;
    let err = join(&relay, &v2.invite.code).await.unwrap_err();
    assert_eq!(err.refusal(), Some(ErrorKind::ExpiredCode), "{err}");
    assert!(auth_failed(&relay, "expired_code"));
}

async fn viewer_for(relay: &TestRelay, key: &SecretKey) -> assent_client::Viewer {
    viewer(relay, key, Scope::View).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_timed_out_consent_forward_nothing() {
    let relay = TestRelay::started(&[("consent_timeout_secs", "2")]);
    let key = relay.enrol("alice");

    // Denied by the user.
    let mut v = viewer(&relay, &key, Scope::Control).await;
    let pending = join(&relay, &v.invite.code.clone()).await.unwrap();
    let agent = tokio::spawn(pending.answer(ConsentDecision::Denied));
    let mut saw = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, v.next_event()).await.unwrap() {
            Ok(ev) => saw.push(format!("{ev:?}")),
            Err(e) => {
                assert_eq!(e.refusal(), Some(ErrorKind::ConsentDenied), "{e}");
                break;
            }
        }
    }
    assert!(saw.iter().any(|e| e.contains("Consent(Denied)")), "{saw:?}");
    assert!(!saw.iter().any(|e| e.contains("Started")), "{saw:?}");
    let agent_result = agent.await.unwrap();
    assert!(agent_result.is_err());
    // No data stream was ever opened to the viewer.
    let stream = tokio::time::timeout(Duration::from_millis(300), v.control.conn.accept_bi()).await;
    assert!(!matches!(stream, Ok(Ok(_))), "a data stream was opened");

    // The user never answers: the relay's deadline records `timeout`.
    let v2 = viewer(&relay, &key, Scope::View).await;
    let _silent = join(&relay, &v2.invite.code.clone()).await.unwrap();
    let consent = relay
        .wait_record(WAIT, |r| {
            r["event"] == "consent" && r["decision"] == "timeout"
        })
        .expect("timeout consent record");
    assert_eq!(consent["receipt"], "");

    let records = relay.records();
    assert!(records
        .iter()
        .any(|r| r["event"] == "consent" && r["decision"] == "denied"));
    assert!(!has_event(&relay, "session_start"));
    assert!(!has_event(&relay, "session_end"));
}

/// Starts a viewer and an agent as processes and waits until both are live.
fn live_processes(relay: &TestRelay, key: &SecretKey) -> (Proc, Proc) {
    let key_file = relay.tmp.path().join(format!("tech-{}.key", rand_suffix()));
    std::fs::write(&key_file, key.to_file_contents().as_bytes()).unwrap();
    let ca = relay.ca();
    let (viewer, mut vout) = spawn_testclient(&[
        "viewer",
        "--relay",
        &relay.addr,
        "--ca",
        ca.to_str().unwrap(),
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    let code = expect_line(&mut vout, "code: ");
    let (agent, mut aout) = spawn_testclient(&[
        "agent",
        "--relay",
        &relay.addr,
        "--ca",
        ca.to_str().unwrap(),
        "--code",
        &code,
    ]);
    expect_line(&mut aout, "started ");
    expect_line(&mut vout, "started ");
    // Keep draining so neither blocks on stdout.
    std::thread::spawn(move || for _ in vout {});
    std::thread::spawn(move || for _ in aout {});
    (viewer, agent)
}

fn rand_suffix() -> String {
    assent_proto::random_id(4).unwrap()
}

/// A killed peer (SIGKILL: no goodbye) ends the session once its path has
/// been silent for the reconnect grace (3 s in the tests' relay.toml).
#[test]
fn killed_viewer_or_agent_ends_the_session_after_the_grace() {
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    for (victim, reason) in [("viewer", "viewer_lost"), ("agent", "agent_lost")] {
        let (mut viewer, mut agent) = live_processes(&relay, &key);
        let killed = Instant::now();
        if victim == "viewer" {
            viewer.signal(libc::SIGKILL);
        } else {
            agent.signal(libc::SIGKILL);
        }
        let end = relay
            .wait_record(Duration::from_secs(9), |r| {
                r["event"] == "session_end" && r["reason"] == reason
            })
            .unwrap_or_else(|| panic!("no session_end {reason}: {:?}", relay.records()));
        let took = killed.elapsed();
        // Silent for a second (interrupted), then the grace.
        assert!(
            took >= Duration::from_secs(3) && took < Duration::from_secs(6),
            "{victim}: ended after {took:?}"
        );
        let interrupted = relay
            .records()
            .into_iter()
            .find(|r| r["event"] == "session_interrupted" && r["session"] == end["session"])
            .expect("session_interrupted before the end");
        assert_eq!(interrupted["side"], victim);
        assert!(end["session"].is_string());
        // The surviving side is told and exits.
        let survivor = if victim == "viewer" {
            &mut agent
        } else {
            &mut viewer
        };
        assert!(
            survivor.wait_timeout(Duration::from_secs(3)).is_some(),
            "the other side did not end"
        );
    }
}

#[test]
fn admin_kill_ends_a_live_session() {
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let (mut viewer, mut agent) = live_processes(&relay, &key);
    let out = run(
        "assent-relay",
        &["sessions", "--data-dir", relay.data_dir(), "--json"],
    );
    let sessions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = sessions[0]["id"].as_str().unwrap().to_string();
    let out = run(
        "assent-relay",
        &["sessions", "--data-dir", relay.data_dir()],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    let out = run(
        "assent-relay",
        &["kill", "--data-dir", relay.data_dir(), &id],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let end = relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .unwrap();
    assert_eq!(end["reason"], "admin_killed");
    assert_eq!(end["session"], id.as_str());
    assert!(viewer.wait_timeout(Duration::from_secs(3)).is_some());
    assert!(agent.wait_timeout(Duration::from_secs(3)).is_some());
    let out = run(
        "assent-relay",
        &["kill", "--data-dir", relay.data_dir(), &id],
    );
    assert_eq!(out.status.code(), Some(1), "killing a gone session fails");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_technician_ends_their_live_sessions() {
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let (_v, _d, _live) = pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let out = run(
        "assent-relay",
        &[
            "technician",
            "revoke",
            "alice",
            "--data-dir",
            relay.data_dir(),
        ],
    );
    assert!(out.status.success());
    let end = relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .unwrap();
    assert_eq!(end["reason"], "technician_revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_sessions_with_relay_shutdown() {
    let mut relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let (_v, _d, _live) = pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let status = relay.stop().expect("relay exits after SIGTERM");
    assert!(status.success());
    let records = relay.records();
    assert_eq!(record(&records, "session_end")["reason"], "relay_shutdown");
    assert_eq!(records.last().unwrap()["event"], "relay_stopped");
    assert!(assent_audit::verify(&relay.audit_path()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_and_invite_limits() {
    let relay = TestRelay::started(&[
        ("max_sessions", "1"),
        ("max_pending_invites_per_technician", "2"),
    ]);
    let key = relay.enrol("alice");
    let (_v, _d, _live) = pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    // A second agent is refused while one session holds the only slot.
    let v2 = viewer(&relay, &key, Scope::View).await;
    let err = join(&relay, &v2.invite.code.clone()).await.unwrap_err();
    assert_eq!(err.refusal(), Some(ErrorKind::Busy), "{err}");
    // Pending invites per technician: v2's was spent; two more are allowed, not three.
    let _p1 = viewer(&relay, &key, Scope::View).await;
    let _p2 = viewer(&relay, &key, Scope::View).await;
    let err =
        assent_client::Viewer::connect(&relay.addr, &relay.ca(), &key, request("T", Scope::View))
            .await
            .unwrap_err();
    assert_eq!(err.refusal(), Some(ErrorKind::LimitReached), "{err}");
}

/// A code presented again and again until the relay checked it.
struct Unlocked {
    /// The refusal the check gave.
    err: ClientError,
    /// When the checked attempt started.
    started: Instant,
    /// How long after the first attempt the last one refused unchecked
    /// started (zero if none was).
    last_refused: Duration,
}

/// Presents `code` again and again (for up to [`WAIT`]) until the relay
/// checks it instead of refusing it as `refused` says.
async fn join_until_checked(
    relay: &TestRelay,
    code: &str,
    refused: impl Fn(&ClientError) -> bool,
) -> Unlocked {
    let first = Instant::now();
    let last_refused = std::cell::Cell::new(Duration::ZERO);
    let (last, refused) = (&last_refused, &refused);
    let (err, started) = eventually_async(WAIT, || async move {
        let started = Instant::now();
        let err = join(relay, code)
            .await
            .expect_err("a wrong code was accepted");
        if refused(&err) {
            last.set(started - first);
            return None;
        }
        Some((err, started))
    })
    .await
    .unwrap_or_else(|| panic!("{code} was never checked within {WAIT:?}"));
    Unlocked {
        err,
        started,
        last_refused: last_refused.get(),
    }
}

fn throttled(err: &ClientError) -> bool {
    err.refusal() == Some(ErrorKind::Throttled)
}

/// The lockout schedule as the real relay applies it. Every boundary of it,
/// to the millisecond, is proto's `limits::tests::
/// the_relay_test_schedule_to_the_millisecond`; here the relay is tried
/// again until it checks a code (never slept on). Each lockout must have
/// lasted at least its length, and no attempt may have been refused later
/// than when this test, sleeping through the schedule, tried once: 450 ms
/// after the right code's try, 850 ms after the second wrong code's, 1700 ms
/// after the third's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_are_throttled_per_address_and_relay_wide() {
    let relay = TestRelay::started(&[
        ("code_failure_base_delay_ms", "400"),
        ("code_failures_per_minute", "3"),
        // Every try while locked out is a new connection.
        ("connections_per_minute_per_address", "100000"),
    ]);
    let key = relay.enrol("alice");
    let v = viewer(&relay, &key, Scope::View).await;
    // First wrong code: checked. Immediately after: locked out.
    let first = Instant::now();
    assert_eq!(
        join(&relay, "111-111-111-111-111")
            .await
            .unwrap_err()
            .refusal(),
        Some(ErrorKind::BadCode)
    );
    assert_eq!(
        join(&relay, "111-111-111-111-112")
            .await
            .unwrap_err()
            .refusal(),
        Some(ErrorKind::Throttled)
    );
    // Even the right code waits out the lockout (it is not checked).
    assert_eq!(
        join(&relay, &v.invite.code.clone())
            .await
            .unwrap_err()
            .refusal(),
        Some(ErrorKind::Throttled)
    );
    // After the delay, checking resumes; the lockout doubles.
    let second = join_until_checked(&relay, "111-111-111-111-113", throttled).await;
    assert_eq!(
        second.err.refusal(),
        Some(ErrorKind::BadCode),
        "{}",
        second.err
    );
    let locked = first.elapsed();
    assert!(
        locked >= Duration::from_millis(400),
        "locked out {locked:?}"
    );
    assert!(
        second.last_refused < Duration::from_millis(450),
        "still locked out {:?} later",
        second.last_refused
    );
    assert_eq!(
        join(&relay, "111-111-111-111-114")
            .await
            .unwrap_err()
            .refusal(),
        Some(ErrorKind::Throttled),
        "800 ms lockout after two failures"
    );
    // Third failure spends the relay-wide budget of 3 per minute.
    let third = join_until_checked(&relay, "111-111-111-111-115", throttled).await;
    assert_eq!(
        third.err.refusal(),
        Some(ErrorKind::BadCode),
        "{}",
        third.err
    );
    let locked = second.started.elapsed();
    assert!(
        locked >= Duration::from_millis(800),
        "locked out {locked:?}"
    );
    assert!(
        third.last_refused < Duration::from_millis(850),
        "still locked out {:?} later",
        third.last_refused
    );
    // Once this address's lockout (1600 ms) is over, the relay-wide budget
    // still refuses every code.
    let global = join_until_checked(&relay, "111-111-111-111-116", |e| {
        throttled(e) && !e.to_string().contains("not accepting codes")
    })
    .await;
    let err = global.err;
    assert_eq!(err.refusal(), Some(ErrorKind::Throttled), "{err}");
    assert!(err.to_string().contains("not accepting codes"), "{err}");
    let locked = third.started.elapsed();
    assert!(
        locked >= Duration::from_millis(1600),
        "locked out {locked:?}"
    );
    assert!(
        global.last_refused < Duration::from_millis(1700),
        "this address still locked out {:?} later",
        global.last_refused
    );
    assert!(auth_failed(&relay, "throttled_global"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_invite_code_in_logs_or_audit() {
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let (v, _d, _live) = pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let code = v.invite.code.clone();
    // A wrong code too: the guess must not be logged either.
    let _ = join(&relay, "555-444-333-222-111").await;
    v.control.end().await;
    relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .unwrap();
    let digits: String = code.chars().filter(char::is_ascii_digit).collect();
    let log = relay.log_text();
    let audit = std::fs::read_to_string(relay.audit_path()).unwrap();
    assert!(log.contains("invite created"), "the log is captured");
    for haystack in [&log, &audit] {
        for needle in [
            code.as_str(),
            digits.as_str(),
            "555-444-333-222-111",
            "555444333222111",
        ] {
            assert!(!haystack.contains(needle), "secret {needle} leaked");
        }
    }
    let key_b64 = key.to_file_contents();
    let secret_line = key_b64.lines().nth(1).unwrap();
    assert!(!log.contains(secret_line) && !audit.contains(secret_line));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_learns_device_and_consent() {
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let mut v = viewer(&relay, &key, Scope::View).await;
    let agent_key = SecretKey::generate().unwrap();
    let agent_pub = agent_key.public();
    let pending = assent_client::AgentPending::join(
        &relay.addr,
        &relay.ca(),
        agent_key,
        "pc-7",
        &v.invite.code.clone(),
    )
    .await
    .unwrap();
    match v.next_event().await.unwrap() {
        ViewerEvent::AgentJoined {
            device, device_key, ..
        } => {
            assert_eq!(device, "pc-7");
            assert_eq!(device_key, agent_pub);
        }
        other => panic!("{other:?}"),
    }
    let _live = tokio::spawn(pending.answer(ConsentDecision::View));
    assert!(matches!(
        v.next_event().await.unwrap(),
        ViewerEvent::Consent(ConsentDecision::View)
    ));
    assert!(matches!(
        v.next_event().await.unwrap(),
        ViewerEvent::Started {
            scope: Scope::View,
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_messages_pass_only_while_consent_is_pending_and_bounded() {
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let mut v = viewer(&relay, &key, Scope::View).await;
    let mut pending = join(&relay, &v.invite.code.clone()).await.unwrap();
    assert!(matches!(
        v.next_event().await.unwrap(),
        ViewerEvent::AgentJoined { .. }
    ));
    // Five messages from the viewer: the relay passes four.
    for i in 0..5u8 {
        v.control
            .send(&ClientMsg::Handshake(vec![i; 32]))
            .await
            .unwrap();
    }
    // Oversized: dropped.
    let big = vec![9u8; assent_proto::wire::MAX_HANDSHAKE_MSG + 1];
    v.control.send(&ClientMsg::Handshake(big)).await.unwrap();
    for i in 0..4u8 {
        let msg = tokio::time::timeout(WAIT, pending.control.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg, RelayMsg::Handshake(vec![i; 32]));
    }
    // The agent's answer reaches the viewer.
    pending
        .control
        .send(&ClientMsg::Handshake(b"from agent".to_vec()))
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, v.next_event())
        .await
        .unwrap()
        .unwrap()
    {
        ViewerEvent::Handshake(b) => assert_eq!(b, b"from agent"),
        other => panic!("{other:?}"),
    }
    // Nothing more arrives for the agent (the 5th and the oversized were dropped).
    let extra = tokio::time::timeout(Duration::from_millis(300), pending.control.recv()).await;
    assert!(extra.is_err(), "unexpected {extra:?}");
}

/// A client of another protocol version is refused with the versions named,
/// before anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_protocol_version_is_refused_clearly() {
    use assent_proto::wire::{ClientMsg, ErrorKind, RelayMsg, Role};
    let relay = TestRelay::started(&[]);
    let (_endpoint, conn) = assent_net::connect(&relay.addr, &relay.ca()).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let hello = ClientMsg::Hello {
        version: assent_proto::PROTOCOL_VERSION - 1,
        role: Role::Agent,
    };
    assent_net::send_msg(&mut send, &hello).await.unwrap();
    let answer: RelayMsg = assent_net::recv_msg(&mut recv).await.unwrap();
    match answer {
        RelayMsg::Error { kind, message } => {
            assert_eq!(kind, ErrorKind::BadVersion);
            let speaks = format!("speaks {}", assent_proto::PROTOCOL_VERSION);
            assert!(message.contains(&speaks), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// `assent-relay sessions` shows each live session's throughput each way
/// (over about the last second) and both sides' round trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_show_throughput_and_round_trips() {
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let (_viewer, mut vdata, mut live) =
        pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let sink = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(Some(_)) = live.data.recv.read(&mut buf).await {}
    });
    let feed = tokio::spawn(async move {
        let chunk = vec![7u8; 20_000];
        loop {
            if vdata.send.write_all(&chunk).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let seen = assent_tests::eventually_async(Duration::from_secs(10), || {
        let out = run(
            "assent-relay",
            &["sessions", "--data-dir", relay.data_dir(), "--json"],
        );
        let sessions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let s = sessions[0].clone();
        let moving = s["rate_to_agent"].as_u64().unwrap_or(0) > 100_000;
        std::future::ready(moving.then_some(s))
    })
    .await
    .expect("no throughput shown");
    for rtt in ["rtt_viewer_ms", "rtt_agent_ms"] {
        let ms = seen[rtt].as_f64().unwrap_or(-1.0);
        assert!(ms > 0.0 && ms < 1000.0, "{rtt}: {seen}");
    }
    let table = run(
        "assent-relay",
        &["sessions", "--data-dir", relay.data_dir()],
    );
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        table.contains("RATE TO VIEWER/AGENT") && table.contains("kB/s"),
        "{table}"
    );
    assert!(table.contains(" ms/"), "{table}");
    feed.abort();
    sink.abort();
}
