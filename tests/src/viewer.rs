//! A programmatic technician for agent tests: authenticates, gets a code,
//! runs the end-to-end handshake, and once live decodes frames and sends
//! input — the real protocol, without a window.

use std::time::Duration;

use anyhow::{bail, Context as _};
use assent_client::e2e::{ChannelReader, ChannelWriter};
use assent_client::{Viewer, ViewerEvent};
use assent_codec::Decoder;
use assent_proto::identity::{PublicKey, SecretKey};
use assent_proto::session_msg::{InputEvent, SessionMsg};
use assent_proto::wire::{ConsentDecision, Impact, InviteRequest, Scope};

/// The longest [`LiveViewer::read_until`] reads before it looks again.
const READ_SLICE: Duration = Duration::from_millis(50);

/// How far pairing got.
#[derive(Debug)]
pub enum Pairing {
    /// The user declined or did not answer; no session.
    Refused(String),
    Live(Box<LiveViewer>),
}

pub struct LiveViewer {
    pub viewer: Viewer,
    pub tx: ChannelWriter,
    pub rx: ChannelReader,
    pub decoder: Decoder,
    pub verification_code: String,
    pub scope: Scope,
    pub frames: u64,
    pub frame_bytes: u64,
    /// JPEG rectangles decoded (photos shown inexactly until refined).
    pub jpeg_rects: usize,
    pub paused: bool,
    /// The last pointer position the agent reported.
    pub cursor: Option<(u32, u32)>,
    /// How many times the agent said which scope is in force.
    pub scope_replies: u32,
    /// The agent's last privacy counts: (windows hidden, only one shared).
    pub privacy: Option<(u32, bool)>,
    /// The permissions the agent last said are in force.
    pub permissions: Option<Vec<assent_proto::permission::Permission>>,
    /// Clipboard texts the agent sent.
    pub clipboard: Vec<String>,
    /// File messages the agent sent.
    pub files: Vec<assent_proto::files::FileMsg>,
    /// What following the agent onto a new connection needs.
    resumption: Resumption,
    /// Times the agent came back on a new connection and was followed.
    pub reconnections: u32,
}

struct Resumption {
    key: SecretKey,
    agent_key: PublicKey,
    secret: assent_client::e2e::ResumeSecret,
}

impl std::fmt::Debug for LiveViewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveViewer")
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

pub async fn connect(
    relay: &str,
    ca: &std::path::Path,
    key: &SecretKey,
    scope: Scope,
) -> anyhow::Result<Viewer> {
    let request = InviteRequest {
        ticket: "T-2001".into(),
        client: "Acme Ltd".into(),
        summary: "Printer queue stuck".into(),
        impact: Impact::Normal,
        scope,
        identity_check: String::new(),
        permissions: vec![],
    };
    Ok(Viewer::connect(relay, ca, key, request).await?)
}

/// Waits for the agent, runs the handshake as initiator (signing with
/// `channel_key`, normally the technician key), and waits for the user's
/// answer.
pub async fn pair(mut viewer: Viewer, channel_key: &SecretKey) -> anyhow::Result<Pairing> {
    let device_key: PublicKey = loop {
        match viewer.next_event().await? {
            ViewerEvent::AgentJoined { device_key, .. } => break device_key,
            ViewerEvent::Ended(r) => bail!("ended before the agent joined: {r:?}"),
            _ => continue,
        }
    };
    let e2e = match assent_client::e2e::initiate(&mut viewer, channel_key, device_key).await {
        Ok(e) => e,
        Err(e) => return Ok(Pairing::Refused(format!("handshake: {e}"))),
    };
    let code = e2e.verification_code().to_string();
    let resumption = Resumption {
        key: channel_key.clone(),
        agent_key: device_key,
        secret: e2e.resume_secret(),
    };
    let scope = loop {
        match viewer.next_event().await {
            Ok(ViewerEvent::Consent(ConsentDecision::Denied | ConsentDecision::Timeout)) => {
                continue
            }
            Ok(ViewerEvent::Consent(_))
            | Ok(ViewerEvent::AgentJoined { .. })
            | Ok(ViewerEvent::Handshake(_)) => continue,
            Ok(ViewerEvent::Started { scope, .. }) => break scope,
            Ok(ViewerEvent::Ended(r)) => return Ok(Pairing::Refused(format!("{r:?}"))),
            Err(e) => return Ok(Pairing::Refused(e.to_string())),
        }
    };
    let data = viewer.control.accept_data().await.context("data stream")?;
    let (mut tx, mut rx) = e2e.into_channel(data.send, data.recv);
    let formats = [assent_codec::FORMAT_VERSION];
    if let Err(e) = assent_client::e2e::choose_screen_format(&mut tx, &mut rx, &formats).await {
        return Ok(Pairing::Refused(e.to_string()));
    }
    Ok(Pairing::Live(Box::new(LiveViewer {
        viewer,
        tx,
        rx,
        decoder: Decoder::new(),
        verification_code: code,
        scope,
        frames: 0,
        frame_bytes: 0,
        jpeg_rects: 0,
        paused: false,
        cursor: None,
        scope_replies: 0,
        privacy: None,
        permissions: None,
        clipboard: Vec::new(),
        files: Vec::new(),
        resumption,
        reconnections: 0,
    })))
}

