//! The adversarial scenario suite (SECURITY.md maps each scenario of the
//! threat model to its test). Hostile peers here speak the real protocol over
//! real QUIC through the real relay process, and misbehave on purpose; the
//! agent is the real session code with a fake screen and a recording input
//! sink (test doubles for the X display, which `desktop.rs` covers for real).
//!
//! Scenarios covered by tests elsewhere in this binary are listed in
//! SECURITY.md with their test names.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use assent_agent::session::Outcome;
use assent_agent::ui::UiCommand;
use assent_client::ViewerEvent;
use assent_proto::session_msg::{Control, InputEvent, Key, SessionMsg};
use assent_proto::wire::{ClientMsg, ConsentDecision, Scope};
use assent_tests::viewer;
use assent_tests::TestRelay;

use crate::agent::{live_pair, start_agent};
use crate::common::WAIT;

fn typing(text: &str) -> Vec<InputEvent> {
    vec![
        InputEvent::MouseMove { x: 10, y: 10 },
        InputEvent::Key {
            key: Key::Return,
            pressed: true,
        },
        InputEvent::Text(text.into()),
    ]
}

/// Scenario 1: without the user's yes nothing is captured or injected, even
/// when the technician's side pushes input, frame requests and a forged
/// consent of its own before the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_no_consent_no_frames_no_input_despite_early_pushes() {
    let relay = TestRelay::started(&[]);
    for (answer, decision) in [(Some(ConsentDecision::Denied), "denied"), (None, "timeout")] {
        let key = relay.enrol(&format!("hostile-{decision}"));
        let mut v = viewer::connect(&relay.addr, &relay.ca(), &key, Scope::Control)
            .await
            .unwrap();
        let agent = start_agent(
            &relay,
            &v.invite.code.clone(),
            answer,
            Duration::from_secs(2),
        );
        let device_key = loop {
            match tokio::time::timeout(WAIT, v.next_event())
                .await
                .unwrap()
                .unwrap()
            {
                ViewerEvent::AgentJoined { device_key, .. } => break device_key,
                _ => continue,
            }
        };
        let e2e = assent_client::e2e::initiate(&mut v, &key, device_key)
            .await
            .expect("handshake");
        // Everything a patched viewer could send before the answer: session
        // messages smuggled as handshake messages, a consent of its own, a
        // note, and a stream of its own with frames requests and input.
        let smuggled = [
            SessionMsg::Input(InputEvent::Text("rm -rf ~".into())),
            SessionMsg::Control(Control::KeyframeRequest),
            SessionMsg::Control(Control::ScopeRequest(Scope::Control)),
        ];
        for msg in &smuggled {
            let bytes = msg.encode().unwrap();
            v.control.send(&ClientMsg::Handshake(bytes)).await.unwrap();
        }
        v.control
            .send(&ClientMsg::Consent {
                decision: ConsentDecision::Control,
                receipt: vec![0; 64],
            })
            .await
            .unwrap();
        v.control
            .send(&ClientMsg::SessionNote {
                fields: vec![("Result".into(), "done".into())],
            })
            .await
            .unwrap();
        if let Ok((mut send, _recv)) = v.control.conn.open_bi().await {
            for msg in &smuggled {
                let _ = send.write_all(&msg.encode().unwrap()).await;
            }
        }
        // The viewer is never given a data stream.
        let started = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match v.next_event().await {
                    Ok(ViewerEvent::Started { .. }) => return true,
                    Ok(ViewerEvent::Ended(_)) | Err(_) => return false,
                    Ok(_) => continue,
                }
            }
        })
        .await
        .unwrap_or(false);
        assert!(!started, "a session started without the user's yes");
        drop(e2e);
        let outcome = agent.task.await.unwrap().unwrap();
        assert!(matches!(outcome, Outcome::Declined(_)), "{outcome:?}");
        assert_eq!(agent.stats.frames_sent.load(Relaxed), 0, "frames left");
        assert_eq!(agent.stats.inputs_injected.load(Relaxed), 0);
        assert!(agent.sink.events().is_empty(), "input was injected");
        relay
            .wait_record(WAIT, |r| {
                r["event"] == "consent" && r["decision"] == decision
            })
            .unwrap_or_else(|| panic!("consent {decision} not recorded: {:?}", relay.events()));
    }
    assert!(
        !relay.events().iter().any(|e| e == "session_start"),
        "no session started"
    );
}

/// Scenario 2: with view-only consent, input a patched viewer sends anyway
/// reaches nothing: the agent enforces the scope, not the viewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s02_view_only_hostile_input_is_never_injected() {
    let relay = TestRelay::started(&[]);
    // The technician asked for control; the user allowed view only.
    let (mut v, agent) = live_pair(&relay, Scope::Control, ConsentDecision::View).await;
    assert_eq!(v.scope, Scope::View);
    assert!(v.next_frame(WAIT).await.unwrap());
    let sent = typing("secret-typed-in-view-only");
    for _ in 0..20 {
        for ev in &sent {
            v.input(ev.clone()).await.unwrap();
        }
    }
    // Let the agent read all of it.
    let deadline = Instant::now() + WAIT;
    while agent.stats.inputs_dropped.load(Relaxed) < 60 && Instant::now() < deadline {
        v.next_frame(Duration::from_millis(100)).await.unwrap();
    }
    assert_eq!(agent.stats.inputs_dropped.load(Relaxed), 60);
    assert_eq!(agent.stats.inputs_injected.load(Relaxed), 0);
    assert!(agent.sink.events().is_empty(), "input was injected");
    agent.commands.send(UiCommand::End).unwrap();
    agent.task.await.unwrap().unwrap();
}

