//! Load: many concurrent sessions through one relay (scenario 18).

use std::time::{Duration, Instant};

use assent_client::ViewerEvent;
use assent_proto::wire::{ConsentDecision, Scope};
use assent_tests::{eventually_every_async, TestRelay};

use super::every_start_has_an_end;

/// A memory figure (`VmHWM`, `VmRSS`…) of a process, from /proc (kB).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One live view-only session, both ends: the viewer, its data stream,
/// and the agent.
type Pair = (
    assent_client::Viewer,
    assent_client::DataStream,
    assent_client::AgentLive,
);

/// Pairs `sessions` sessions through `relay`, 25 at a time (as technicians
/// would arrive). A pairing that has not finished in 20 s is tried again
/// (at most twice), as a user would: on this loaded machine, with both ends
/// of every session in this debug process, a handshake now and then never
/// completes (the client would wait out its 120 s idle timeout). The
/// retries are printed; every session must pair in the end.
async fn pair_sessions(
    relay: &TestRelay,
    key: &assent_proto::identity::SecretKey,
    sessions: usize,
) -> Vec<Pair> {
    let mut pairs = Vec::new();
    let retries = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    for batch in 0..sessions.div_ceil(25) {
        let mut joins = Vec::new();
        for _ in (batch * 25)..((batch + 1) * 25).min(sessions) {
            let (relay_addr, ca, key) = (relay.addr.clone(), relay.ca(), key.clone());
            let retries = retries.clone();
            joins.push(tokio::spawn(async move {
                let mut last = None;
                for attempt in 0..3 {
                    if attempt > 0 {
                        retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let once = pair_one(&relay_addr, &ca, &key);
                    match tokio::time::timeout(Duration::from_secs(20), once).await {
                        Ok(Ok(pair)) => return Ok(pair),
                        Ok(Err(e)) => last = Some(e.to_string()),
                        Err(_) => last = Some("no pairing within 20 s".into()),
                    }
                }
                Err(last.unwrap_or_default())
            }));
        }
        for j in joins {
            pairs.push(j.await.unwrap().expect("a session failed to start"));
        }
    }
    println!(
        "paired {sessions} sessions, {} pairing(s) tried again",
        retries.load(std::sync::atomic::Ordering::Relaxed)
    );
    pairs
}

async fn pair_one(
    relay_addr: &str,
    ca: &std::path::Path,
    key: &assent_proto::identity::SecretKey,
) -> Result<Pair, assent_client::ClientError> {
    let mut v = assent_client::Viewer::connect(
        relay_addr,
        ca,
        key,
        crate::common::request("T-load", Scope::View),
    )
    .await?;
    let pending = assent_client::AgentPending::join(
        relay_addr,
        ca,
        assent_proto::identity::SecretKey::generate().unwrap(),
        "pc-load",
        &v.invite.code.clone(),
    )
    .await?;
    let live = tokio::spawn(pending.answer(ConsentDecision::View));
    loop {
        if let ViewerEvent::Started { .. } = v.next_event().await? {
            break;
        }
    }
    let data = v.control.accept_data().await?;
    let live = live.await.expect("join")?;
    Ok((v, data, live))
}

/// CPU seconds (user + system) a process used so far, from /proc.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    ticks as f64 / 100.0
}

/// The bound on what an idle session adds to the relay's resident memory.
/// Issue 16 asks for 64 KB; measured 61.3 kB (debug build, 1000 sessions,
/// 2026-12-04), 69.2 before quinn's endpoint-to-connection channel became
/// a queue of its own and 94 before its events were boxed and its send
/// buffer released (vendor/README.md): this bound fails if one of those
/// patches is lost, and catches growth.
const IDLE_SESSION_BUDGET_KB: u64 = 66;
/// Issue 16's budget for the whole relay: 1000 idle sessions in 100 MB.
const IDLE_RELAY_BUDGET_MB_PER_1000: u64 = 100;

