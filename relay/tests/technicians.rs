//! `assent-relay technician add/revoke` when the audit record cannot be
//! written: through a serving relay's admin socket and on the files directly
//! (no relay serving), the admin gets exit 1 with the reason and neither the
//! registry file nor the running relay changes. The failure comes from the
//! debug-build fault injection `ASSENT_TEST_FAIL_AUDIT`.

#![forbid(unsafe_code)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const RELAY: &str = env!("CARGO_BIN_EXE_assent-relay");
const FAIL: &str = "ASSENT_TEST_FAIL_AUDIT";

/// The line `assent-viewer keygen` prints for a key made from `seed`.
fn key_line(seed: u8) -> String {
    let key = assent_proto::identity::SecretKey::from_seed(&[seed; 32]).public();
    format!("{} someone@laptop", key.to_line())
}

/// Kills the serving relay by PID when the test ends, however it ends.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn relay(dir: &Path, args: &[&str], fail: Option<&str>) -> Output {
    let mut cmd = Command::new(RELAY);
    cmd.args(args).arg("--data-dir").arg(dir).env_remove(FAIL);
    if let Some(events) = fail {
        cmd.env(FAIL, events);
    }
    cmd.output().expect("run assent-relay")
}

fn init(dir: &Path) {
    let out = relay(dir, &["init", "--listen", "127.0.0.1:0"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn add(dir: &Path, name: &str, key: &str, fail: Option<&str>) -> Output {
    relay(
        dir,
        &["technician", "add", "--name", name, "--key", key],
        fail,
    )
}

fn revoke(dir: &Path, name: &str, fail: Option<&str>) -> Output {
    relay(dir, &["technician", "revoke", name], fail)
}

/// Exit 1, and stderr says the record could not be written for `event`.
fn assert_refused(out: &Output, event: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("could not record {event} in the audit log"))
            && stderr.contains("nothing changed"),
        "stderr: {stderr}"
    );
}

fn count(dir: &Path, event: &str) -> usize {
    events(dir).iter().filter(|e| *e == event).count()
}

fn events(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("audit/audit.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("audit line");
            v["event"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

fn registry(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("technicians.json")).expect("technicians.json")
}

fn list(dir: &Path) -> String {
    let out = relay(dir, &["technician", "list"], None);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn offline_add_and_revoke_change_nothing_when_the_record_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("relay");
    init(&dir);
    let empty = registry(&dir);
    assert_refused(
        &add(&dir, "alice", &key_line(1), Some("technician_added")),
        "technician_added",
    );
    assert_eq!(registry(&dir), empty);
    assert_eq!(count(&dir, "technician_added"), 0);

    assert!(add(&dir, "alice", &key_line(1), None).status.success());
    let enrolled = registry(&dir);
    assert_refused(
        &revoke(&dir, "alice", Some("technician_revoked")),
        "technician_revoked",
    );
    assert_eq!(registry(&dir), enrolled);
    assert!(list(&dir).contains("active"));
    assert_eq!(count(&dir, "technician_revoked"), 0);

    // Without the failure the same commands go through, record first.
    let out = revoke(&dir, "alice", None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(list(&dir).contains("revoked"));
    let verify = relay(&dir, &["audit", "verify"], None);
    assert!(verify.status.success());
}

#[test]
fn serving_relay_refuses_changes_it_cannot_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("relay");
    init(&dir);
    assert!(add(&dir, "alice", &key_line(1), None).status.success());
    let before = registry(&dir);

    let mut child = Command::new(RELAY)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env(FAIL, "technician_added,technician_revoked")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the relay");
    let stdout = child.stdout.take().expect("stdout");
    let _serving = Serving(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the relay's first line");
    assert!(line.starts_with("listening on"), "{line}");

    // The CLI process has no injected failure: the serving relay's writer
    // is what fails, and its answer is what the admin sees.
    assert_refused(&add(&dir, "bob", &key_line(2), None), "technician_added");
    assert_refused(&revoke(&dir, "alice", None), "technician_revoked");
    assert_eq!(registry(&dir), before);
    assert!(list(&dir).contains("active"));
    assert_eq!(count(&dir, "technician_added"), 1, "{:?}", events(&dir));
    assert_eq!(count(&dir, "technician_revoked"), 0, "{:?}", events(&dir));
    // The relay still knows alice as enrolled: a second revoke is refused
    // for the audit failure again, not as "already revoked".
    assert_refused(&revoke(&dir, "alice", None), "technician_revoked");
}
