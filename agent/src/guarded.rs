//! The screen and the input device, reachable only through the consent
//! [`Gate`]. Capture and injection run on their own threads (the X11
//! capturer is not `Send`, and a slow injection must not stall the session),
//! started only with a [`Grant`]; the session talks to them only through
//! [`Guarded`], which asks the gate first.

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use assent_capture::{CaptureError, ScreenSource};
use assent_codec::{EncodedFrame, Encoder, FrameRef};
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
    Frame { placeholder: bool, keyframe: bool },
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
}

pub type CaptureResult = Result<Captured, String>;

/// Consent-gated access to screen and input.
pub struct Guarded {
    gate: Gate,
    capture: std_mpsc::Sender<CaptureCmd>,
    input: std_mpsc::Sender<InputCmd>,
    threads: Vec<JoinHandle<()>>,
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
        let capture_thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || capture_loop(screen, capture_rx, frames_tx))?;
        let (input_tx, input_rx) = std_mpsc::channel::<InputCmd>();
        let input_thread = std::thread::Builder::new()
            .name("input".into())
            .spawn(move || input_loop(input, input_rx))?;
        Ok((
            Guarded {
                gate: Gate::new(grant),
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
    /// placeholder, or nothing (returns false).
    pub fn request_frame(&mut self, keyframe: bool) -> bool {
        let placeholder = match self.gate.frame_policy() {
            FramePolicy::Screen => false,
            FramePolicy::Placeholder => true,
            FramePolicy::Nothing => return false,
        };
        self.capture
            .send(CaptureCmd::Frame {
                placeholder,
                keyframe,
            })
            .is_ok()
    }

    /// Injects the event if the gate admits it; returns whether it did.
    pub fn input(&mut self, event: InputEvent) -> bool {
        if self.gate.admit_input() {
            self.input.send(InputCmd::Apply(event)).is_ok()
        } else {
            false
        }
    }

    pub fn pause(&mut self) -> bool {
        let changed = self.gate.pause();
        // Whatever the technician held down must not stay down while the
        // user types their password.
        let _ = self.input.send(InputCmd::ReleaseAll);
        changed
    }

    pub fn resume(&mut self) -> bool {
        self.gate.resume()
    }

    pub fn regrant(&mut self, grant: Grant) {
        self.gate.regrant(grant);
        let _ = self.input.send(InputCmd::ReleaseAll);
    }

    /// Ends: releases held keys and stops both threads.
    pub fn end(mut self) {
        self.gate.end();
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

fn capture_loop(
    make: ScreenFactory,
    requests: std_mpsc::Receiver<CaptureCmd>,
    frames: mpsc::Sender<CaptureResult>,
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
    while let Ok(CaptureCmd::Frame {
        placeholder: paused,
        keyframe,
    }) = requests.recv()
    {
        let result = if paused {
            stale = true;
            encode_placeholder(&mut encoder, &mut placeholder, source.size(), keyframe)
        } else {
            // Asked even when the answer is not needed: a yes subtracts the
            // damage that the capture below then covers.
            let changed = source.may_have_changed();
            if changed || keyframe || stale {
                let r = encode_screen(&mut *source, &mut encoder, keyframe);
                stale = r.is_err();
                r
            } else {
                Ok(Captured {
                    frame: None,
                    cursor: source.cursor(),
                })
            }
        };
        if frames.blocking_send(result).is_err() {
            break;
        }
    }
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
        })
        .map_err(|e| e.to_string())
}

/// The screen as it is now, encoded against the previous frame.
fn encode_screen(
    source: &mut dyn ScreenSource,
    encoder: &mut Encoder,
    keyframe: bool,
) -> CaptureResult {
    let encoded = match source.capture() {
        Ok(frame) => encoder
            .encode(
                FrameRef {
                    data: frame.data,
                    width: frame.width,
                    height: frame.height,
                    stride: frame.stride,
                },
                keyframe,
            )
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("screen capture failed: {e}")),
    };
    encoded.map(|frame| Captured {
        frame,
        cursor: source.cursor(),
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
