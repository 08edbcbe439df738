//! The screen and the input device, reachable only through the consent
//! [`Gate`]. Capture and injection run on their own threads (the X11
//! capturer is not `Send`, and a slow injection must not stall the session),
//! started only with a [`Grant`]; the session talks to them only through
//! [`Guarded`], which asks the gate first.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use assent_capture::{CaptureError, Layout, ScreenSource};
use assent_codec::{EncodedFrame, Encoder, FrameRef, Rect, View};
use assent_input::InputSink;
use assent_proto::session_msg::InputEvent;
use tokio::sync::mpsc;

use crate::consent::{FramePolicy, Gate, Grant};

/// Builds the screen source on the capture thread.
pub type ScreenFactory = Box<dyn FnOnce() -> Result<Box<dyn ScreenSource>, CaptureError> + Send>;
/// Builds the input sink on the input thread.
pub type InputFactory =
    Box<dyn FnOnce() -> Result<Box<dyn InputSink>, assent_input::InputError> + Send>;

enum CaptureCmd {
    Frame {
        placeholder: bool,
        keyframe: bool,
        /// JPEG quality for photos; `None`: exact only.
        jpeg: Option<u8>,
    },
    /// The technician's pick: one monitor, or the whole screen (`None`).
    Show(Option<usize>),
}

enum InputCmd {
    Apply(InputEvent),
    ReleaseAll,
}

/// What the capture thread produced for one request.
#[derive(Debug)]
pub struct Captured {
    /// The encoded update, or `None` when nothing changed.
    pub frame: Option<EncodedFrame>,
    /// Pointer position; never reported while paused.
    pub cursor: Option<(u32, u32)>,
    /// What the user keeps private, when it changed (counts only).
    pub privacy: Option<assent_capture::MaskReport>,
}

pub type CaptureResult = Result<Captured, String>;

/// Consent-gated access to screen and input.
pub struct Guarded {
    gate: Gate,
    capture: std_mpsc::Sender<CaptureCmd>,
    input: std_mpsc::Sender<InputCmd>,
    threads: Vec<JoinHandle<()>>,
    /// Whether the gate lets the screen out now, for the capture thread
    /// while it waits for a change (set after every change to the gate).
    screen_allowed: Arc<AtomicBool>,
    /// Where the frames sit on the screen ([`pack`]ed), from the capture
    /// thread: the technician points in frame pixels, the input device
    /// in screen pixels.
    origin: Arc<AtomicU64>,
}

impl Guarded {
    /// Starts the capture and input threads. Needs the user's [`Grant`].
    /// Returns the receiver of encoded frames (one per [`Guarded::request_frame`]).
    pub fn start(
        grant: Grant,
        screen: ScreenFactory,
        input: InputFactory,
    ) -> std::io::Result<(Guarded, mpsc::Receiver<CaptureResult>)> {
        let (capture_tx, capture_rx) = std_mpsc::channel::<CaptureCmd>();
        let (frames_tx, frames_rx) = mpsc::channel::<CaptureResult>(2);
        let screen_allowed = Arc::new(AtomicBool::new(true));
        let origin = Arc::new(AtomicU64::new(0));
        let shared = Shared {
            allowed: screen_allowed.clone(),
            origin: origin.clone(),
        };
        let capture_thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || capture_loop(screen, capture_rx, frames_tx, &shared))?;
        let (input_tx, input_rx) = std_mpsc::channel::<InputCmd>();
        let input_thread = std::thread::Builder::new()
            .name("input".into())
            .spawn(move || input_loop(input, input_rx))?;
        Ok((
            Guarded {
                gate: Gate::new(grant),
                screen_allowed,
                origin,
                capture: capture_tx,
                input: input_tx,
                threads: vec![capture_thread, input_thread],
            },
            frames_rx,
        ))
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Asks for the next frame as the gate allows: the screen, the paused
    /// placeholder, or nothing (returns false); photos as JPEG at `jpeg`.
    pub fn request_frame(&mut self, keyframe: bool, jpeg: Option<u8>) -> bool {
        let placeholder = match self.gate.frame_policy() {
            FramePolicy::Screen => false,
            FramePolicy::Placeholder => true,
            FramePolicy::Nothing => return false,
        };
        self.capture
            .send(CaptureCmd::Frame {
                placeholder,
                keyframe,
                jpeg,
            })
            .is_ok()
    }

    /// Shows one monitor (an index into the screen's monitors), or the
    /// whole screen (`None`), from the next frame on. Not a gate question:
    /// it narrows what the technician sees, and the privacy mask covers
    /// any part of the screen alike.
    pub fn show_monitor(&self, monitor: Option<u8>) {
        tracing::info!(?monitor, "the technician picked what to see");
        let _ = self
            .capture
            .send(CaptureCmd::Show(monitor.map(usize::from)));
    }

    /// Injects the event if the gate admits it; returns whether it did.
    pub fn input(&mut self, event: InputEvent) -> bool {
        if self.gate.admit_input() {
            let event = on_screen(event, unpack(self.origin.load(Ordering::SeqCst)));
            self.input.send(InputCmd::Apply(event)).is_ok()
        } else {
            false
        }
    }

