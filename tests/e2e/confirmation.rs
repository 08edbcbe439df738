//! Confirming the end with the user (issue 13 items 4 and 8): after every
//! kind of end the agent's connection stays open for "Was your problem
//! solved?"; the signed answer is recorded as `user_confirmation` and added
//! to the session's note (`session_note_update` when the note came first).
//! A forged, repeated or other session's answer is refused and audited.

use std::time::{Duration, Instant};

use assent_client::AgentLive;
use assent_proto::identity::{self, PublicKey, SecretKey};
use assent_proto::wire::{ClientMsg, Confirmation, ConsentDecision, RelayMsg, Scope};
use assent_tests::{run, TestRelay};

use crate::agent::live_pair;
use crate::common::{pair, WAIT};
use crate::people::{technician, user};

/// Waits for the relay's `SessionEnded` on the agent's control stream.
async fn ended(agent: &mut AgentLive) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "the agent never heard the end");
        match tokio::time::timeout(WAIT, agent.control.recv()).await {
            Ok(Ok(RelayMsg::SessionEnded { reason })) => return reason.as_str().to_string(),
            Ok(Ok(_)) => continue,
            other => panic!("agent control: {other:?}"),
        }
    }
}

fn records_of(relay: &TestRelay, event: &str, session: &str) -> Vec<serde_json::Value> {
    relay
        .records()
        .into_iter()
        .filter(|r| r["event"] == event && r["session"] == session)
        .collect()
}

async fn wait_records(
    relay: &TestRelay,
    event: &str,
    session: &str,
    n: usize,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + WAIT;
    while records_of(relay, event, session).len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    records_of(relay, event, session)
}

