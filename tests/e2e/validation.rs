//! Validating the fix with the user (issue 13 item 3): the technician asks,
//! the user answers in the agent, the relay records the answer with the
//! device's signature (never the comment), the viewer shows it and puts it
//! in the note. A forged, replayed or other session's answer is refused and
//! audited.

use std::process::Command;
use std::time::{Duration, Instant};

use assent_proto::identity::SecretKey;
use assent_proto::wire::{ClientMsg, ConsentDecision, Scope, Validation};
use assent_tests::{bin, TestRelay};

use crate::common::{pair, WAIT};
use crate::people::{technician, user};

const WHAT: &str = "Open Outlook and send yourself a test mail";
const COMMENT: &str = "Outlook opens and the mail arrived";

#[test]
fn the_user_answers_please_test_and_the_note_and_audit_say_so() {
    let display = assent_xvfb::Xvfb::start_with_size(320, 200);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let extra = [
        "--identity-check",
        "phone-callback",
        // Everything the technician confirms, as a script files a
        // complete note.
        "--result",
        "resolved",
        "--tick",
        "all",
    ];
    let (mut viewer, code) = technician(&relay, (home.path(), &key), "T-7001", &extra, "info");
    let mut agent = user(&relay, home.path(), display.display(), &code, "info");
    agent.say("v");
    viewer.hear("\"fps\"");

    viewer.say(&format!("validate {WHAT}"));
    agent.hear("alice asks you to test whether it works now");
    agent.hear(&format!("What to test: {WHAT}"));
    agent.say(&format!("works {COMMENT}"));
    agent.hear("user answered the test request");
    let line = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        viewer.hear("\"validation\"")
    }))
    .unwrap_or_else(|_| {
        let mut agent_lines = Vec::new();
        while let Ok(l) = agent.out.recv_timeout(Duration::from_millis(200)) {
            agent_lines.push(l);
        }
        panic!(
            "viewer log:\n{}\nagent: {agent_lines:#?}\nrelay events: {:?}",
            std::fs::read_to_string(home.path().join("viewer-T-7001.log")).unwrap_or_default(),
            relay.events()
        )
    });
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["validation"]["answer"], "works", "{json}");
    assert_eq!(json["validation"]["comment"], COMMENT);
    assert_eq!(json["validation"]["number"], 1);

    let rec = relay
        .wait_record(WAIT, |r| r["event"] == "user_validation")
        .expect("user_validation recorded");
    assert_eq!(rec["answer"], "works");
    assert_eq!(rec["number"], 1);
    assert_eq!(rec["receipt"].as_str().unwrap().len(), 128, "signed");
    let start = relay
        .wait_record(WAIT, |r| r["event"] == "session_start")
        .unwrap();
    assert_eq!(
        rec["device_key"], start["device_key"],
        "the device's own key"
    );

    // The technician closes; the note carries the user's answer.
    viewer.hang_up();
    assert!(
        viewer.proc.wait_timeout(WAIT).is_some(),
        "viewer still running"
    );
    let note = relay
        .wait_record(WAIT, |r| r["event"] == "session_note")
        .expect("session_note");
    // The affected user is the agent's OS account (this test's own), not
    // a placeholder.
    let whoami = Command::new("whoami").output().unwrap();
    let login = String::from_utf8_lossy(&whoami.stdout).trim().to_string();
    let affected = note["affected_user"].as_str().unwrap_or_default();
    assert!(
        affected.contains(&format!("({login})")) || affected.starts_with(&format!("{login} on ")),
        "affected user {affected:?}, expected the account {login:?}"
    );
    assert!(
        affected.contains("identity verified by phone-callback"),
        "{affected:?}"
    );
    let invite = relay
        .wait_record(WAIT, |r| r["event"] == "invite_created")
        .unwrap();
    assert_eq!(invite["identity_check"], "phone-callback");
    let result = note["result"].as_str().unwrap_or_default();
    assert!(
        result.starts_with("Resolved. ")
            && result.contains("Tested with the user")
            && result.contains("It works"),
        "{note}"
    );
    // Identity recorded, consent, "It works", the end, the note, and every
    // item the technician ticked: the checklist is complete.
    assert_eq!(note["checklist"], "13/13", "{note}");
    assert!(note.get("checklist_incomplete").is_none(), "{note}");
    let audit = std::fs::read_to_string(relay.audit_path()).unwrap();
    assert!(
        !audit.contains(WHAT),
        "the relay's audit holds what to test"
    );
    let notes = std::fs::read_dir(home.path().join("data/assent/notes"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(notes.contains("It works"), "{notes}");
    assert!(
        notes.contains("- [x] Resolution tested with user"),
        "{notes}"
    );
    assert!(!notes.contains("- [ ]"), "{notes}");
    assert!(!notes.contains("Checklist incomplete"), "{notes}");
    agent.hang_up();
    let _ = agent.proc.wait_timeout(Duration::from_secs(5));
}

fn refusals(relay: &TestRelay) -> usize {
    relay
        .records()
        .iter()
        .filter(|r| r["event"] == "auth_failed" && r["reason"] == "bad_validation_receipt")
        .count()
}

fn validations(relay: &TestRelay) -> usize {
    relay
        .records()
        .iter()
        .filter(|r| r["event"] == "user_validation")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_foreign_answers_are_refused_and_audited() {
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let (_va, _da, mut a) = pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let (_vb, _db, mut b) = pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let mut a_receipts = a.scope_reporter();

    // Signed with another key.
    let forged = SecretKey::generate().unwrap().sign(b"anything");
    let msg = ClientMsg::UserValidation {
        number: 1,
        answer: Validation::Works,
        receipt: forged,
    };
    a.control.send(&msg).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while refusals(&relay) < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refusals(&relay), 1, "a forged answer was not refused");
    assert_eq!(validations(&relay), 0);

    // The real one, then the same number again (a replay).
    for _ in 0..2 {
        a_receipts
            .report_validation(&mut a.control, 1, Validation::Works)
            .await
            .unwrap();
    }
    // Session A's receipt sent in session B.
    a_receipts
        .report_validation(&mut b.control, 1, Validation::StillBroken)
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while refusals(&relay) < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(validations(&relay), 1, "only the real answer is on record");
    assert_eq!(
        refusals(&relay),
        3,
        "replay and foreign answers refused and audited"
    );
    // The one on record verifies with the session's device key.
    let rec = relay
        .records()
        .into_iter()
        .find(|r| r["event"] == "user_validation")
        .unwrap();
    let receipt = hex::decode(rec["receipt"].as_str().unwrap()).unwrap();
    let payload = assent_proto::identity::validation_payload(a.offer_bytes(), 1, Validation::Works);
    assent_proto::identity::PublicKey(a.offer.device_key)
        .verify(&payload, &receipt)
        .expect("the recorded receipt verifies");
}

/// A note without a Result is refused (the headless viewer exits 1 and
/// says why) and filed naming what is missing, as is every unticked item.
#[test]
fn a_note_without_result_is_refused_and_names_its_gaps() {
    let display = assent_xvfb::Xvfb::start_with_size(320, 200);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let extra = ["--tick", "device_confirmed"];
    let (mut viewer, code) = technician(&relay, (home.path(), &key), "T-7003", &extra, "info");
    let mut agent = user(&relay, home.path(), display.display(), &code, "info");
    agent.say("v");
    viewer.hear("\"fps\"");
    // A bad tick on stdin is answered, and changes nothing.
    viewer.say("tick consent_obtained");
    let log = home.path().join("viewer-T-7003.log");
    assert!(
        crate::viewer::file_contains_within(&log, "not a checklist item you tick", WAIT),
        "no refusal"
    );
    viewer.say("next-action Call the user back on Monday");
    assert!(
        crate::viewer::file_contains_within(&log, "note: Next Action set", WAIT),
        "no acknowledgement"
    );
    viewer.hang_up();
    let status = viewer.proc.wait_timeout(WAIT).expect("viewer exits");
    assert_eq!(status.code(), Some(1), "a note without a Result");
    assert!(
        crate::viewer::file_contains_within(
            &log,
            "error: the note was filed without a Result",
            WAIT
        ),
        "no error naming the Result"
    );
    let note = relay
        .wait_record(WAIT, |r| r["event"] == "session_note")
        .expect("the note is still filed");
    let missing = note["checklist_incomplete"].as_str().unwrap_or_default();
    for gap in [
        "result",
        "identity_verified",
        "resolution_tested",
        "within_scope",
    ] {
        assert!(missing.contains(gap), "{gap} not named: {note}");
    }
    for done in ["device_confirmed", "consent_obtained", "next_action"] {
        assert!(!missing.contains(done), "{done} named: {note}");
    }
    let notes = std::fs::read_dir(home.path().join("data/assent/notes"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(
        notes.contains("**Checklist incomplete:** result"),
        "{notes}"
    );
    assert!(notes.contains("- [x] Device confirmed"), "{notes}");
    assert!(notes.contains("- [ ] User identity verified"), "{notes}");
    agent.hang_up();
    assert!(
        agent.proc.wait_timeout(WAIT).is_some(),
        "agent did not exit"
    );
}

#[test]
fn an_unknown_identity_check_is_bad_usage() {
    let out = Command::new(bin("assent-viewer"))
        .args([
            "connect",
            "--headless",
            "--ticket",
            "T-7002",
            "--relay",
            "127.0.0.1:9",
        ])
        .args(["--ca", "/nonexistent", "--identity-check", "trust me"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("phone-callback") && said.contains("other:TEXT"),
        "{said}"
    );
}
