//! Test support shared by the end-to-end tests, the benchmark and the
//! capture and input crates' tests (never by a product crate):
//!
//! * [`Xvfb`]: a private X server for one test, stopped by PID when dropped;
//! * [`Proc`]: the one guard for a child process, killed by PID on drop;
//! * [`eventually`]: the one way to wait on a condition instead of sleeping.
//!
//! Xvfb picks a free display number itself (`-displayfd`) and reports it
//! once it accepts connections, so parallel tests never race for a number
//! and need no polling. Code under test gets the display name explicitly:
//! nothing here touches the process-wide `DISPLAY` variable.

mod process;
mod wait;

use std::io::{BufRead as _, BufReader, Read as _, Seek as _};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use process::Proc;
pub use wait::{eventually, eventually_every, POLL};

/// A running Xvfb; dropping it sends SIGTERM (so the server removes its lock
/// file and socket) and SIGKILL 5 s later if it is still there.
pub struct Xvfb {
    _proc: Proc,
    display: String,
}

impl Xvfb {
    /// Starts `Xvfb -screen 0 640x480x24 -noreset` on a free display.
    pub fn start() -> Xvfb {
        Xvfb::start_with_size(640, 480)
    }

    /// Starts a server with a `width`x`height`x24 screen.
    ///
    /// # Panics
    /// With a clear message when Xvfb is missing or does not come up:
    /// these tests must fail, not pass vacuously, without a server.
    pub fn start_with_size(width: u32, height: u32) -> Xvfb {
        let screen = format!("{width}x{height}x24");
        let mut log = tempfile::tempfile().expect("temporary file for the Xvfb log");
        let child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", &screen])
            // Without -noreset the server resets whenever its last client
            // leaves, losing e.g. the root colour a test painted.
            .args(["-noreset", "-nolisten", "tcp"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.try_clone().expect("clone log handle"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run Xvfb ({e}): install the `xvfb` package (scripts/setup)")
            });
        let mut proc = Proc::new(child).with_grace(Duration::from_secs(5));
        let stdout = proc.child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.trim().parse::<u32>().is_ok() => Xvfb {
                _proc: proc,
                display: format!(":{}", line.trim()),
            },
            outcome => {
                let status = proc.stop(Duration::ZERO);
                let mut text = String::new();
                let _ = log.rewind();
                let _ = log.read_to_string(&mut text);
                panic!("Xvfb did not start ({outcome:?}, exit {status:?}); its log:\n{text}");
            }
        }
    }

    /// The display name, e.g. `":3"`.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// A command that runs against this server.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("DISPLAY", &self.display);
        command
    }

    /// Copies `text` to this display's clipboard the way a person's program
    /// does (`xclip`, which stays in the background as the selection's
    /// owner until something else copies).
    ///
    /// # Panics
    /// When xclip is missing (`scripts/packages` installs it).
    pub fn set_clipboard(&self, text: &str) {
        use std::io::Write as _;
        let mut xclip = self
            .command("xclip")
            .args(["-selection", "clipboard", "-i"])
            .stdin(Stdio::piped())
            // The background owner keeps these open: never pipes here.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run xclip ({e}): install the `xclip` package"));
        let mut stdin = xclip.stdin.take().expect("piped stdin");
        stdin.write_all(text.as_bytes()).expect("write to xclip");
        drop(stdin);
        let status = xclip.wait().expect("wait for xclip");
        assert!(status.success(), "xclip -i failed: {status}");
    }

    /// This display's clipboard text (`xclip -o`), or `None` when it holds
    /// none.
    pub fn clipboard(&self) -> Option<String> {
        let out = self
            .command("xclip")
            .args(["-selection", "clipboard", "-o"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run xclip ({e}): install the `xclip` package"));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
