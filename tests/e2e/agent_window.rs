//! The real agent window under Xvfb, as the window tests of the
//! permissions drive it: started, found by title, answered "view" once the
//! question has had the focus long enough, and photographed.

use std::process::{Command, Stdio};
use std::time::Duration;

use assent_tests::{bin, Proc, TestRelay};
use assent_xvfb::Xvfb;

use crate::common::WAIT;

pub fn xdotool(x: &Xvfb, args: &[&str]) -> String {
    let out = x.command("xdotool").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The first window titled `title`, waiting for it.
pub fn window(x: &Xvfb, title: &str) -> String {
    assent_tests::eventually(WAIT, || {
        xdotool(x, &["search", "--name", title])
            .lines()
            .next()
            .filter(|l| !l.is_empty())
            .map(String::from)
    })
    .unwrap_or_else(|| panic!("no window titled {title:?}"))
}

/// `assent-agent join` with its window on `x`, and `extra` flags.
pub fn spawn(
    relay: &TestRelay,
    home: &std::path::Path,
    x: &Xvfb,
    code: &str,
    extra: &[&str],
) -> Proc {
    let agent = Command::new(bin("assent-agent"))
        .args(["join", "--relay", &relay.addr, "--ca"])
        .arg(relay.ca())
        .args(extra)
        .arg(code)
        .env("XDG_CONFIG_HOME", home.join("agent"))
        .env("DISPLAY", x.display())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc::new(agent)
}

/// Presses `v` in the prompt until the session is live: the answer counts
/// once the prompt has had the focus for a second, and on a loaded machine
/// the focus can come late, so it is given again each time.
pub fn answer_view(x: &Xvfb, prompt: &str) {
    for _ in 0..5 {
        xdotool(x, &["mousemove", "--window", prompt, "300", "10"]);
        xdotool(x, &["windowfocus", prompt]);
        std::thread::sleep(Duration::from_millis(1300));
        xdotool(x, &["key", "v"]);
        if !xdotool(x, &["search", "--name", "Assent — session live"]).is_empty() {
            return;
        }
    }
}

/// The whole screen, as `target/test-artifacts/<name>`.
pub fn shot(x: &Xvfb, name: &str) {
    let _ = x
        .command("import")
        .args(["-window", "root"])
        .arg(crate::desktop::artifacts().join(name))
        .status();
}
