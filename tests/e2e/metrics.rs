//! The relay's `[metrics] listen` endpoint: counters that move as a real
//! session goes, nothing secret in the scrape, and `/readyz` that turns
//! unready when the audit directory cannot be written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use assent_proto::wire::{ConsentDecision, Scope};
use assent_tests::{eventually_async, TestRelay};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::*;

/// A relay with its metrics endpoint on a free loopback port, and that
/// endpoint's address (from the relay's log line).
fn relay_with_metrics() -> (TestRelay, String) {
    let mut relay = TestRelay::init(&[]);
    let path = relay.dir.join("relay.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\n[metrics]\n"), "the template has [metrics]");
    let text = text.replace("\n[metrics]\n", "\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&path, text).unwrap();
    relay.start();
    let log = relay.log_text();
    let addr = log
        .lines()
        .find(|l| l.contains("metrics endpoint listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"))
        .to_string();
    (relay, addr)
}

/// `GET path` over HTTP/1.1: the status code and the body.
async fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut raw))
        .await
        .expect("answer in time")
        .expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, body.to_string())
}

/// The value of the sample `name` (with its labels, exactly as written).
fn sample(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{scrape}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_with_a_session_and_carry_no_secret() {
    let (relay, addr) = relay_with_metrics();
    assert_eq!(get(&addr, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(get(&addr, "/readyz").await, (200, "ready\n".into()));
    assert_eq!(get(&addr, "/nothing").await.0, 404);
    let (status, before) = get(&addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(sample(&before, "assent_sessions_live"), 0.0);
    assert_eq!(sample(&before, "assent_sessions_started_total"), 0.0);
    assert!(before.contains("assent_build_info{version=\""), "{before}");
    assert!(before.trim_end().ends_with("# EOF"), "OpenMetrics text");

    let key = relay.enrol("alice");
    let (viewer, mut vdata, mut live) =
        pair(&relay, &key, Scope::Control, ConsentDecision::Control).await;
    let code = viewer.invite.code.clone();
    let (up, down) = (70_000usize, 90_000usize);
    vdata.send.write_all(&vec![7u8; up]).await.unwrap();
    live.data.send.write_all(&vec![9u8; down]).await.unwrap();
    let mut got = vec![0u8; up];
    live.data.recv.read_exact(&mut got).await.unwrap();
    let mut got = vec![0u8; down];
    vdata.recv.read_exact(&mut got).await.unwrap();
    // A wrong code, for an auth failure (and a guess that must not leak).
    let _ = join(&relay, "555-444-333-222-111").await;

    let (_, during) = get(&addr, "/metrics").await;
    assert_eq!(sample(&during, "assent_sessions_live"), 1.0);
    assert_eq!(sample(&during, "assent_sessions_started_total"), 1.0);
    assert_eq!(sample(&during, "assent_invites_created_total"), 1.0);
    assert_eq!(
        sample(
            &during,
            "assent_consent_decisions_total{decision=\"control\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &during,
            "assent_auth_failures_total{role=\"agent\",reason=\"bad_code\"}"
        ),
        1.0
    );
    let to_agent = "assent_forwarded_bytes_total{direction=\"to_agent\"}";
    let to_viewer = "assent_forwarded_bytes_total{direction=\"to_viewer\"}";
    assert!(sample(&during, to_agent) >= up as f64, "{during}");
    assert!(sample(&during, to_viewer) >= down as f64, "{during}");
    assert!(sample(&during, "assent_audit_append_seconds_count") >= 4.0);
    assert!(sample(&during, "assent_udp_drops_total") >= 0.0);

    viewer.control.end().await;
    relay
        .wait_record_async(WAIT, |r| r["event"] == "session_end")
        .await
        .expect("session_end");
    let (_, after) = get(&addr, "/metrics").await;
    assert_eq!(sample(&after, "assent_sessions_live"), 0.0);
    assert_eq!(
        sample(
            &after,
            "assent_sessions_ended_total{reason=\"viewer_closed\"}"
        ),
        1.0
    );

    // Nothing that names or unlocks anything: the codes (grouped or not),
    // the ticket and its free text, the people, the device, the keys.
    let digits: String = code.chars().filter(char::is_ascii_digit).collect();
    let start = relay
        .records()
        .into_iter()
        .find(|r| r["event"] == "session_start")
        .expect("session_start");
    let from_start = |f: &str| start[f].as_str().unwrap_or("-").to_string();
    let (session, device_key, agent_peer) = (
        from_start("session"),
        from_start("device_key"),
        from_start("agent_peer"),
    );
    let secrets = [
        code.as_str(),
        digits.as_str(),
        "555-444-333-222-111",
        "555444333222111",
        "T-1042",
        "Acme",
        "Outlook",
        "alice",
        "pc-reception",
        &key.public().fingerprint(),
        &key.public().to_line(),
        &device_key,
        &session,
        &agent_peer,
    ];
    for scrape in [&before, &during, &after] {
        for s in secrets {
            assert!(!scrape.contains(s), "{s:?} in the scrape:\n{scrape}");
        }
    }
}

/// Makes a directory unwritable until dropped: `chmod` for a normal user;
/// root ignores modes, so for root the immutable attribute (`chattr +i`),
/// which stops root too.
struct Unwritable(PathBuf, bool);

impl Unwritable {
    fn new(dir: &Path) -> Unwritable {
        let root = is_root();
        if root {
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "chattr +i {} failed (e2fsprogs, ext4)", dir.display());
        } else {
            set_mode(dir, 0o500);
        }
        Unwritable(dir.to_path_buf(), root)
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.0)
                .status();
        } else {
            set_mode(&self.0, 0o700);
        }
    }
}

fn set_mode(dir: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether this process runs as root (from /proc, without libc calls).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        == Some("0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_unready_when_the_audit_directory_is_unwritable() {
    let (mut relay, addr) = relay_with_metrics();
    assert_eq!(get(&addr, "/readyz").await.0, 200);
    let audit_dir = relay.dir.join("audit");
    {
        let _locked = Unwritable::new(&audit_dir);
        let (status, body) = get(&addr, "/readyz").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body, "not ready: audit directory not writable\n");
        // Alive all the same.
        assert_eq!(get(&addr, "/healthz").await.0, 200);
    }
    let ready = eventually_async(Duration::from_secs(5), || async {
        (get(&addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "ready again once writable");
    assert!(
        !std::fs::read_dir(&audit_dir)
            .unwrap()
            .any(|e| e.unwrap().file_name() == ".readyz-probe"),
        "the probe leaves nothing behind"
    );
    assert_eq!(relay.stop().map(|s| s.success()), Some(true));
}
