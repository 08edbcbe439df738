//! Escalation to a specialist with fresh consent (issue 13 item 6): the
//! first technician hands a live session to an enrolled technician who may
//! receive escalations; the user is asked afresh on their own device,
//! naming the specialist and the trigger; only a yes starts the specialist's
//! session (`escalated_from`), and the first ends `escalated`. A no, or a
//! handover nobody claims in time, leaves the first session as it was.

use std::process::{Command, Stdio};
use std::time::Duration;

use assent_client::{AgentLive, AgentPending, ClientError, Viewer, ViewerEvent};
use assent_proto::escalation::EscalationState;
use assent_proto::identity::SecretKey;
use assent_proto::wire::{ClientMsg, ConsentDecision, EndReason, ErrorKind, RelayMsg, Scope};
use assent_tests::{bin, lines, run, wait_line, Proc, TestRelay};

use crate::common::{viewer, WAIT};
use crate::people::{technician, user};

/// `assent-relay technician escalations NAME --allow`.
fn allow_escalations(relay: &TestRelay, name: &str) {
    let out = run(
        "assent-relay",
        &[
            "technician",
            "escalations",
            name,
            "--allow",
            "--data-dir",
            relay.data_dir(),
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("may now receive escalations"), "{said}");
}

/// A live session between `key`'s technician and an agent with `device`.
async fn live(relay: &TestRelay, key: &SecretKey, device: &SecretKey) -> (Viewer, AgentLive) {
    let mut v = viewer(relay, key, Scope::Control).await;
    let code = v.invite.code.clone();
    let pending = AgentPending::join(&relay.addr, &relay.ca(), device.clone(), "pc-9", &code)
        .await
        .expect("agent joins");
    let answer = tokio::spawn(pending.answer(ConsentDecision::View));
    loop {
        match tokio::time::timeout(WAIT, v.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            ViewerEvent::Started { .. } => break,
            ViewerEvent::Ended(r) => panic!("ended {r:?}"),
            _ => {}
        }
    }
    let live = answer.await.unwrap().expect("agent live");
    (v, live)
}

/// The next escalation news on the first technician's connection.
async fn news(v: &mut Viewer) -> (String, EscalationState) {
    loop {
        match tokio::time::timeout(WAIT, v.control.recv()).await {
            Ok(Ok(RelayMsg::Escalation {
                handover, state, ..
            })) => return (handover, state),
            Ok(Ok(_)) => continue,
            other => panic!("no escalation news: {other:?}"),
        }
    }
}

async fn escalate(v: &mut Viewer, specialist: &str, trigger: &str) -> (String, EscalationState) {
    let ask = ClientMsg::Escalate {
        specialist: specialist.into(),
        trigger: trigger.into(),
        scope: Scope::View,
    };
    v.control.send(&ask).await.unwrap();
    news(v).await
}

/// The code the relay hands the user's agent over the live session.
async fn escalation_code(agent: &mut AgentLive) -> String {
    loop {
        match tokio::time::timeout(WAIT, agent.control.recv()).await {
            Ok(Ok(RelayMsg::EscalationCode { code, .. })) => return code,
            Ok(Ok(_)) => continue,
            other => panic!("no escalation code: {other:?}"),
        }
    }
}

fn auth_failures(relay: &TestRelay, reason: &str) -> usize {
    relay
        .records()
        .iter()
        .filter(|r| r["event"] == "auth_failed" && r["reason"] == reason)
        .count()
}

/// Refusals first (not a specialist, oneself, an unknown trigger, someone
/// else's handover), then the handover: the specialist gets no data stream
/// before the user's yes even when asking for one early; after it the
/// specialist's session is live, the first ended `escalated`, both linked
/// in the audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_specialist_gets_nothing_before_the_users_yes() {
    let relay = TestRelay::started(&[]);
    let (alice, bob, carol) = (
        relay.enrol("alice"),
        relay.enrol("bob"),
        relay.enrol("carol"),
    );
    allow_escalations(&relay, "bob");
    let device = SecretKey::generate().unwrap();
    let (mut a, mut agent) = live(&relay, &alice, &device).await;
    let first = agent.session.clone();

    a.control.send(&ClientMsg::ListSpecialists).await.unwrap();
    let names = loop {
        match tokio::time::timeout(WAIT, a.control.recv())
            .await
            .unwrap()
            .unwrap()
        {
            RelayMsg::Specialists { names } => break names,
            _ => continue,
        }
    };
    assert_eq!(names, vec!["bob".to_string()]);
    for (who, trigger, why) in [
        ("carol", "outside-scope", "may receive escalations"),
        ("alice", "outside-scope", "its own technician"),
        ("bob", "because", "unknown escalation trigger"),
    ] {
        match escalate(&mut a, who, trigger).await.1 {
            EscalationState::Refused { message } => assert!(message.contains(why), "{message}"),
            other => panic!("escalation to {who} not refused: {other:?}"),
        }
    }
    let (handover, state) = escalate(&mut a, "bob", "compromise-or-malware").await;
    assert!(
        matches!(state, EscalationState::Pending { .. }),
        "{state:?}"
    );
    let requested = relay
        .wait_record_async(WAIT, |r| r["event"] == "escalation_requested")
        .await
        .expect("escalation_requested");
    assert_eq!(requested["session"], first.as_str());
    assert_eq!(requested["specialist"], "bob");
    assert_eq!(requested["trigger"], "compromise-or-malware");

    let listed = Viewer::handovers(&relay.addr, &relay.ca(), &bob)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].from_technician, "alice");
    assert!(Viewer::handovers(&relay.addr, &relay.ca(), &carol)
        .await
        .unwrap()
        .is_empty());
    let stolen = Viewer::claim_handover(&relay.addr, &relay.ca(), &carol, &handover).await;
    assert!(
        matches!(
            stolen,
            Err(ClientError::Refused {
                kind: ErrorKind::Protocol,
                ..
            })
        ),
        "{stolen:?}"
    );
    assert_eq!(auth_failures(&relay, "handover_not_yours"), 1);

    let mut b = Viewer::claim_handover(&relay.addr, &relay.ca(), &bob, &handover)
        .await
        .expect("bob claims");
    assert_eq!(b.from_technician, "alice");
    assert_eq!(b.request.ticket, "T-1042");
    assert_eq!(news(&mut a).await.1, EscalationState::Claimed);
    let code = escalation_code(&mut agent).await;
    // A patched specialist asks for the screen at once: there is no stream.
    let early =
        tokio::time::timeout(Duration::from_millis(800), b.viewer.control.accept_data()).await;
    assert!(
        early.is_err(),
        "the specialist got a data stream before the user's answer"
    );

    let pending = AgentPending::join(&relay.addr, &relay.ca(), device.clone(), "pc-9", &code)
        .await
        .expect("the user's device joins the specialist's session");
    assert_eq!(pending.offer.technician, "bob");
    let from = pending
        .offer
        .escalated_from
        .clone()
        .expect("escalated_from in the offer");
    assert_eq!(
        (from.session.as_str(), from.technician.as_str()),
        (first.as_str(), "alice")
    );
    assert_eq!(from.trigger, "compromise-or-malware");
    let early =
        tokio::time::timeout(Duration::from_millis(500), b.viewer.control.accept_data()).await;
    assert!(
        early.is_err(),
        "the specialist got a data stream before the user's answer"
    );
    let starts = relay
        .records()
        .iter()
        .filter(|r| r["event"] == "session_start")
        .count();
    assert_eq!(
        starts, 1,
        "only the first session started before the user's yes"
    );

    let answered = tokio::spawn(pending.answer(ConsentDecision::View));
    let second = loop {
        match tokio::time::timeout(WAIT, b.viewer.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            ViewerEvent::Started { session, .. } => break session,
            ViewerEvent::Ended(r) => panic!("ended {r:?}"),
            _ => {}
        }
    };
    let mut data = b
        .viewer
        .control
        .accept_data()
        .await
        .expect("data after the yes");
    let mut agent2 = answered
        .await
        .unwrap()
        .expect("agent live with the specialist");
    agent2.data.send.write_all(b"frame for bob").await.unwrap();
    let mut got = [0u8; 13];
    data.recv.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"frame for bob");

    assert_eq!(news(&mut a).await.1, EscalationState::Accepted);
    let end = relay
        .wait_record_async(WAIT, |r| {
            r["event"] == "session_end" && r["session"] == first.as_str()
        })
        .await
        .expect("the first session ended");
    assert_eq!(end["reason"], EndReason::Escalated.as_str());
    assert_eq!(end["escalated_to"], second.as_str());
    let start = relay
        .records()
        .into_iter()
        .find(|r| r["event"] == "session_start" && r["session"] == second.as_str())
        .unwrap();
    assert_eq!(start["escalated_from"], first.as_str());
    assert_eq!(start["technician"], "bob");
    let invite = relay
        .records()
        .into_iter()
        .find(|r| r["event"] == "invite_created" && r["session"] == second.as_str())
        .unwrap();
    assert_eq!(invite["handover"], handover.as_str());
}