impl LiveViewer {
    /// Reads session messages until a frame is decoded (acknowledging it),
    /// or `limit` passes. Returns whether a frame arrived.
    pub async fn next_frame(&mut self, limit: Duration) -> anyhow::Result<bool> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    // As the real viewer: a closed channel may be the
                    // agent coming back on a new connection.
                    if self.follow_reconnect().await? {
                        continue;
                    }
                    return Err(e.into());
                }
                Err(_) => return Ok(false),
            };
            match msg {
                SessionMsg::Frame(bytes) => {
                    self.frame_bytes += bytes.len() as u64;
                    let update = self.decoder.decode(&bytes).context("decoding a frame")?;
                    self.frames += 1;
                    self.jpeg_rects += update.jpeg_rects;
                    self.tx
                        .send(&SessionMsg::FrameAck { seq: update.seq })
                        .await?;
                    return Ok(true);
                }
                SessionMsg::Cursor { x, y } => self.cursor = Some((x, y)),
                SessionMsg::Privacy { hidden, only_one } => self.privacy = Some((hidden, only_one)),
                SessionMsg::Permissions(p) => self.permissions = Some(p),
                SessionMsg::Clipboard(text) => self.clipboard.push(text),
                SessionMsg::File(m) => self.files.push(m),
                SessionMsg::Control(assent_proto::session_msg::Control::Paused) => {
                    self.paused = true
                }
                SessionMsg::Control(assent_proto::session_msg::Control::Resumed) => {
                    self.paused = false
                }
                SessionMsg::Control(assent_proto::session_msg::Control::End) => {
                    bail!("the agent ended the session")
                }
                SessionMsg::Control(assent_proto::session_msg::Control::Scope(s)) => {
                    self.scope = s;
                    self.scope_replies += 1;
                }
                _ => {}
            }
        }
    }

    /// After the channel closed: whether the relay says the agent is back
    /// on a new connection (then the channel is followed onto it).
    async fn follow_reconnect(&mut self) -> anyhow::Result<bool> {
        let wait = Duration::from_secs(2);
        loop {
            match tokio::time::timeout(wait, self.viewer.control.recv()).await {
                Ok(Ok(assent_proto::wire::RelayMsg::PeerReconnected { .. })) => break,
                Ok(Ok(_)) => continue,
                Ok(Err(_)) | Err(_) => return Ok(false),
            }
        }
        let r = &self.resumption;
        let (tx, rx, secret) = assent_client::resume::follow(
            &mut self.viewer.control,
            assent_proto::wire::Role::Viewer,
            &r.key,
            r.agent_key,
            &r.secret,
        )
        .await
        .context("following the agent onto its new connection")?;
        (self.tx, self.rx, self.resumption.secret) = (tx, rx, secret);
        self.reconnections += 1;
        Ok(true)
    }

    /// Decodes frames until `pred` holds on the screen or `limit` passes.
    pub async fn wait_screen(
        &mut self,
        limit: Duration,
        pred: impl Fn(&Decoder) -> bool,
    ) -> anyhow::Result<bool> {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            let left = deadline - tokio::time::Instant::now();
            if self.next_frame(left).await? && pred(&self.decoder) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Asks the agent for another scope.
    pub async fn request_scope(&mut self, scope: Scope) -> anyhow::Result<()> {
        let msg = SessionMsg::Control(assent_proto::session_msg::Control::ScopeRequest(scope));
        Ok(self.tx.send(&msg).await?)
    }

    /// Reads (and acknowledges) frames until the agent has said which scope
    /// is in force `replies` times in all, or `limit` passes.
    pub async fn wait_scope_replies(
        &mut self,
        replies: u32,
        limit: Duration,
    ) -> anyhow::Result<bool> {
        self.read_until(limit, |v| v.scope_replies >= replies).await
    }

    /// Keeps reading (and acknowledging) frames, so the session keeps
    /// moving, until `done` holds or `limit` passes; whether it held.
    /// `done` is checked before each read and at least once after `limit`.
    pub async fn read_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&LiveViewer) -> bool,
    ) -> anyhow::Result<bool> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if done(self) {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.next_frame(left.min(READ_SLICE)).await?;
        }
    }

    pub async fn input(&mut self, ev: InputEvent) -> anyhow::Result<()> {
        Ok(self.tx.send(&SessionMsg::Input(ev)).await?)
    }

    /// Writes the decoded screen to `path` as a PNG (through ImageMagick's
    /// `convert`), for a person to look at; errors are ignored.
    pub fn save_png(&self, path: &std::path::Path) {
        let (w, h) = (self.decoder.width(), self.decoder.height());
        let mut ppm = format!("P6\n{w} {h}\n255\n").into_bytes();
        for p in self.decoder.pixels().chunks_exact(4) {
            ppm.extend_from_slice(&p[..3]);
        }
        let raw = path.with_extension("ppm");
        if std::fs::write(&raw, ppm).is_ok() {
            let _ = std::process::Command::new("convert")
                .arg(&raw)
                .arg(path)
                .status();
            let _ = std::fs::remove_file(&raw);
        }
    }

    /// The RGBA pixel at (x, y) of the decoded screen.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 4]> {
        let w = self.decoder.width();
        let i = ((y * w + x) * 4) as usize;
        self.decoder
            .pixels()
            .get(i..i + 4)
            .map(|p| [p[0], p[1], p[2], p[3]])
    }
}