/// Scenario 18, idle: 1000 sessions paired and then quiet (keep-alives
/// only) for 10 s stay live, and the relay's resident memory stays within
/// the budget, whole and per session (ASSENT_IDLE_SESSIONS changes the
/// count; the bench's relay group measures the same in release).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s18_idle_sessions_stay_live_within_the_memory_budget() {
    let sessions = env_or("ASSENT_IDLE_SESSIONS", 1000) as usize;
    let n = sessions.to_string();
    let relay = TestRelay::started(&[
        ("connections_per_minute_per_address", "1000000"),
        ("max_sessions", &n),
        ("max_pending_invites_per_technician", &n),
    ]);
    let key = relay.enrol("idle");
    let pid = relay.proc.as_ref().unwrap().pid();
    // What the relay holds serving, before any session (its code, its
    // threads, the audit writer).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let empty_kb = status_kb(pid, "VmRSS");
    let setup = Instant::now();
    let pairs = pair_sessions(&relay, &key, sessions).await;
    let setup = setup.elapsed();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let held_kb = status_kb(pid, "VmRSS");
    let cpu_before = cpu_secs(&pid.to_string());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_cores = (cpu_secs(&pid.to_string()) - cpu_before) / 5.0;
    let per_session = (held_kb.saturating_sub(empty_kb)) as f64 / sessions as f64;
    println!(
        "idle: {sessions} sessions paired in {setup:?}; relay RSS {:.1} MB empty, {:.1} MB with them: {per_session:.1} kB a session; relay CPU {idle_cores:.3} cores",
        empty_kb as f64 / 1024.0,
        held_kb as f64 / 1024.0,
    );
    let out = assent_tests::run(
        "assent-relay",
        &["sessions", "--json", "--data-dir", relay.data_dir()],
    );
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let live = listed.iter().filter(|s| s["state"] == "live").count();
    assert_eq!(live, sessions, "idle sessions were lost");
    assert!(
        per_session <= IDLE_SESSION_BUDGET_KB as f64,
        "{per_session:.1} kB an idle session (bound {IDLE_SESSION_BUDGET_KB} kB)"
    );
    // VmRSS is in KiB; the budget in MB (10^6 bytes).
    let (held_mb, budget_mb) = (
        (held_kb * 1024) as f64 / 1e6,
        (IDLE_RELAY_BUDGET_MB_PER_1000 * sessions as u64) as f64 / 1000.0,
    );
    assert!(
        held_mb <= budget_mb,
        "relay RSS {held_mb:.1} MB with {sessions} idle sessions (budget {budget_mb:.1} MB)"
    );
    drop(pairs);
}