/// The code reaches only the user's device; a no keeps the first session
/// live and tells the specialist; a handover nobody claims expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_or_nobody_leaves_the_first_session_as_it_was() {
    let relay = TestRelay::started(&[("invite_ttl_secs", "3")]);
    let (alice, bob) = (relay.enrol("alice"), relay.enrol("bob"));
    allow_escalations(&relay, "bob");
    let device = SecretKey::generate().unwrap();
    let (mut a, mut agent) = live(&relay, &alice, &device).await;
    let first = agent.session.clone();

    // Nobody claims it: it expires, on record.
    let (handover, _) = escalate(&mut a, "bob", "outside-scope").await;
    let (_, state) = news(&mut a).await;
    assert_eq!(
        state,
        EscalationState::Closed {
            reason: "expired".into()
        }
    );
    let closed = relay
        .wait_record_async(WAIT, |r| {
            r["event"] == "escalation_closed" && r["handover"] == handover.as_str()
        })
        .await
        .expect("escalation_closed");
    assert_eq!(closed["reason"], "expired");

    // Another device with the code is refused; on record.
    let (handover, _) = escalate(&mut a, "bob", "admin-access").await;
    let mut b = Viewer::claim_handover(&relay.addr, &relay.ca(), &bob, &handover)
        .await
        .unwrap();
    let code = escalation_code(&mut agent).await;
    let other = AgentPending::join(
        &relay.addr,
        &relay.ca(),
        SecretKey::generate().unwrap(),
        "x",
        &code,
    )
    .await;
    assert!(
        matches!(
            other,
            Err(ClientError::Refused {
                kind: ErrorKind::BadCode,
                ..
            })
        ),
        "{other:?}"
    );
    assert_eq!(auth_failures(&relay, "code_for_another_device"), 1);
    drop(b.viewer);
    // Its session ends unstarted; the first hears and goes on.
    let (_, state) = news(&mut a).await;
    assert!(matches!(state, EscalationState::Claimed), "{state:?}");
    let (_, state) = news(&mut a).await;
    assert!(matches!(state, EscalationState::Closed { .. }), "{state:?}");

    // The user says no: the specialist is told, the first session is live.
    let (handover, _) = escalate(&mut a, "bob", "unsure-if-safe").await;
    b = Viewer::claim_handover(&relay.addr, &relay.ca(), &bob, &handover)
        .await
        .unwrap();
    let code = escalation_code(&mut agent).await;
    let pending = AgentPending::join(&relay.addr, &relay.ca(), device.clone(), "pc-9", &code)
        .await
        .unwrap();
    let _ = pending.answer(ConsentDecision::Denied).await;
    let refused = loop {
        match tokio::time::timeout(WAIT, b.viewer.next_event())
            .await
            .unwrap()
        {
            Err(e) => break e,
            Ok(ViewerEvent::Started { .. }) => panic!("started after a no"),
            Ok(_) => continue,
        }
    };
    assert_eq!(
        refused.refusal(),
        Some(ErrorKind::ConsentDenied),
        "{refused}"
    );
    loop {
        match news(&mut a).await.1 {
            EscalationState::Closed { reason } => {
                assert_eq!(reason, "consent_denied");
                break;
            }
            EscalationState::Claimed => continue,
            other => panic!("{other:?}"),
        }
    }
    // Still live: bytes flow, and no session_end for the first session.
    let mut data = a.control.accept_data().await.unwrap();
    agent.data.send.write_all(b"still here").await.unwrap();
    let mut got = [0u8; 10];
    data.recv.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"still here");
    assert!(!relay
        .records()
        .iter()
        .any(|r| r["event"] == "session_end" && r["session"] == first.as_str()));
}

