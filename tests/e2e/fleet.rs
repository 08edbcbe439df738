//! Fleet mode (issue 17): several real relays on one real PostgreSQL,
//! started by the test itself (initdb + postgres as the postgres user on a
//! private socket directory; `scripts/packages` installs postgresql). The
//! agents and viewers are `assent-testclient` processes speaking the real
//! protocol. The first relay's CA issued every other relay's certificate
//! (`init --ca-dir`), so the users' one `ca.pem` trusts the whole fleet.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use assent_fleet::testing::PgServer;
use assent_proto::identity::SecretKey;
use assent_tests::{run, Proc, TestRelay};

use crate::common::*;

/// How long a kill or a revoke issued on one relay may take on another.
const FLEET_REACH: Duration = Duration::from_secs(2);

struct FleetUnderTest {
    pg: PgServer,
    relays: Vec<TestRelay>,
    /// The fleet's one CA (the first relay's): what the users' `ca.pem` is.
    ca: PathBuf,
    /// The fleet's database address.
    url: String,
    tmp: tempfile::TempDir,
}

fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

/// `n` relays `relay-a`, `relay-b`, … on one database, the schema migrated
/// from the first, all started.
fn fleet(n: usize, lease_secs: u64) -> FleetUnderTest {
    let pg = PgServer::start().expect("a private PostgreSQL (scripts/packages installs it)");
    let url = pg
        .create_database("fleet")
        .expect("create the fleet database");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut relays: Vec<TestRelay> = Vec::new();
    for i in 0..n {
        let relay = match relays.first() {
            None => TestRelay::init(&[]),
            Some(first) => {
                let tls = first.dir.join("tls");
                TestRelay::init_with(&[], &["--ca-dir", tls.to_str().unwrap()])
            }
        };
        join_fleet(&relay, &url, &relay_id(i), lease_secs);
        relays.push(relay);
    }
    assert!(
        n < 2 || !relays[1].dir.join("tls/ca.key").exists(),
        "a relay issued from the fleet's CA holds no CA key"
    );
    let out = run(
        "assent-relay",
        &["fleet", "migrate", "--data-dir", relays[0].data_dir()],
    );
    assert!(out.status.success(), "migrate: {}", stderr(&out));
    let again = run(
        "assent-relay",
        &["fleet", "migrate", "--data-dir", relays[1 % n].data_dir()],
    );
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("up to date"),
        "a second migrate changes nothing: {}",
        String::from_utf8_lossy(&again.stdout)
    );
    for r in relays.iter_mut() {
        r.start();
    }
    FleetUnderTest {
        pg,
        ca: relays[0].ca(),
        relays,
        url,
        tmp,
    }
}

/// Adds a `[fleet]` table to `relay`'s relay.toml (on a fixed free port,
/// its public address).
fn join_fleet(relay: &TestRelay, url: &str, id: &str, lease_secs: u64) {
    let port = free_udp_port();
    relay.set_limits(&[("listen", &format!("\"127.0.0.1:{port}\""))]);
    let table = format!(
        "\n[fleet]\ndatabase = {}\nrelay_id = \"{id}\"\npublic_address = \"127.0.0.1:{port}\"\nlease_secs = {lease_secs}\n",
        serde_json::to_string(url).unwrap(),
    );
    let config = relay.dir.join("relay.toml");
    let text = std::fs::read_to_string(&config).unwrap() + &table;
    std::fs::write(&config, text).unwrap();
}