/// Scenario 3: a mid-session request for control is refused unless the user
/// says yes again in the prompt; a refused request does not come back for a
/// while (no nagging), and a yes is recorded by the relay with a receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s03_scope_change_needs_the_users_yes_again() {
    let relay = TestRelay::started(&[]);
    let (mut v, agent) = live_pair(&relay, Scope::View, ConsentDecision::View).await;
    // The agent's first message says which scope is in force; count the
    // replies to our requests after it.
    assert!(v.wait_scope_replies(1, WAIT).await.unwrap());
    assert_eq!(v.scope, Scope::View);
    let replies = v.scope_replies;

    // The user says no.
    *agent.ui.scope_answer.lock().unwrap() = Some(ConsentDecision::Denied);
    v.request_scope(Scope::Control).await.unwrap();
    assert!(v.wait_scope_replies(replies + 1, WAIT).await.unwrap());
    assert_eq!(v.scope, Scope::View, "refused");
    assert_eq!(agent.ui.prompts(), 2, "the user was asked again");
    for ev in typing("after-a-no") {
        v.input(ev).await.unwrap();
    }
    // Asking again at once does not reach the user (and is still no).
    v.request_scope(Scope::Control).await.unwrap();
    assert!(v.wait_scope_replies(replies + 2, WAIT).await.unwrap());
    assert_eq!(v.scope, Scope::View);
    assert_eq!(agent.ui.prompts(), 2, "no second question so soon");
    assert!(agent.sink.events().is_empty(), "input was injected");
    assert!(!relay.events().iter().any(|e| e == "scope_changed"));
    agent.commands.send(UiCommand::End).unwrap();
    agent.task.await.unwrap().unwrap();

    // Another session: the user says yes; control follows, and the relay
    // recorded the change with the device's signed receipt.
    let (mut v, agent) = live_pair(&relay, Scope::View, ConsentDecision::View).await;
    *agent.ui.scope_answer.lock().unwrap() = Some(ConsentDecision::Control);
    assert!(v.wait_scope_replies(1, WAIT).await.unwrap());
    let replies = v.scope_replies;
    v.request_scope(Scope::Control).await.unwrap();
    assert!(v.wait_scope_replies(replies + 1, WAIT).await.unwrap());
    assert_eq!(v.scope, Scope::Control);
    let sent = typing("after-a-yes");
    for ev in &sent {
        v.input(ev.clone()).await.unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while agent.sink.events().len() < sent.len() && Instant::now() < deadline {
        v.next_frame(Duration::from_millis(100)).await.unwrap();
    }
    assert_eq!(agent.sink.events(), sent);
    let rec = relay
        .wait_record(WAIT, |r| r["event"] == "scope_changed")
        .expect("scope change recorded");
    assert_eq!(rec["scope"], "control");
    assert_eq!(rec["change"], 1);
    assert_eq!(rec["receipt"].as_str().unwrap().len(), 128, "signed");

    // Giving control back needs no question.
    let replies = v.scope_replies;
    v.request_scope(Scope::View).await.unwrap();
    assert!(v.wait_scope_replies(replies + 1, WAIT).await.unwrap());
    assert_eq!(v.scope, Scope::View);
    assert_eq!(agent.ui.prompts(), 2);
    v.input(InputEvent::Text("after-giving-back".into()))
        .await
        .unwrap();
    v.next_frame(Duration::from_millis(300)).await.unwrap();
    assert_eq!(agent.sink.events(), sent, "nothing after giving back");
    agent.commands.send(UiCommand::End).unwrap();
    agent.task.await.unwrap().unwrap();
}

/// Scenario 5: after the user clicks End no frame leaves the agent once
/// 200 ms have passed, and the relay records `agent_ended`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s05_end_stops_frames_within_200ms() {
    let relay = TestRelay::started(&[]);
    let (mut v, agent) = live_pair(&relay, Scope::Control, ConsentDecision::Control).await;
    // Frames are flowing.
    for _ in 0..5 {
        assert!(v.next_frame(WAIT).await.unwrap());
    }
    let clicked = Instant::now();
    agent.commands.send(UiCommand::End).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent_by_200ms = agent.stats.frames_sent.load(Relaxed);
    // Keep acknowledging whatever still arrives, so flow control cannot be
    // what stops the frames.
    let mut after = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < until {
        match v.next_frame(Duration::from_millis(100)).await {
            Ok(true) => after += 1,
            Ok(false) => {}
            Err(_) => break,
        }
    }
    assert_eq!(
        agent.stats.frames_sent.load(Relaxed),
        sent_by_200ms,
        "frames left the agent more than 200 ms after End"
    );
    assert!(after <= 4, "{after} frames arrived after End");
    let rec = relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    assert_eq!(rec["reason"], "agent_ended");
    assert!(clicked.elapsed() < WAIT);
    let outcome = agent.task.await.unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Ended(_)), "{outcome:?}");
}

