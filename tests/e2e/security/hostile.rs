//! Hostile text and leaking secrets: hostile metadata (scenario 16) and
//! secrets in logs, audit records and notes (17).

use std::time::Duration;

use assent_proto::session_msg::{InputEvent, Key};
use assent_proto::wire::{ClientMsg, ConsentDecision, Scope};
use assent_tests::viewer;
use assent_tests::TestRelay;

use super::signed_in_technician;
use crate::common::WAIT;

/// True when `text` holds a control character other than newline and tab.
fn has_control(text: &str) -> bool {
    text.chars().any(|c| {
        (c.is_control() && c != '\n' && c != '\t') || ('\u{202A}'..='\u{202E}').contains(&c)
    })
}

/// Scenario 16: a ticket, device name or technician name with control
/// characters, ANSI escapes, 10 kB of text or invalid UTF-8 is refused at
/// the door (and the relay keeps serving); what an edited audit file holds
/// is neutralised by `audit show`, and `sessions` prints only clean text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s16_hostile_metadata_is_refused_or_neutralised() {
    use assent_proto::wire::{ErrorKind, InviteRequest};
    let relay = TestRelay::started(&[]);
    let key = relay.enrol("alice");
    let request = |ticket: &str| crate::common::request(ticket, Scope::View);
    for ticket in [
        "T\x1b[2J",
        &"x".repeat(10_000),
        "a\u{202E}b",
        "T\r\nevent=forged",
    ] {
        let err = assent_client::Viewer::connect(&relay.addr, &relay.ca(), &key, request(ticket))
            .await
            .unwrap_err();
        assert_eq!(
            err.refusal(),
            Some(ErrorKind::BadInput),
            "{ticket:?}: {err}"
        );
    }
    // Invalid UTF-8 cannot even be expressed through the typed client:
    // write the frame by hand, with the ticket's bytes replaced.
    let mut control = signed_in_technician(&relay, &key).await;
    let mut body = assent_proto::wire::encode(&ClientMsg::CreateInvite(InviteRequest {
        ticket: "TICKET".into(),
        ..request("x")
    }))
    .unwrap();
    let at = body.windows(6).position(|w| w == b"TICKET").unwrap();
    body[at..at + 6].copy_from_slice(&[0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1]);
    let frame = assent_proto::framing::encode_frame(&body, 64 * 1024).unwrap();
    control.send.write_all(&frame).await.unwrap();
    let reply = tokio::time::timeout(WAIT, control.recv()).await.unwrap();
    assert!(
        !matches!(
            reply,
            Ok(assent_proto::wire::RelayMsg::InviteCreated { .. })
        ),
        "{reply:?}"
    );
    // Device names.
    let v = crate::common::viewer(&relay, &key, Scope::View).await;
    for device in ["pc\x1b]0;owned\x07", &"d".repeat(10_000), "pc\u{0}"] {
        let err = assent_client::AgentPending::join(
            &relay.addr,
            &relay.ca(),
            assent_proto::identity::SecretKey::generate().unwrap(),
            device,
            &v.invite.code,
        )
        .await
        .err()
        .unwrap();
        assert_eq!(
            err.refusal(),
            Some(ErrorKind::BadInput),
            "{device:?}: {err}"
        );
    }
    // Technician names, from the admin's command line.
    for name in ["eve\x1b[31m", &"n".repeat(10_000), "eve\nmallory"] {
        let hostile = assent_proto::identity::SecretKey::generate().unwrap();
        let line = hostile.public().to_line();
        let out = assent_tests::run(
            "assent-relay",
            &[
                "technician",
                "add",
                "--data-dir",
                relay.data_dir(),
                "--name",
                name,
                "--key",
                &line,
            ],
        );
        assert!(!out.status.success(), "{name:?} enrolled");
        assert!(!has_control(&String::from_utf8_lossy(&out.stderr)));
    }
    // The relay kept serving through all of it, and what it recorded and
    // lists is clean.
    let (_v, _d, _live) =
        crate::common::pair(&relay, &key, Scope::View, ConsentDecision::View).await;
    let sessions = assent_tests::run(
        "assent-relay",
        &["sessions", "--data-dir", relay.data_dir()],
    );
    let listed = String::from_utf8_lossy(&sessions.stdout);
    assert!(listed.contains("pc-reception"), "{listed}");
    assert!(!has_control(&listed));
    let audit = std::fs::read_to_string(relay.audit_path()).unwrap();
    assert!(!audit.contains("owned") && !audit.contains("mallory") && !has_control(&audit));

    // An audit file edited to carry escapes (the chain is recomputed, as an
    // attacker with write access could): `audit show` prints none of them.
    let edited = TestRelay::init(&[]);
    {
        let mut log = assent_audit::AuditLog::open(&edited.audit_path()).unwrap();
        let mut fields = assent_audit::Fields::new();
        fields.insert("ticket".into(), "T\x1b[2J\x1b]0;pwned\x07".into());
        fields.insert("dev\x1b[31mice".into(), "\u{202E}gnp.exe".into());
        log.append("session_start\x1b[8m", fields).unwrap();
    }
    let out = assent_tests::run(
        "assent-relay",
        &["audit", "show", "--data-dir", edited.data_dir()],
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && shown.contains("session_start"),
        "{shown}"
    );
    assert!(!has_control(&shown), "{shown:?}");
}

