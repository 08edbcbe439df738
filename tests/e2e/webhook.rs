//! The note reaches the helpdesk (issue 18 item 4): a real HTTP receiver on
//! loopback gets the relay's signed POSTs through the outbox: each delivery
//! once by its idempotency key after failures, after a SIGKILL of the
//! relay, after a long outage, and never a word of the secret in the
//! relay's log or audit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use assent_proto::identity::SecretKey;
use assent_proto::wire::{ClientMsg, ConsentDecision, Scope};
use assent_tests::receiver::{Receiver, Request};
use assent_tests::{eventually, run, TestRelay};

use crate::common::pair;
use crate::people::{technician, user};

const SECRET: &str = "wh-secret-5b1e0c2f9d7a4e6b";
const NOTE_TEXT: &str = "Rebuilt the Outlook profile";
/// Long enough for retries, short for a test.
const LIMIT: Duration = Duration::from_secs(30);

/// A relay whose relay.toml has one webhook to `url`, retrying every
/// 100 ms doubling up to 1 s (production: 5 s up to an hour).
fn relay_with_hook(url: &str, extra: &str) -> TestRelay {
    let relay = TestRelay::init(&[]);
    let path = relay.dir.join("relay.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "\n[[webhooks]]\nname = \"helpdesk\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n\
         retry_initial_ms = 100\nretry_max_secs = 1\ntimeout_secs = 5\n{extra}"
    ));
    std::fs::write(&path, text).unwrap();
    relay
}

/// One session through the programmatic clients, ended by the technician
/// after filing a note. Returns the session id.
async fn session_with_note(relay: &TestRelay, key: &SecretKey, ticket: &str) -> String {
    let (mut v, _data, agent) = pair(relay, key, Scope::View, ConsentDecision::View).await;
    let session = agent.session.clone();
    let note = vec![
        ("ticket".to_string(), ticket.to_string()),
        ("actions_taken".to_string(), NOTE_TEXT.to_string()),
        ("result".to_string(), "Resolved".to_string()),
        (
            "checklist_incomplete".to_string(),
            "within_scope".to_string(),
        ),
    ];
    v.control
        .send(&ClientMsg::SessionNote { fields: note })
        .await
        .unwrap();
    v.control.end().await;
    let filed = relay
        .wait_record_async(LIMIT, |r| {
            r["event"] == "session_note" && r["session"] == session
        })
        .await;
    assert!(filed.is_some(), "note not filed: {:?}", relay.events());
    session
}

/// Requests by idempotency key, in the order each key first came.
fn by_key(requests: &[Request]) -> BTreeMap<String, Vec<Request>> {
    let mut keys: BTreeMap<String, Vec<Request>> = BTreeMap::new();
    for r in requests {
        let key = r
            .header("idempotency-key")
            .expect("Idempotency-Key")
            .to_string();
        keys.entry(key).or_default().push(r.clone());
    }
    keys
}

/// Every key was answered 2xx exactly once, every attempt of a key carried
/// the same body and key, and every signature verifies.
fn assert_once_each(requests: &[Request]) {
    for (key, attempts) in by_key(requests) {
        let ok = attempts.iter().filter(|r| r.status == 200).count();
        assert_eq!(ok, 1, "{key}: delivered {ok} times");
        assert!(
            attempts.iter().all(|r| r.body == attempts[0].body),
            "{key}: bodies differ"
        );
        let mut last = 0;
        for r in &attempts {
            assert!(r.signed_with(SECRET), "{key}: bad signature");
            assert_eq!(r.json()["idempotency_key"], key.as_str());
            assert_eq!(r.header("x-assent-delivery"), Some(key.as_str()));
            // Counted across restarts (an attempt the relay was killed
            // during may be counted again).
            let n: u32 = r.header("x-assent-attempt").unwrap().parse().unwrap();
            assert!(n >= last.max(1), "{key}: attempt {n} after {last}");
            last = n;
        }
    }
}

/// Delivered (2xx) bodies of `kind`.
fn delivered(receiver: &Receiver, kind: &str) -> Vec<serde_json::Value> {
    receiver
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .map(Request::json)
        .filter(|b| b["type"] == kind)
        .collect()
}

