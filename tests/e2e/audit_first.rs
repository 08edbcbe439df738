//! "No record, no effect" (issue 12): the relay's audit write is made to
//! fail with the debug-build fault injection `ASSENT_TEST_FAIL_AUDIT` (a
//! full or broken disk cannot be produced per record here), and nothing the
//! record would have allowed happens.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use assent_agent::session::{self, JoinConfig, Outcome, Stats};
use assent_agent::ui::UiCommand;
use assent_capture::{FakeSource, ScreenSource};
use assent_input::InputSink;
use assent_proto::identity::SecretKey;
use assent_proto::session_msg::{InputEvent, Key};
use assent_proto::wire::{ConsentDecision, Scope};
use assent_tests::viewer::{self, Pairing};
use assent_tests::TestRelay;
use tokio::sync::mpsc;

use crate::agent::{live_pair, ScriptedUi, SharedSink};
use crate::common::WAIT;

fn relay_failing(event: &str) -> TestRelay {
    let mut relay = TestRelay::init(&[]);
    relay
        .env
        .push(("ASSENT_TEST_FAIL_AUDIT".into(), event.into()));
    relay.start();
    relay
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_record_that_fails_starts_nothing() {
    let relay = relay_failing("consent");
    let key = relay.enrol("alice");
    let v = viewer::connect(&relay.addr, &relay.ca(), &key, Scope::Control)
        .await
        .unwrap();
    // The agent library in-process, with a screen factory that notes
    // whether the capture thread ever started.
    let capture_started = Arc::new(AtomicBool::new(false));
    let started = capture_started.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let ui = Arc::new(ScriptedUi::answering(Some(ConsentDecision::Control), tx));
    let stats = Arc::new(Stats::default());
    let sink = SharedSink::default();
    let sink_for_agent = sink.clone();
    let config = JoinConfig {
        relay: relay.addr.clone(),
        ca: relay.ca(),
        code: v.invite.code.clone(),
        device: "pc-fake".into(),
        device_key: SecretKey::generate().unwrap(),
        consent_timeout: Duration::from_secs(30),
        files: Default::default(),
    };
    let agent = tokio::spawn(session::run(
        config,
        Box::new(move || {
            started.store(true, Relaxed);
            Ok(Box::new(FakeSource::new(64, 64)) as Box<dyn ScreenSource>)
        }),
        Box::new(move || Ok(Box::new(sink_for_agent) as Box<dyn InputSink>)),
        ui.clone(),
        rx,
        stats.clone(),
    ));

    let pairing = tokio::time::timeout(WAIT, viewer::pair(v, &key))
        .await
        .unwrap()
        .unwrap();
    match &pairing {
        Pairing::Refused(r) => assert!(r.contains("audit log"), "unclear refusal: {r}"),
        Pairing::Live(_) => panic!("a session started without its consent record"),
    }
    let outcome = tokio::time::timeout(WAIT, agent)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(&outcome, Outcome::RequestClosed(m) if m.contains("could not record")),
        "{outcome:?}"
    );
    assert!(!capture_started.load(Relaxed), "the capture thread started");
    assert_eq!(stats.frames_sent.load(Relaxed), 0);
    let closed = relay
        .wait_record(WAIT, |r| r["event"] == "invite_closed")
        .expect("invite_closed");
    assert_eq!(closed["reason"], "audit_failed");
    let events = relay.events();
    assert!(
        !events
            .iter()
            .any(|e| e == "consent" || e == "session_start" || e == "session_end"),
        "{events:?}"
    );
    assert!(!relay.log_text().contains("session started"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wider_scope_whose_record_fails_stays_view_only() {
    let relay = relay_failing("scope_changed");
    let (mut v, agent) = live_pair(&relay, Scope::View, ConsentDecision::View).await;
    assert!(v.wait_scope_replies(1, WAIT).await.unwrap());
    let replies = v.scope_replies;
    // The user says yes to control; the relay cannot record it.
    *agent.ui.scope_answer.lock().unwrap() = Some(ConsentDecision::Control);
    v.request_scope(Scope::Control).await.unwrap();
    assert!(v.wait_scope_replies(replies + 1, WAIT).await.unwrap());
    assert_eq!(v.scope, Scope::View, "the agent widened without a record");
    assert_eq!(agent.ui.prompts(), 2, "the user was asked");
    for key in [Key::Char('x'), Key::Return] {
        v.input(InputEvent::Key { key, pressed: true })
            .await
            .unwrap();
        v.input(InputEvent::Key {
            key,
            pressed: false,
        })
        .await
        .unwrap();
    }
    let until = Instant::now() + Duration::from_millis(800);
    while Instant::now() < until {
        v.next_frame(Duration::from_millis(100)).await.unwrap();
    }
    assert!(agent.sink.events().is_empty(), "input was injected");
    assert_eq!(agent.stats.inputs_injected.load(Relaxed), 0);
    assert!(!relay.events().iter().any(|e| e == "scope_changed"));
    agent.commands.send(UiCommand::End).unwrap();
    agent.task.await.unwrap().unwrap();
}