/// What of a key file must never be seen elsewhere: its base64 lines, and
/// the raw key bytes in hex (how a careless `{:?}` of bytes would print).
fn secret_needles(path: &std::path::Path) -> Vec<String> {
    use base64::Engine as _;
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut needles = Vec::new();
    let body: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.len() >= 16 && !l.contains(' ') && !l.starts_with("-----"))
        .collect();
    // A PKCS#8 PEM ends with the public key (which certificates rightly
    // show); the lines before it hold the private key.
    let pem = text.contains("-----BEGIN");
    let private = if pem && body.len() > 1 {
        &body[..body.len() - 1]
    } else {
        &body[..]
    };
    for &line in private {
        needles.push(line.to_string());
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(line) {
            if bytes.len() <= 64 {
                needles.push(hex::encode(&bytes));
            }
        }
    }
    assert!(
        !needles.is_empty(),
        "no key material found in {}",
        path.display()
    );
    needles
}

/// Every file under `dir`, recursively, as text (lossy).
fn all_text_under(dir: &std::path::Path, skip: &[&std::path::Path]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if skip.iter().any(|s| *s == path) {
            continue;
        }
        if path.is_dir() {
            out.extend(all_text_under(&path, skip));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    out
}

/// Scenario 17: with every program logging at `trace`, no log, audit record
/// or note holds an invite code, a private key or text the technician typed.
#[test]
fn s17_no_secret_in_any_log_audit_or_note() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    // A full session of the real viewer and agent processes.
    let mut s = crate::viewer::live_session_logging("trace");
    assent_tests::wait_line(
        &s.viewer_out,
        |l| l.contains("\"frames\":") && !l.contains("\"frames\":0"),
        "frames at the viewer",
    );
    drop(s.viewer_stdin.take());
    assert!(s.viewer.wait_timeout(WAIT).is_some(), "viewer did not end");
    // The user skips the question after the end (their terminal closes).
    drop(s.agent_stdin);
    assert!(s.agent.wait_timeout(WAIT).is_some(), "agent did not end");
    let mut codes = vec![s.code.clone()];

    // A second session: a programmatic technician types into the real agent
    // (control granted at its terminal prompt), which injects into Xvfb.
    let typed = "hunter2-typed-secret";
    let xvfb = assent_xvfb::Xvfb::start_with_size(320, 240);
    let relay = &s.relay;
    let key = relay.enrol("bob");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let v = runtime
        .block_on(viewer::connect(
            &relay.addr,
            &relay.ca(),
            &key,
            Scope::Control,
        ))
        .unwrap();
    codes.push(v.invite.code.clone());
    let agent_config = s.home.path().join("agent2-config");
    let agent_log = s.home.path().join("agent2.log");
    let mut agent = assent_tests::Proc::new(
        Command::new(assent_tests::bin("assent-agent"))
            .args([
                "join",
                "--relay",
                &relay.addr,
                "--ca",
                relay.ca().to_str().unwrap(),
            ])
            .args(["--tty", &v.invite.code])
            .env("DISPLAY", xvfb.display())
            .env("XDG_CONFIG_HOME", &agent_config)
            .env("RUST_LOG", "trace")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&agent_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut agent_stdin = agent.child.stdin.take().unwrap();
    let pairing = runtime.spawn(async move {
        let key = key;
        viewer::pair(v, &key).await
    });
    assert!(
        crate::viewer::file_contains_within(&agent_log, "c = allow control", WAIT),
        "no prompt from the agent"
    );
    agent_stdin.write_all(b"c\n").unwrap();
    let mut live = match runtime.block_on(pairing).unwrap().unwrap() {
        viewer::Pairing::Live(l) => *l,
        viewer::Pairing::Refused(r) => panic!("refused: {r}"),
    };
    assert_eq!(live.scope, Scope::Control);
    runtime.block_on(async {
        assert!(live.next_frame(WAIT).await.unwrap());
        live.input(InputEvent::Text(typed.into())).await.unwrap();
        for c in "hunter2".chars() {
            for pressed in [true, false] {
                live.input(InputEvent::Key {
                    key: Key::Char(c),
                    pressed,
                })
                .await
                .unwrap();
            }
        }
        // Frames keep coming after the input, so the agent has read it.
        for _ in 0..5 {
            live.next_frame(Duration::from_millis(500)).await.unwrap();
        }
        live.viewer.control.end().await;
    });
    drop(agent_stdin);
    assert!(agent.wait_timeout(WAIT).is_some(), "agent did not end");
    relay
        .wait_record(WAIT, |r| {
            r["event"] == "session_end" && r["reason"] == "viewer_closed"
        })
        .expect("second session ended");

    // The needles.
    let mut needles: Vec<String> = vec![typed.to_string()];
    for code in &codes {
        needles.push(code.clone());
        needles.push(code.chars().filter(char::is_ascii_digit).collect());
    }
    let home = s.home.path();
    let secret_files = [
        home.join("tech.key"),
        home.join("agent-config/assent/device.key"),
        agent_config.join("assent/device.key"),
        relay.dir.join("signing.key"),
        relay.dir.join("tls/relay.key"),
        relay.dir.join("tls/ca.key"),
    ];
    for f in &secret_files {
        needles.extend(secret_needles(f));
    }
    // The haystacks: every log, audit file and note either side wrote; the
    // key files themselves are the only place their contents may be.
    let skip: Vec<&std::path::Path> = secret_files.iter().map(|p| p.as_path()).collect();
    let mut haystacks = all_text_under(home, &skip);
    haystacks.push(("relay log".into(), relay.log_text()));
    haystacks.push((
        "relay audit".into(),
        std::fs::read_to_string(relay.audit_path()).unwrap(),
    ));
    let names: Vec<&str> = haystacks.iter().map(|(n, _)| n.as_str()).collect();
    for must in [
        "viewer.log",
        "agent.log",
        "agent2.log",
        "audit.jsonl",
        ".md",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(must)),
            "{must} not searched: {names:?}"
        );
    }
    assert!(
        haystacks.iter().map(|(_, t)| t.len()).sum::<usize>() > 10_000,
        "the logs are suspiciously short"
    );
    for (name, text) in &haystacks {
        for needle in &needles {
            if let Some(line) = text.lines().find(|l| l.contains(needle.as_str())) {
                panic!(
                    "a secret leaked into {name}: {}",
                    line.replace(needle.as_str(), "<SECRET>")
                );
            }
        }
    }
}