fn wait_delivered(receiver: &Receiver, kind: &str, n: usize) -> Vec<serde_json::Value> {
    eventually(LIMIT, || {
        let got = delivered(receiver, kind);
        (got.len() >= n).then_some(got)
    })
    .unwrap_or_else(|| {
        panic!(
            "{kind}: fewer than {n} delivered: {:?}",
            receiver.requests()
        )
    })
}

fn audit_of(relay: &TestRelay, event: &str) -> Vec<serde_json::Value> {
    relay
        .records()
        .into_iter()
        .filter(|r| r["event"] == event)
        .collect()
}

/// The whole session with the real programs (a headless viewer filing a
/// complete note, a tty agent whose user answers the question after the
/// end); the receiver fails twice (a 500, then a hang-up) before it
/// answers 200.
#[test]
fn the_helpdesk_gets_each_note_once_signed_after_two_failures() {
    let receiver = Receiver::start(
        0,
        Box::new(|_, n| match n {
            0 => 500,
            1 => 0,
            _ => 200,
        }),
    );
    let display = assent_xvfb::Xvfb::start_with_size(320, 200);
    let mut relay = relay_with_hook(&receiver.url(), "");
    relay.start();
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let extra = [
        "--identity-check",
        "phone-callback",
        "--result",
        "resolved",
        "--tick",
        "all",
        "--actions-taken",
        NOTE_TEXT,
    ];
    let (mut tech, code) = technician(&relay, (home.path(), &key), "T-9001", &extra, "info");
    let mut agent = user(&relay, home.path(), display.display(), &code, "info");
    agent.say("v");
    tech.hear("\"fps\"");
    tech.hang_up();
    agent.hear("Was your problem solved?");
    agent.say("y");

    let notes = wait_delivered(&receiver, "note_filed", 1);
    let summary = wait_delivered(&receiver, "session_summary", 1);
    let note = &notes[0];
    assert_eq!(note["session"]["ticket"], "T-9001");
    assert_eq!(note["session"]["technician"], "alice");
    assert_eq!(note["session"]["identity_check"], "phone-callback");
    assert_eq!(note["session"]["consent"]["decision"], "view");
    assert_eq!(note["session"]["end_reason"], "viewer_closed");
    assert!(note["session"]["started_at"].is_string() && note["session"]["ended_at"].is_string());
    assert!(note["note"]["result"]
        .as_str()
        .unwrap()
        .starts_with("Resolved"));
    assert_eq!(note["note"]["actions_taken"], NOTE_TEXT);
    // Ticked by the software only when the user tested the fix.
    assert_eq!(
        note["checklist_gaps"],
        serde_json::json!(["resolution_tested"])
    );
    assert_eq!(summary[0]["session"]["id"], note["session"]["id"]);
    // The user's answer: in the note, or in the update that follows it.
    let answered = |b: &serde_json::Value| b["user_confirmation"]["answer"] == "yes";
    if !answered(note) {
        let updates = wait_delivered(&receiver, "note_updated", 1);
        assert!(answered(&updates[0]), "{}", updates[0]);
    }
    let requests = receiver.requests();
    assert_once_each(&requests);
    // The first delivery took three attempts; the relay says so.
    assert_eq!(requests[0].header("x-assent-attempt"), Some("1"));
    assert_eq!(requests[2].header("x-assent-attempt"), Some("3"));
    assert_eq!(
        requests[2].header("idempotency-key"),
        requests[0].header("idempotency-key")
    );
    let first = requests[0].header("idempotency-key").unwrap();
    let audited = relay
        .wait_record(LIMIT, |r| {
            r["event"] == "webhook_delivered" && r["key"] == first
        })
        .expect("webhook_delivered");
    assert_eq!(
        (audited["attempts"].as_u64(), audited["status"].as_u64()),
        (Some(3), Some(200))
    );
    assert_eq!(audited["webhook"], "helpdesk");
    drop(agent);
    relay.stop();
    assert_secret_absent(&relay);
}

/// Nothing about the secret (nor the URL's token) in the relay's log,
/// audit log or `check-config` output; nor the note's text in the log or
/// `check-config` (the audit's `session_note` keeps it, as it always did).
fn assert_secret_absent(relay: &TestRelay) {
    let audit = std::fs::read_to_string(relay.audit_path()).unwrap();
    let check = run(
        "assent-relay",
        &["check-config", "--data-dir", relay.data_dir()],
    );
    let check = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(check.contains("webhook helpdesk"), "{check}");
    for (what, text) in [
        ("log", relay.log_text()),
        ("audit", audit),
        ("check-config", check),
    ] {
        assert!(!text.contains(SECRET), "the secret is in the {what}");
        assert!(
            !text.contains("wh-secret"),
            "part of the secret is in the {what}"
        );
        assert!(
            !text.contains("t0ken-in-url"),
            "the URL's token is in the {what}"
        );
        assert!(
            what == "audit" || !text.contains(NOTE_TEXT),
            "the note's text is in the {what}"
        );
    }
}