    /// Tells the capture thread what the gate now allows.
    fn mirror_gate(&self) {
        let screen = matches!(self.gate.frame_policy(), FramePolicy::Screen);
        self.screen_allowed.store(screen, Ordering::SeqCst);
    }

    pub fn pause(&mut self) -> bool {
        let changed = self.gate.pause();
        self.mirror_gate();
        // Whatever the technician held down must not stay down while the
        // user types their password.
        let _ = self.input.send(InputCmd::ReleaseAll);
        changed
    }

    pub fn resume(&mut self) -> bool {
        let changed = self.gate.resume();
        self.mirror_gate();
        changed
    }

    /// Releases whatever keys and buttons the technician holds down.
    pub fn release_keys(&self) {
        let _ = self.input.send(InputCmd::ReleaseAll);
    }

    pub fn regrant(&mut self, grant: Grant) {
        self.gate.regrant(grant);
        self.mirror_gate();
        let _ = self.input.send(InputCmd::ReleaseAll);
    }

    /// Ends: releases held keys and stops both threads.
    pub fn end(mut self) {
        self.gate.end();
        self.mirror_gate();
        let _ = self.input.send(InputCmd::ReleaseAll);
        let Guarded {
            capture,
            input,
            threads,
            ..
        } = self;
        drop(capture);
        drop(input);
        for t in threads {
            let _ = t.join();
        }
    }
}

/// What the capture thread shares with the session.
struct Shared {
    /// Whether the gate lets the screen out now.
    allowed: Arc<AtomicBool>,
    /// Where the last frame sat on the screen.
    origin: Arc<AtomicU64>,
}

/// A screen position in one word, for [`Guarded::input`].
fn pack((x, y): (i32, i32)) -> u64 {
    u64::from(x as u32) << 32 | u64::from(y as u32)
}

fn unpack(v: u64) -> (i32, i32) {
    ((v >> 32) as u32 as i32, v as u32 as i32)
}

/// A pointer position in frame pixels, moved to the screen's.
fn on_screen(event: InputEvent, (ox, oy): (i32, i32)) -> InputEvent {
    match event {
        InputEvent::MouseMove { x, y } => InputEvent::MouseMove {
            x: (i64::from(x) + i64::from(ox)).clamp(0, i64::from(u32::MAX)) as u32,
            y: (i64::from(y) + i64::from(oy)).clamp(0, i64::from(u32::MAX)) as u32,
        },
        other => other,
    }
}

/// The codec's view of the screen the source shows part or all of.
fn view_of(layout: Option<Layout>) -> Option<View> {
    let l = layout?;
    let rect = |a: assent_capture::Area| Rect {
        x: a.x,
        y: a.y,
        width: a.width,
        height: a.height,
    };
    Some(View {
        screen_width: l.width,
        screen_height: l.height,
        x: l.shown.x,
        y: l.shown.y,
        monitors: l.monitors.into_iter().map(rect).collect(),
    })
}

fn capture_loop(
    make: ScreenFactory,
    requests: std_mpsc::Receiver<CaptureCmd>,
    frames: mpsc::Sender<CaptureResult>,
    shared: &Shared,
) {
    let mut source = match make() {
        Ok(s) => s,
        Err(e) => {
            let _ = frames.blocking_send(Err(format!("cannot capture the screen: {e}")));
            return;
        }
    };
    let mut encoder = Encoder::new();
    let mut placeholder: Option<(u32, u32, Vec<u8>)> = None;
    // Whether the encoder's last frame may differ from the screen for a
    // reason the source's change hints do not cover (nothing captured yet,
    // the placeholder sent while paused, a failed capture or encode).
    let mut stale = true;
    while let Ok(cmd) = requests.recv() {
        let (paused, keyframe) = match cmd {
            CaptureCmd::Frame {
                placeholder,
                keyframe,
                jpeg,
            } => {
                if encoder.jpeg_quality() != jpeg {
                    encoder.set_jpeg_quality(jpeg);
                }
                (placeholder, keyframe)
            }
            CaptureCmd::Show(monitor) => {
                source.show_monitor(monitor);
                continue;
            }
        };
        let result = if paused {
            encoder.set_view(view_of(source.layout()));
            stale = true;
            encode_placeholder(&mut encoder, &mut placeholder, source.size(), keyframe)
        } else {
            capture_screen(&mut *source, &mut encoder, keyframe, &mut stale, shared)
        };
        let result = result.map(|mut c| {
            // Again with every keyframe: a new viewer (a specialist's,
            // after a handover) learns the counts with its first frame.
            c.privacy = source.take_mask_report(keyframe);
            c
        });
        if frames.blocking_send(result).is_err() {
            break;
        }
    }
}

