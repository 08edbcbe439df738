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
        let agent = start_agent(&relay, &v.invite.code.clone(), answer, Duration::from_secs(2));
        let device_key = loop {
            match tokio::time::timeout(WAIT, v.next_event()).await.unwrap().unwrap() {
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
            .wait_record(WAIT, |r| r["event"] == "consent" && r["decision"] == decision)
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
