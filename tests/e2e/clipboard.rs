//! The clipboard (issue 14 item 2), with the real programs on two real X
//! displays (the user's and the technician's, each with its own clipboard)
//! and a real other program copying and pasting there (xclip): nothing
//! moves without the user's yes, both ways with it, nothing after they take
//! it back; the audit holds sizes and SHA-256 only; a patched viewer that
//! sends clipboard text anyway gets it dropped and counted at the agent.

use std::time::Duration;

use assent_proto::permission::Permission;
use assent_proto::session_msg::{Control, SessionMsg};
use assent_proto::wire::Scope;
use assent_tests::viewer::{self, Pairing};
use assent_tests::{eventually, TestRelay};
use assent_xvfb::Xvfb;
use sha2::{Digest as _, Sha256};

use crate::agent_window::{self, shot, window, xdotool};
use crate::common::WAIT;
use crate::people::{technician_on, user};

const BEFORE: &str = "hunter2 copied before the session";
const REFUSED_UP: &str = "copied by the user, not allowed";
const REFUSED_DOWN: &str = "copied by the technician, not allowed";
const FROM_USER: &str = "Error 0x80070005 from the user's dialog";
const TO_USER: &str = "net use P: \\\\printsrv\\queue";
const AFTER: &str = "copied after the user took it back";
/// Long enough for several looks at the clipboard by both sides.
const SETTLE: Duration = Duration::from_millis(1500);