/// Scenario 13: while paused only the placeholder is sent and input is
/// dropped; no pixel captured during the pause reaches the viewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s13_pause_sends_only_the_placeholder_and_drops_input() {
    use crate::agent::{H, W};
    let relay = TestRelay::started(&[]);
    let (mut v, agent) = live_pair(&relay, Scope::Control, ConsentDecision::Control).await;
    assert!(v.next_frame(WAIT).await.unwrap());
    let placeholder: Vec<u8> = assent_codec::placeholder_frame(W, H)
        .chunks(4)
        .flat_map(|p| [p[2], p[1], p[0], 255])
        .collect();
    agent.commands.send(UiCommand::Pause).unwrap();
    assert!(
        v.wait_screen(WAIT, |d| d.pixels() == placeholder.as_slice())
            .await
            .unwrap(),
        "the placeholder never came"
    );
    assert!(v.paused);
    // From here until Resume every decoded screen is the placeholder, while
    // the fake screen behind it keeps changing, and input goes nowhere.
    let frames_before = v.frames;
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut typed = 0;
    while tokio::time::Instant::now() < until {
        v.input(InputEvent::Text("hunter2".into())).await.unwrap();
        typed += 1;
        if v.next_frame(Duration::from_millis(50)).await.unwrap() {
            assert_eq!(
                v.decoder.pixels(),
                placeholder.as_slice(),
                "a screen pixel reached the viewer while paused"
            );
        }
    }
    assert!(v.frames >= frames_before, "frames kept coming");
    assert!(
        agent.sink.events().is_empty(),
        "input was injected while paused"
    );
    let deadline = Instant::now() + WAIT;
    while agent.stats.inputs_dropped.load(Relaxed) < typed && Instant::now() < deadline {
        v.next_frame(Duration::from_millis(50)).await.unwrap();
    }
    assert_eq!(agent.stats.inputs_dropped.load(Relaxed), typed);
    agent.commands.send(UiCommand::Resume).unwrap();
    assert!(v
        .wait_screen(WAIT, |d| d.pixels() != placeholder.as_slice())
        .await
        .unwrap());
    agent.commands.send(UiCommand::End).unwrap();
    agent.task.await.unwrap().unwrap();
}