fn relay_id(i: usize) -> String {
    format!("relay-{}", (b'a' + i as u8) as char)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

impl FleetUnderTest {
    /// Enrols one technician key on every relay (the registries are each
    /// relay's own; revocation reaches all of them through the fleet).
    fn enrol_everywhere(&self, name: &str) -> PathBuf {
        let key = SecretKey::generate().unwrap();
        let line = format!("{} {name}@test", key.public().to_line());
        for r in &self.relays {
            r.add_technician(name, &line);
        }
        let path = self.tmp.path().join(format!("{name}.key"));
        std::fs::write(&path, key.to_file_contents().as_bytes()).unwrap();
        path
    }

    /// A technician's viewer on relay `at`: its process, its code, its lines.
    fn viewer(&self, at: usize, key: &std::path::Path) -> (Proc, String, Lines) {
        let (proc, mut lines) = spawn_testclient(&[
            "viewer",
            "--relay",
            &self.relays[at].addr,
            "--ca",
            self.ca.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
        ]);
        let code = expect_line(&mut lines, "code: ");
        (proc, code, lines)
    }

    /// A user's agent joining relay `at` with `code`.
    fn agent(&self, at: usize, code: &str) -> (Proc, Lines) {
        spawn_testclient(&[
            "agent",
            "--relay",
            &self.relays[at].addr,
            "--ca",
            self.ca.to_str().unwrap(),
            "--code",
            code,
        ])
    }

    /// `assent-relay sessions --json` on relay `at`.
    fn sessions(&self, at: usize) -> Vec<serde_json::Value> {
        let out = run(
            "assent-relay",
            &[
                "sessions",
                "--json",
                "--data-dir",
                self.relays[at].data_dir(),
            ],
        );
        assert!(out.status.success(), "sessions: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// The central audit's records of `relay`, as `audit show --fleet` prints them.
    fn central(&self, at: usize, relay: &str) -> Vec<serde_json::Value> {
        let out = run(
            "assent-relay",
            &[
                "audit",
                "show",
                "--fleet",
                "--json",
                "--data-dir",
                self.relays[at].data_dir(),
            ],
        );
        assert!(out.status.success(), "audit show --fleet: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["relay"] == relay)
            .collect()
    }
}

type Lines = std::io::Lines<std::io::BufReader<std::process::ChildStdout>>;

/// Waits up to `limit` for `check` to hold, looking every 100 ms.
fn within(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn session_end(relay: &TestRelay, session: &str) -> Option<serde_json::Value> {
    relay
        .records()
        .into_iter()
        .find(|r| r["event"] == "session_end" && r["session"] == session)
}

#[test]
fn three_relays_share_invites_sessions_kill_and_revoke() {
    let f = fleet(3, 10);
    let alice = f.enrol_everywhere("alice");
    let (a, b, c) = (0, 1, 2);

    // An invite created on A, redeemed through B: the agent is sent to A.
    let (_viewer1, code1, mut v1) = f.viewer(a, &alice);
    let (_agent1, mut a1) = f.agent(b, &code1);
    let started = expect_line(&mut a1, "started ");
    let (s1, at) = started.split_once(" at ").expect("started ID at ADDR");
    assert_eq!(
        at, f.relays[a].addr,
        "the session runs on the technician's relay"
    );
    assert_eq!(expect_line(&mut v1, "started "), s1);
    assert!(f.relays[a]
        .records()
        .iter()
        .any(|r| r["event"] == "session_start" && r["session"] == s1));
    assert!(!f.relays[b].events().contains(&"session_start".to_string()));

    // Every relay lists it, with the relay that holds it.
    let listed = within(Duration::from_secs(5), || {
        f.sessions(c)
            .iter()
            .any(|s| s["id"] == s1 && s["relay"] == "relay-a")
    });
    assert!(
        listed.is_some(),
        "C does not list A's session: {:?}",
        f.sessions(c)
    );

    // A technician enrolled on A alone is accepted on C (enrolled there at
    // first use, audited there).
    let bob = SecretKey::generate().unwrap();
    let line = format!("{} bob@test", bob.public().to_line());
    let out = run(
        "assent-relay",
        &[
            "technician",
            "add",
            "--data-dir",
            f.relays[a].data_dir(),
            "--name",
            "bob",
            "--key",
            &line,
        ],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("other relays accept it too"));
    let bob_key = f.tmp.path().join("bob.key");
    std::fs::write(&bob_key, bob.to_file_contents().as_bytes()).unwrap();
    let (_bob_viewer, bob_code, _bv) = f.viewer(c, &bob_key);
    assert_eq!(bob_code.len(), 19, "a code for bob at C");
    let added_at_c = f.relays[c]
        .records()
        .into_iter()
        .any(|r| r["event"] == "technician_added" && r["technician"] == "bob");
    assert!(added_at_c, "bob's enrolment at C is not on record");

    // Agents sent on from B are no wrong guesses: several in a row from
    // one address all join (default limits: a wrong code locks the
    // address out for a second).
    for _ in 0..3 {
        let (_viewer, code, _v) = f.viewer(a, &alice);
        let (_agent, mut lines) = f.agent(b, &code);
        assert!(expect_line(&mut lines, "started ").contains(&f.relays[a].addr));
    }

    // One code raced to B and C redeems once.
    let (_viewer2, code2, mut v2) = f.viewer(a, &alice);
    let (mut racer_b, mut rb) = f.agent(b, &code2);
    let (mut racer_c, mut rc) = f.agent(c, &code2);
    let s2 = expect_line(&mut v2, "started ");
    let exited = |p: &mut Proc| p.wait_timeout(Duration::from_secs(10)).is_some();
    let (b_out, c_out) = (exited(&mut racer_b), exited(&mut racer_c));
    assert!(
        b_out ^ c_out,
        "exactly one racer is refused (b exited {b_out}, c exited {c_out})"
    );
    let winner = if b_out { &mut rc } else { &mut rb };
    assert!(expect_line(winner, "started ").starts_with(&s2));
    let starts = f.relays[a]
        .events()
        .iter()
        .filter(|e| *e == "session_start")
        .count();
    assert_eq!(starts, 5, "one session per code");

    // Kill at C ends the session on A within 2 s.
    let out = run(
        "assent-relay",
        &["kill", "--data-dir", f.relays[c].data_dir(), s1],
    );
    assert!(out.status.success(), "kill at C: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("relay-a"));
    let took = within(FLEET_REACH, || session_end(&f.relays[a], s1).is_some());
    assert!(
        took.is_some(),
        "kill at C did not end A's session within 2 s"
    );
    assert_eq!(
        session_end(&f.relays[a], s1).unwrap()["reason"],
        "admin_killed"
    );

    // Revoke at B ends alice's session on A and refuses her everywhere.
    let out = run(
        "assent-relay",
        &[
            "technician",
            "revoke",
            "alice",
            "--data-dir",
            f.relays[b].data_dir(),
        ],
    );
    assert!(out.status.success(), "revoke at B: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("other relays are told"));
    let took = within(FLEET_REACH, || session_end(&f.relays[a], &s2).is_some());
    assert!(
        took.is_some(),
        "revoke at B did not end A's session within 2 s"
    );
    assert_eq!(
        session_end(&f.relays[a], &s2).unwrap()["reason"],
        "technician_revoked"
    );
    let revoked_at = |r: &TestRelay| r.events().contains(&"technician_revoked".to_string());
    assert!(within(FLEET_REACH, || f.relays.iter().all(revoked_at)).is_some());
    for at in [a, b, c] {
        let (mut refused, _) = spawn_testclient(&[
            "viewer",
            "--relay",
            &f.relays[at].addr,
            "--ca",
            f.ca.to_str().unwrap(),
            "--key-file",
            alice.to_str().unwrap(),
        ]);
        let status = refused
            .wait_timeout(Duration::from_secs(10))
            .expect("refused viewer exits");
        assert!(
            !status.success(),
            "alice still accepted at {}",
            relay_id(at)
        );
    }

    // One central audit: every relay's chain verifies and shows.
    let out = run(
        "assent-relay",
        &[
            "audit",
            "verify",
            "--fleet",
            "--data-dir",
            f.relays[c].data_dir(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify --fleet: {text}{}",
        stderr(&out)
    );
    for id in ["relay-a", "relay-b", "relay-c"] {
        assert!(text.contains(&format!("ok: relay {id}:")), "{text}");
        assert!(!f.central(a, id).is_empty(), "no central records of {id}");
    }
}

/// A relay in the database under its own CA (someone who could write to
/// the database and had the fleet key) holds a code: an agent asking a
/// real relay is told to go there, and refuses, because that certificate
/// does not chain to the fleet's `ca.pem`.
#[test]
fn an_agent_follows_a_redirect_only_to_a_relay_of_the_fleets_ca() {
    let f = fleet(1, 10);
    let mut rogue = TestRelay::init(&[]);
    std::fs::copy(
        f.relays[0].dir.join("tls/fleet.key"),
        rogue.dir.join("tls/fleet.key"),
    )
    .unwrap();
    join_fleet(&rogue, &f.url, "relay-rogue", 10);
    rogue.start();
    let mallory = rogue.enrol("mallory");
    let key = f.tmp.path().join("mallory.key");
    std::fs::write(&key, mallory.to_file_contents().as_bytes()).unwrap();
    let (_viewer, mut v) = spawn_testclient(&[
        "viewer",
        "--relay",
        &rogue.addr,
        "--ca",
        rogue.ca().to_str().unwrap(),
        "--key-file",
        key.to_str().unwrap(),
    ]);
    let code = expect_line(&mut v, "code: ");

    let (mut agent, mut lines) = f.agent(0, &code);
    let status = agent.wait_timeout(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| !s.success()),
        "the agent did not refuse the stranger relay"
    );
    assert!(lines.next().is_none(), "the agent printed a session");
    assert!(
        f.relays[0].log_text().contains("redirecting the agent"),
        "the fleet's relay did redirect (the refusal is the agent's)"
    );
    assert!(!rogue.events().contains(&"session_start".to_string()));
}

#[test]
fn a_killed_relay_shows_lost_its_restart_ends_its_sessions_and_tampering_is_caught() {
    let mut f = fleet(2, 3);
    let alice = f.enrol_everywhere("alice");
    let (_viewer, code, _v) = f.viewer(0, &alice);
    let (_agent, mut lines) = f.agent(0, &code);
    let started = expect_line(&mut lines, "started ");
    let session = started.split(' ').next().unwrap().to_string();
    let on_b = |f: &FleetUnderTest| {
        f.sessions(1)
            .into_iter()
            .find(|s| s["id"] == session.as_str())
    };
    assert!(within(Duration::from_secs(5), || on_b(&f).is_some()).is_some());

    // A burst of records (enrolments through the admin socket, each on
    // disk before it answers) with the kill in the middle of their
    // shipping. SIGKILL: no goodbye.
    let burst = std::thread::spawn({
        let dir = f.relays[0].data_dir().to_string();
        move || {
            for i in 0..40 {
                let key = SecretKey::generate().unwrap();
                let line = format!("{} t{i}@test", key.public().to_line());
                let name = format!("t{i}");
                run(
                    "assent-relay",
                    &[
                        "technician",
                        "add",
                        "--data-dir",
                        &dir,
                        "--name",
                        &name,
                        "--key",
                        &line,
                    ],
                );
            }
        }
    });
    std::thread::sleep(Duration::from_millis(400));
    f.relays[0].proc.as_ref().unwrap().signal(libc::SIGKILL);
    let _ = burst.join();
    // Once its 3 s lease is past, B shows the session lost.
    let _ = f.relays[0]
        .proc
        .as_mut()
        .unwrap()
        .wait_timeout(Duration::from_secs(5));
    let lost = within(Duration::from_secs(8), || {
        on_b(&f).is_some_and(|s| s["state"].as_str().unwrap_or("").starts_with("lost"))
    });
    assert!(lost.is_some(), "not shown lost: {:?}", on_b(&f));

    // The restart writes its session_end and ships it: gone from the list.
    f.relays[0].proc = None;
    f.relays[0].start();
    let end = f.relays[0]
        .wait_record(WAIT, |r| {
            r["event"] == "session_end" && r["session"] == session.as_str()
        })
        .expect("session_end after the restart");
    assert_eq!(end["recovered_after_crash"], true);
    assert!(within(Duration::from_secs(5), || on_b(&f).is_none()).is_some());

    // Nothing acknowledged is missing centrally: every local seq is there.
    assert!(
        f.all_shipped(0, 1, Duration::from_secs(5)),
        "central audit of relay-a is not the local log"
    );

    // The writer may not change history; a superuser who does is caught.
    for sql in [
        "UPDATE audit_events SET event = 'x' WHERE relay_id = 'relay-a' AND seq = 2",
        "DELETE FROM audit_events WHERE relay_id = 'relay-a' AND seq = 2",
    ] {
        assert!(f.pg.psql("fleet", sql).is_err(), "{sql} was not refused");
    }
    let rewrite = "SET session_replication_role = replica; \
        UPDATE audit_events SET record = replace(record::text, 'relay_started', 'relay_stoppeD')::json \
        WHERE relay_id = 'relay-a' AND seq = 1";
    f.pg.psql("fleet", rewrite).expect("a superuser rewrite");
    let out = run(
        "assent-relay",
        &[
            "audit",
            "verify",
            "--fleet",
            "--data-dir",
            f.relays[1].data_dir(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bad: relay relay-a seq 1"), "{text}");
    assert!(text.contains("ok: relay relay-b:"), "{text}");
}

#[test]
fn with_the_database_down_live_sessions_go_on_new_ones_wait_and_the_audit_ships_later() {
    let mut f = fleet(1, 10);
    let alice = f.enrol_everywhere("alice");
    let (mut viewer, code, _v) = f.viewer(0, &alice);
    let (mut agent, mut lines) = f.agent(0, &code);
    let started = expect_line(&mut lines, "started ");
    let session = started.split(' ').next().unwrap().to_string();

    f.pg.stop();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        viewer.alive() && agent.alive(),
        "the live session ended with the database"
    );
    assert!(f.sessions(0).iter().any(|s| s["id"] == session.as_str()));
    // A new session needs the fleet: a clear refusal, not stale state.
    let (mut refused, mut out) = spawn_testclient(&[
        "viewer",
        "--relay",
        &f.relays[0].addr,
        "--ca",
        f.ca.to_str().unwrap(),
        "--key-file",
        alice.to_str().unwrap(),
    ]);
    assert!(refused
        .wait_timeout(Duration::from_secs(15))
        .is_some_and(|s| !s.success()));
    assert!(
        out.next().is_none(),
        "a code was handed out without the fleet"
    );
    assert!(f.relays[0]
        .log_text()
        .contains("fleet database is unreachable"));

    // Records written meanwhile ship once it is back, every seq present.
    let out = run(
        "assent-relay",
        &["kill", "--data-dir", f.relays[0].data_dir(), &session],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The kill is on record once the session's task has ended it.
    assert!(within(WAIT, || session_end(&f.relays[0], &session).is_some()).is_some());
    f.pg.start_again().expect("restart the database");
    assert!(
        f.all_shipped(0, 0, Duration::from_secs(15)),
        "the backlog did not ship"
    );
    let out = run(
        "assent-relay",
        &["fleet", "status", "--data-dir", f.relays[0].data_dir()],
    );
    let status = String::from_utf8_lossy(&out.stdout);
    let local = f.relays[0].records().len();
    assert!(
        status.contains(&format!(
            "{local} audit records here, {local} in the fleet's audit (0 to ship)"
        )),
        "{status}"
    );

    // A relay restarted while its database is down serves, refuses new
    // sessions, and joins the fleet once the database is back.
    f.pg.stop();
    f.relays[0].stop();
    f.relays[0].start();
    assert!(
        f.viewer_refused(0, &alice),
        "a code was handed out without the fleet"
    );
    f.pg.start_again().expect("restart the database");
    let back = within(Duration::from_secs(20), || !f.viewer_refused(0, &alice));
    assert!(
        back.is_some(),
        "no new session after the database came back"
    );
}

impl FleetUnderTest {
    /// Whether, within `limit`, the central audit (asked through relay
    /// `ask`) holds exactly relay `at`'s local seqs: none lost, none extra.
    fn all_shipped(&self, at: usize, ask: usize, limit: Duration) -> bool {
        let seqs = |records: Vec<serde_json::Value>| -> Vec<u64> {
            records.iter().map(|r| r["seq"].as_u64().unwrap()).collect()
        };
        let local = seqs(self.relays[at].records());
        within(limit, || seqs(self.central(ask, &relay_id(at))) == local).is_some()
    }

    /// Whether a technician's viewer on relay `at` is refused its invite.
    fn viewer_refused(&self, at: usize, key: &std::path::Path) -> bool {
        let (proc, mut lines) = spawn_testclient(&[
            "viewer",
            "--relay",
            &self.relays[at].addr,
            "--ca",
            self.ca.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
        ]);
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        proc.signal(libc::SIGKILL);
        !first.starts_with("code: ")
    }
}
