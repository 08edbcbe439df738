//! The consent prompt cannot be answered by accident (issue 13 item 7): a
//! key pressed right after the real window appears (someone typing in
//! another window when it pops up) answers nothing; the same key once the
//! prompt has been visible and focused for a second does.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assent_proto::wire::Scope;
use assent_tests::viewer::{self, Pairing};
use assent_tests::{bin, eventually, Proc, TestRelay};
use assent_xvfb::Xvfb;

use crate::common::WAIT;

const PROMPT: &str = "Assent — support request";

fn xdotool(x: &Xvfb, args: &[&str]) -> String {
    let out = x.command("xdotool").args(args).output().expect("xdotool");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A mapped (viewable) window with this title.
fn find_window(x: &Xvfb, title: &str) -> Option<String> {
    xdotool(x, &["search", "--onlyvisible", "--name", title])
        .lines()
        .next()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_pressed_as_the_prompt_appears_answers_nothing() {
    let x = Xvfb::start_with_size(800, 600);
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let home = assent_tests::tempdir();
    let v = viewer::connect(&relay.addr, &relay.ca(), &key, Scope::Control)
        .await
        .unwrap();
    let code = v.invite.code.clone();
    let pairing = tokio::spawn(async move { viewer::pair(v, &key).await });
    let child = Command::new(bin("assent-agent"))
        .args(["join", "--relay", &relay.addr, "--ca"])
        .arg(relay.ca())
        .arg(&code)
        .env("DISPLAY", x.display())
        .env("XDG_CONFIG_HOME", home.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(home.path().join("agent.log")).unwrap())
        .spawn()
        .expect("spawn assent-agent");
    let _agent = Proc::new(child);

    let window =
        eventually(Duration::from_secs(30), || find_window(&x, PROMPT)).expect("no prompt window");
    // The user was typing elsewhere; the prompt takes the focus and gets a
    // `c` 100 ms later.
    let mapped = Instant::now();
    xdotool(&x, &["mousemove", "--window", &window, "40", "20"]);
    xdotool(&x, &["windowfocus", &window]);
    tokio::time::sleep(Duration::from_millis(100).saturating_sub(mapped.elapsed())).await;
    xdotool(&x, &["key", "c"]);
    // Long enough for an accepted answer to reach the relay's record.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _ = x
        .command("import")
        .args(["-window", "root"])
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/test-artifacts/prompt-arming.png"),
        )
        .status();
    assert!(
        find_window(&x, PROMPT).is_some(),
        "the early key answered the prompt"
    );
    assert!(
        !relay.events().iter().any(|e| e == "consent"),
        "an early key was recorded as an answer"
    );
    assert!(!pairing.is_finished(), "pairing ended on an early key");
    // The key did reach the window, and was refused there.
    let log = home.path().join("agent.log");
    let ignored = eventually(Duration::from_secs(2), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("before the question was armed answers nothing"))
    });
    assert!(
        ignored.is_some(),
        "the early key never reached the prompt window"
    );

    // The same key once the prompt has been up and focused for 1.5 s.
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(mapped.elapsed())).await;
    xdotool(&x, &["key", "c"]);
    let paired = tokio::time::timeout(WAIT, pairing).await;
    let live = match paired {
        Ok(Ok(Ok(Pairing::Live(l)))) => l,
        other => panic!(
            "no session after the armed key: {other:?}\nagent log:\n{}\nrelay events: {:?}",
            std::fs::read_to_string(home.path().join("agent.log")).unwrap_or_default(),
            relay.events()
        ),
    };
    assert_eq!(live.scope, Scope::Control);
    let consent = relay
        .wait_record(WAIT, |r| r["event"] == "consent")
        .expect("consent recorded");
    assert_eq!(consent["decision"], "control");
}