fn audit_verify(relay: &TestRelay) -> (bool, String) {
    let out = assent_tests::run(
        "assent-relay",
        &["audit", "verify", "--data-dir", relay.data_dir()],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every `session_start` in the relay's audit has a `session_end`.
fn every_start_has_an_end(relay: &TestRelay) -> (usize, Vec<String>) {
    let records = relay.records();
    let ends: std::collections::HashSet<_> = records
        .iter()
        .filter(|r| r["event"] == "session_end")
        .map(|r| r["session"].as_str().unwrap_or_default().to_string())
        .collect();
    let starts: Vec<String> = records
        .iter()
        .filter(|r| r["event"] == "session_start")
        .map(|r| r["session"].as_str().unwrap_or_default().to_string())
        .collect();
    let missing = starts
        .iter()
        .filter(|s| !ends.contains(*s))
        .cloned()
        .collect();
    (starts.len(), missing)
}

fn sigkill(relay: &mut TestRelay) {
    let mut p = relay.proc.take().expect("relay running");
    p.signal(libc::SIGKILL);
    assert!(p.wait_timeout(WAIT).is_some(), "relay did not die");
}

/// Scenario 6: a relay killed with SIGKILL and started again: both sides end
/// (no silent resume), the old code is gone, a new session needs a new code
/// and a new yes, and the audit before the crash verifies, with the crashed
/// session given its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s06_relay_crash_ends_both_sides_and_restart_needs_new_code_and_consent() {
    let mut relay = TestRelay::started(&[]);
    let (mut v, agent) = live_pair(&relay, Scope::Control, ConsentDecision::Control).await;
    assert!(v.next_frame(WAIT).await.unwrap());
    let old_code = v.viewer.invite.code.clone();
    let session = relay
        .wait_record(WAIT, |r| r["event"] == "session_start")
        .expect("session_start")["session"]
        .as_str()
        .unwrap()
        .to_string();
    sigkill(&mut relay);
    let killed = Instant::now();

    // Both sides notice and end; neither waits for the relay to come back.
    let outcome = tokio::time::timeout(Duration::from_secs(5), agent.task)
        .await
        .expect("the agent ended")
        .unwrap()
        .unwrap();
    assert!(
        matches!(&outcome, Outcome::Ended(m) if m.contains("lost")),
        "{outcome:?}"
    );
    let viewer_ended = loop {
        match v.next_frame(Duration::from_secs(5)).await {
            Err(_) => break true,
            Ok(true) => continue,
            Ok(false) => break false,
        }
    };
    assert!(viewer_ended, "the viewer kept waiting on a dead relay");
    assert!(killed.elapsed() < Duration::from_secs(5));
    assert!(agent.sink.events().is_empty());

    // The audit as the crash left it verifies and ends in a whole record.
    let (ok, text) = audit_verify(&relay);
    assert!(ok, "{text}");
    assert!(std::fs::read(relay.audit_path()).unwrap().ends_with(b"\n"));

    relay.start();
    // The crashed session got its end on restart.
    let end = relay
        .wait_record(WAIT, |r| {
            r["event"] == "session_end" && r["session"] == session
        })
        .expect("the crashed session was closed in the audit");
    assert_eq!(end["reason"], "relay_shutdown");
    assert_eq!(end["recovered_after_crash"], true);
    let (ok, text) = audit_verify(&relay);
    assert!(ok, "{text}");

    // A new session: new code, and the user is asked again.
    let (mut v2, agent2) = live_pair(&relay, Scope::Control, ConsentDecision::Control).await;
    assert_ne!(v2.viewer.invite.code, old_code);
    assert_eq!(agent2.ui.prompts(), 1, "a new yes for the new session");
    assert!(v2.next_frame(WAIT).await.unwrap());
    agent2.commands.send(UiCommand::End).unwrap();
    agent2.task.await.unwrap().unwrap();
    relay
        .wait_record(WAIT, |r| {
            r["event"] == "session_end" && r["reason"] == "agent_ended"
        })
        .expect("the new session ended");
    let (starts, missing) = every_start_has_an_end(&relay);
    assert_eq!(starts, 2);
    assert!(missing.is_empty(), "sessions without an end: {missing:?}");

    // The old code means nothing to the new relay (tried last: a wrong code
    // slows down further joins from this address, by design).
    let refused = crate::common::join(&relay, &old_code).await;
    assert!(refused.is_err(), "an old code was accepted after a restart");
}

/// Scenario 10: the relay killed with SIGKILL in the middle of many session
/// starts and ends: every start a client was told of is on disk, the chain
/// verifies, and a record cut short by a crash is reported by `audit verify`
/// and, on restart, set aside and recorded rather than silently dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_audit_survives_kill_9_under_load() {
    let mut relay = TestRelay::started(&[
        ("connections_per_minute_per_address", "100000"),
        ("max_sessions", "1000"),
        ("max_pending_invites_per_technician", "1000"),
    ]);
    let key = relay.enrol("loader");
    // Sessions the viewer was told had started (so their session_start was
    // fsynced before that).
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (relay_addr, ca, key) = (relay.addr.clone(), relay.ca(), key.clone());
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Relaxed) {
                let Ok(mut v) = assent_client::Viewer::connect(
                    &relay_addr,
                    &ca,
                    &key,
                    crate::common::request("T-load", Scope::View),
                )
                .await
                else {
                    return;
                };
                let Ok(pending) = assent_client::AgentPending::join(
                    &relay_addr,
                    &ca,
                    assent_proto::identity::SecretKey::generate().unwrap(),
                    "pc-load",
                    &v.invite.code.clone(),
                )
                .await
                else {
                    return;
                };
                let answer = tokio::spawn(pending.answer(ConsentDecision::View));
                loop {
                    match v.next_event().await {
                        Ok(ViewerEvent::Started { session, .. }) => {
                            acknowledged.lock().unwrap().push(session);
                            break;
                        }
                        Ok(ViewerEvent::Ended(_)) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
                let Ok(Ok(live)) = answer.await else { return };
                v.control.end().await;
                live.control.end().await;
            }
        }));
    }
    // Let the load run, then kill the relay in the middle of it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigkill(&mut relay);
    stop.store(true, Relaxed);
    for w in workers {
        let _ = tokio::time::timeout(WAIT, w).await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 40,
        "load too light: {}",
        acknowledged.len()
    );
    println!(
        "sessions acknowledged before the kill: {}",
        acknowledged.len()
    );

    // Everything acknowledged is on disk, and the chain holds.
    let (ok, text) = audit_verify(&relay);
    assert!(ok, "{text}");
    let on_disk: std::collections::HashSet<String> = relay
        .records()
        .iter()
        .filter(|r| r["event"] == "session_start")
        .map(|r| r["session"].as_str().unwrap().to_string())
        .collect();
    for s in &acknowledged {
        assert!(
            on_disk.contains(s),
            "session {s} was acknowledged but not recorded"
        );
    }

    // A crash in the middle of a write leaves a line cut short: verify
    // reports it by seq, and the relay sets it aside on restart.
    let records = relay.records().len();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(relay.audit_path())
        .unwrap();
    std::io::Write::write_all(&mut file, b"{\"event\":\"session_start\",\"seq\":").unwrap();
    drop(file);
    let (ok, text) = audit_verify(&relay);
    assert!(!ok, "a torn record went unnoticed");
    assert!(
        text.contains(&format!("seq {}", records + 1)) && text.contains("truncated"),
        "{text}"
    );
    relay.start();
    let repaired = relay
        .wait_record(WAIT, |r| r["event"] == "audit_repaired")
        .expect("the repair is on the record");
    assert_eq!(repaired["torn_seq"], records as u64 + 1);
    assert!(std::path::Path::new(repaired["saved_to"].as_str().unwrap()).exists());
    assert!(relay.log_text().contains("cut short"));
    let (ok, text) = audit_verify(&relay);
    assert!(ok, "{text}");
    let (starts, missing) = every_start_has_an_end(&relay);
    assert!(starts >= acknowledged.len());
    assert!(missing.is_empty(), "sessions without an end: {missing:?}");
}

/// Scenario 11: changing, deleting (in the middle or at the end), inserting
/// or reordering any audit record is caught by `audit verify`, which names
/// the first bad `seq`.
#[test]
fn s11_audit_tampering_of_every_kind_is_named_by_seq() {
    let relay = TestRelay::init(&[]);
    for name in ["a", "b", "c", "d", "e"] {
        relay.enrol(name);
    }
    let path = relay.audit_path();
    let original = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<String> = original.lines().map(String::from).collect();
    assert_eq!(lines.len(), 5);
    let (ok, text) = audit_verify(&relay);
    assert!(ok && text.contains("ok: 5 records"), "{text}");
    let forged = lines[1].replace("\"b\"", "\"mallory\"");
    // What verify must say: the changed record's seq; for a record missing,
    // added or moved, the seq expected at the first place the order breaks.
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "changed",
            [&lines[..1], &[forged], &lines[2..]].concat(),
            "seq 2: hash mismatch",
        ),
        (
            "deleted in the middle",
            [&lines[..2], &lines[3..]].concat(),
            "expected 3, found 4",
        ),
        (
            "deleted at the end",
            lines[..4].to_vec(),
            "seq 5: records missing at the end",
        ),
        (
            "two deleted at the end",
            lines[..3].to_vec(),
            "seq 4: records missing at the end",
        ),
        (
            "inserted",
            [&lines[..2], &lines[1..2], &lines[2..]].concat(),
            "expected 3, found 2",
        ),
        (
            "reordered",
            [&lines[..1], &lines[2..3], &lines[1..2], &lines[3..]].concat(),
            "expected 2, found 3",
        ),
    ];
    for (what, edited, needle) in cases {
        std::fs::write(&path, edited.join("\n") + "\n").unwrap();
        let (ok, text) = audit_verify(&relay);
        assert!(!ok, "{what}: not detected");
        assert!(text.contains(needle), "{what}: {text}");
    }
    std::fs::write(&path, &original).unwrap();
    let (ok, text) = audit_verify(&relay);
    assert!(ok, "{text}");
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