/// Three real processes: alice's headless viewer escalates, bob takes the
/// handover with `connect --handover`, the user at the `--tty` agent is
/// asked afresh (naming bob and the trigger) and says yes; bob's screen
/// comes, alice's note says Result: Escalated, to bob and why.
#[test]
fn three_programs_hand_a_session_over() {
    let display = assent_xvfb::Xvfb::start_with_size(320, 200);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let (key_a, key_b) = (home.path().join("alice.key"), home.path().join("bob.key"));
    relay.enrol_keyfile("alice", &key_a);
    relay.enrol_keyfile("bob", &key_b);
    allow_escalations(&relay, "bob");
    let (mut alice, code) = technician(
        &relay,
        (home.path(), &key_a),
        "T-9001",
        &["--tick", "all"],
        "info",
    );
    let mut user = user(&relay, home.path(), display.display(), &code, "info");
    user.say("v");
    alice.hear("\"fps\"");
    alice.say("specialists");
    alice.hear("\"specialists\":[\"bob\"]");
    alice.say("escalate bob compromise-or-malware view");
    let handover = pending_handover(&alice);

    let listed = Command::new(bin("assent-viewer"))
        .args(["handovers", "--relay", &relay.addr, "--ca"])
        .arg(relay.ca())
        .arg("--key")
        .arg(&key_b)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && table.contains(&handover) && table.contains("alice"),
        "{table}"
    );

    let (mut bob, bob_out, bob_in) = specialist(
        &relay,
        (home.path(), &key_b),
        &handover,
        &["--result", "resolved", "--tick", "all"],
    );

    user.hear("alice asks bob to take over. Why: suspected account compromise or malware");
    user.hear("If you say no, alice stays connected as now.");
    alice.hear("\"state\":\"claimed\"");
    assert!(
        bob_out.recv_timeout(Duration::from_millis(500)).is_err(),
        "bob's viewer printed something before the user's answer"
    );
    user.say("v");
    wait_line(&bob_out, |l| l.contains("\"fps\""), "bob's frames");
    user.hear("bob can see your screen");
    assert!(
        alice.proc.wait_timeout(WAIT).is_some(),
        "alice's viewer did not end with the handover"
    );
    let note = std::fs::read_dir(home.path().join("data/assent/notes"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .find(|n| n.contains("T-9001"))
        .expect("alice's note");
    assert!(
        note.contains("**Result:** Escalated. To bob, because suspected account compromise"),
        "{note}"
    );
    let end = relay
        .records()
        .into_iter()
        .find(|r| r["event"] == "session_end" && r["reason"] == "escalated")
        .expect("the first session ended escalated");
    let start = relay
        .wait_record(WAIT, |r| {
            r["event"] == "session_start" && r["technician"] == "bob"
        })
        .unwrap();
    assert_eq!(start["escalated_from"], end["session"]);

    // bob ends: the user is asked about the end, as after any session.
    drop(bob_in);
    user.hear("Was your problem solved?");
    user.say("y");
    assert!(
        bob.wait_timeout(WAIT).is_some(),
        "bob's viewer did not exit"
    );
    relay
        .wait_record(WAIT, |r| {
            r["event"] == "user_confirmation" && r["session"] == start["session"]
        })
        .expect("the user's answer recorded for bob's session");
}

/// The agent's own window asks afresh: its question names the specialist
/// and why (screenshot in target/test-artifacts/escalation-prompt.png),
/// takes a key only once armed, and the specialist's frames follow the yes.
#[test]
fn the_agent_window_asks_about_the_specialist() {
    use assent_agent::ui::{ARM_DELAY, LIVE_TITLE, PROMPT_TITLE};
    let xvfb = assent_xvfb::Xvfb::start_with_size(800, 600);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let (key_a, key_b) = (home.path().join("alice.key"), home.path().join("bob.key"));
    relay.enrol_keyfile("alice", &key_a);
    relay.enrol_keyfile("bob", &key_b);
    allow_escalations(&relay, "bob");
    let (mut alice, code) = technician(&relay, (home.path(), &key_a), "T-9002", &[], "info");
    let agent = Command::new(bin("assent-agent"))
        .args(["join", "--relay", &relay.addr, "--ca"])
        .arg(relay.ca())
        .arg(&code)
        .env("DISPLAY", xvfb.display())
        .env("XDG_CONFIG_HOME", home.path().join("agent"))
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(home.path().join("agent.log")).unwrap())
        .spawn()
        .unwrap();
    let _agent = Proc::new(agent);
    let answer = |title: &str, key: &str| {
        let window = assent_tests::eventually_every(WAIT, Duration::from_millis(100), || {
            let out = xvfb
                .command("xdotool")
                .args(["search", "--name", title])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .map(String::from)
        })
        .unwrap_or_else(|| panic!("no window titled {title:?}"));
        // On a loaded machine the window may map and arm late: the key is
        // pressed again until the question goes.
        for _ in 0..5 {
            let xdo = |args: &[&str]| xvfb.command("xdotool").args(args).output().unwrap();
            xdo(&["mousemove", "--window", &window, "40", "20"]);
            xdo(&["windowfocus", &window]);
            std::thread::sleep(ARM_DELAY + Duration::from_millis(400));
            xdo(&["key", key]);
            std::thread::sleep(Duration::from_millis(700));
            if xdo(&["search", "--name", title]).stdout.is_empty() {
                return;
            }
        }
    };
    answer(PROMPT_TITLE, "v");
    alice.hear("\"fps\"");
    alice.say("escalate bob other:the printer server needs a specialist view");
    let handover = pending_handover(&alice);
    let (_bob, bob_out, _bob_in) = specialist(&relay, (home.path(), &key_b), &handover, &[]);
    alice.hear("\"state\":\"claimed\"");
    // The question is up: the window's title says so; look at it.
    assent_tests::eventually_every(WAIT, Duration::from_millis(100), || {
        let out = xvfb
            .command("xdotool")
            .args(["search", "--name", PROMPT_TITLE])
            .output()
            .unwrap();
        (!out.stdout.is_empty()).then_some(())
    })
    .expect("the specialist's question in the agent window");
    std::thread::sleep(Duration::from_millis(500));
    let dir = crate::desktop::artifacts();
    std::fs::create_dir_all(&dir).unwrap();
    let _ = xvfb
        .command("import")
        .args(["-window", "root"])
        .arg(dir.join("escalation-prompt.png"))
        .status();
    assert!(
        bob_out.recv_timeout(Duration::from_millis(300)).is_err(),
        "bob's viewer printed something before the user's answer"
    );
    answer(PROMPT_TITLE, "v");
    wait_line(&bob_out, |l| l.contains("\"fps\""), "bob's frames");
    assent_tests::eventually_every(WAIT, Duration::from_millis(100), || {
        let out = xvfb
            .command("xdotool")
            .args(["search", "--name", LIVE_TITLE])
            .output()
            .unwrap();
        (!out.stdout.is_empty()).then_some(())
    })
    .expect("the agent window is live again, with bob");
    assert!(
        alice.proc.wait_timeout(WAIT).is_some(),
        "alice's viewer did not end"
    );
}