/// SIGKILL while the receiver refuses: the delivery waits in the outbox
/// and goes out after the restart with the same key and body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_between_attempts_delivers_after_restart() {
    let up = Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    let receiver = Receiver::start(
        0,
        Box::new(move |_, _| {
            if flag.load(Ordering::SeqCst) {
                200
            } else {
                503
            }
        }),
    );
    let mut relay = relay_with_hook(&receiver.url(), "events = [\"note_filed\"]\n");
    relay.start();
    let key = relay.enrol("alice");
    let session = session_with_note(&relay, &key, "T-9002").await;
    let tried = assent_tests::eventually_async(LIMIT, || {
        let n = receiver.requests().len();
        std::future::ready((n >= 2).then_some(n))
    })
    .await;
    assert!(tried.is_some(), "no attempts");
    let proc = relay.proc.take().unwrap();
    proc.signal(libc::SIGKILL);
    drop(proc);
    let before = receiver.requests();
    up.store(true, Ordering::SeqCst);
    relay.start();
    let notes = wait_delivered(&receiver, "note_filed", 1);
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["session"]["id"], session.as_str());
    assert_eq!(notes[0]["note"]["actions_taken"], NOTE_TEXT);
    let all = receiver.requests();
    assert_eq!(
        all[0].header("idempotency-key"),
        before[0].header("idempotency-key")
    );
    assert_once_each(&all);
    let audited = relay
        .wait_record_async(LIMIT, |r| r["event"] == "webhook_delivered")
        .await
        .expect("webhook_delivered after the restart");
    assert!(
        audited["attempts"].as_u64().unwrap() >= before.len() as u64,
        "{audited}"
    );
    // Only the subscribed event was sent.
    assert!(all.iter().all(|r| r.json()["type"] == "note_filed"));
    relay.stop();
}