/// True when `text` holds a control character other than newline and tab.
fn has_control(text: &str) -> bool {
    text.chars().any(|c| {
        (c.is_control() && c != '\n' && c != '\t') || ('\u{202A}'..='\u{202E}').contains(&c)
    })
}

/// Scenario 16: a ticket, device name or technician name with control
/// characters, ANSI escapes, 10 kB of text or invalid UTF-8 is refused at
/// the door (and the relay keeps serving); what an edited audit file holds
/// is neutralised by `audit show`, and `sessions` prints only clean text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s16_hostile_metadata_is_refused_or_neutralised() {
    use assent_proto::wire::{ErrorKind, InviteRequest};
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let request = |ticket: &str| crate::common::request(ticket, Scope::View);
    for ticket in [
        "T\x1b[2J",
        &"x".repeat(10_000),
        "a\u{202E}b",
        "T\r\nevent=forged",
    ] {
        let err = assent_client::Viewer::connect(&relay.addr, &relay.ca(), &key, request(ticket))
            .await
            .unwrap_err();
        assert_eq!(
            err.refusal(),
            Some(ErrorKind::BadInput),
            "{ticket:?}: {err}"
        );
    }
    // Invalid UTF-8 cannot even be expressed through the typed client:
    // write the frame by hand, with the ticket's bytes replaced.
    let mut control = signed_in_technician(&relay, &key).await;
    let mut body = assent_proto::wire::encode(&ClientMsg::CreateInvite(InviteRequest {
        ticket: "TICKET".into(),
        ..request("x")
    }))
    .unwrap();
    let at = body.windows(6).position(|w| w == b"TICKET").unwrap();
    body[at..at + 6].copy_from_slice(&[0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1]);
    let frame = assent_proto::framing::encode_frame(&body, 64 * 1024).unwrap();
    control.send.write_all(&frame).await.unwrap();
    let reply = tokio::time::timeout(WAIT, control.recv()).await.unwrap();
    assert!(
        !matches!(
            reply,
            Ok(assent_proto::wire::RelayMsg::InviteCreated { .. })
        ),
        "{reply:?}"
    );
    // Device names.
    let v = crate::common::viewer(&relay, &key, Scope::View).await;
    for device in ["pc\x1b]0;owned\x07", &"d".repeat(10_000), "pc\u{0}"] {
        let err = assent_client::AgentPending::join(
            &relay.addr,
            &relay.ca(),
            assent_proto::identity::SecretKey::generate().unwrap(),
            device,
            &v.invite.code,
        )
        .await
        .err()
        .unwrap();
        assert_eq!(
            err.refusal(),
            Some(ErrorKind::BadInput),
            "{device:?}: {err}"
        );
    }
    // Technician names, from the admin's command line.
    for name in ["eve\x1b[31m", &"n".repeat(10_000), "eve\nmallory"] {
        let hostile = assent_proto::identity::SecretKey::generate().unwrap();
        let line = hostile.public().to_line();
        let out = assent_tests::run(
            "assent-relay",
            &[
                "technician",
                "add",
                "--data-dir",
                relay.data_dir(),
                "--name",
                name,
                "--key",
                &line,
            ],
        );
        assert!(!out.status.success(), "{name:?} enrolled");
        assert!(!has_control(&String::from_utf8_lossy(&out.stderr)));
    }
    // The relay kept serving through all of it, and what it recorded and
    // lists is clean.
    let (_v, _d, _live) =
        crate::common::pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let sessions = assent_tests::run(
        "assent-relay",
        &["sessions", "--data-dir", relay.data_dir()],
    );
    let listed = String::from_utf8_lossy(&sessions.stdout);
    assert!(listed.contains("pc-reception"), "{listed}");
    assert!(!has_control(&listed));
    let audit = std::fs::read_to_string(relay.audit_path()).unwrap();
    assert!(!audit.contains("owned") && !audit.contains("mallory") && !has_control(&audit));

    // An audit file edited to carry escapes (the chain is recomputed, as an
    // attacker with write access could): `audit show` prints none of them.
    let edited = TestRelay::init(&[]);
    {
        let mut log = assent_audit::AuditLog::open(&edited.audit_path()).unwrap();
        let mut fields = assent_audit::Fields::new();
        fields.insert("ticket".into(), "T\x1b[2J\x1b]0;pwned\x07".into());
        fields.insert("dev\x1b[31mice".into(), "\u{202E}gnp.exe".into());
        log.append("session_start\x1b[8m", fields).unwrap();
    }
    let out = assent_tests::run(
        "assent-relay",
        &["audit", "show", "--data-dir", edited.data_dir()],
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && shown.contains("session_start"),
        "{shown}"
    );
    assert!(!has_control(&shown), "{shown:?}");
}

