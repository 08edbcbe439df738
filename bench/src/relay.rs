//! The real `assent-relay` in a temporary data directory, on a loopback
//! port it picks itself, with limits raised for load.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use assent_proto::identity::SecretKey;

use crate::procs::{self, Proc};

pub struct BenchRelay {
    pub dir: PathBuf,
    pub addr: String,
    pub proc: Proc,
    pub technician: SecretKey,
    /// The technician key as a file, for `assent-viewer --key`.
    pub key_file: PathBuf,
    pub log: PathBuf,
}

/// Limits for benchmarking: room for every session and invite the load
/// test opens, and no per-address connection throttling (every client
/// here comes from 127.0.0.1).
const LIMITS: [(&str, &str); 3] = [
    ("max_sessions", "20000"),
    ("max_pending_invites_per_technician", "5000"),
    ("connections_per_minute_per_address", "1000000"),
];

/// Runs an `assent-relay` admin command; its stdout, or an error with its
/// stderr when it fails.
pub fn run(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(procs::product_bin("assent-relay")?)
        .args(args)
        .output()
        .with_context(|| format!("running assent-relay {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "assent-relay {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `assent-relay init` in `dir` listening on `listen` (port 0: one the
/// relay picks at start), with the load limits and worker setting.
pub fn init(dir: &Path, listen: &str) -> anyhow::Result<()> {
    init_with(dir, listen, &[])
}

/// [`init`] with more `init` arguments (a fleet's `--ca-dir`).
pub fn init_with(dir: &Path, listen: &str, more: &[&str]) -> anyhow::Result<()> {
    let dir_s = dir.to_str().context("temporary path is not UTF-8")?;
    let mut args = vec![
        "init",
        "--data-dir",
        dir_s,
        "--listen",
        listen,
        "--public-name",
        "localhost",
    ];
    args.extend_from_slice(more);
    run(&args)?;
    set_limits(&dir.join("relay.toml"), &LIMITS)?;
    set_workers(&dir.join("relay.toml"))
}

/// Enrols `technician` as `bench` in the relay at `dir` (`technician add`).
pub fn enrol(dir: &Path, technician: &SecretKey) -> anyhow::Result<()> {
    let dir_s = dir.to_str().context("temporary path is not UTF-8")?;
    let line = format!("{} bench@localhost", technician.public().to_line());
    run(&[
        "technician",
        "add",
        "--data-dir",
        dir_s,
        "--name",
        "bench",
        "--key",
        &line,
    ])?;
    Ok(())
}

/// Writes `technician` to a new 0600 file, for `assent-viewer --key`.
pub fn write_key_file(path: &Path, technician: &SecretKey) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .context("writing the technician key file")?;
    f.write_all(technician.to_file_contents().as_bytes())?;
    Ok(())
}

impl BenchRelay {
    /// Creates, configures and starts a relay under `tmp`.
    pub async fn start(tmp: &Path) -> anyhow::Result<BenchRelay> {
        let dir = tmp.join("relay");
        init(&dir, "127.0.0.1:0")?;
        let technician = SecretKey::generate().context("generating a technician key")?;
        enrol(&dir, &technician)?;
        let key_file = tmp.join("technician.key");
        write_key_file(&key_file, &technician)?;
        BenchRelay::serve(dir, tmp.join("relay.log"), technician, key_file).await
    }

    /// Starts `assent-relay serve` on a relay already set up in `dir`
    /// (enrolled with `technician`), logging to `log`; returns once it
    /// listens.
    pub async fn serve(
        dir: PathBuf,
        log: PathBuf,
        technician: SecretKey,
        key_file: PathBuf,
    ) -> anyhow::Result<BenchRelay> {
        let dir_s = dir.to_str().context("temporary path is not UTF-8")?;
        let mut cmd = Command::new(procs::product_bin("assent-relay")?);
        cmd.args(["serve", "--data-dir", dir_s])
            // The relay's own default filter (info): what an admin runs.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).context("relay log file")?);
        let mut proc = procs::spawn("assent-relay", &mut cmd)?;
        let stdout = proc.child.stdout.take().context("relay stdout")?;
        let mut lines = procs::lines(stdout);
        let first = procs::wait_line(&mut lines, Duration::from_secs(20), "relay start", |_| true)
            .await
            .with_context(|| {
                format!(
                    "relay log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })?;
        let addr = first
            .strip_prefix("listening on ")
            .with_context(|| format!("relay did not start: {first:?}"))?
            .to_string();
        // Keep draining stdout.
        tokio::spawn(async move { while lines.recv().await.is_some() {} });
        Ok(BenchRelay {
            dir,
            addr,
            proc,
            technician,
            key_file,
            log,
        })
    }

    /// What the relay said at start of its threads and UDP offloads, for
    /// the report (`workers=N`, `gso_segments=N gro_segments=N batch=N`).
    pub fn start_facts(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let field = |name: &str| {
            log.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or("?")
                .to_string()
        };
        format!(
            "workers={} gso_segments={} gro_segments={} batch={}",
            field("workers="),
            field("gso_segments="),
            field("gro_segments="),
            field("batch=")
        )
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    /// Bytes the relay forwarded to the viewer in each live session.
    pub fn bytes_to_viewer(&self) -> anyhow::Result<u64> {
        let dir = self.dir.to_str().context("path")?;
        let json = run(&["sessions", "--data-dir", dir, "--json"])?;
        let sessions: serde_json::Value =
            serde_json::from_str(&json).context("parsing `assent-relay sessions --json`")?;
        Ok(sessions
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["bytes_to_viewer"].as_u64()).sum())
            .unwrap_or(0))
    }
}

/// `ASSENT_BENCH_RELAY_WORKERS=N` runs the relay on N threads (relay.toml
/// `workers`; one per core otherwise), to compare 1 against 2.
fn set_workers(path: &Path) -> anyhow::Result<()> {
    let Ok(n) = std::env::var("ASSENT_BENCH_RELAY_WORKERS") else {
        return Ok(());
    };
    let n: usize = n
        .parse()
        .context("ASSENT_BENCH_RELAY_WORKERS is not a number")?;
    let text = std::fs::read_to_string(path).context("reading relay.toml")?;
    let set = text.replace("# workers = 4", &format!("workers = {n}"));
    std::fs::write(path, set).context("writing relay.toml")
}

/// Replaces `key = value` lines in relay.toml (the keys must exist, so a
/// renamed limit fails here instead of silently not applying).
pub fn set_limits(path: &Path, limits: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut text = std::fs::read_to_string(path).context("reading relay.toml")?;
    for (key, value) in limits {
        let prefix = format!("{key} = ");
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .with_context(|| format!("no key {key} in relay.toml"))?
            .to_string();
        text = text.replace(&line, &format!("{key} = {value}"));
    }
    std::fs::write(path, text).context("writing relay.toml")
}