/// The handover id from the first technician's `pending` line.
fn pending_handover(technician: &crate::people::Person) -> String {
    let pending = technician.hear("\"state\":\"pending\"");
    let json: serde_json::Value = serde_json::from_str(&pending).unwrap();
    json["escalation"]["handover"].as_str().unwrap().to_string()
}

/// `assent-viewer connect --headless --handover ID` as the specialist with
/// the key at `key`: the process, its stdout lines and its stdin (closing
/// it ends the session). Its log goes to `home/bob.log`.
fn specialist(
    relay: &TestRelay,
    (home, key): (&std::path::Path, &std::path::Path),
    handover: &str,
    extra: &[&str],
) -> (
    Proc,
    std::sync::mpsc::Receiver<String>,
    std::process::ChildStdin,
) {
    let mut child = Command::new(bin("assent-viewer"))
        .args(["connect", "--headless", "--handover", handover])
        .args(["--relay", &relay.addr, "--ca"])
        .arg(relay.ca())
        .arg("--key")
        .arg(key)
        .args(extra)
        .env("XDG_DATA_HOME", home.join("bob-data"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(home.join("bob.log")).unwrap())
        .spawn()
        .unwrap();
    let out = lines(child.stdout.take().unwrap());
    let stdin = child.stdin.take().unwrap();
    (Proc::new(child), out, stdin)
}