/// What of a key file must never be seen elsewhere: its base64 lines, and
/// the raw key bytes in hex (how a careless `{:?}` of bytes would print).
fn secret_needles(path: &std::path::Path) -> Vec<String> {
    use base64::Engine as _;
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut needles = Vec::new();
    let body: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.len() >= 16 && !l.contains(' ') && !l.starts_with("-----"))
        .collect();
    // A PKCS#8 PEM ends with the public key (which certificates rightly
    // show); the lines before it hold the private key.
    let pem = text.contains("-----BEGIN");
    let private = if pem && body.len() > 1 {
        &body[..body.len() - 1]
    } else {
        &body[..]
    };
    for &line in private {
        needles.push(line.to_string());
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(line) {
            if bytes.len() <= 64 {
                needles.push(hex::encode(&bytes));
            }
        }
    }
    assert!(
        !needles.is_empty(),
        "no key material found in {}",
        path.display()
    );
    needles
}

/// Every file under `dir`, recursively, as text (lossy).
fn all_text_under(dir: &std::path::Path, skip: &[&std::path::Path]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if skip.iter().any(|s| *s == path) {
            continue;
        }
        if path.is_dir() {
            out.extend(all_text_under(&path, skip));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    out
}

/// Scenario 17: with every program logging at `trace`, no log, audit record
/// or note holds an invite code, a private key or text the technician typed.
#[test]
fn s17_no_secret_in_any_log_audit_or_note() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    // A full session of the real viewer and agent processes.
    let mut s = crate::viewer::live_session_logging("trace");
    assent_tests::wait_line(
        &s.viewer_out,
        |l| l.contains("\"frames\":") && !l.contains("\"frames\":0"),
        "frames at the viewer",
    );
    drop(s.viewer_stdin.take());
    assert!(s.viewer.wait_timeout(WAIT).is_some(), "viewer did not end");
    assert!(s.agent.wait_timeout(WAIT).is_some(), "agent did not end");
    let mut codes = vec![s.code.clone()];

    // A second session: a programmatic technician types into the real agent
    // (control granted at its terminal prompt), which injects into Xvfb.
    let typed = "hunter2-typed-secret";
    let xvfb = assent_xvfb::Xvfb::start_with_size(320, 240);
    let relay = &s.relay;
    let key = relay.enrol("bob");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let v = runtime
        .block_on(viewer::connect(
            &relay.addr,
            &relay.ca(),
            &key,
            Scope::Control,
        ))
        .unwrap();
    codes.push(v.invite.code.clone());
    let agent_config = s.home.path().join("agent2-config");
    let agent_log = s.home.path().join("agent2.log");
    let mut agent = assent_tests::Proc {
        child: Command::new(assent_tests::bin("assent-agent"))
            .args([
                "join",
                "--relay",
                &relay.addr,
                "--ca",
                relay.ca().to_str().unwrap(),
            ])
            .args(["--tty", &v.invite.code])
            .env("DISPLAY", xvfb.display())
            .env("XDG_CONFIG_HOME", &agent_config)
            .env("RUST_LOG", "trace")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&agent_log).unwrap())
            .spawn()
            .unwrap(),
    };
    let mut agent_stdin = agent.child.stdin.take().unwrap();
    let pairing = runtime.spawn(async move {
        let key = key;
        viewer::pair(v, &key).await
    });
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&agent_log)
        .unwrap_or_default()
        .contains("c = allow control")
    {
        assert!(Instant::now() < deadline, "no prompt from the agent");
        std::thread::sleep(Duration::from_millis(50));
    }
    agent_stdin.write_all(b"c\n").unwrap();
    let mut live = match runtime.block_on(pairing).unwrap().unwrap() {
        viewer::Pairing::Live(l) => *l,
        viewer::Pairing::Refused(r) => panic!("refused: {r}"),
    };
    assert_eq!(live.scope, Scope::Control);
    runtime.block_on(async {
        assert!(live.next_frame(WAIT).await.unwrap());
        live.input(InputEvent::Text(typed.into())).await.unwrap();
        for c in "hunter2".chars() {
            for pressed in [true, false] {
                live.input(InputEvent::Key {
                    key: Key::Char(c),
                    pressed,
                })
                .await
                .unwrap();
            }
        }
        // Frames keep coming after the input, so the agent has read it.
        for _ in 0..5 {
            live.next_frame(Duration::from_millis(500)).await.unwrap();
        }
        live.viewer.control.end().await;
    });
    assert!(agent.wait_timeout(WAIT).is_some(), "agent did not end");
    relay
        .wait_record(WAIT, |r| {
            r["event"] == "session_end" && r["reason"] == "viewer_closed"
        })
        .expect("second session ended");

    // The needles.
    let mut needles: Vec<String> = vec![typed.to_string()];
    for code in &codes {
        needles.push(code.clone());
        needles.push(code.chars().filter(char::is_ascii_digit).collect());
    }
    let home = s.home.path();
    let secret_files = [
        home.join("tech.key"),
        home.join("agent-config/assent/device.key"),
        agent_config.join("assent/device.key"),
        relay.dir.join("signing.key"),
        relay.dir.join("tls/relay.key"),
        relay.dir.join("tls/ca.key"),
    ];
    for f in &secret_files {
        needles.extend(secret_needles(f));
    }
    // The haystacks: every log, audit file and note either side wrote; the
    // key files themselves are the only place their contents may be.
    let skip: Vec<&std::path::Path> = secret_files.iter().map(|p| p.as_path()).collect();
    let mut haystacks = all_text_under(home, &skip);
    haystacks.push(("relay log".into(), relay.log_text()));
    haystacks.push((
        "relay audit".into(),
        std::fs::read_to_string(relay.audit_path()).unwrap(),
    ));
    let names: Vec<&str> = haystacks.iter().map(|(n, _)| n.as_str()).collect();
    for must in [
        "viewer.log",
        "agent.log",
        "agent2.log",
        "audit.jsonl",
        ".md",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(must)),
            "{must} not searched: {names:?}"
        );
    }
    assert!(
        haystacks.iter().map(|(_, t)| t.len()).sum::<usize>() > 10_000,
        "the logs are suspiciously short"
    );
    for (name, text) in &haystacks {
        for needle in &needles {
            if let Some(line) = text.lines().find(|l| l.contains(needle.as_str())) {
                panic!(
                    "a secret leaked into {name}: {}",
                    line.replace(needle.as_str(), "<SECRET>")
                );
            }
        }
    }
}