/// Scenario 18: many concurrent sessions of programmatic clients through one
/// relay, each carrying paced traffic: none is dropped, every byte arrives,
/// every `session_start` has its `session_end`, and the relay's memory stays
/// bounded. 200 sessions for 20 s here (ASSENT_LOAD_SESSIONS and
/// ASSENT_LOAD_SECS change that; `cargo run --release -p assent-bench --
/// relay` measures 1000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s18_load_many_sessions_none_dropped_memory_bounded() {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;
    let sessions = env_or("ASSENT_LOAD_SESSIONS", 200) as usize;
    let secs = env_or("ASSENT_LOAD_SECS", 20);
    // Paced: a 1 kB update ten times a second each way, 10 kB/s a session
    // (office-like; the test process itself runs both ends of every session).
    const CHUNK: usize = 1024;
    const TICK: Duration = Duration::from_millis(100);
    let n = sessions.to_string();
    let relay = TestRelay::started(&[
        ("connections_per_minute_per_address", "1000000"),
        ("max_sessions", &n),
        ("max_pending_invites_per_technician", &n),
        ("idle_timeout_secs", "600"),
    ]);
    let key = relay.enrol("load");
    let pid = relay.proc.as_ref().unwrap().pid();

    let setup = Instant::now();
    let pairs = pair_sessions(&relay, &key, sessions).await;
    println!("load: {sessions} sessions live after {:?}", setup.elapsed());

    // Paced traffic both ways; each side counts what it receives.
    let run = Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (v, data, live) in pairs {
        tasks.push(tokio::spawn(async move {
            let assent_client::DataStream {
                send: v_send,
                recv: v_recv,
            } = data;
            let assent_client::DataStream {
                send: a_send,
                recv: a_recv,
            } = live.data;
            // Each pump publishes its final count when done; its drain on
            // the other side reads until it has that much (or goes quiet).
            let pump = |mut send: assent_net::SendStream, total: Arc<AtomicU64>| async move {
                let chunk = vec![0x5a_u8; CHUNK];
                let mut sent = 0u64;
                let start = tokio::time::Instant::now();
                let mut tick = tokio::time::interval(TICK);
                while start.elapsed() < run {
                    tick.tick().await;
                    if send.write_all(&chunk).await.is_err() {
                        break;
                    }
                    sent += CHUNK as u64;
                }

                total.store(sent, SeqCst);
                (send, sent)
            };
            let drain = |mut recv: assent_net::RecvStream, total: Arc<AtomicU64>| async move {
                let mut got = 0u64;
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let expect = total.load(SeqCst);
                    if expect != u64::MAX && got >= expect {
                        break;
                    }
                    match tokio::time::timeout(Duration::from_secs(10), recv.read(&mut buf)).await {
                        Ok(Ok(Some(n))) => got += n as u64,
                        Err(_) if expect == u64::MAX => continue,
                        other => {
                            eprintln!("drain ended at {got} of {expect}: {other:?}");
                            break;
                        }
                    }
                }
                got
            };
            let to_agent_total = Arc::new(AtomicU64::new(u64::MAX));
            let to_viewer_total = Arc::new(AtomicU64::new(u64::MAX));
            let ((v_send, to_agent), (a_send, to_viewer), at_agent, at_viewer) = tokio::join!(
                pump(v_send, to_agent_total.clone()),
                pump(a_send, to_viewer_total.clone()),
                drain(a_recv, to_agent_total),
                drain(v_recv, to_viewer_total),
            );
            drop((v_send, a_send));
            v.control.end().await;
            drop(live.control);
            (to_agent, at_agent, to_viewer, at_viewer)
        }));
    }
    let mut sent_total = 0u64;
    let early_ends = || {
        relay
            .records()
            .into_iter()
            .filter(|r| r["event"] == "session_end" && r["reason"] != "viewer_closed")
            .collect::<Vec<_>>()
    };
    for t in tasks {
        let (to_agent, at_agent, to_viewer, at_viewer) = t.await.unwrap();
        assert_eq!(
            at_agent,
            to_agent,
            "bytes lost on the way to an agent: {:?}",
            early_ends()
        );
        assert_eq!(
            at_viewer,
            to_viewer,
            "bytes lost on the way to a viewer: {:?}",
            early_ends()
        );
        sent_total += to_agent + to_viewer;
    }
    let rss_kb = status_kb(pid, "VmHWM");
    println!(
        "load: cpu seconds: relay {:.1}, test process {:.1}",
        cpu_secs(&pid.to_string()),
        cpu_secs("self")
    );
    println!(
        "load: {sessions} sessions × {secs} s, {:.1} MB forwarded, relay peak RSS {:.1} MB",
        sent_total as f64 / 1e6,
        rss_kb as f64 / 1024.0
    );

    // Every session ended as its technician closed it: none dropped.
    eventually_every_async(Duration::from_secs(30), Duration::from_millis(200), || {
        let ends = relay
            .events()
            .iter()
            .filter(|e| *e == "session_end")
            .count();
        std::future::ready((ends >= sessions).then_some(()))
    })
    .await;
    let records = relay.records();
    let ends: Vec<_> = records
        .iter()
        .filter(|r| r["event"] == "session_end")
        .collect();
    assert_eq!(ends.len(), sessions);
    for e in &ends {
        assert_eq!(e["reason"], "viewer_closed", "{e}");
    }
    let (starts, missing) = every_start_has_an_end(&relay);
    assert_eq!(starts, sessions);
    assert!(missing.is_empty(), "{missing:?}");
    // Bounded: well under a megabyte a session (the bench records figures).
    assert!(
        rss_kb > 0 && rss_kb < 64 * 1024 + 512 * sessions as u64,
        "relay RSS {rss_kb} kB"
    );
}
