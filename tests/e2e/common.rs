use std::time::Duration;

use assent_client::{AgentLive, AgentPending, ClientError, DataStream, Viewer, ViewerEvent};
use assent_proto::identity::SecretKey;
use assent_proto::wire::{ConsentDecision, Impact, InviteRequest, Scope};
use assent_tests::{bin, Proc, TestRelay};

pub const WAIT: Duration = Duration::from_secs(10);

pub fn request(ticket: &str, scope: Scope) -> InviteRequest {
    InviteRequest {
        ticket: ticket.into(),
        client: "Acme Ltd".into(),
        summary: "Outlook does not start".into(),
        impact: Impact::High,
        scope,
        identity_check: String::new(),
        permissions: vec![],
    }
}

pub async fn viewer(relay: &TestRelay, key: &SecretKey, scope: Scope) -> Viewer {
    Viewer::connect(&relay.addr, &relay.ca(), key, request("T-1042", scope))
        .await
        .expect("viewer connects")
}

pub async fn join(relay: &TestRelay, code: &str) -> Result<AgentPending, ClientError> {
    AgentPending::join(
        &relay.addr,
        &relay.ca(),
        SecretKey::generate().unwrap(),
        "pc-reception",
        code,
    )
    .await
}

/// Pairs a viewer and an agent into a live session.
pub async fn pair(
    relay: &TestRelay,
    key: &SecretKey,
    scope: Scope,
    decision: ConsentDecision,
) -> (Viewer, DataStream, AgentLive) {
    let mut v = viewer(relay, key, scope).await;
    let code = v.invite.code.clone();
    let pending = join(relay, &code).await.expect("agent joins");
    let answer = tokio::spawn(pending.answer(decision));
    let mut session = None;
    while session.is_none() {
        match tokio::time::timeout(WAIT, v.next_event())
            .await
            .expect("event")
            .expect("ok")
        {
            ViewerEvent::Started { session: s, .. } => session = Some(s),
            ViewerEvent::Ended(r) => panic!("ended {r:?}"),
            _ => {}
        }
    }
    let data = v.control.accept_data().await.expect("viewer data stream");
    let live = answer.await.unwrap().expect("agent live");
    (v, data, live)
}

pub fn has_event(relay: &TestRelay, event: &str) -> bool {
    relay.events().iter().any(|e| e == event)
}

/// Waits until the relay has closed `invite` because nobody joined before
/// it expired (its `invite_closed` record), and returns that record.
pub async fn wait_invite_expired(relay: &TestRelay, invite: &str) -> serde_json::Value {
    relay
        .wait_record_async(WAIT, |r| {
            r["event"] == "invite_closed"
                && r["invite"] == invite
                && r["reason"] == "invite_expired"
        })
        .await
        .unwrap_or_else(|| panic!("invite {invite} did not expire: {:?}", relay.events()))
}

/// Starts `assent-testclient` with `args`; its stdout as lines.
pub fn spawn_testclient(
    args: &[&str],
) -> (
    Proc,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(bin("assent-testclient"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    (Proc::new(child), out)
}

/// The next line, which must start with `prefix`; the rest of it.
pub fn expect_line(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    prefix: &str,
) -> String {
    let line = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(
        line.starts_with(prefix),
        "expected {prefix:?}, got {line:?}"
    );
    line[prefix.len()..].trim().to_string()
}

/// A live view-only session: the real `assent-agent --tty` on `xvfb`,
/// joining through `agent_relay` (the relay's address, or a proxy in front
/// of it), and a test viewer that has its first frame. Returns the agent's
/// process, the viewer, and the agent's config home (keep it alive).
pub async fn live_tty_session(
    xvfb: &assent_xvfb::Xvfb,
    relay: &TestRelay,
    agent_relay: &str,
) -> (Proc, assent_tests::viewer::LiveViewer, tempfile::TempDir) {
    use assent_tests::viewer::{self, Pairing};
    use std::io::Write as _;
    let key = relay.enrol("alice");
    let config = assent_tests::tempdir();
    let v = viewer::connect(&relay.addr, &relay.ca(), &key, Scope::View)
        .await
        .unwrap();
    let code = v.invite.code.clone();
    let pairing = tokio::spawn(async move { viewer::pair(v, &key).await });
    let mut cmd = std::process::Command::new(bin("assent-agent"));
    cmd.args(["join", "--relay", agent_relay, "--ca"])
        .arg(relay.ca())
        .args(["--tty", &code])
        .env("DISPLAY", xvfb.display())
        .env("XDG_CONFIG_HOME", config.path())
        .env("RUST_LOG", "warn")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut agent = Proc::new(cmd.spawn().expect("spawn assent-agent"));
    let lines = assent_tests::lines(agent.child.stderr.take().unwrap());
    let lines = tokio::task::spawn_blocking(move || {
        assent_tests::wait_line(&lines, |l| l.contains("Type your answer"), "prompt");
        lines
    })
    .await
    .unwrap();
    // Keep draining the agent's stderr: a closed pipe would make its next
    // line fail (and the agent with it), ending the session mid-test.
    std::thread::spawn(move || for _ in lines {});
    let mut stdin = agent.child.stdin.take().unwrap();
    stdin.write_all(b"v\n").unwrap();
    let mut v = match tokio::time::timeout(WAIT, pairing)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        Pairing::Live(l) => *l,
        Pairing::Refused(r) => panic!("refused: {r}"),
    };
    assert!(v.next_frame(WAIT).await.unwrap(), "no first frame");
    (agent, v, config)
}