/// Peak resident memory of a process, from /proc (kB).
fn peak_rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Scenario 18: many concurrent sessions of programmatic clients through one
/// relay, each carrying paced traffic: none is dropped, every byte arrives,
/// every `session_start` has its `session_end`, and the relay's memory stays
/// bounded. 200 sessions for 20 s here (ASSENT_LOAD_SESSIONS and
/// ASSENT_LOAD_SECS change that; `cargo run --release -p assent-bench --
/// relay` measures 1000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s18_load_many_sessions_none_dropped_memory_bounded() {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;
    let sessions = env_or("ASSENT_LOAD_SESSIONS", 200) as usize;
    let secs = env_or("ASSENT_LOAD_SECS", 20);
    // Paced: a 1 kB update ten times a second each way, 10 kB/s a session
    // (office-like; the test process itself runs both ends of every session).
    const CHUNK: usize = 1024;
    const TICK: Duration = Duration::from_millis(100);
    let n = sessions.to_string();
    let relay = TestRelay::started(&[
        ("connections_per_minute_per_address", "1000000"),
        ("max_sessions", &n),
        ("max_pending_invites_per_technician", &n),
        ("idle_timeout_secs", "600"),
    ]);
    let key = relay.enrol("load");
    let pid = relay.proc.as_ref().unwrap().pid();

    // Pair them, a few at a time (as technicians would arrive).
    let mut pairs = Vec::new();
    let setup = Instant::now();
    for batch in 0..sessions.div_ceil(25) {
        let mut joins = Vec::new();
        for _ in (batch * 25)..((batch + 1) * 25).min(sessions) {
            let (relay_addr, ca, key) = (relay.addr.clone(), relay.ca(), key.clone());
            joins.push(tokio::spawn(async move {
                let mut v = assent_client::Viewer::connect(
                    &relay_addr,
                    &ca,
                    &key,
                    crate::common::request("T-load", Scope::View),
                )
                .await?;
                let pending = assent_client::AgentPending::join(
                    &relay_addr,
                    &ca,
                    assent_proto::identity::SecretKey::generate().unwrap(),
                    "pc-load",
                    &v.invite.code.clone(),
                )
                .await?;
                let live = tokio::spawn(pending.answer(ConsentDecision::View));
                loop {
                    if let ViewerEvent::Started { .. } = v.next_event().await? {
                        break;
                    }
                }
                let data = v.control.accept_data().await?;
                let live = live.await.expect("join")?;
                Ok::<_, assent_client::ClientError>((v, data, live))
            }));
        }
        for j in joins {
            pairs.push(j.await.unwrap().expect("a session failed to start"));
        }
    }
    println!("load: {sessions} sessions live after {:?}", setup.elapsed());

    // Paced traffic both ways; each side counts what it receives.
    let run = Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (v, data, live) in pairs {
        tasks.push(tokio::spawn(async move {
            let assent_client::DataStream {
                send: v_send,
                recv: v_recv,
            } = data;
            let assent_client::DataStream {
                send: a_send,
                recv: a_recv,
            } = live.data;
            // Each pump publishes its final count when done; its drain on
            // the other side reads until it has that much (or goes quiet).
            let pump = |mut send: assent_net::SendStream, total: Arc<AtomicU64>| async move {
                let chunk = vec![0x5a_u8; CHUNK];
                let mut sent = 0u64;
                let start = tokio::time::Instant::now();
                let mut tick = tokio::time::interval(TICK);
                while start.elapsed() < run {
                    tick.tick().await;
                    if send.write_all(&chunk).await.is_err() {
                        break;
                    }
                    sent += CHUNK as u64;
                }

                total.store(sent, SeqCst);
                (send, sent)
            };
            let drain = |mut recv: assent_net::RecvStream, total: Arc<AtomicU64>| async move {
                let mut got = 0u64;
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let expect = total.load(SeqCst);
                    if expect != u64::MAX && got >= expect {
                        break;
                    }
                    match tokio::time::timeout(Duration::from_secs(10), recv.read(&mut buf)).await {
                        Ok(Ok(Some(n))) => got += n as u64,
                        Err(_) if expect == u64::MAX => continue,
                        other => {
                            eprintln!("drain ended at {got} of {expect}: {other:?}");
                            break;
                        }
                    }
                }
                got
            };
            let to_agent_total = Arc::new(AtomicU64::new(u64::MAX));
            let to_viewer_total = Arc::new(AtomicU64::new(u64::MAX));
            let ((v_send, to_agent), (a_send, to_viewer), at_agent, at_viewer) = tokio::join!(
                pump(v_send, to_agent_total.clone()),
                pump(a_send, to_viewer_total.clone()),
                drain(a_recv, to_agent_total),
                drain(v_recv, to_viewer_total),
            );
            drop((v_send, a_send));
            v.control.end().await;
            drop(live.control);
            (to_agent, at_agent, to_viewer, at_viewer)
        }));
    }
    let mut sent_total = 0u64;
    let early_ends = || {
        relay
            .records()
            .into_iter()
            .filter(|r| r["event"] == "session_end" && r["reason"] != "viewer_closed")
            .collect::<Vec<_>>()
    };
    for t in tasks {
        let (to_agent, at_agent, to_viewer, at_viewer) = t.await.unwrap();
        assert_eq!(
            at_agent,
            to_agent,
            "bytes lost on the way to an agent: {:?}",
            early_ends()
        );
        assert_eq!(
            at_viewer,
            to_viewer,
            "bytes lost on the way to a viewer: {:?}",
            early_ends()
        );
        sent_total += to_agent + to_viewer;
    }
    let rss_kb = peak_rss_kb(pid);
    let cpu = |pid: String| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: u64 = fields
            .get(11..13)
            .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0);
        ticks as f64 / 100.0
    };
    println!(
        "load: cpu seconds: relay {:.1}, test process {:.1}",
        cpu(pid.to_string()),
        cpu("self".into())
    );
    println!(
        "load: {sessions} sessions × {secs} s, {:.1} MB forwarded, relay peak RSS {:.1} MB",
        sent_total as f64 / 1e6,
        rss_kb as f64 / 1024.0
    );

    // Every session ended as its technician closed it: none dropped.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ends = relay
            .events()
            .iter()
            .filter(|e| *e == "session_end")
            .count();
        if ends >= sessions || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let records = relay.records();
    let ends: Vec<_> = records
        .iter()
        .filter(|r| r["event"] == "session_end")
        .collect();
    assert_eq!(ends.len(), sessions);
    for e in &ends {
        assert_eq!(e["reason"], "viewer_closed", "{e}");
    }
    let (starts, missing) = every_start_has_an_end(&relay);
    assert_eq!(starts, sessions);
    assert!(missing.is_empty(), "{missing:?}");
    // Bounded: well under a megabyte a session (the bench records figures).
    assert!(
        rss_kb > 0 && rss_kb < 64 * 1024 + 512 * sessions as u64,
        "relay RSS {rss_kb} kB"
    );
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

    // Meanwhile, from 127.0.0.1: a technician and a user pair as usual.
    tokio::time::sleep(Duration::from_secs(4)).await;
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