/// The record's receipt verifies with the session's device key over the
/// session's own offer.
fn assert_signed(rec: &serde_json::Value, agent: &AgentLive, answer: Confirmation) {
    let receipt = hex::decode(rec["receipt"].as_str().expect("receipt")).unwrap();
    let payload = identity::confirmation_payload(agent.offer_bytes(), answer);
    PublicKey(agent.offer.device_key)
        .verify(&payload, &receipt)
        .expect("the recorded receipt verifies with the device key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_end_is_confirmed_with_a_signed_answer() {
    let relay = TestRelay::started(&[("idle_timeout_secs", "2")]);
    let key = relay.enrol("alice");
    let ends = [
        "viewer_closed",
        "agent_ended",
        "admin_killed",
        "idle_timeout",
    ];
    for (i, how) in ends.into_iter().enumerate() {
        let (v, _data, mut agent) = pair(&relay, &key, Scope::View, ConsentDecision::View).await;
        let session = agent.session.clone();
        let mut v = Some(v);
        match how {
            "viewer_closed" => v.take().unwrap().control.end().await,
            "agent_ended" => agent.control.send(&ClientMsg::End).await.unwrap(),
            "admin_killed" => {
                let out = run(
                    "assent-relay",
                    &["kill", "--data-dir", relay.data_dir(), &session],
                );
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            _ => {} // the idle timeout ends it: nothing moves on this session
        }
        assert_eq!(ended(&mut agent).await, how);
        let answer = [Confirmation::Yes, Confirmation::No, Confirmation::NotSure][i % 3];
        agent
            .scope_reporter()
            .report_confirmation(&mut agent.control, answer)
            .await
            .unwrap();
        let recs = wait_records(&relay, "user_confirmation", &session, 1).await;
        assert_eq!(recs.len(), 1, "{how}: {:?}", relay.events());
        assert_eq!(recs[0]["answer"], answer.as_str());
        assert_signed(&recs[0], &agent, answer);
        drop(v);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_joins_the_note_before_or_after_it_is_filed() {
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");

    // The technician files the note and closes first: the later answer is
    // appended as session_note_update.
    let (mut v, _data, mut agent) = pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let session = agent.session.clone();
    let note = vec![
        ("result".to_string(), "Resolved".to_string()),
        (
            "user_confirmation".to_string(),
            "forged by the viewer".to_string(),
        ),
    ];
    v.control
        .send(&ClientMsg::SessionNote { fields: note })
        .await
        .unwrap();
    v.control.end().await;
    assert_eq!(ended(&mut agent).await, "viewer_closed");
    let notes = wait_records(&relay, "session_note", &session, 1).await;
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].get("user_confirmation").is_none(),
        "the viewer cannot write the user's answer: {}",
        notes[0]
    );
    agent
        .scope_reporter()
        .report_confirmation(&mut agent.control, Confirmation::Yes)
        .await
        .unwrap();
    let updates = wait_records(&relay, "session_note_update", &session, 1).await;
    assert_eq!(updates.len(), 1, "{:?}", relay.events());
    assert_eq!(updates[0]["user_confirmation"], "yes");

    // The user ends and answers first; the technician's note, filed after,
    // carries the answer.
    let (mut v, _data, mut agent) = pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let session = agent.session.clone();
    agent.control.send(&ClientMsg::End).await.unwrap();
    assert_eq!(ended(&mut agent).await, "agent_ended");
    agent
        .scope_reporter()
        .report_confirmation(&mut agent.control, Confirmation::No)
        .await
        .unwrap();
    wait_records(&relay, "user_confirmation", &session, 1).await;
    let note = vec![("result".to_string(), "Follow-up Required".to_string())];
    v.control
        .send(&ClientMsg::SessionNote { fields: note })
        .await
        .unwrap();
    v.control.end().await;
    let notes = wait_records(&relay, "session_note", &session, 1).await;
    assert_eq!(notes.len(), 1, "{:?}", relay.events());
    assert_eq!(notes[0]["user_confirmation"], "no");
    assert!(records_of(&relay, "session_note_update", &session).is_empty());
}

fn refusals(relay: &TestRelay) -> usize {
    relay
        .records()
        .iter()
        .filter(|r| r["event"] == "auth_failed" && r["reason"] == "bad_confirmation_receipt")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_foreign_answers_are_refused_and_audited() {
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let (va, _da, mut a) = pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let (vb, _db, mut b) = pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    va.control.end().await;
    vb.control.end().await;
    ended(&mut a).await;
    ended(&mut b).await;

    // Signed with another key.
    let forged = SecretKey::generate().unwrap().sign(b"anything");
    let msg = ClientMsg::UserConfirmation {
        answer: Confirmation::Yes,
        receipt: forged,
    };
    a.control.send(&msg).await.unwrap();
    // Session A's receipt, sent in session B.
    a.scope_reporter()
        .report_confirmation(&mut b.control, Confirmation::Yes)
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while refusals(&relay) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refusals(&relay), 2, "{:?}", relay.events());
    assert!(
        !relay.events().iter().any(|e| e == "user_confirmation"),
        "a refused answer is not on record"
    );
}

/// The real agent (in-process, fake screen): the question appears only
/// after capture stopped, and the answer reaches the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_asks_after_capture_stopped_and_reports_the_answer() {
    let relay = TestRelay::started(&[]);
    let (mut viewer, agent) = live_pair(&relay, Scope::View, ConsentDecision::View).await;
    *agent.ui.confirm_answer.lock().unwrap() = Some(Confirmation::Yes);
    assert!(viewer.next_frame(WAIT).await.unwrap(), "a first frame");
    viewer.viewer.control.end().await;
    let outcome = tokio::time::timeout(WAIT, agent.task)
        .await
        .expect("the agent exits once answered")
        .unwrap()
        .unwrap();
    assert!(
        format!("{outcome:?}").contains("ended the session"),
        "{outcome:?}"
    );
    let asked_at = agent
        .ui
        .frames_when_asked
        .lock()
        .unwrap()
        .expect("the user was asked");
    let sent = agent
        .stats
        .frames_sent
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        asked_at, sent,
        "a frame went out after the question appeared"
    );
    let rec = relay
        .wait_record(WAIT, |r| r["event"] == "user_confirmation")
        .expect("user_confirmation");
    assert_eq!(rec["answer"], "yes");
}

