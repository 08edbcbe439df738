//! Consent and scope, enforced by the agent itself: scenarios 1, 2, 3, 5
//! and 13.

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
    v.read_until(WAIT, |_| agent.stats.inputs_dropped.load(Relaxed) >= 60)
        .await
        .unwrap();
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
    v.read_until(WAIT, |_| agent.sink.events().len() >= sent.len())
        .await
        .unwrap();
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
    // The bound under test: whatever is sent by now is all that is sent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent_by_200ms = agent.stats.frames_sent.load(Relaxed);
    // Keep acknowledging whatever still arrives, so flow control cannot be
    // what stops the frames. What is tested: no frame leaves the agent
    // during this second.
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
    // the fake screen behind it keeps changing, and input goes nowhere: what
    // is tested is this second.
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
    v.read_until(WAIT, |_| agent.stats.inputs_dropped.load(Relaxed) >= typed)
        .await
        .unwrap();
    assert_eq!(agent.stats.inputs_dropped.load(Relaxed), typed);
    agent.commands.send(UiCommand::Resume).unwrap();
    assert!(v
        .wait_screen(WAIT, |d| d.pixels() != placeholder.as_slice())
        .await
        .unwrap());
    agent.commands.send(UiCommand::End).unwrap();
    agent.task.await.unwrap().unwrap();
}
