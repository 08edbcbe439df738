//! A private Xvfb server for one test, stopped by PID when dropped.
//!
//! Xvfb picks a free display number itself (`-displayfd`) and reports it
//! once it accepts connections, so parallel tests never race for a number
//! and need no polling. Code under test gets the display name explicitly:
//! nothing here touches the process-wide `DISPLAY` variable.
//!
//! Used by the capture and input crates' tests and the end-to-end tests.

use std::io::{BufRead as _, BufReader, Read as _, Seek as _};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Xvfb {
    child: Child,
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
        let mut child = Command::new("Xvfb")
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
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.trim().parse::<u32>().is_ok() => Xvfb {
                child,
                display: format!(":{}", line.trim()),
            },
            outcome => {
                let _ = child.kill();
                let status = child.wait();
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
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        // SIGTERM first so Xvfb removes its lock file and socket.
        // SAFETY: kill(2) on the PID of our own child, not yet reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
