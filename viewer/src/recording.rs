//! Recording and screenshots, only while the user allows recording (their
//! agent says so in `SessionMsg::Permissions`; the relay checks its own
//! record of the user's signed yes). A recording is the codec stream as
//! received, from a keyframe on (`assent_codec::recording`), in a file of
//! mode 0600 under `$XDG_DATA_HOME/assent/recordings/`; when it stops, its
//! size and SHA-256 go to this viewer's audit and to the relay
//! (`recording_stopped`). A screenshot is a PNG of the decoded screen.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use assent_codec::recording::RecordingWriter;
use assent_proto::session_msg::{Control as SessionControl, SessionMsg};
use assent_proto::wire::ClientMsg;
use tracing::{info, warn};

use crate::live::LiveView;
use crate::session::{fields, lock};

/// What the technician is shown of recording.
#[derive(Debug, Clone, Default)]
pub struct RecordingView {
    /// The user allows recording now.
    pub allowed: bool,
    /// A recording is being written.
    pub active: bool,
    /// Bumped at each change (for `--headless`).
    pub version: u32,
    pub last: Option<serde_json::Value>,
}

/// A recording being written.
pub struct Recorder {
    writer: RecordingWriter<BufWriter<File>>,
    path: PathBuf,
    started: Instant,
    frames: u32,
    /// Nothing is written before the first keyframe (asked for at start).
    at_keyframe: bool,
}

/// `$XDG_DATA_HOME/assent/recordings`.
pub fn recordings_dir() -> PathBuf {
    crate::paths::data_dir()
        .map(|d| d.join("recordings"))
        .unwrap_or_else(|_| PathBuf::from("assent-recordings"))
}

/// A new file of mode 0600 named `<stem>-<n>.<ext>` in the recordings
/// directory (mode 0700), never an existing one.
fn create_private(stem: &str, ext: &str) -> std::io::Result<(File, PathBuf)> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let dir = recordings_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    for n in 1..10_000 {
        let path = dir.join(format!("{stem}-{n}.{ext}"));
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path);
        match opened {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free recording name"))
}

/// `--headless`: `record start`, `record stop`, `screenshot`.
pub fn parse_line(line: &str) -> Option<crate::session::Command> {
    use crate::session::Command;
    match line.trim() {
        "record start" => Some(Command::Record(true)),
        "record stop" => Some(Command::Record(false)),
        "screenshot" => Some(Command::Screenshot),
        _ => None,
    }
}

/// `--headless`: each change, one JSON line (`{"recording": {...}}`).
pub async fn print_headless(state: crate::session::SharedState) {
    let mut shown = 0;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tick.tick().await;
        let view = lock(&state).recording.clone();
        if view.version != shown {
            shown = view.version;
            if let Some(last) = view.last {
                println!("{}", serde_json::json!({ "recording": last }));
            }
        }
    }
}

