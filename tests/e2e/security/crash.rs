//! Crashes and tampering: a killed viewer (scenario 4), a killed relay
//! (6), the audit log under kill -9 (10) and edited by hand (11).

use std::future::ready;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use assent_agent::session::Outcome;
use assent_agent::ui::UiCommand;
use assent_client::ViewerEvent;
use assent_proto::wire::{ConsentDecision, Scope};
use assent_tests::{eventually_async, TestRelay};

use super::every_start_has_an_end;
use crate::agent::{live_pair, start_agent};
use crate::common::WAIT;

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

fn sigkill(relay: &mut TestRelay) {
    let mut p = relay.proc.take().expect("relay running");
    p.signal(libc::SIGKILL);
    assert!(p.wait_timeout(WAIT).is_some(), "relay did not die");
}

/// Scenario 4: the technician's viewer process killed with SIGKILL: within
/// 1.5 s the agent has stopped capturing and injecting (its path watch hears
/// from the relay that the viewer's path is silent), and after the
/// reconnect grace (3 s here) the relay records `viewer_lost` and the agent
/// ends with its capture and input threads joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s04_viewer_sigkill_stops_the_agent_within_1_5s() {
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
    eventually_async(WAIT, || {
        ready((agent.stats.frames_sent.load(Relaxed) >= 10).then_some(()))
    })
    .await
    .expect("no frames");
    hv.viewer.signal(libc::SIGKILL);
    let killed = Instant::now();
    // The last frame goes out within 1.5 s; none for a second after that.
    let mut last = (agent.stats.frames_sent.load(Relaxed), killed);
    while killed.elapsed() < Duration::from_millis(2500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = agent.stats.frames_sent.load(Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let stopped = last.1.saturating_duration_since(killed);
    println!("agent's last frame {stopped:?} after the viewer was killed");
    assert!(
        stopped < Duration::from_millis(1500),
        "captured {stopped:?} after the kill"
    );
    let outcome = tokio::time::timeout(Duration::from_secs(6), agent.task)
        .await
        .unwrap_or_else(|_| panic!("the agent still runs after the grace"))
        .unwrap()
        .unwrap();
    assert!(matches!(outcome, Outcome::Ended(_)), "{outcome:?}");
    assert_eq!(
        agent.stats.frames_sent.load(Relaxed),
        last.0,
        "captured while interrupted"
    );
    let end = relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    assert_eq!(end["reason"], "viewer_lost");
    let interrupted = relay
        .records()
        .into_iter()
        .find(|r| r["event"] == "session_interrupted")
        .expect("session_interrupted");
    assert_eq!(interrupted["side"], "viewer");
    assert!(hv.viewer.wait_timeout(WAIT).is_some());
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

    // The agent stops capturing within 1.5 s of the relay going silent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let frames = agent.stats.frames_sent.load(Relaxed);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        agent.stats.frames_sent.load(Relaxed),
        frames,
        "captured with the relay gone"
    );
    // Both sides end when the connection's idle timeout (the relay's grace
    // plus 5 s, 8 s here) passes; neither waits for the relay to come back.
    let outcome = tokio::time::timeout(Duration::from_secs(10), agent.task)
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
    assert!(killed.elapsed() < Duration::from_secs(14));
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
    // Let the load run, then kill the relay in the middle of it (checked
    // below: at least 40 sessions acknowledged by then).
    eventually_async(Duration::from_secs(30), || {
        ready((acknowledged.lock().unwrap().len() >= 40).then_some(()))
    })
    .await;
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
