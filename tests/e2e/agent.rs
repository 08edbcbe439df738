//! The agent's session logic end to end: a real relay process, the agent
//! library in-process with a fake screen (`FakeSource`) and a recording input
//! sink (`RecordingSink`) — test doubles standing in for the X display,
//! which the Xvfb tests in `desktop.rs` exercise for real — and a
//! programmatic viewer.

use std::future::ready;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assent_agent::session::{self, JoinConfig, Outcome, Stats};
use assent_agent::ui::{UiCommand, UiEvent, UiSink};
use assent_capture::{FakeSource, ScreenSource};
use assent_input::{InputError, InputSink, RecordingSink};
use assent_proto::identity::SecretKey;
use assent_proto::session_msg::{InputEvent, Key, MouseButton};
use assent_proto::wire::{Confirmation, ConsentDecision, Scope};
use assent_tests::viewer::{self, Pairing};
use assent_tests::{eventually_every_async, TestRelay};
use tokio::sync::mpsc;

use crate::common::WAIT;

pub(crate) const W: u32 = 320;
pub(crate) const H: u32 = 200;

/// A RecordingSink the test can read after the agent's input thread took it.
#[derive(Clone, Default)]
pub(crate) struct SharedSink(Arc<Mutex<RecordingSink>>);

impl InputSink for SharedSink {
    fn apply(&mut self, event: &InputEvent) -> Result<(), InputError> {
        self.0.lock().unwrap().apply(event)
    }
    fn release_all(&mut self) -> Result<(), InputError> {
        self.0.lock().unwrap().release_all()
    }
}

impl SharedSink {
    pub(crate) fn events(&self) -> Vec<InputEvent> {
        self.0.lock().unwrap().events()
    }
    fn release_calls(&self) -> usize {
        self.0.lock().unwrap().release_all_calls()
    }
}

/// Answers the prompt as scripted (or never, for a timeout) and keeps what
/// it was shown.
pub(crate) struct ScriptedUi {
    answer: Option<ConsentDecision>,
    /// The answer to a mid-session request for more scope (none: let it
    /// time out).
    pub(crate) scope_answer: Mutex<Option<ConsentDecision>>,
    /// The answer to "Was your problem solved?" after the end (none: the
    /// window is closed, which skips it).
    pub(crate) confirm_answer: Mutex<Option<Confirmation>>,
    /// Frames the agent had sent when the question after the end appeared.
    pub(crate) frames_when_asked: Mutex<Option<u64>>,
    stats: Mutex<Option<Arc<Stats>>>,
    commands: mpsc::UnboundedSender<UiCommand>,
    shown: Mutex<Vec<UiEvent>>,
}

impl UiSink for ScriptedUi {
    fn show(&self, event: UiEvent) {
        if let UiEvent::Prompt { text, .. } = &event {
            let answer = match text.in_force {
                None => self.answer,
                Some(_) => *self.scope_answer.lock().unwrap(),
            };
            if let Some(d) = answer {
                let _ = self.commands.send(UiCommand::Decide(d));
            }
        }
        if let UiEvent::Confirm(_) = &event {
            let sent = self
                .stats
                .lock()
                .unwrap()
                .as_ref()
                .map(|s| s.frames_sent.load(Relaxed));
            *self.frames_when_asked.lock().unwrap() = sent;
            let cmd = match *self.confirm_answer.lock().unwrap() {
                Some(answer) => UiCommand::Confirm(answer),
                None => UiCommand::End,
            };
            let _ = self.commands.send(cmd);
        }
        self.shown.lock().unwrap().push(event);
    }
}

impl ScriptedUi {
    /// A UI that gives `answer` to the first prompt (none: let it time out).
    pub(crate) fn answering(
        answer: Option<ConsentDecision>,
        commands: mpsc::UnboundedSender<UiCommand>,
    ) -> ScriptedUi {
        ScriptedUi {
            answer,
            scope_answer: Mutex::new(None),
            confirm_answer: Mutex::new(None),
            frames_when_asked: Mutex::new(None),
            stats: Mutex::new(None),
            commands,
            shown: Mutex::new(Vec::new()),
        }
    }

    /// How many times the user was asked (the first prompt included).
    pub(crate) fn prompts(&self) -> usize {
        self.shown
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, UiEvent::Prompt { .. }))
            .count()
    }

    /// The interruptions the user was shown: `true` when one began,
    /// `false` when it ended.
    pub(crate) fn interruptions(&self) -> Vec<bool> {
        self.shown
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                UiEvent::Interrupted(on) => Some(*on),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn prompt_code(&self) -> Option<String> {
        self.shown.lock().unwrap().iter().find_map(|e| match e {
            UiEvent::Prompt { text, .. } => Some(text.verification_code.clone()),
            _ => None,
        })
    }
}

