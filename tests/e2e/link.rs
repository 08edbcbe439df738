//! Join links (issue 18 item 3): the viewer prints one beside the code;
//! opening it with the agent (as the desktop's `assent` scheme handler
//! does) brings up the real consent prompt, with the relay checked against
//! the CA this computer already has; a link to a relay another CA signed
//! is refused before any prompt.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use assent_tests::{bin, Proc, TestRelay};

use crate::common::WAIT;
use crate::people::technician;

/// A config home whose `assent/ca.pem` is `ca`: the CA "this computer has".
fn trusting(home: &Path, name: &str, ca: &Path) -> PathBuf {
    let dir = home.join(name);
    std::fs::create_dir_all(dir.join("assent")).unwrap();
    std::fs::copy(ca, dir.join("assent/ca.pem")).unwrap();
    dir
}

fn window(display: &assent_xvfb::Xvfb, title: &str) -> Option<String> {
    assent_tests::eventually_every(WAIT, Duration::from_millis(100), || {
        let out = display
            .command("xdotool")
            .args(["search", "--name", title])
            .output()
            .ok()?;
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        id.lines()
            .next()
            .filter(|l| !l.is_empty())
            .map(String::from)
    })
}

#[test]
fn a_join_link_opens_the_real_prompt_and_another_ca_is_refused_first() {
    let display = assent_xvfb::Xvfb::start_with_size(640, 480);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let (viewer, code) = technician(&relay, (home.path(), &key), "T-7001", &[], "info");
    let link = viewer.hear("Join link: ");
    let link = link.trim_start_matches("Join link: ").to_string();
    assert_eq!(
        link,
        format!("assent://join?relay={}&code={code}", relay.addr)
    );
    // The fallback for a computer where the link does not open, on stderr
    // (which people log): it must not repeat the code.
    let log_path = home.path().join("viewer-T-7001.log");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let log = assent_tests::eventually(WAIT, || {
        Some(read_log()).filter(|l| l.contains("assent-agent join '<the join link>'"))
    })
    .unwrap_or_else(|| panic!("no fallback text in the viewer's stderr: {}", read_log()));
    let digits: String = code.chars().filter(char::is_ascii_digit).collect();
    assert!(
        !log.contains(&code) && !log.contains(&digits),
        "the code in a log: {log}"
    );

    // This computer trusts another relay's CA: refused before any prompt.
    let other = TestRelay::init(&[]);
    let out = Command::new(bin("assent-agent"))
        .args(["join", "--tty", &link])
        .env(
            "XDG_CONFIG_HOME",
            trusting(home.path(), "foreign", &other.ca()),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is not signed by the CA this computer trusts"),
        "{stderr}"
    );
    assert!(!stderr.contains("deny"), "no prompt was shown: {stderr}");

    // The CA it has: the link alone (no --relay, no --ca) brings up the
    // consent window, as opening it from the desktop does.
    let agent = Command::new(bin("assent-agent"))
        .args(["join", &link])
        .env("XDG_CONFIG_HOME", trusting(home.path(), "own", &relay.ca()))
        .env("DISPLAY", display.display())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _agent = Proc::new(agent);
    assert!(
        window(&display, "Assent — support request").is_some(),
        "no consent window"
    );
    let out = assent_tests::run(
        "assent-relay",
        &["sessions", "--data-dir", relay.data_dir(), "--json"],
    );
    let sessions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sessions[0]["state"], "asking the user", "{sessions}");
    assert_eq!(
        sessions[0]["device"].as_str().map(str::is_empty),
        Some(false)
    );
}
