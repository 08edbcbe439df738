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

/// The PIDs whose parent is `pid` (from /proc), to stop what a launcher
/// started, by PID.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // pid (comm) state ppid …: the comm may hold spaces, so after ')'.
            let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
            after.split_whitespace().nth(1) == Some(pid.to_string().as_str())
        })
        .collect()
}

/// Opening the link the way a desktop does: `xdg-open`, in a HOME where the
/// agent package's `assent-agent-link.desktop` is installed and is the
/// default for `x-scheme-handler/assent`, brings up the real consent
/// window. The viewer's message for the user carries the link and the
/// manual way.
#[test]
fn xdg_open_of_a_join_link_brings_up_the_real_prompt() {
    let display = assent_xvfb::Xvfb::start_with_size(640, 480);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let (viewer, code) = technician(&relay, (home.path(), &key), "T-7002", &[], "info");
    let link = viewer.hear("Join link: ");
    let link = link.trim_start_matches("Join link: ").to_string();
    viewer.hear("--- message for the user");
    assert_eq!(viewer.hear("assent://"), link);
    viewer.hear(&format!("assent-agent join '{link}'"));
    viewer.hear(&format!("assent-agent join --relay {} {code}", relay.addr));
    viewer.hear("--- end of message ---");

    let data = home.path().join("data");
    std::fs::create_dir_all(data.join("applications")).unwrap();
    let entry =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/agent/assent-agent-link.desktop");
    std::fs::copy(&entry, data.join("applications/assent-agent-link.desktop")).unwrap();
    let config = trusting(home.path(), "config", &relay.ca());
    std::fs::write(
        config.join("mimeapps.list"),
        "[Default Applications]\nx-scheme-handler/assent=assent-agent-link.desktop\n",
    )
    .unwrap();
    let agent_dir = bin("assent-agent").parent().unwrap().to_path_buf();
    let opener = Command::new("xdg-open")
        .arg(&link)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", &config)
        .env("XDG_DATA_HOME", &data)
        .env("XDG_DATA_DIRS", home.path().join("none"))
        .env("PATH", format!("{}:/usr/bin:/bin", agent_dir.display()))
        .env("DISPLAY", display.display())
        // No desktop environment: xdg-open's generic path reads the
        // mimeapps.list and the desktop entry itself.
        .env_remove("XDG_CURRENT_DESKTOP")
        .env_remove("DESKTOP_SESSION")
        .env_remove("BROWSER")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("xdg-open (xdg-utils; scripts/packages installs it)");
    let opener = Proc::new(opener);
    let found = window(&display, "Assent — support request");
    let agents = children(opener.pid());
    for pid in &agents {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
    assert!(found.is_some(), "no consent window after xdg-open");
    assert!(!agents.is_empty(), "the agent was not xdg-open's child");
}

/// A relay that never answers (a UDP socket nobody reads): the agent's
/// window says it is connecting, and SIGTERM ends it at once, window and
/// process, instead of waiting for QUIC to give up.
#[test]
fn sigterm_while_connecting_to_a_silent_relay_ends_the_agent() {
    let display = assent_xvfb::Xvfb::start_with_size(640, 480);
    let relay = TestRelay::init(&[]);
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let home = assent_tests::tempdir();
    let child = Command::new(bin("assent-agent"))
        .args(["join", "--relay", &addr, "--ca"])
        .arg(relay.ca())
        .arg("123-456-789-012-345")
        .env("XDG_CONFIG_HOME", home.path())
        .env("DISPLAY", display.display())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut agent = Proc::new(child);
    assert!(
        window(&display, "Assent — connecting").is_some(),
        "no connecting window"
    );
    agent.signal(libc::SIGTERM);
    let status = agent.wait_timeout(Duration::from_secs(5));
    assert!(status.is_some(), "still running 5 s after SIGTERM");
    assert!(
        window_gone(&display, "Assent — connecting"),
        "the window stayed"
    );
}

fn window_gone(display: &assent_xvfb::Xvfb, title: &str) -> bool {
    let out = display
        .command("xdotool")
        .args(["search", "--name", title])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().is_empty()
}