pub(crate) struct Agent {
    pub(crate) task: tokio::task::JoinHandle<anyhow::Result<Outcome>>,
    pub(crate) commands: mpsc::UnboundedSender<UiCommand>,
    pub(crate) ui: Arc<ScriptedUi>,
    pub(crate) sink: SharedSink,
    pub(crate) stats: Arc<Stats>,
}

pub(crate) fn start_agent(
    relay: &TestRelay,
    code: &str,
    answer: Option<ConsentDecision>,
    timeout: Duration,
) -> Agent {
    start_agent_via(&relay.addr, relay, code, answer, timeout, (W, H))
}

/// [`start_agent`] reaching the relay at `addr` (e.g. through a proxy), with
/// a fake screen of `size`.
pub(crate) fn start_agent_via(
    addr: &str,
    relay: &TestRelay,
    code: &str,
    answer: Option<ConsentDecision>,
    timeout: Duration,
    size: (u32, u32),
) -> Agent {
    let (tx, rx) = mpsc::unbounded_channel();
    let ui = Arc::new(ScriptedUi::answering(answer, tx.clone()));
    let sink = SharedSink::default();
    let stats = Arc::new(Stats::default());
    *ui.stats.lock().unwrap() = Some(stats.clone());
    let config = JoinConfig {
        relay: addr.to_string(),
        ca: relay.ca(),
        code: code.to_string(),
        device: "pc-fake".into(),
        device_key: SecretKey::generate().unwrap(),
        consent_timeout: timeout,
        files: Default::default(),
    };
    let sink_for_agent = sink.clone();
    let task = tokio::spawn(session::run(
        config,
        Box::new(move || Ok(Box::new(FakeSource::new(size.0, size.1)) as Box<dyn ScreenSource>)),
        Box::new(move || Ok(Box::new(sink_for_agent) as Box<dyn InputSink>)),
        ui.clone(),
        rx,
        stats.clone(),
    ));
    Agent {
        task,
        commands: tx,
        ui,
        sink,
        stats,
    }
}

