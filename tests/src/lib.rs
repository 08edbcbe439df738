//! Shared helpers for the end-to-end tests: a relay process in a temporary
//! data directory, technician keys, and paths to the workspace binaries.
//!
//! Tests talk only to 127.0.0.1 with ports the relay picks itself (port 0),
//! and every process they start is killed by PID when its guard ([`Proc`],
//! shared with the benchmark) drops. They wait on conditions with
//! [`eventually`] (or [`eventually_async`] inside tokio), not with sleeps.

#![forbid(unsafe_code)]

use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assent_proto::identity::SecretKey;

pub mod receiver;
pub mod shaped;
pub mod viewer;

/// Path of a workspace binary (built by `cargo test --workspace`).
/// `ASSENT_BIN_DIR=/usr/bin` runs the three programs from there instead:
/// `scripts/package-test` runs a session through the installed packages.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("ASSENT_BIN_DIR") {
        if ["assent-relay", "assent-agent", "assent-viewer"].contains(&name) {
            return PathBuf::from(dir).join(name);
        }
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/e2e-xxxx → target/debug/NAME
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// Runs a workspace binary to completion.
pub fn run(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin(name))
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("run binary")
}

pub use assent_xvfb::{eventually, eventually_every, Proc};

/// A relay serving from a temporary data directory.
pub struct TestRelay {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub addr: String,
    pub log: PathBuf,
    pub proc: Option<Proc>,
    /// Extra environment for `serve` (e.g. the debug-build fault injection
    /// `ASSENT_TEST_FAIL_AUDIT`).
    pub env: Vec<(String, String)>,
}

impl TestRelay {
    /// Initialises a relay; `limits` are `key = value` lines replacing the
    /// defaults in relay.toml. Does not start it.
    pub fn init(limits: &[(&str, &str)]) -> TestRelay {
        TestRelay::init_with(limits, &[])
    }

    /// [`TestRelay::init`] with more `init` arguments (e.g. `--ca-dir`).
    pub fn init_with(limits: &[(&str, &str)], init_args: &[&str]) -> TestRelay {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("relay");
        let mut args = vec![
            "init",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--public-name",
            "localhost",
        ];
        args.extend_from_slice(init_args);
        let out = run("assent-relay", &args);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let relay = TestRelay {
            log: tmp.path().join("relay.log"),
            tmp,
            dir,
            addr: String::new(),
            proc: None,
            env: Vec::new(),
        };
        // A vanished peer ends a test's session after 3 s, as an idle
        // timeout did before sessions survived network blips; the blip
        // tests set their own grace.
        relay.set_limits(&[("reconnect_grace_secs", "3")]);
        // Tests run side by side on two shared cores, where a debug relay
        // can fall 100 ms behind without being overloaded by its own
        // sessions; admission control is tested on its own (scenario 19).
        relay.set_limits(&[("busy_lag_ms", "0")]);
        relay.set_limits(limits);
        relay
    }

