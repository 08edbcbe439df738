//! Processes the benchmark starts (under the guard the tests use too,
//! `assent_xvfb::Proc`: killed by PID on drop), their CPU time and memory
//! from /proc, and the workspace binaries they run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};

/// The guard for every process the benchmark starts, shared with the tests.
pub use assent_xvfb::Proc;

/// How long a process the benchmark started gets to end cleanly after
/// SIGTERM (the relay, agent and viewer end their sessions) before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(3);

/// Starts `command` (called `name` in errors) under the shared guard, which
/// on drop sends SIGTERM and SIGKILL after [`GRACE`].
pub fn spawn(name: &str, command: &mut Command) -> anyhow::Result<Proc> {
    let proc = Proc::spawn(command)
        .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
    Ok(proc.with_grace(GRACE))
}

/// CPU time and memory of a running guarded process.
pub trait ProcUsage {
    fn usage(&self) -> anyhow::Result<Usage>;
}

impl ProcUsage for Proc {
    fn usage(&self) -> anyhow::Result<Usage> {
        Usage::of(self.pid()).with_context(|| format!("reading /proc for pid {}", self.pid()))
    }
}

/// CPU time and memory of a process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// utime + stime, in seconds of one core.
    pub cpu_secs: f64,
    /// Resident set now (VmRSS), bytes.
    pub rss: u64,
    /// Peak resident set since start (VmHWM), bytes.
    pub peak_rss: u64,
}

impl Usage {
    pub fn of(pid: u32) -> anyhow::Result<Usage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The command name (field 2) may contain spaces and parentheses;
        // everything after the last ')' is space-separated, starting at
        // field 3 (state), so utime (14) and stime (15) are at 11 and 12.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .context("malformed /proc/PID/stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| -> anyhow::Result<f64> {
            Ok(fields
                .get(i)
                .context("short /proc/PID/stat")?
                .parse::<u64>()? as f64)
        };
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let cpu_secs = (ticks(11)? + ticks(12)?) / hz;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        Ok(Usage {
            cpu_secs,
            rss: kb("VmRSS:"),
            peak_rss: kb("VmHWM:"),
        })
    }

    pub fn this_process() -> anyhow::Result<Usage> {
        Usage::of(std::process::id())
    }
}

/// The workspace root (the bench package's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The product binaries the benchmark runs.
pub const PRODUCT_BINS: [&str; 3] = ["assent-relay", "assent-agent", "assent-viewer"];

/// Where the product binaries are: next to this executable, i.e. the
/// same target directory and profile the benchmark was built with.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the benchmark executable")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("the benchmark executable has no directory")
}

/// Builds the product binaries with this executable's profile (a no-op
/// when they are fresh), so the run never measures stale programs.
pub fn build_product_bins() -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--locked", "--quiet"]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    for b in PRODUCT_BINS {
        cmd.args(["-p", b]);
    }
    // `cargo run` gives this process the bench package's CARGO_MANIFEST_DIR
    // and CARGO_PKG_* variables; some build scripts (ring's) track them, so
    // passing them on would rebuild half the workspace, twice.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "OUT_DIR",
            ]
            .contains(&k.as_ref())
        {
            cmd.env_remove(&key);
        }
    }
    tracing::info!(?cmd, "building the product binaries");
    let status = cmd
        .status()
        .with_context(|| format!("running {cargo:?} to build {PRODUCT_BINS:?}"))?;
    if !status.success() {
        bail!("building {PRODUCT_BINS:?} failed ({status})");
    }
    Ok(())
}

/// Path of a product binary; a clear error when it was not built.
pub fn product_bin(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build it (`cargo build{} -p {name}`) or run the benchmark without --no-build",
            path.display(),
            if cfg!(debug_assertions) { "" } else { " --release" }
        );
    }
    Ok(path)
}

/// Fails with the package to install when a tool is not on PATH.
pub fn require_tools(tools: &[(&str, &str)]) -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<String> = tools
        .iter()
        .filter(|(tool, _)| !std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
        .map(|(tool, package)| format!("{tool} (package {package})"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing tools: {}; run scripts/setup to install them",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Raises the open-file limit to the hard limit: a thousand sessions are
/// two thousand client UDP sockets in this process.
pub fn raise_fd_limit() -> anyhow::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Pins the calling thread to one CPU, so "one core" means one core.
pub fn pin_to_cpu(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: the set is a zeroed local, filled with CPU_SET, and passed
    // with its size to sched_setaffinity for the calling thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "sched_setaffinity(cpu {cpu}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// A pipe's lines on a tokio channel (a thread drains the pipe, so the
/// child never blocks on a full one).
pub fn lines(
    reader: impl std::io::Read + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use std::io::BufRead as _;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(reader)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line matching `pred` within `limit`.
pub async fn wait_line(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    limit: Duration,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(l)) if pred(&l) => return Ok(l),
            Ok(Some(_)) => continue,
            Ok(None) => bail!("{what}: the process closed its output first"),
            Err(_) => bail!("{what}: nothing within {limit:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_usage_is_readable() {
        let u = Usage::this_process().unwrap();
        assert!(u.rss > 0 && u.peak_rss >= u.rss, "{u:?}");
        assert!(u.cpu_secs >= 0.0);
    }

    #[test]
    fn missing_tool_names_its_package() {
        let err = require_tools(&[("assent-no-such-tool", "nothing")]).unwrap_err();
        assert!(err.to_string().contains("package nothing"), "{err}");
    }
}
