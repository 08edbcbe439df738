//! `--log-format json`: every program's diagnostics become one JSON object
//! a line with the fields INTERFACE.md names; text stays the default.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use assent_tests::{bin, Proc, TestRelay};

/// The log lines among `stderr`, each checked for the documented fields.
/// Lines meant for the person (the agent's "Connecting…", the final
/// `error: …`) stay plain text; every line that starts with `{` is a log
/// record and must parse.
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &lines {
        for field in ["timestamp", "level", "target"] {
            assert!(l[field].is_string(), "no {field} in {l}");
        }
    }
    lines
}

#[test]
fn relay_logs_json_lines_with_fields_and_spans() {
    let relay = TestRelay::init(&[]);
    let mut child = Command::new(bin("assent-relay"))
        .args([
            "serve",
            "--log-format",
            "json",
            "--data-dir",
            relay.data_dir(),
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn relay");
    let stderr = child.stderr.take().unwrap();
    let mut proc = Proc::new(child);
    let mut lines = BufReader::new(stderr).lines();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("relay listening"))
        .expect("a relay listening line");
    let line = &json_lines(&listening)[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["message"], "relay listening");
    assert!(line["local"]
        .as_str()
        .is_some_and(|a| a.starts_with("127.0.0.1:")));
    assert_eq!(line["target"], "assent_relay");
    proc.signal(libc::SIGTERM);
    assert!(proc
        .wait_timeout(std::time::Duration::from_secs(10))
        .is_some());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let rest = json_lines(&rest.join("\n"));
    assert!(
        rest.iter()
            .any(|l| l["message"] == "shutting down: ending live sessions"),
        "{rest:?}"
    );
}

#[test]
fn agent_and_viewer_log_json_lines() {
    let relay = TestRelay::started(&[]);
    let tmp = assent_tests::tempdir();
    let key = tmp.path().join("technician.key");
    // An unenrolled key: the relay refuses it, after the viewer logged its
    // connection at debug.
    let out = Command::new(bin("assent-viewer"))
        .args(["keygen", "--key"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let viewer = Command::new(bin("assent-viewer"))
        .args(["--log-format", "json", "connect", "--relay", &relay.addr])
        .args(["--ticket", "T-1", "--headless", "--ca"])
        .arg(relay.ca())
        .arg("--key")
        .arg(&key)
        .env("RUST_LOG", "debug")
        .env("XDG_DATA_HOME", tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(viewer.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&viewer.stderr);
    assert!(!json_lines(&stderr).is_empty(), "no JSON lines: {stderr}");
    // A code nobody handed out: refused, after the agent logged at debug.
    let agent = Command::new(bin("assent-agent"))
        .args([
            "join",
            "--log-format",
            "json",
            "--tty",
            "--relay",
            &relay.addr,
        ])
        .arg("--ca")
        .arg(relay.ca())
        .arg("555-444-333-222-111")
        .env("RUST_LOG", "debug")
        .env("XDG_CONFIG_HOME", tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(agent.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&agent.stderr);
    assert!(!json_lines(&stderr).is_empty(), "no JSON lines: {stderr}");
}

/// The relay says at start which UDP offloads (GSO, GRO) its socket has,
/// with the segment counts quinn will use and the send batch, and runs on relay.toml's
/// `workers` threads.
#[test]
fn the_relay_reports_udp_offload_and_its_workers_at_start() {
    let mut relay = TestRelay::init(&[]);
    let toml = relay.dir.join("relay.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains("# workers = 4"), "{text}");
    std::fs::write(&toml, text.replace("# workers = 4", "workers = 3")).unwrap();
    relay.start();
    let workers = assent_tests::eventually(std::time::Duration::from_secs(5), || {
        relay.log_text().contains("workers=3").then_some(())
    });
    assert!(workers.is_some(), "{}", relay.log_text());
    let line = assent_tests::eventually(std::time::Duration::from_secs(5), || {
        let text = relay.log_text();
        text.lines()
            .find(|l| l.contains("UDP offload"))
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no offload report: {}", relay.log_text()));
    for field in ["gso_segments=", "gro_segments=", "batch="] {
        let at = line
            .find(field)
            .unwrap_or_else(|| panic!("{field} in {line}"));
        let value: String = line[at + field.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert!(
            value.parse::<u32>().is_ok_and(|n| n >= 1),
            "{field} in {line}"
        );
    }
    assert!(line.contains("segmentation (GSO) o"), "{line}");
    // Seven 8952-byte datagrams fit the kernel's 65,507-byte batch; ten
    // (quinn's own batch) were refused and lost.
    let batch = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("batch="));
    assert!(
        batch
            .and_then(|b| b.parse::<u32>().ok())
            .is_some_and(|b| b <= 7),
        "{line}"
    );
}
