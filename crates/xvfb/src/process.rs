//! [`Proc`]: the one guard for a child process in tests and benchmarks.

use std::io;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use crate::wait::eventually;

/// A child process, stopped by PID and reaped when the guard drops.
///
/// By default the drop is a SIGKILL: a test that ends (or panics) leaves
/// nothing running. [`Proc::with_grace`] asks for SIGTERM first, for
/// programs that should end cleanly (the relay, agent and viewer end their
/// sessions; Xvfb removes its lock file and socket), with SIGKILL after the
/// grace period if the process is still there.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    grace: Duration,
}

impl Proc {
    /// Guards a spawned child; SIGKILL on drop.
    pub fn new(child: Child) -> Proc {
        Proc {
            child,
            grace: Duration::ZERO,
        }
    }

    /// Spawns `command` and guards the child.
    pub fn spawn(command: &mut Command) -> io::Result<Proc> {
        Ok(Proc::new(command.spawn()?))
    }

    /// On drop, SIGTERM first, and SIGKILL only if the process is still
    /// running `grace` later.
    pub fn with_grace(mut self, grace: Duration) -> Proc {
        self.grace = grace;
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (e.g. `libc::SIGKILL`) to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of our own child; it is not reaped
        // before the guard drops or a wait saw it exit, so the PID is ours.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    /// Whether it is still running (reaps it if it has exited).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `limit` for the process to exit; its status if it did.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = &mut self.child;
        eventually(limit, || child.try_wait().ok().flatten())
    }

    /// SIGTERM, then SIGKILL if it is still running after `grace`; reaps it.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        if !grace.is_zero() {
            self.signal(libc::SIGTERM);
            if let Some(status) = self.wait_timeout(grace) {
                return Some(status);
            }
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(self.grace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Whether `pid` names a process (a zombie counts) right now.
    fn exists(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn drop_kills_and_reaps() {
        let p = Proc::spawn(Command::new("sleep").arg("100")).unwrap();
        let pid = p.pid();
        assert!(exists(pid));
        let started = Instant::now();
        drop(p);
        assert!(!exists(pid), "still there after the drop");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_grace_period_sends_sigterm_first() {
        use io::BufRead as _;
        // A shell that says when its trap is set, and reports SIGTERM.
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "trap 'echo term; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(std::process::Stdio::piped());
        let mut p = Proc::spawn(&mut cmd)
            .unwrap()
            .with_grace(Duration::from_secs(5));
        let mut out = io::BufReader::new(p.child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        let pid = p.pid();
        drop(p);
        assert!(!exists(pid));
        let mut text = String::new();
        io::Read::read_to_string(&mut out, &mut text).unwrap();
        assert_eq!(text.trim(), "term");
    }

    #[test]
    fn wait_timeout_reports_an_exit_and_gives_up_on_a_runner() {
        let mut quick = Proc::spawn(&mut Command::new("true")).unwrap();
        let status = quick.wait_timeout(Duration::from_secs(10)).expect("exited");
        assert!(status.success());
        assert!(!quick.alive());
        let mut slow = Proc::spawn(Command::new("sleep").arg("100")).unwrap();
        let started = Instant::now();
        assert!(slow.wait_timeout(Duration::from_millis(100)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(slow.alive());
    }
}