/// The outbox lost what the crash did not let it write (cut back to the
/// line it starts with): the next start reads the audit log past its
/// cursor and queues the summary and the note again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_a_crash_kept_from_the_outbox_are_caught_up() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let mut relay = relay_with_hook(&url, "");
    relay.start();
    let key = relay.enrol("alice");
    let session = session_with_note(&relay, &key, "T-9003").await;
    let outbox = relay.dir.join("webhooks/outbox.jsonl");
    let queued = eventually(LIMIT, || {
        let text = std::fs::read_to_string(&outbox).ok()?;
        (text.matches("\"op\":\"queued\"").count() >= 2).then_some(text)
    });
    assert!(queued.is_some(), "nothing queued");
    let proc = relay.proc.take().unwrap();
    proc.signal(libc::SIGKILL);
    drop(proc);
    let text = std::fs::read_to_string(&outbox).unwrap();
    let first = text.lines().next().unwrap();
    assert!(first.contains("\"op\":\"cursor\""), "{first}");
    std::fs::write(&outbox, format!("{first}\n")).unwrap();
    let receiver = Receiver::start(port, Box::new(|_, _| 200));
    relay.start();
    let notes = wait_delivered(&receiver, "note_filed", 1);
    let summaries = wait_delivered(&receiver, "session_summary", 1);
    assert_eq!(notes[0]["session"]["id"], session.as_str());
    assert_eq!(summaries[0]["session"]["end_reason"], "viewer_closed");
    assert_eq!(notes[0]["session"]["ticket"], "T-1042");
    assert_once_each(&receiver.requests());
    relay.stop();
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A receiver down for a long time (here many retries at the 1 s cap)
/// gets every delivery afterwards, each once, in the order they were
/// queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_long_gets_everything_later() {
    let port = free_port();
    let mut relay = relay_with_hook(&format!("http://127.0.0.1:{port}/hook"), "");
    relay.start();
    let key = relay.enrol("alice");
    let mut sessions = Vec::new();
    for i in 0..3 {
        sessions.push(session_with_note(&relay, &key, &format!("T-91{i}")).await);
    }
    let failed = |relay: &TestRelay| relay.log_text().matches("webhook attempt failed").count();
    let retried = assent_tests::eventually_async(LIMIT, || {
        std::future::ready((failed(&relay) >= 6).then_some(()))
    })
    .await;
    assert!(retried.is_some(), "{}", relay.log_text());
    let receiver = Receiver::start(port, Box::new(|_, _| 200));
    let notes = wait_delivered(&receiver, "note_filed", 3);
    wait_delivered(&receiver, "session_summary", 3);
    assert_once_each(&receiver.requests());
    // In the order of the audit records they report.
    let order: Vec<u64> = receiver
        .requests()
        .iter()
        .map(|r| r.json()["audit_seq"].as_u64().unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    let noted: Vec<&str> = notes
        .iter()
        .map(|n| n["session"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(noted, sessions);
    let delivered = assent_tests::eventually_async(LIMIT, || {
        std::future::ready((audit_of(&relay, "webhook_delivered").len() >= 6).then_some(()))
    })
    .await;
    assert!(delivered.is_some(), "{:?}", relay.events());
    relay.stop();
}

/// The receiver holds another secret: every signature fails its check, it
/// answers 401, and the relay gives up (`webhook_failed`, status 401) once
/// the delivery is older than `give_up_after_secs`; the secret appears
/// nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_detected_and_the_secret_never_logged() {
    let receiver = Receiver::start(
        0,
        Box::new(|r, _| {
            if r.signed_with("another-secret-entirely") {
                200
            } else {
                401
            }
        }),
    );
    let mut relay = relay_with_hook(&receiver.url(), "give_up_after_secs = 2\n");
    relay.start();
    let key = relay.enrol("alice");
    session_with_note(&relay, &key, "T-9004").await;
    let failed = relay
        .wait_record_async(LIMIT, |r| {
            r["event"] == "webhook_failed" && r["type"] == "note_filed"
        })
        .await
        .expect("webhook_failed");
    assert_eq!(failed["status"], 401);
    assert_eq!(failed["error"], "status");
    assert!(failed["attempts"].as_u64().unwrap() >= 2);
    let requests = receiver.requests();
    assert!(requests
        .iter()
        .all(|r| r.status == 401 && r.signed_with(SECRET)));
    assert!(delivered(&receiver, "note_filed").is_empty());
    relay.stop();
    assert_secret_absent(&relay);
}

/// An escalation nobody claims: the receiver subscribed to `escalation`
/// gets its request and its end, in that order, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_reaches_the_helpdesk() {
    let receiver = Receiver::start(0, Box::new(|_, _| 200));
    let mut relay = relay_with_hook(&receiver.url(), "events = [\"escalation\"]\n");
    relay.set_limits(&[("invite_ttl_secs", "2")]);
    relay.start();
    let key = relay.enrol("alice");
    relay.enrol("bob");
    let args = ["technician", "escalations", "bob", "--allow", "--data-dir"];
    let out = run("assent-relay", &[&args[..], &[relay.data_dir()]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut v, _data, agent) = pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let ask = ClientMsg::Escalate {
        specialist: "bob".into(),
        trigger: "admin-access".into(),
        scope: Scope::View,
    };
    v.control.send(&ask).await.unwrap();
    let got = assent_tests::eventually_async(LIMIT, || {
        let got = delivered(&receiver, "escalation");
        std::future::ready((got.len() >= 2).then_some(got))
    })
    .await
    .unwrap_or_else(|| panic!("{:?} / {:?}", receiver.requests(), relay.events()));
    assert_eq!(got[0]["escalation"]["record"], "escalation_requested");
    assert_eq!(got[0]["escalation"]["specialist"], "bob");
    assert_eq!(got[0]["escalation"]["trigger"], "admin-access");
    assert_eq!(got[0]["session"]["id"], agent.session.as_str());
    assert_eq!(got[0]["session"]["ticket"], "T-1042");
    assert_eq!(got[1]["escalation"]["record"], "escalation_closed");
    assert_eq!(got[1]["escalation"]["reason"], "expired");
    assert!(receiver
        .requests()
        .iter()
        .all(|r| r.json()["type"] == "escalation"));
    assert_once_each(&receiver.requests());
    drop(v);
    relay.stop();
}
