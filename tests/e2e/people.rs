//! The real programs as the tests' people: a technician at the headless
//! viewer, a user at the `--tty` agent. Each is a process the test writes
//! lines to and reads lines from.

use std::io::Write as _;
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Instant;

use assent_tests::{bin, lines, wait_line, Proc, TestRelay};

use crate::common::WAIT;

pub struct Person {
    pub proc: Proc,
    pub stdin: Option<ChildStdin>,
    /// The viewer's stdout, or the agent's stderr (its terminal).
    pub out: Receiver<String>,
}

impl Person {
    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("still at the keyboard");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The first line containing `what`; panics with what was heard instead.
    pub fn hear(&self, what: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut heard = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.out.recv_timeout(left) {
                Ok(l) if l.contains(what) => return l,
                Ok(l) if !l.contains("\"fps\"") => heard.push(l),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("never heard {what:?}; heard {heard:#?}");
    }

    /// Closes stdin: the viewer ends the session, the agent skips any
    /// question still to come.
    pub fn hang_up(&mut self) {
        drop(self.stdin.take());
    }
}

/// `assent-viewer connect --headless` for `ticket` with the key at `key`
/// (enrolled by the caller) and `extra` flags; its log (RUST_LOG=`log`) in
/// `home/viewer-<ticket>.log`. Returns it once it printed the code.
pub fn technician(
    relay: &TestRelay,
    (home, key): (&Path, &Path),
    ticket: &str,
    extra: &[&str],
    log: &str,
) -> (Person, String) {
    technician_on(None, relay, (home, key), ticket, extra, log)
}

/// [`technician`], with the viewer on X display `display` (its clipboard).
pub fn technician_on(
    display: Option<&str>,
    relay: &TestRelay,
    (home, key): (&Path, &Path),
    ticket: &str,
    extra: &[&str],
    log: &str,
) -> (Person, String) {
    technician_via(display, relay, &relay.addr, (home, key), ticket, extra, log)
}

/// [`technician_on`], reaching the relay at `addr` (a proxy in front of it).
pub fn technician_via(
    display: Option<&str>,
    relay: &TestRelay,
    addr: &str,
    (home, key): (&Path, &Path),
    ticket: &str,
    extra: &[&str],
    log: &str,
) -> (Person, String) {
    let mut command = Command::new(bin("assent-viewer"));
    if let Some(display) = display {
        command.env("DISPLAY", display);
    }
    let mut child = command
        .args(["connect", "--headless", "--ticket", ticket])
        .args(["--relay", addr, "--ca"])
        .arg(relay.ca())
        .arg("--key")
        .arg(key)
        .args(extra)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("RUST_LOG", log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(home.join(format!("viewer-{ticket}.log"))).unwrap())
        .spawn()
        .unwrap();
    let out = lines(child.stdout.take().unwrap());
    let code = wait_line(&out, |l| l.starts_with("Invite code: "), "code")
        .trim_start_matches("Invite code: ")
        .to_string();
    let person = Person {
        stdin: child.stdin.take(),
        proc: Proc::new(child),
        out,
    };
    (person, code)
}

/// `assent-agent join --tty` with `code`, capturing `display`, logging at
/// `log`; its terminal (stderr) is `out`. Returns it once the prompt is on
/// the terminal.
pub fn user(relay: &TestRelay, home: &Path, display: &str, code: &str, log: &str) -> Person {
    user_with(relay, home, (display, code, log), &[])
}

/// [`user`], with `extra` flags for `join`.
pub fn user_with(
    relay: &TestRelay,
    home: &Path,
    (display, code, log): (&str, &str, &str),
    extra: &[&str],
) -> Person {
    let mut child = Command::new(bin("assent-agent"))
        .args(["join", "--tty", "--relay", &relay.addr, "--ca"])
        .arg(relay.ca())
        .args(extra)
        .arg(code)
        .env("XDG_CONFIG_HOME", home.join("agent"))
        .env("DISPLAY", display)
        .env("RUST_LOG", log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let person = Person {
        out: lines(child.stderr.take().unwrap()),
        stdin: child.stdin.take(),
        proc: Proc::new(child),
    };
    person.hear("d or Escape = deny");
    person
}