/// The relay going away while the user is asked takes the question away:
/// the agent exits rather than wait for an answer nobody can record.
#[test]
fn the_question_goes_when_the_relay_does() {
    let display = assent_xvfb::Xvfb::start_with_size(320, 200);
    let mut relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let (mut tech, code) = technician(&relay, (home.path(), &key), "T-8001", &[], "info");
    let mut user = user(&relay, home.path(), display.display(), &code, "info");
    user.say("v");
    tech.hear("\"fps\"");
    tech.hang_up();
    user.hear("Was your problem solved?");
    let stopped = Instant::now();
    assert!(relay.stop().is_some(), "relay did not stop");
    assert!(
        user.proc.wait_timeout(WAIT).is_some(),
        "the agent kept asking after the relay went away"
    );
    assert!(stopped.elapsed() < WAIT);
}

/// The technician still writing the note in the window sees the user's
/// answer; the note, filed after it (closing twice past the one unticked
/// item), carries it in the file and at the relay.
#[test]
fn the_window_shows_the_users_answer_and_the_note_carries_it() {
    use std::process::{Command, Stdio};
    let display_a = assent_xvfb::Xvfb::start_with_size(320, 200);
    let display_b = assent_xvfb::Xvfb::start_with_size(1280, 900);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let mut viewer = Command::new(assent_tests::bin("assent-viewer"))
        .args([
            "connect",
            "--relay",
            &relay.addr,
            "--ticket",
            "T-8002",
            "--ca",
        ])
        .arg(relay.ca())
        .arg("--key")
        .arg(&key)
        .args([
            "--identity-check",
            "email",
            "--result",
            "resolved",
            "--tick",
            "all",
        ])
        .env("DISPLAY", display_b.display())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = assent_tests::lines(viewer.stdout.take().unwrap());
    let mut viewer = assent_tests::Proc::new(viewer);
    let code = assent_tests::wait_line(&out, |l| l.starts_with("Invite code: "), "code")
        .trim_start_matches("Invite code: ")
        .to_string();
    let mut user = user(&relay, home.path(), display_a.display(), &code, "info");
    user.say("v");
    relay
        .wait_record(WAIT, |r| r["event"] == "session_start")
        .expect("live");
    let window = assent_tests::eventually_every(WAIT, Duration::from_millis(100), || {
        let out = display_b
            .command("xdotool")
            .args(["search", "--name", "Assent — "])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .and_then(|l| l.parse::<u32>().ok())
    })
    .expect("the viewer window");
    let close = || assent_tests::x11::close_window(display_b.display(), window);
    close();
    user.hear("Was your problem solved?");
    user.say("y");
    relay
        .wait_record(WAIT, |r| r["event"] == "user_confirmation")
        .expect("user_confirmation");
    let viewer_audit = home.path().join("data/assent/audit.jsonl");
    assert!(
        crate::viewer::file_contains_within(&viewer_audit, "user_confirmation", WAIT),
        "the viewer never heard the answer"
    );
    std::thread::sleep(Duration::from_millis(500));
    let _ = display_b
        .command("import")
        .args(["-window", "root"])
        .arg(crate::desktop::artifacts().join("viewer-user-answered.png"))
        .status();
    // One item is not ticked ("Resolution tested with user": nobody asked
    // the user to test): the first close warns, the second files.
    close();
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        viewer.wait_timeout(Duration::from_millis(100)).is_none(),
        "filed without the warning"
    );
    close();
    assert!(
        viewer.wait_timeout(WAIT).is_some(),
        "the second close did not file the note"
    );
    let note = relay
        .wait_record(WAIT, |r| r["event"] == "session_note")
        .expect("session_note");
    assert_eq!(note["user_confirmation"], "yes", "{note}");
    assert_eq!(note["checklist_incomplete"], "resolution_tested", "{note}");
    let notes = std::fs::read_dir(home.path().join("data/assent/notes"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(notes.contains("answered: Yes"), "{notes}");
}