/// Scenario 7: a code already used, a code past its lifetime, and another
/// technician's code presented on a technician's connection are all
/// refused and audited; the other technician's code still belongs to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s07_code_replay_used_expired_and_another_technicians() {
    use assent_proto::wire::ErrorKind;
    let relay = TestRelay::started(&[
        ("invite_ttl_secs", "2"),
        ("code_failure_base_delay_ms", "10"),
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
    tokio::time::sleep(Duration::from_millis(100)).await;

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
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Expired.
    let late = crate::common::viewer(&relay, &alice, Scope::View).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = crate::common::join(&relay, &late.invite.code)
        .await
        .unwrap_err();
    assert_eq!(err.refusal(), Some(ErrorKind::ExpiredCode), "{err}");
    assert!(auth_failed("expired_code"));
}

/// Scenario 4: the technician's viewer process killed with SIGKILL: within
/// 3 s the agent has stopped capturing and injecting (its session is over
/// and its capture and input threads joined), and the relay recorded
/// `viewer_lost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s04_viewer_sigkill_stops_the_agent_within_3s() {
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let mut hv = crate::viewer::spawn_headless_viewer(&relay, home.path(), "control", "info");
    let agent = start_agent(
        &relay,
        &hv.code,
        Some(ConsentDecision::Control),
        Duration::from_secs(30),
    );
    // Frames are flowing to the real viewer process.
    let deadline = Instant::now() + WAIT;
    while agent.stats.frames_sent.load(Relaxed) < 10 {
        assert!(Instant::now() < deadline, "no frames");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hv.viewer.signal(libc::SIGKILL);
    let killed = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(3), agent.task)
        .await
        .unwrap_or_else(|_| panic!("the agent was still running 3 s after the viewer died"))
        .unwrap()
        .unwrap();
    let stopped = killed.elapsed();
    let frames = agent.stats.frames_sent.load(Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        agent.stats.frames_sent.load(Relaxed),
        frames,
        "captured after the end"
    );
    assert!(matches!(outcome, Outcome::Ended(_)), "{outcome:?}");
    println!("agent stopped {stopped:?} after the viewer was killed");
    let end = relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    assert_eq!(end["reason"], "viewer_lost");
    assert!(hv.viewer.wait_timeout(WAIT).is_some());
}

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

/// A technician's raw control connection, authenticated: for sending what
/// the typed client never would.
async fn signed_in_technician(
    relay: &TestRelay,
    key: &assent_proto::identity::SecretKey,
) -> assent_client::Control {
    use assent_proto::wire::Role;
    let mut control = assent_client::Control::open(&relay.addr, &relay.ca(), Role::Viewer)
        .await
        .unwrap();
    let signature = control.sign_challenge(Role::Viewer, key).unwrap();
    control
        .send(&ClientMsg::ViewerAuth {
            public_key: key.public().0,
            signature,
        })
        .await
        .unwrap();
    control.recv().await.unwrap();
    control
}
