//! A programmatic technician (the real protocol through `assent-client`,
//! no window), timing what it decodes, and the real agent process it
//! talks to through the relay.

use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use assent_client::e2e::{ChannelReader, ChannelWriter};
use assent_client::{Viewer, ViewerEvent};
use assent_codec::Decoder;
use assent_proto::identity::SecretKey;
use assent_proto::session_msg::{Control, InputEvent, SessionMsg};
use assent_proto::wire::{Impact, InviteRequest, Scope};

use crate::procs::{self, Proc};
use crate::relay::BenchRelay;

pub fn request(scope: Scope) -> InviteRequest {
    InviteRequest {
        ticket: "T-BENCH".into(),
        client: "Benchmark".into(),
        summary: "Benchmark run".into(),
        impact: Impact::Normal,
        scope,
        identity_check: String::new(),
        permissions: vec![],
    }
}

/// Waits for the agent, runs the end-to-end handshake and waits for the
/// session to start.
pub async fn pair(mut viewer: Viewer, key: SecretKey) -> anyhow::Result<LiveViewer> {
    let device_key = loop {
        match viewer.next_event().await? {
            ViewerEvent::AgentJoined { device_key, .. } => break device_key,
            ViewerEvent::Ended(r) => bail!("ended before the agent joined: {r:?}"),
            _ => continue,
        }
    };
    let e2e = assent_client::e2e::initiate(&mut viewer, &key, device_key)
        .await
        .context("end-to-end handshake")?;
    loop {
        match viewer.next_event().await? {
            ViewerEvent::Started { .. } => break,
            ViewerEvent::Ended(r) => bail!("session refused: {r:?}"),
            _ => continue,
        }
    }
    let data = viewer.control.accept_data().await.context("data stream")?;
    let (mut tx, mut rx) = e2e.into_channel(data.send, data.recv);
    let formats = [assent_codec::FORMAT_VERSION];
    assent_client::e2e::choose_screen_format(&mut tx, &mut rx, &formats)
        .await
        .context("screen format")?;
    Ok(LiveViewer {
        _viewer: viewer,
        tx,
        rx,
        decoder: Decoder::new(),
        frames: 0,
    })
}

pub struct LiveViewer {
    _viewer: Viewer,
    tx: ChannelWriter,
    rx: ChannelReader,
    pub decoder: Decoder,
    /// Frames decoded so far.
    pub frames: u64,
}

impl LiveViewer {
    /// Reads until one frame is decoded and acknowledged (true), or
    /// `limit` passes (false).
    pub async fn next_frame(&mut self, limit: Duration) -> anyhow::Result<bool> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(m) => m.context("session channel")?,
                Err(_) => return Ok(false),
            };
            match msg {
                SessionMsg::Frame(bytes) => {
                    let update = self.decoder.decode(&bytes).context("decoding a frame")?;
                    self.frames += 1;
                    self.tx
                        .send(&SessionMsg::FrameAck { seq: update.seq })
                        .await?;
                    return Ok(true);
                }
                SessionMsg::Control(Control::End) => bail!("the agent ended the session"),
                _ => {}
            }
        }
    }

    /// Keeps decoding (and acknowledging) frames for `d`.
    pub async fn drain(&mut self, d: Duration) -> anyhow::Result<()> {
        let end = tokio::time::Instant::now() + d;
        while let Some(left) = end.checked_duration_since(tokio::time::Instant::now()) {
            self.next_frame(left).await?;
        }
        Ok(())
    }

    pub async fn input(&mut self, ev: InputEvent) -> anyhow::Result<()> {
        Ok(self.tx.send(&SessionMsg::Input(ev)).await?)
    }

    /// The RGB of the decoded screen at (x, y).
    pub fn rgb(&self, x: u32, y: u32) -> Option<u32> {
        let i = ((y * self.decoder.width() + x) * 4) as usize;
        let p = self.decoder.pixels().get(i..i + 3)?;
        Some(u32::from(p[0]) << 16 | u32::from(p[1]) << 8 | u32::from(p[2]))
    }
}