/// The screen, when it changed (or a keyframe or a refinement is due, or
/// the encoder's last frame is `stale`); otherwise only the pointer.
fn capture_screen(
    source: &mut dyn ScreenSource,
    encoder: &mut Encoder,
    keyframe: bool,
    stale: &mut bool,
    shared: &Shared,
) -> CaptureResult {
    let allowed = &*shared.allowed;
    // Asked even when the answer is not needed: the hints it collects say
    // what the capture below must read.
    let changed = source.may_have_changed();
    let refine_at = encoder.refine_due();
    let refine = refine_at.is_some_and(|at| at <= Instant::now());
    if changed || keyframe || *stale || refine || wait_for_change(source, allowed, refine_at) {
        // After the hints: they follow a new screen geometry.
        encoder.set_view(view_of(source.layout()));
        let r = encode_screen(source, encoder, keyframe, !*stale);
        shared.origin.store(pack(source.origin()), Ordering::SeqCst);
        *stale = r.is_err();
        return r;
    }
    // Never where the pointer is once the gate has closed.
    let cursor = allowed
        .load(Ordering::SeqCst)
        .then(|| source.cursor())
        .flatten();
    Ok(Captured {
        frame: None,
        cursor,
        privacy: None,
    })
}

/// How often the capture thread looks for a change while it waits.
const WAIT_STEP: Duration = Duration::from_millis(16);
/// How long it waits for one before answering "nothing changed".
const WAIT_FOR: Duration = Duration::from_millis(250);

/// Nothing changed: rather than answer at once (and be asked again 16 ms
/// later, waking the session's runtime each time), wait here for a change,
/// looking every [`WAIT_STEP`] as the session would, up to [`WAIT_FOR`].
/// Returns early, without a change, when the pointer moves (so the viewer
/// still sees it promptly) or the gate no longer lets the screen out.
/// Sources without change hints always say "changed", so never wait.
/// Also returns true at `refine_at`, when the encoder has inexact tiles
/// to send again exactly.
fn wait_for_change(
    source: &mut dyn ScreenSource,
    allowed: &AtomicBool,
    refine_at: Option<Instant>,
) -> bool {
    let cursor = source.cursor();
    let until = Instant::now() + WAIT_FOR;
    while Instant::now() < until {
        let wake = refine_at.map_or(until, |at| at.min(until));
        std::thread::sleep(
            wake.saturating_duration_since(Instant::now())
                .min(WAIT_STEP),
        );
        if refine_at.is_some_and(|at| at <= Instant::now()) {
            return allowed.load(Ordering::SeqCst);
        }
        if !allowed.load(Ordering::SeqCst) || source.cursor() != cursor {
            return false;
        }
        if source.may_have_changed() {
            // Checked again: the gate may have closed while reading hints.
            return allowed.load(Ordering::SeqCst);
        }
    }
    false
}

/// The paused placeholder (built once per screen size), encoded.
fn encode_placeholder(
    encoder: &mut Encoder,
    cache: &mut Option<(u32, u32, Vec<u8>)>,
    (w, h): (u32, u32),
    keyframe: bool,
) -> CaptureResult {
    if cache
        .as_ref()
        .is_none_or(|(pw, ph, _)| (*pw, *ph) != (w, h))
    {
        *cache = Some((w, h, assent_codec::placeholder_frame(w, h)));
    }
    let Some((w, h, data)) = cache.as_ref() else {
        return Ok(Captured {
            frame: None,
            cursor: None,
            privacy: None,
        });
    };
    let frame = FrameRef {
        data,
        width: *w,
        height: *h,
        stride: *w as usize * 4,
    };
    encoder
        .encode(frame, keyframe)
        .map(|frame| Captured {
            frame,
            cursor: None,
            privacy: None,
        })
        .map_err(|e| e.to_string())
}

/// The screen as it is now, encoded against the previous frame. With
/// `in_step` (the encoder's last frame was this source's last capture),
/// compared only where the capture says it re-read: a typed key costs a
/// look at a few glyphs, not a diff of the whole screen.
fn encode_screen(
    source: &mut dyn ScreenSource,
    encoder: &mut Encoder,
    keyframe: bool,
    in_step: bool,
) -> CaptureResult {
    let encoded = match source.capture() {
        Ok(frame) => {
            let image = FrameRef {
                data: frame.data,
                width: frame.width,
                height: frame.height,
                stride: frame.stride,
            };
            match frame.changed.filter(|_| in_step) {
                Some(a) => {
                    let area = Rect {
                        x: a.x,
                        y: a.y,
                        width: a.width,
                        height: a.height,
                    };
                    encoder.encode_within(image, keyframe, &[area])
                }
                None => encoder.encode(image, keyframe),
            }
            .map_err(|e| e.to_string())
        }
        Err(e) => Err(format!("screen capture failed: {e}")),
    };
    encoded.map(|frame| Captured {
        frame,
        cursor: source.cursor(),
        privacy: None,
    })
}

fn input_loop(make: InputFactory, commands: std_mpsc::Receiver<InputCmd>) {
    let mut sink = match make() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "input injection unavailable");
            // Drain so senders never block; nothing is injected.
            while commands.recv().is_ok() {}
            return;
        }
    };
    while let Ok(cmd) = commands.recv() {
        let result = match cmd {
            InputCmd::Apply(ev) => sink.apply(&ev),
            InputCmd::ReleaseAll => sink.release_all(),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "input injection failed");
        }
    }
    // Channel closed: the session is over; leave nothing pressed.
    let _ = sink.release_all();
}
