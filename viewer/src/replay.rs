//! What a technician does with a recording afterwards: play it in a
//! window (`assent-viewer replay`), write its frames as PNG (`export`),
//! and check it against this viewer's audit (`verify-recording`). All of
//! them read the file as hostile (`assent_codec::recording`) and decode
//! with the same decoder as a live session, so a frame is pixel for pixel
//! what the viewer showed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use assent_codec::recording::RecordingReader;
use assent_codec::Decoder;
use eframe::egui;

fn open(file: &Path) -> anyhow::Result<RecordingReader<std::io::BufReader<std::fs::File>>> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    RecordingReader::new(std::io::BufReader::new(f))
        .with_context(|| format!("reading {}", file.display()))
}

/// Decodes every update in order, handing each decoded screen to `each`
/// (frame number from 1, milliseconds, decoder); the number of frames.
fn decode_all(
    file: &Path,
    mut each: impl FnMut(u32, u64, &Decoder) -> anyhow::Result<()>,
) -> anyhow::Result<u32> {
    let mut reader = open(file)?;
    let mut decoder = Decoder::new();
    let mut n = 0u32;
    while let Some((millis, update)) = reader.next_update()? {
        decoder
            .decode(&update)
            .with_context(|| format!("frame {} does not decode", n + 1))?;
        n += 1;
        each(n, millis, &decoder)?;
    }
    Ok(n)
}

/// `export FILE --png DIR`: `frame-000001.png`, … one per update.
pub fn export(file: &Path, dir: &Path) -> anyhow::Result<u32> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let n = decode_all(file, |n, _, d| {
        let path = dir.join(format!("frame-{n:06}.png"));
        let out =
            std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
        crate::recording::write_png(
            std::io::BufWriter::new(out),
            d.width(),
            d.height(),
            d.pixels(),
        )?;
        Ok(())
    })?;
    if n == 0 {
        bail!("{} holds no frames", file.display());
    }
    Ok(n)
}

/// `verify-recording FILE`: its size and SHA-256 against the
/// `recording_stopped` record this viewer wrote for it.
pub fn verify(file: &Path, audit: &Path) -> anyhow::Result<String> {
    let (bytes, sha256) =
        crate::recording::measure(file).with_context(|| format!("reading {}", file.display()))?;
    let hash = crate::clipboard::hex(&sha256);
    let wanted = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let records = assent_audit::read_records(audit)
        .with_context(|| format!("reading the audit log {}", audit.display()))?;
    let record = records.iter().rev().find(|r| {
        r.event == "recording_stopped"
            && r.fields
                .get("path")
                .and_then(|p| p.as_str())
                .map(PathBuf::from)
                .as_deref()
                == Some(wanted.as_path())
    });
    let Some(r) = record else {
        bail!(
            "no recording_stopped record for {} in {}",
            wanted.display(),
            audit.display()
        );
    };
    let field = |k: &str| r.fields.get(k).cloned().unwrap_or_default();
    if field("bytes") != serde_json::json!(bytes) || field("sha256") != serde_json::json!(hash) {
        bail!(
            "{} does not match the audit (seq {}): it is {bytes} bytes, SHA-256 {hash}; the audit says {} bytes, SHA-256 {}",
            file.display(), r.seq, field("bytes"), field("sha256")
        );
    }
    Ok(format!(
        "{}: {bytes} bytes, SHA-256 {hash}: matches the audit record seq {} (session {})",
        file.display(),
        r.seq,
        field("session").as_str().unwrap_or("?")
    ))
}

/// The frame the replay window shows.
#[derive(Default)]
struct Shown {
    size: (u32, u32),
    rgba: Vec<u8>,
    frame: u32,
    done: bool,
    error: Option<String>,
}

/// `replay FILE`: plays the recording in a window at its own pace; the
/// last frame stays until the window is closed.
pub fn replay(file: PathBuf) -> anyhow::Result<()> {
    open(&file)?;
    let shown = Arc::new(Mutex::new(Shown::default()));
    let title = format!("Assent — replay {}", file.display());
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(&title)
            .with_inner_size([960.0, 600.0]),
        ..Default::default()
    };
    eframe::run_native(
        "assent-replay",
        options,
        Box::new(move |cc| {
            let ctx = cc.egui_ctx.clone();
            let player = shown.clone();
            std::thread::spawn(move || play(&file, &player, &ctx));
            Ok(Box::new(ReplayWindow {
                shown,
                texture: None,
                frame: 0,
            }))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the replay window: {e}"))
}

fn play(file: &Path, shown: &Mutex<Shown>, ctx: &egui::Context) {
    let start = Instant::now();
    let played = decode_all(file, |n, millis, d| {
        let due = start + Duration::from_millis(millis);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let mut s = shown.lock().unwrap_or_else(|p| p.into_inner());
        s.size = (d.width(), d.height());
        s.rgba.clear();
        s.rgba.extend_from_slice(d.pixels());
        s.frame = n;
        drop(s);
        ctx.request_repaint();
        Ok(())
    });
    let mut s = shown.lock().unwrap_or_else(|p| p.into_inner());
    s.done = true;
    s.error = played.err().map(|e| format!("{e:#}"));
    ctx.request_repaint();
}

struct ReplayWindow {
    shown: Arc<Mutex<Shown>>,
    texture: Option<egui::TextureHandle>,
    frame: u32,
}

impl eframe::App for ReplayWindow {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let (status, image) = {
            let s = self.shown.lock().unwrap_or_else(|p| p.into_inner());
            let status = match (&s.error, s.done) {
                (Some(e), _) => format!("Frame {}: {e}", s.frame),
                (None, true) => format!("Frame {} (end of the recording)", s.frame),
                (None, false) => format!("Frame {}", s.frame),
            };
            let fresh = (s.frame != self.frame && s.size.0 > 0).then(|| {
                let size = [s.size.0 as usize, s.size.1 as usize];
                egui::ColorImage::from_rgba_unmultiplied(size, &s.rgba)
            });
            self.frame = s.frame;
            (status, fresh)
        };
        if let Some(image) = image {
            match &mut self.texture {
                Some(t) => t.set(image, egui::TextureOptions::NEAREST),
                None => {
                    let t = ui
                        .ctx()
                        .load_texture("replay", image, egui::TextureOptions::NEAREST);
                    self.texture = Some(t);
                }
            }
        }
        egui::Panel::bottom("replay-status").show(ui, |ui| ui.label(status));
        egui::CentralPanel::default().show(ui, |ui| {
            if let Some(t) = &self.texture {
                ui.image((t.id(), t.size_vec2()));
            }
        });
    }
}