    pub fn set_limits(&self, limits: &[(&str, &str)]) {
        let path = self.dir.join("relay.toml");
        let mut text = std::fs::read_to_string(&path).expect("relay.toml");
        for (key, value) in limits {
            let prefix = format!("{key} = ");
            let line = text
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("no key {key} in relay.toml"))
                .to_string();
            text = text.replace(&line, &format!("{key} = {value}"));
        }
        std::fs::write(&path, text).expect("write relay.toml");
    }

    /// Starts `serve` and waits for its `listening on` line.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut child = Command::new(bin("assent-relay"))
            .args(["serve", "--data-dir", self.dir.to_str().unwrap()])
            .env("RUST_LOG", "debug,quinn=info,quinn_proto=info,rustls=info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn relay");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "relay did not start: {first:?}; log: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            })
            .to_string();
        // Keep draining stdout so the relay never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.addr = addr;
        self.proc = Some(Proc::new(child));
    }

    pub fn started(limits: &[(&str, &str)]) -> TestRelay {
        let mut r = TestRelay::init(limits);
        r.start();
        r
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.join("audit/audit.jsonl")
    }

    pub fn data_dir(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    /// Enrols a fresh technician key through the CLI and returns it.
    pub fn enrol(&self, name: &str) -> SecretKey {
        let key = SecretKey::generate().unwrap();
        let line = format!("{} {name}@test", key.public().to_line());
        self.add_technician(name, &line);
        key
    }

    /// Creates a technician key file at `key_path` with `assent-viewer
    /// keygen` and enrols it as `name` through the relay's CLI, the way an
    /// admin does.
    pub fn enrol_keyfile(&self, name: &str, key_path: &Path) {
        let out = Command::new(bin("assent-viewer"))
            .args(["keygen", "--key"])
            .arg(key_path)
            .output()
            .expect("run keygen");
        assert!(
            out.status.success(),
            "keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        self.add_technician(name, &line);
    }

    /// `assent-relay technician add` with a public key line.
    /// Enrols `key_line` (`ed25519:… hint`) as `name` through the CLI.
    pub fn add_technician(&self, name: &str, key_line: &str) {
        let out = run(
            "assent-relay",
            &[
                "technician",
                "add",
                "--data-dir",
                self.data_dir(),
                "--name",
                name,
                "--key",
                key_line,
            ],
        );
        assert!(
            out.status.success(),
            "enrol: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Audit records as JSON values.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.audit_path()).unwrap_or_default();
        // A line without its newline is being written right now: not yet.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        complete
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    pub fn events(&self) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| r["event"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Waits until a record matching `pred` is present.
    pub fn wait_record(
        &self,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        eventually(limit, || self.records().into_iter().find(|r| pred(r)))
    }

    /// [`TestRelay::wait_record`] without blocking the runtime, for tests
    /// whose clients run on it.
    pub async fn wait_record_async(
        &self,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        eventually_async(limit, || {
            std::future::ready(self.records().into_iter().find(|r| pred(r)))
        })
        .await
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut p = self.proc.take()?;
        p.signal(libc::SIGTERM);
        p.wait_timeout(Duration::from_secs(10))
    }
}

/// [`eventually`] for tests inside tokio: awaits `condition` every 20 ms
/// until it gives `Some` or `limit` passes, sleeping on the runtime's clock
/// instead of blocking a worker thread (which would starve the clients and
/// agents running on it). A synchronous check is `|| ready(check())`.
pub async fn eventually_async<T, F>(limit: Duration, condition: impl FnMut() -> F) -> Option<T>
where
    F: Future<Output = Option<T>>,
{
    eventually_every_async(limit, assent_xvfb::POLL, condition).await
}

/// [`eventually_async`], looking again every `every`.
pub async fn eventually_every_async<T, F>(
    limit: Duration,
    every: Duration,
    mut condition: impl FnMut() -> F,
) -> Option<T>
where
    F: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = condition().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// The lines of a child's output, on a channel (a thread drains the pipe).
pub fn lines(reader: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line matching `pred` within 30 s; panics naming `what`.
pub fn wait_line(
    rx: &std::sync::mpsc::Receiver<String>,
    pred: impl Fn(&str) -> bool,
    what: &str,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if pred(&l) => return l,
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    panic!("no {what}");
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Small X11 helpers for desktop tests (x11rb, no extra packages).
pub mod x11 {
    use x11rb::connection::Connection as _;
    use x11rb::protocol::xproto::{
        ChangeWindowAttributesAux, ClientMessageEvent, ConnectionExt as _, EventMask,
    };
    use x11rb::wrapper::ConnectionExt as _;

    /// Paints the root window of `display` a solid colour (0xRRGGBB).
    pub fn paint_root(display: &str, rgb: u32) {
        let (conn, screen) = x11rb::connect(Some(display)).expect("connect to X");
        let root = conn.setup().roots[screen].root;
        conn.change_window_attributes(
            root,
            &ChangeWindowAttributesAux::new().background_pixel(rgb),
        )
        .expect("set background");
        conn.clear_area(false, root, 0, 0, 0, 0).expect("clear");
        conn.flush().expect("flush");
        conn.sync().expect("sync");
    }

    /// Asks a window to close the way a window manager's close button does
    /// (WM_DELETE_WINDOW), not by killing its connection.
    pub fn close_window(display: &str, window: u32) {
        let (conn, _) = x11rb::connect(Some(display)).expect("connect to X");
        let atom = |name: &[u8]| conn.intern_atom(false, name).unwrap().reply().unwrap().atom;
        let protocols = atom(b"WM_PROTOCOLS");
        let delete = atom(b"WM_DELETE_WINDOW");
        let event = ClientMessageEvent::new(32, window, protocols, [delete, 0, 0, 0, 0]);
        conn.send_event(false, window, EventMask::NO_EVENT, event)
            .expect("send");
        conn.flush().expect("flush");
        conn.sync().expect("sync");
    }
}

/// A UDP proxy on loopback that drops and delays datagrams, standing in for
/// `tc netem`, which this machine's kernel lacks (no `sch_netem`).
pub mod lossy {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::net::UdpSocket;

    /// Counters of what the proxy did, both directions together.
    #[derive(Debug, Default)]
    pub struct Counts {
        pub forwarded: AtomicU64,
        pub dropped: AtomicU64,
    }

    pub struct LossyProxy {
        pub addr: SocketAddr,
        pub counts: Arc<Counts>,
        switches: Arc<Switches>,
        task: tokio::task::JoinHandle<()>,
    }

    /// What a test flips while the proxy runs.
    #[derive(Debug, Default)]
    struct Switches {
        /// Everything is dropped, both ways (a pulled cable).
        blackout: std::sync::atomic::AtomicBool,
        /// Bumped to send upstream from a new socket (NAT rebinding, or a
        /// laptop moving from Wi-Fi to Ethernet): a new source port.
        generation: AtomicU64,
        /// Set to strand every flow there is now: their datagrams are
        /// dropped both ways for good, while new flows (a client's new
        /// socket) pass. A dead address or a NAT that forgot the mapping:
        /// what QUIC migration cannot carry.
        strand: std::sync::atomic::AtomicBool,
    }

    impl Drop for LossyProxy {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Deterministic coin for the drops (reproducible runs; not crypto).
    struct Coin(u64);

    impl Coin {
        fn drop(&mut self, percent: f64) -> bool {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
            (x >> 11) as f64 / (1u64 << 53) as f64 * 100.0 < percent
        }
    }

    impl LossyProxy {
        /// Drops everything both ways while `on`.
        pub fn blackout(&self, on: bool) {
            self.switches.blackout.store(on, Relaxed);
        }

        /// From now on, each client's datagrams go upstream from a new port.
        pub fn rebind(&self) {
            self.switches.generation.fetch_add(1, Relaxed);
        }

        /// The flows there are now carry nothing more, ever; a client's
        /// new socket gets through.
        pub fn strand(&self) {
            self.switches.strand.store(true, Relaxed);
        }

        /// Forwards to `upstream`, dropping `loss_percent` of the datagrams
        /// and delaying the rest by `delay`, in each direction.
        pub async fn start(upstream: SocketAddr, loss_percent: f64, delay: Duration) -> LossyProxy {
            Self::start_from(upstream, loss_percent, delay, "127.0.0.1").await
        }

        /// Like [`LossyProxy::start`], sending upstream from `source_ip`
        /// (another loopback address, e.g. 127.0.0.2), so the relay sees the
        /// proxied clients as a different address from the others.
        pub async fn start_from(
            upstream: SocketAddr,
            loss_percent: f64,
            delay: Duration,
            source_ip: &'static str,
        ) -> LossyProxy {
            let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind proxy"));
            let addr = front.local_addr().expect("proxy address");
            let counts = Arc::new(Counts::default());
            let switches = Arc::new(Switches::default());
            let task = tokio::spawn(run(
                front,
                upstream,
                (loss_percent, delay),
                (counts.clone(), switches.clone()),
                source_ip,
            ));
            LossyProxy {
                addr,
                counts,
                switches,
                task,
            }
        }
    }

    async fn run(
        front: Arc<UdpSocket>,
        upstream: SocketAddr,
        (loss, delay): (f64, Duration),
        (counts, switches): (Arc<Counts>, Arc<Switches>),
        source_ip: &'static str,
    ) {
        let mut coin = Coin(0x9e37_79b9_7f4a_7c15);
        type Flow = (Arc<UdpSocket>, Arc<std::sync::atomic::AtomicBool>);
        let mut backs: HashMap<(SocketAddr, u64), Flow> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, client)) = front.recv_from(&mut buf).await else {
                return;
            };
            if switches.blackout.load(Relaxed) {
                counts.dropped.fetch_add(1, Relaxed);
                continue;
            }
            if switches.strand.swap(false, Relaxed) {
                for (_, dead) in backs.values() {
                    dead.store(true, Relaxed);
                }
            }
            let key = (client, switches.generation.load(Relaxed));
            let (back, dead) = match backs.get(&key) {
                Some(b) => b.clone(),
                None => {
                    let Ok(b) = UdpSocket::bind((source_ip, 0)).await else {
                        continue;
                    };
                    let flow = (Arc::new(b), Arc::default());
                    backs.insert(key, flow.clone());
                    tokio::spawn(back_to_client(
                        flow.clone(),
                        front.clone(),
                        client,
                        (loss, delay),
                        (counts.clone(), switches.clone()),
                    ));
                    flow
                }
            };
            if dead.load(Relaxed) {
                counts.dropped.fetch_add(1, Relaxed);
                continue;
            }
            if coin.drop(loss) {
                counts.dropped.fetch_add(1, Relaxed);
                continue;
            }
            counts.forwarded.fetch_add(1, Relaxed);
            if delay.is_zero() {
                let _ = back.send_to(&buf[..n], upstream).await;
                continue;
            }
            let datagram = buf[..n].to_vec();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = back.send_to(&datagram, upstream).await;
            });
        }
    }

    async fn back_to_client(
        (back, dead): (Arc<UdpSocket>, Arc<std::sync::atomic::AtomicBool>),
        front: Arc<UdpSocket>,
        client: SocketAddr,
        (loss, delay): (f64, Duration),
        (counts, switches): (Arc<Counts>, Arc<Switches>),
    ) {
        let mut coin = Coin(0x2545_f491_4f6c_dd1d ^ u64::from(client.port()));
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, _)) = back.recv_from(&mut buf).await else {
                return;
            };
            if switches.blackout.load(Relaxed) || dead.load(Relaxed) || coin.drop(loss) {
                counts.dropped.fetch_add(1, Relaxed);
                continue;
            }
            counts.forwarded.fetch_add(1, Relaxed);
            let datagram = buf[..n].to_vec();
            let front = front.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = front.send_to(&datagram, client).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;

    /// On a single-threaded runtime a blocking wait would never let the
    /// task that makes the condition true run.
    #[tokio::test(flavor = "current_thread")]
    async fn eventually_async_lets_the_runtime_run_meanwhile() {
        let flag = Arc::new(AtomicBool::new(false));
        let setter = flag.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            setter.store(true, SeqCst);
        });
        let got = eventually_async(Duration::from_secs(10), || {
            std::future::ready(flag.load(SeqCst).then_some(7))
        })
        .await;
        assert_eq!(got, Some(7));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn eventually_async_gives_up_after_the_limit() {
        let started = tokio::time::Instant::now();
        let mut looks = 0;
        let got: Option<()> = eventually_async(Duration::from_millis(100), || {
            looks += 1;
            std::future::ready(None)
        })
        .await;
        assert!(got.is_none());
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(looks >= 2, "{looks}");
    }
}