fn sha(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn arrives(display: &Xvfb, text: &str) -> bool {
    eventually(WAIT, || display.clipboard().filter(|t| t == text)).is_some()
}

#[test]
fn the_clipboard_moves_both_ways_only_while_the_user_allows_it() {
    let (desk, tech_desk) = (
        Xvfb::start_with_size(320, 200),
        Xvfb::start_with_size(320, 200),
    );
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let who = (home.path(), key.as_path());
    let (mut viewer, code) = technician_on(
        Some(tech_desk.display()),
        &relay,
        who,
        "T-7001",
        &["--clipboard"],
        "info",
    );
    desk.set_clipboard(BEFORE);
    let mut agent = user(&relay, home.path(), desk.display(), &code, "info");
    // (The prompt's lines, "They also ask to copy and paste text…", are
    // out before `user` returns; this one comes after them.)
    agent.hear("To allow that too, type `clipboard on` before your answer");
    // Not ticked in the prompt: the session starts without the clipboard.
    agent.say("v");
    agent.hear("Clipboard: not shared");
    viewer.hear("\"fps\"");
    desk.set_clipboard(REFUSED_UP);
    tech_desk.set_clipboard(REFUSED_DOWN);
    std::thread::sleep(SETTLE);
    assert_eq!(tech_desk.clipboard().as_deref(), Some(REFUSED_DOWN));
    assert_eq!(desk.clipboard().as_deref(), Some(REFUSED_UP));

    // The technician asks; only the user's yes turns it on.
    viewer.say("ask clipboard");
    agent.hear("Your technician asks to copy and paste text");
    agent.say("clipboard on");
    agent.hear("Clipboard: SHARED");
    viewer.hear("\"shared\":true");
    // What the user had copied before they allowed it stays theirs.
    std::thread::sleep(SETTLE);
    assert_eq!(tech_desk.clipboard().as_deref(), Some(REFUSED_DOWN));

    desk.set_clipboard(FROM_USER);
    assert!(arrives(&tech_desk, FROM_USER), "user → technician");
    viewer.hear("\"direction\":\"from_user\"");
    agent.hear(&format!("the {} bytes of text you copied", FROM_USER.len()));
    tech_desk.set_clipboard(TO_USER);
    assert!(arrives(&desk, TO_USER), "technician → user");
    agent.hear(&format!("alice put {} bytes of text", TO_USER.len()));

    agent.say("clipboard off");
    viewer.hear("\"shared\":false");
    desk.set_clipboard(AFTER);
    std::thread::sleep(SETTLE);
    assert_eq!(tech_desk.clipboard().as_deref(), Some(TO_USER));
    agent.say("e");
    relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");

    let records = relay.records();
    let of = |event: &str| -> Vec<&serde_json::Value> {
        records.iter().filter(|r| r["event"] == event).collect()
    };
    let created = of("invite_created");
    assert_eq!(
        created[0]["permissions_asked"],
        serde_json::json!(["clipboard"])
    );
    let changes: Vec<bool> = of("permission_changed")
        .iter()
        .map(|r| r["allowed"].as_bool().unwrap())
        .collect();
    assert_eq!(changes, [true, false], "on, then off: {records:#?}");
    let moves: Vec<(String, u64, String)> = of("clipboard_transfer")
        .iter()
        .map(|r| {
            let dir = r["direction"].as_str().unwrap().to_string();
            (
                dir,
                r["bytes"].as_u64().unwrap(),
                r["sha256"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = vec![
        (
            "from_user".to_string(),
            FROM_USER.len() as u64,
            sha(FROM_USER),
        ),
        ("to_user".to_string(), TO_USER.len() as u64, sha(TO_USER)),
    ];
    assert_eq!(moves, expected, "the relay's audit");
    std::thread::sleep(Duration::from_millis(500));
    let viewer_audit =
        std::fs::read_to_string(home.path().join("data/assent/audit.jsonl")).unwrap_or_default();
    for (_, _, hash) in &expected {
        assert!(
            viewer_audit.contains(hash.as_str()),
            "the viewer's audit: {viewer_audit}"
        );
    }
    let relay_text = std::fs::read_to_string(relay.audit_path()).unwrap() + &relay.log_text();
    let viewer_log = std::fs::read_to_string(home.path().join("viewer-T-7001.log")).unwrap();
    for text in [BEFORE, REFUSED_UP, REFUSED_DOWN, FROM_USER, TO_USER, AFTER] {
        for (name, haystack) in [
            ("relay audit and log", &relay_text),
            ("viewer audit", &viewer_audit),
            ("viewer log", &viewer_log),
        ] {
            assert!(
                !haystack.contains(text),
                "{name} holds clipboard text {text:?}"
            );
        }
    }
}

/// A viewer that ignores the permission (the programmatic one here, as a
/// patched viewer would) sends clipboard text and asks again and again:
/// the agent drops and counts every text, writes nothing to the user's
/// clipboard, and sends none of what the user copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patched_viewer_moves_nothing_without_the_users_yes() {
    let desk = Xvfb::start_with_size(320, 200);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = relay.enrol("alice");
    let v = viewer::connect(&relay.addr, &relay.ca(), &key, Scope::View)
        .await
        .unwrap();
    let code = v.invite.code.clone();
    let pairing = tokio::spawn(async move { viewer::pair(v, &key).await });
    desk.set_clipboard(BEFORE);
    let mut agent = user(&relay, home.path(), desk.display(), &code, "info");
    agent.say("clipboard on"); // not asked for: the prompt cannot grant it
    std::thread::sleep(Duration::from_millis(1200));
    agent.say("v");
    let Pairing::Live(mut v) = tokio::time::timeout(WAIT, pairing)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    else {
        panic!("refused")
    };
    v.read_until(WAIT, |v| v.permissions.is_some())
        .await
        .unwrap();
    assert_eq!(v.permissions.as_deref(), Some(&[][..]), "nothing in force");
    for _ in 0..3 {
        let text = SessionMsg::Clipboard(REFUSED_DOWN.into());
        v.tx.send(&text).await.unwrap();
    }
    let ask = SessionMsg::Control(Control::PermissionRequest(Permission::Clipboard));
    v.tx.send(&ask).await.unwrap();
    desk.set_clipboard(REFUSED_UP);
    v.read_until(SETTLE, |_| false).await.unwrap();
    assert!(
        v.clipboard.is_empty(),
        "sent without a yes: {:?}",
        v.clipboard
    );
    assert_eq!(desk.clipboard().as_deref(), Some(REFUSED_UP));
    let dropped = agent.hear("dropped=3");
    assert!(
        dropped.contains("clipboard text from the technician dropped"),
        "{dropped}"
    );
    agent.hear("Your technician asks to copy and paste text");
    agent.say("e");
    relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    let events = relay.events();
    assert!(
        !events
            .iter()
            .any(|e| e == "clipboard_transfer" || e == "permission_changed"),
        "{events:?}"
    );
}

/// The agent's window: the prompt offers the clipboard as a box of its
/// own, unticked; ticked with the mouse, it goes with the answer and the
/// "session live" window shows it in force. Screenshots:
/// target/test-artifacts/clipboard-prompt.png and clipboard-live.png.
#[test]
fn the_agent_window_asks_for_the_clipboard_and_shows_it_in_force() {
    let (desk, tech_desk) = (
        Xvfb::start_with_size(640, 520),
        Xvfb::start_with_size(320, 200),
    );
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let who = (home.path(), key.as_path());
    let display = Some(tech_desk.display());
    let (mut viewer, code) =
        technician_on(display, &relay, who, "T-7003", &["--clipboard"], "info");
    let _agent = agent_window::spawn(&relay, home.path(), &desk, &code, &[]);
    let prompt = window(&desk, "Assent — support request");
    xdotool(&desk, &["mousemove", "--window", &prompt, "300", "10"]);
    xdotool(&desk, &["windowfocus", &prompt]);
    std::thread::sleep(Duration::from_millis(1500));
    shot(&desk, "clipboard-prompt.png");
    // The box "Also allow them to copy and paste text…" (see the shot).
    xdotool(&desk, &["mousemove", "--window", &prompt, "15", "160"]);
    xdotool(&desk, &["click", "1"]);
    std::thread::sleep(Duration::from_millis(300));
    shot(&desk, "clipboard-prompt-ticked.png");
    agent_window::answer_view(&desk, &prompt);
    viewer.hear("\"shared\":true");
    desk.set_clipboard(FROM_USER);
    assert!(arrives(&tech_desk, FROM_USER), "user → technician");
    window(&desk, "Assent — session live");
    std::thread::sleep(Duration::from_millis(700));
    shot(&desk, "clipboard-live.png");
    let granted = relay
        .wait_record(WAIT, |r| r["event"] == "permission_changed")
        .expect("permission_changed");
    assert_eq!(granted["allowed"], true, "{granted}");
    viewer.hang_up();
    relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
}