pub(crate) async fn live_pair(
    relay: &TestRelay,
    scope: Scope,
    answer: ConsentDecision,
) -> (viewer::LiveViewer, Agent) {
    let key = relay.enrol(&format!("tech{}", assent_proto::random_id(3).unwrap()));
    let v = viewer::connect(&relay.addr, &relay.ca(), &key, scope)
        .await
        .unwrap();
    let agent = start_agent(
        relay,
        &v.invite.code.clone(),
        Some(answer),
        Duration::from_secs(30),
    );
    match tokio::time::timeout(WAIT, viewer::pair(v, &key))
        .await
        .unwrap()
        .unwrap()
    {
        Pairing::Live(l) => (*l, agent),
        Pairing::Refused(r) => panic!("refused: {r}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_and_timeout_share_nothing() {
    let relay = TestRelay::started(&[]);
    for (answer, decision) in [(Some(ConsentDecision::Denied), "denied"), (None, "timeout")] {
        let key = relay.enrol(&format!("t-{decision}"));
        let v = viewer::connect(&relay.addr, &relay.ca(), &key, Scope::Control)
            .await
            .unwrap();
        let agent = start_agent(
            &relay,
            &v.invite.code.clone(),
            answer,
            Duration::from_secs(2),
        );
        let pairing = tokio::time::timeout(WAIT, viewer::pair(v, &key))
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(pairing, Pairing::Refused(_)), "{pairing:?}");
        let outcome = agent.task.await.unwrap().unwrap();
        assert!(matches!(outcome, Outcome::Declined(_)), "{outcome:?}");
        assert!(agent.ui.prompt_code().is_some(), "the user was asked");
        assert_eq!(agent.stats.frames_sent.load(Relaxed), 0);
        assert!(agent.sink.events().is_empty());
        let rec = relay
            .wait_record(WAIT, |r| {
                r["event"] == "consent" && r["decision"] == decision
            })
            .expect("consent recorded");
        assert_eq!(
            rec["receipt"].as_str().unwrap().len(),
            128,
            "signed by the device"
        );
    }
    assert!(!relay.events().iter().any(|e| e == "session_start"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_only_sends_exact_frames_and_drops_input() {
    let relay = TestRelay::started(&[]);
    let (mut v, agent) = live_pair(&relay, Scope::Control, ConsentDecision::View).await;
    assert_eq!(v.scope, Scope::View);
    assert_eq!(
        agent.ui.prompt_code().as_deref(),
        Some(v.verification_code.as_str()),
        "same verification code on both sides"
    );
    assert!(v.next_frame(WAIT).await.unwrap(), "a first frame");
    // The decoded screen is exactly the fake screen of the frame it came from.
    let frame_no = agent.stats.frames_sent.load(Relaxed);
    assert!(frame_no >= 1);
    for _ in 0..5 {
        assert!(v.next_frame(WAIT).await.unwrap());
    }
    // The fake screen's gradient has a colour a pixel, so it goes as JPEG
    // first and exactly once still (REFINE_AFTER later): wait for that.
    let candidates: Vec<[u8; 4]> = (0..50u64)
        .map(|f| FakeSource::expected_pixel(W, H, f, 3, 150))
        .collect();
    let from_screen = |px: [u8; 4]| candidates.iter().any(|c| [c[2], c[1], c[0], 255] == px);
    let deadline = std::time::Instant::now() + WAIT;
    while !from_screen(v.pixel(3, 150).unwrap()) && std::time::Instant::now() < deadline {
        v.next_frame(Duration::from_millis(100)).await.unwrap();
    }
    let px = v.pixel(3, 150).unwrap();
    assert!(from_screen(px), "pixel {px:?} is not from the fake screen");
    assert!(v.jpeg_rects > 0, "the gradient went as JPEG first");

    v.input(InputEvent::MouseMove { x: 10, y: 10 })
        .await
        .unwrap();
    v.input(InputEvent::Text("secret".into())).await.unwrap();
    for _ in 0..3 {
        v.next_frame(Duration::from_millis(300)).await.unwrap();
    }
    assert!(
        agent.sink.events().is_empty(),
        "view-only injected {:?}",
        agent.sink.events()
    );
    assert!(
        agent.stats.inputs_dropped.load(Relaxed) >= 2
            || agent.stats.inputs_injected.load(Relaxed) == 0
    );
    assert_eq!(agent.stats.inputs_injected.load(Relaxed), 0);
    let _ = agent.commands.send(UiCommand::End);
    agent.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_injects_in_order_and_pause_drops_and_releases() {
    let relay = TestRelay::started(&[]);
    let (mut v, agent) = live_pair(&relay, Scope::Control, ConsentDecision::Control).await;
    assert_eq!(v.scope, Scope::Control);
    assert!(v.next_frame(WAIT).await.unwrap());
    let sent = vec![
        InputEvent::MouseMove { x: 40, y: 50 },
        InputEvent::MouseButton {
            button: MouseButton::Left,
            pressed: true,
        },
        InputEvent::MouseButton {
            button: MouseButton::Left,
            pressed: false,
        },
        InputEvent::Key {
            key: Key::Shift,
            pressed: true,
        },
        InputEvent::Text("hi".into()),
    ];
    for ev in &sent {
        v.input(ev.clone()).await.unwrap();
    }
    v.read_until(WAIT, |_| agent.sink.events().len() >= sent.len())
        .await
        .unwrap();
    assert_eq!(agent.sink.events(), sent);

    // Pause: the held Shift is released, input is dropped, frames become the
    // placeholder (no fake-screen pixel survives).
    let releases = agent.sink.release_calls();
    agent.commands.send(UiCommand::Pause).unwrap();
    // The placeholder, as the viewer's RGBA screen would hold it.
    let placeholder: Vec<u8> = assent_codec::placeholder_frame(W, H)
        .chunks(4)
        .flat_map(|p| [p[2], p[1], p[0], 255])
        .collect();
    let paused = v
        .wait_screen(WAIT, |d| d.pixels() == placeholder.as_slice())
        .await
        .unwrap();
    assert!(paused, "the viewer never saw the placeholder");
    assert!(v.paused, "the viewer was told");
    assert!(
        agent.sink.release_calls() > releases,
        "held keys released on pause"
    );
    v.input(InputEvent::Text("password".into())).await.unwrap();
    v.next_frame(Duration::from_millis(300)).await.unwrap();
    assert_eq!(
        agent.sink.events().len(),
        sent.len(),
        "input while paused was injected"
    );

    agent.commands.send(UiCommand::Resume).unwrap();
    let resumed = v
        .wait_screen(WAIT, |d| d.pixels() != placeholder.as_slice())
        .await
        .unwrap();
    assert!(resumed);
    v.input(InputEvent::MouseMove { x: 1, y: 2 }).await.unwrap();
    v.read_until(WAIT, |_| agent.sink.events().len() > sent.len())
        .await
        .unwrap();
    assert_eq!(
        agent.sink.events().last(),
        Some(&InputEvent::MouseMove { x: 1, y: 2 })
    );

    // End from the agent: the relay records agent_ended within 200 ms
    // (looked for every 5 ms, so the measurement is that fine).
    let clicked = Instant::now();
    agent.commands.send(UiCommand::End).unwrap();
    let took = eventually_every_async(Duration::from_secs(3), Duration::from_millis(5), || {
        let ended = relay
            .records()
            .iter()
            .any(|r| r["event"] == "session_end" && r["reason"] == "agent_ended");
        ready(ended.then(|| clicked.elapsed()))
    })
    .await;
    let took = took.expect("agent_ended recorded");
    assert!(
        took < Duration::from_millis(200),
        "agent_ended after {took:?}"
    );
    agent.task.await.unwrap().unwrap();
}