impl LiveView<'_> {
    /// The agent says whether recording is allowed now; a recording stops
    /// the moment it is not.
    pub(crate) async fn on_recording_allowed(&mut self, allowed: bool) {
        if lock(&self.state).recording.allowed == allowed {
            return;
        }
        info!(allowed, "the user changed the recording permission");
        let f =
            fields! {"session" => self.session, "permission" => "recording", "allowed" => allowed};
        self.audit.record("permission_changed", f);
        self.update_recording(serde_json::json!({"allowed": allowed}), |v| {
            v.allowed = allowed
        });
        if !allowed {
            self.stop_recording().await;
        }
    }

    pub(crate) async fn start_recording(&mut self) {
        if !lock(&self.state).recording.allowed {
            let why = "the user has not allowed recording";
            self.update_recording(serde_json::json!({"problem": why}), |_| {});
            return;
        }
        if self.recorder.is_some() {
            return;
        }
        let opened = create_private(&self.session, "assentrec")
            .and_then(|(f, path)| Ok((RecordingWriter::new(BufWriter::new(f))?, path)));
        let (writer, path) = match opened {
            Ok(w) => w,
            Err(e) => {
                let why = format!("cannot write the recording: {e}");
                self.update_recording(serde_json::json!({"problem": why}), |_| {});
                return;
            }
        };
        info!(path = %path.display(), "recording started");
        let _ = self.control.send(&ClientMsg::RecordingStarted).await;
        let ask = SessionMsg::Control(SessionControl::KeyframeRequest);
        let _ = self.tx.send(&ask).await;
        let shown = path.display().to_string();
        let f = fields! {"session" => self.session, "path" => shown};
        self.audit.record("recording_started", f);
        let json = serde_json::json!({"recording": true, "path": shown});
        self.update_recording(json, |v| v.active = true);
        self.recorder = Some(Recorder {
            writer,
            path,
            started: Instant::now(),
            frames: 0,
            at_keyframe: false,
        });
    }

    /// A decoded update goes into the recording as received.
    pub(crate) fn record_update(&mut self, update: &[u8], keyframe: bool) {
        let Some(r) = self.recorder.as_mut() else {
            return;
        };
        r.at_keyframe |= keyframe;
        if !r.at_keyframe {
            return;
        }
        let millis = u64::try_from(r.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match r.writer.write_update(millis, update) {
            Ok(()) => r.frames += 1,
            Err(e) => warn!(error = %e, "recording write failed"),
        }
    }

    /// Closes the recording; its size and SHA-256 go to the audit logs.
    pub(crate) async fn stop_recording(&mut self) {
        let Some(r) = self.recorder.take() else {
            return;
        };
        let (path, frames) = (r.path.clone(), r.frames);
        let closed = finish(r);
        let (bytes, sha256) = match closed.and_then(|()| measure(&path)) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "the recording could not be closed");
                (0, [0; 32])
            }
        };
        let (shown, hash) = (path.display().to_string(), crate::clipboard::hex(&sha256));
        info!(path = %shown, bytes, frames, "recording stopped");
        let f = fields! {
            "session" => self.session, "path" => shown, "bytes" => bytes,
            "sha256" => hash, "frames" => frames,
        };
        self.audit.record("recording_stopped", f);
        let msg = ClientMsg::RecordingStopped {
            bytes,
            sha256,
            frames,
        };
        let _ = self.control.send(&msg).await;
        let json = serde_json::json!({
            "recording": false, "path": shown, "bytes": bytes, "sha256": hash, "frames": frames,
        });
        self.update_recording(json, |v| v.active = false);
    }

    /// A PNG of the screen as decoded now.
    pub(crate) async fn take_screenshot(&mut self) {
        if !lock(&self.state).recording.allowed {
            let why = "the user has not allowed recording or screenshots";
            self.update_recording(serde_json::json!({"problem": why}), |_| {});
            return;
        }
        let stem = format!("{}-screenshot", self.session);
        let saved = create_private(&stem, "png").and_then(|(file, path)| {
            let s = lock(&self.state);
            write_png(file, s.screen.width, s.screen.height, &s.screen.pixels)?;
            Ok(path)
        });
        let path = match saved.and_then(|p| measure(&p).map(|m| (p, m))) {
            Ok((path, (_, sha256))) => (path, sha256),
            Err(e) => {
                let why = format!("cannot save the screenshot: {e}");
                self.update_recording(serde_json::json!({"problem": why}), |_| {});
                return;
            }
        };
        let (shown, hash) = (path.0.display().to_string(), crate::clipboard::hex(&path.1));
        let f = fields! {"session" => self.session, "path" => shown, "sha256" => hash};
        self.audit.record("screenshot_taken", f);
        let msg = ClientMsg::ScreenshotTaken { sha256: path.1 };
        let _ = self.control.send(&msg).await;
        self.update_recording(
            serde_json::json!({"screenshot": shown, "sha256": hash}),
            |_| {},
        );
    }

    fn update_recording(
        &mut self,
        last: serde_json::Value,
        change: impl FnOnce(&mut RecordingView),
    ) {
        {
            let mut s = lock(&self.state);
            change(&mut s.recording);
            s.recording.last = Some(last);
            s.recording.version += 1;
            s.stats.recording_allowed = s.recording.allowed;
            s.stats.recording = s.recording.active;
        }
        (self.repaint)();
    }
}

fn finish(r: Recorder) -> std::io::Result<()> {
    let file = r
        .writer
        .into_inner()
        .into_inner()
        .map_err(|e| e.into_error())?;
    file.sync_all()
}

/// Size and SHA-256 of a file.
pub fn measure(path: &Path) -> std::io::Result<(u64, [u8; 32])> {
    let bytes = std::fs::metadata(path)?.len();
    Ok((bytes, assent_files::sha256_of(path)?))
}

/// RGBA pixels as a PNG.
pub fn write_png(
    out: impl std::io::Write,
    width: u32,
    height: u32,
    rgba: &[u8],
) -> std::io::Result<()> {
    use image::ImageEncoder as _;
    image::codecs::png::PngEncoder::new(out)
        .write_image(rgba, width, height, image::ExtendedColorType::Rgba8)
        .map_err(std::io::Error::other)
}
