//! Seeds of the targets that read files and the admin socket:
//! `audit_verify`, `relay_config`, `relay_technicians`, `admin_request`.

use assent_audit::canonical_json;
use assent_proto::identity::SecretKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// An audit line written the way the format's docs describe it, computed
/// here independently of the crate's writer.
fn audit_line(seq: u64, prev: &str, event: &str, fields: Value) -> (String, String) {
    let mut obj = fields.as_object().cloned().unwrap_or_default();
    obj.insert("seq".into(), json!(seq));
    obj.insert("time".into(), json!("2026-11-23T14:00:00.123Z"));
    obj.insert("event".into(), json!(event));
    obj.insert("prev".into(), json!(prev));
    let hash: String = Sha256::digest(canonical_json(&Value::Object(obj.clone())).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    obj.insert("hash".into(), json!(hash));
    (canonical_json(&Value::Object(obj)) + "\n", hash)
}

pub(super) fn audit_logs() -> Vec<(&'static str, Vec<u8>)> {
    let (a, h1) = audit_line(
        1,
        assent_audit::ZERO_HASH,
        "relay_started",
        json!({"listen": "0.0.0.0:4433"}),
    );
    let (b, h2) = audit_line(
        2,
        &h1,
        "consent",
        json!({"session": "s1", "decision": "view", "nested": {"b": [1, 2.5, null], "a": "é\n"}}),
    );
    let (c, _) = audit_line(3, &h2, "session_end", json!({"reason": "viewer_closed"}));
    let log = format!("{a}{b}{c}");
    let deep = "[".repeat(100_000);
    vec![
        ("valid-log", log.clone().into_bytes()),
        ("torn-last-line", log.as_bytes()[..log.len() - 20].to_vec()),
        ("reordered", format!("{b}{a}{c}").into_bytes()),
        ("edited", log.replace("view", "control").into_bytes()),
        (
            "deep-nesting",
            format!("{a}{{\"seq\":2,\"x\":{deep}\n").into_bytes(),
        ),
        ("huge-seq", b"{\"seq\":18446744073709551616}\n".to_vec()),
        (
            "not-utf8",
            [a.as_bytes(), b"{\"seq\":2,\"e\":\"\xff\"}\n"].concat(),
        ),
    ]
}

/// Two webhooks, every key set.
const WEBHOOKS: &[u8] = b"[[webhooks]]\nname = \"helpdesk\"\nurl = \"https://hd.example/x?t=1\"\n\
secret = \"0123456789abcdef\"\nevents = [\"note_filed\", \"escalation\"]\nca = \"/etc/ca.pem\"\n\
timeout_secs = 10\nretry_initial_ms = 100\nretry_max_secs = 60\ngive_up_after_secs = 3600\n\
[[webhooks]]\nname = \"audit-sink\"\nurl = \"http://127.0.0.1:8080/\"\nsecret = \"fedcba9876543210\"\n";

pub(super) fn relay_configs() -> Vec<(&'static str, Vec<u8>)> {
    let template = assent_relay_formats::config::RelayConfig::template(
        "0.0.0.0:4433".parse().expect("address"),
        "relay.example.com",
    );
    vec![
        ("template", template.into_bytes()),
        ("minimal", b"[limits]\nmax_sessions = 3\n".to_vec()),
        (
            "escaped-name",
            b"public_name = \"relay \\\"one\\\" \\\\ x\"\n".to_vec(),
        ),
        ("zero-limit", b"[limits]\nmax_sessions = 0\n".to_vec()),
        ("webhooks", WEBHOOKS.to_vec()),
        (
            "webhook-bad-url",
            b"[[webhooks]]\nname = \"h\"\nurl = \"https://u@[::1\"\nsecret = \"0123456789abcdef\"\n"
                .to_vec(),
        ),
        ("unknown-key", b"[limits]\nmax_sesions = 3\n".to_vec()),
        (
            "huge-number",
            b"[limits]\ninvite_ttl_secs = 18446744073709551616\n".to_vec(),
        ),
        (
            "deep-nesting",
            format!("public_name = {}", "[".repeat(100_000)).into_bytes(),
        ),
        (
            "deep-tables",
            format!("public_name = {}", "{a=".repeat(10_000)).into_bytes(),
        ),
    ]
}

pub(super) fn technician_files() -> Vec<(&'static str, Vec<u8>)> {
    let k1 = SecretKey::from_seed(&[1; 32]).public().to_line();
    let k2 = SecretKey::from_seed(&[2; 32]).public().to_line();
    let list = json!([
        {"name": "alice", "key": k1, "added": "2026-01-01T00:00:00Z"},
        {"name": "bob", "key": k2, "added": "2026-01-01T00:00:00Z", "revoked": "2026-02-01T00:00:00Z"},
        {"name": "eve", "key": "ed25519:AAAA", "added": "x"},
    ]);
    vec![
        (
            "registry",
            serde_json::to_vec_pretty(&list).expect("serialises"),
        ),
        ("empty", b"[]\n".to_vec()),
        ("deep-nesting", "[".repeat(100_000).into_bytes()),
        (
            "huge-string-claim",
            b"[{\"name\":\"\\u00e9\\ud800\",\"key\":1}]".to_vec(),
        ),
    ]
}

pub(super) fn admin_requests() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("sessions", br#"{"cmd":"sessions"}"#.to_vec()),
        ("kill", br#"{"cmd":"kill","session":"5f2a9c0e"}"#.to_vec()),
        (
            "technician-add",
            br#"{"cmd":"technician_add","name":"alice","key":"ed25519:AAAA alice@laptop"}"#
                .to_vec(),
        ),
        (
            "technician-revoke",
            br#"{"cmd":"technician_revoke","name":"alice"}"#.to_vec(),
        ),
        (
            "response",
            br#"{"ok":true,"sessions":[{"id":"s","technician":"a","ticket":"T","device":"d","scope":"view","started":"now","bytes_to_viewer":1,"bytes_to_agent":18446744073709551615}]}"#
                .to_vec(),
        ),
        (
            "deep-nesting",
            format!("{{\"cmd\":\"kill\",\"session\":{}", "[".repeat(100_000)).into_bytes(),
        ),
        (
            "duplicate-keys",
            br#"{"cmd":"kill","cmd":"sessions","session":"a","session":"b"}"#.to_vec(),
        ),
    ]
}

pub(super) fn webhook_outboxes() -> Vec<(&'static str, Vec<u8>)> {
    use assent_relay_formats::outbox::{Op, Outcome, Queued};
    let queued = |k: char, seq| {
        Op::Queued(Queued {
            key: k.to_string().repeat(32),
            hook: "helpdesk".into(),
            seq,
            event: "note_filed".into(),
            queued_at: 1_764_684_000_000,
            body: json!({"type": "note_filed", "note": {"result": "Resolved\nline"}}).to_string(),
        })
        .to_line()
    };
    let attempt = Op::Attempt {
        key: "a".repeat(32),
        hook: "helpdesk".into(),
        attempts: 2,
        status: 503,
    }
    .to_line();
    let done = Op::Done {
        key: "b".repeat(32),
        hook: "helpdesk".into(),
        outcome: Outcome::Delivered,
    }
    .to_line();
    let cursor = Op::Cursor { seq: 40 }.to_line();
    let journal = [cursor, queued('a', 41), queued('b', 42), attempt, done].join("\n");
    let torn = format!("{journal}\n{}", &queued('c', 43)[..60]);
    vec![
        ("journal", format!("{journal}\n").into_bytes()),
        ("torn-last-line", torn.into_bytes()),
        (
            "unknown-op",
            b"{\"op\":\"queued\",\"key\":1}\n{\"op\":\"x\"}\n".to_vec(),
        ),
    ]
}