/// The real agent, answering on the terminal (`--tty`).
pub struct Agent {
    pub proc: Proc,
    stdin: ChildStdin,
    stderr: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Agent {
    /// The agent answering on its terminal, with `extra` flags for `join`.
    pub fn spawn_with(
        relay: &BenchRelay,
        display: &str,
        config: &Path,
        code: &str,
        extra: &[&str],
    ) -> anyhow::Result<Agent> {
        Self::spawn_as(relay, display, config, &[extra, &["--tty", code]].concat())
    }

    /// The agent with its window (answer with [`answer_in_window`]).
    pub fn spawn_windowed(
        relay: &BenchRelay,
        display: &str,
        config: &Path,
        code: &str,
    ) -> anyhow::Result<Agent> {
        Self::spawn_as(relay, display, config, &[code])
    }

    fn spawn_as(
        relay: &BenchRelay,
        display: &str,
        config: &Path,
        args: &[&str],
    ) -> anyhow::Result<Agent> {
        Self::spawn_via(relay, &relay.addr, display, config, args)
    }

    /// The agent reaching `relay` at `addr` (a proxy in front of it).
    pub fn spawn_via(
        relay: &BenchRelay,
        addr: &str,
        display: &str,
        config: &Path,
        args: &[&str],
    ) -> anyhow::Result<Agent> {
        let mut cmd = Command::new(procs::product_bin("assent-agent")?);
        cmd.args(["join", "--relay", addr, "--ca"])
            .arg(relay.ca())
            .args(["--device-name", "bench-pc"])
            .args(args)
            .env("DISPLAY", display)
            .env("XDG_CONFIG_HOME", config)
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut proc = procs::spawn("assent-agent", &mut cmd)?;
        let stdin = proc.child.stdin.take().context("agent stdin")?;
        let stderr = procs::lines(proc.child.stderr.take().context("agent stderr")?);
        Ok(Agent {
            proc,
            stdin,
            stderr,
        })
    }

    /// Waits until the prompt asks for an answer.
    pub async fn wait_prompt(&mut self) -> anyhow::Result<()> {
        procs::wait_line(
            &mut self.stderr,
            Duration::from_secs(30),
            "the agent's consent prompt",
            |l| l.contains("Type your answer"),
        )
        .await
        .map(drop)
    }

    /// Waits for a terminal line containing `what`.
    pub async fn wait_for(&mut self, what: &str, limit: Duration) -> anyhow::Result<String> {
        procs::wait_line(&mut self.stderr, limit, what, |l| l.contains(what)).await
    }

    /// Types the user's answer (`v` view, `c` control) and Enter.
    pub fn answer(&mut self, key: &str) -> anyhow::Result<()> {
        use std::io::Write as _;
        writeln!(self.stdin, "{key}").context("answering the agent's prompt")?;
        self.stdin.flush()?;
        Ok(())
    }
}

/// Answers the agent's consent window on `display` with `key` as a user
/// would: waits for the window, points at it and focuses it (egui takes
/// keys only then), waits out the second before it takes an answer
/// (agent/src/ui/arming.rs), and presses the key, again until the window
/// says the session is live (on a loaded machine it may arm late, and a
/// key before that answers nothing).
pub async fn answer_in_window(display: &str, key: &str) -> anyhow::Result<()> {
    let find = |title: &str| {
        crate::desktop::xdotool(display, &["search", "--onlyvisible", "--name", title])
            .unwrap_or_default()
            .lines()
            .next()
            .filter(|l| !l.is_empty())
            .map(String::from)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let window = loop {
        if let Some(id) = find("Assent — support request") {
            break id;
        }
        if std::time::Instant::now() > deadline {
            bail!("the agent's consent window never appeared on {display}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Visible is not yet focusable for a moment: X refuses the focus
    // (BadMatch) until the window is viewable.
    while crate::desktop::xdotool(display, &["windowfocus", &window]).is_err() {
        if std::time::Instant::now() > deadline {
            bail!("the agent's consent window never took the focus");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    crate::desktop::xdotool(display, &["mousemove", "--window", &window, "40", "20"])?;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    while find("Assent — session live").is_none() {
        if std::time::Instant::now() > deadline {
            bail!("the agent's window never took the answer {key:?}");
        }
        crate::desktop::xdotool(display, &["key", key])?;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    Ok(())
}
