//! The technician's session, shared by the window and `--headless`: invite,
//! end-to-end handshake, the user's answer, then frames in and input out,
//! until someone ends it. State the window draws lives in [`ViewState`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use assent_audit::Fields;
use assent_client::{Viewer, ViewerEvent};
use assent_codec::{Decoder, Rect};
use assent_proto::identity::{PublicKey, SecretKey};
use assent_proto::session_msg::{Control as SessionControl, InputEvent, SessionMsg};
use assent_proto::wire::{ConsentDecision, EndReason, ErrorKind, InviteRequest, RelayMsg, Scope};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::record::{self, SessionNote};

pub struct ConnectConfig {
    pub relay: String,
    pub ca: PathBuf,
    pub key: SecretKey,
    pub request: InviteRequest,
    pub audit_path: PathBuf,
    pub notes_dir: PathBuf,
}

/// Where the session is, for the window's banner and status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    /// Waiting for the user to type the code.
    Invited {
        code: String,
    },
    /// The user's device joined; waiting for their answer.
    AwaitingConsent,
    Live,
    Ended(String),
}

/// The decoded remote screen and what changed since the window last looked.
#[derive(Debug, Default)]
pub struct Screen {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
    /// Regions changed since the window took them; `None` = everything.
    pub dirty: Option<Vec<Rect>>,
    pub version: u64,
}

/// Everything the window shows.
#[derive(Debug)]
pub struct ViewState {
    pub phase: Phase,
    pub device: String,
    pub verification_code: String,
    pub scope: Scope,
    pub paused: bool,
    pub screen: Screen,
    pub cursor: Option<(u32, u32)>,
    pub stats: Stats,
    pub note: SessionNote,
    pub ticket: String,
    /// Set on SIGTERM/SIGINT: the window closes itself (the session ends
    /// as when the technician closes it).
    pub quit: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub frames: u64,
    pub bytes: u64,
    pub decode_ms: f64,
    pub latency_ms: Option<f64>,
}

impl ViewState {
    pub fn new(request: &InviteRequest) -> ViewState {
        let mut note = SessionNote::new();
        note.set("Client", request.client.clone());
        note.set("Issue Summary", request.summary.clone());
        note.set("Business Impact", capitalised(request.impact.as_str()));
        note.set(
            "Remote Tool Used",
            format!("Assent {}", env!("CARGO_PKG_VERSION")),
        );
        ViewState {
            phase: Phase::Connecting,
            device: String::new(),
            verification_code: String::new(),
            scope: request.scope,
            paused: false,
            screen: Screen::default(),
            cursor: None,
            stats: Stats::default(),
            note,
            ticket: request.ticket.clone(),
            quit: false,
        }
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// What the window or the headless loop asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Input(InputEvent),
    /// Ask the user for another scope; the agent asks them in its prompt
    /// (more) or applies it at once (less).
    RequestScope(Scope),
    /// Window closed, SIGTERM/SIGINT, or stdin EOF in headless mode.
    End,
}

pub type SharedState = Arc<Mutex<ViewState>>;

fn lock(state: &SharedState) -> std::sync::MutexGuard<'_, ViewState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

macro_rules! fields {
    ($($k:expr => $v:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut m = Fields::new();
        $( m.insert($k.to_string(), serde_json::json!($v)); )*
        m
    }};
}

/// How a session ended, for the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub session: Option<String>,
    pub reason: String,
    pub note_path: Option<PathBuf>,
}

/// Runs a session until it ends. `on_invite` gets the code to print.
pub async fn run(
    config: ConnectConfig,
    state: SharedState,
    mut commands: mpsc::UnboundedReceiver<Command>,
    on_invite: impl FnOnce(&str, u32),
    repaint: Arc<dyn Fn() + Send + Sync>,
    wait_for_close: bool,
) -> anyhow::Result<Finished> {
    let audit = |event: &str, f: Fields| {
        if let Err(e) = record::audit(&config.audit_path, event, f) {
            warn!(error = %e, "viewer audit write failed");
        }
    };
    let ticket = config.request.ticket.clone();
    let scope_requested = config.request.scope;
    audit(
        "connect",
        fields! {"relay" => config.relay, "ticket" => ticket},
    );
    let mut viewer = Viewer::connect(
        &config.relay,
        &config.ca,
        &config.key,
        config.request.clone(),
    )
    .await
    .context("connecting to the relay")?;
    let technician = viewer.technician.clone();
    lock(&state).note.set("Technician", technician.clone());
    audit(
        "invite_created",
        fields! {"invite" => viewer.invite.id, "ticket" => ticket, "technician" => technician, "scope" => scope_requested.as_str()},
    );
    lock(&state).phase = Phase::Invited {
        code: viewer.invite.code.clone(),
    };
    on_invite(&viewer.invite.code, viewer.invite.expires_in_secs);
    repaint();

    // Until the session starts, closing the window, SIGTERM/SIGINT or stdin
    // EOF withdraws the request: the relay takes the user's prompt away.
    let invite_id = viewer.invite.id.clone();
    let withdrawn = |session: Option<&str>| {
        audit(
            "invite_withdrawn",
            fields! {"invite" => invite_id, "ticket" => ticket, "session" => session.unwrap_or_default()},
        );
        lock(&state).phase = Phase::Ended(WITHDRAWN.into());
        repaint();
        finished(session.map(str::to_string), WITHDRAWN, None)
    };
    let joined = loop {
        match unless_withdrawn(&mut commands, viewer.next_event()).await {
            None => break None,
            Some(ev) => match ev? {
                ViewerEvent::AgentJoined {
                    session,
                    device,
                    device_key,
                } => break Some((session, device, device_key)),
                ViewerEvent::Ended(r) => return Ok(finished(None, r.as_str(), None)),
                _ => continue,
            },
        }
    };
    let Some((session, device, device_key)) = joined else {
        viewer.control.end().await;
        return Ok(withdrawn(None));
    };
    {
        let mut s = lock(&state);
        s.device = device.clone();
        s.phase = Phase::AwaitingConsent;
        s.note.set("Device", device.clone());
        s.note.set("Affected User", format!("user of {device}"));
    }
    repaint();
    let handshake = assent_client::e2e::initiate(&mut viewer, &config.key, device_key);
    let Some(e2e) = unless_withdrawn(&mut commands, handshake).await else {
        viewer.control.end().await;
        return Ok(withdrawn(Some(&session)));
    };
    let e2e = e2e.context("secure handshake with the user's device")?;
    let code = e2e.verification_code().to_string();
    lock(&state).verification_code = code.clone();
    repaint();
    info!(%session, %device, "device joined; waiting for the user's answer");

    let answered = unless_withdrawn(
        &mut commands,
        await_answer(&mut viewer, &state, &session, &device, &audit),
    )
    .await;
    let scope = match answered {
        None => {
            viewer.control.end().await;
            return Ok(withdrawn(Some(&session)));
        }
        Some(Ok(scope)) => scope,
        Some(Err(finished)) => return Ok(finished),
    };
    let data = viewer
        .control
        .accept_data()
        .await
        .context("opening the session stream")?;
    let (mut tx, mut rx) = e2e.into_channel(data.send, data.recv);
    audit(
        "session_start",
        fields! {"session" => session, "device" => device, "device_key" => device_key_fp(device_key), "scope" => scope.as_str(), "verification_code" => code},
    );
    {
        let mut s = lock(&state);
        s.scope = scope;
        s.phase = Phase::Live;
    }
    repaint();

    let mut decoder = Decoder::new();
    let mut last_input: Option<Instant> = None;
    let reason: String;
    let mut viewer_ended = false;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(SessionMsg::Frame(bytes)) => {
                    let started = Instant::now();
                    match decoder.decode(&bytes) {
                        Ok(update) => {
                            let decode_ms = started.elapsed().as_secs_f64() * 1000.0;
                            let latency = last_input.take().map(|t| t.elapsed().as_secs_f64() * 1000.0);
                            {
                                let mut s = lock(&state);
                                let resized = s.screen.width != update.width || s.screen.height != update.height;
                                s.screen.width = update.width;
                                s.screen.height = update.height;
                                s.screen.pixels.clear();
                                s.screen.pixels.extend_from_slice(decoder.pixels());
                                // Accumulate until the window uploads; `None`
                                // (full upload) absorbs any partial update.
                                if update.keyframe || resized {
                                    s.screen.dirty = None;
                                } else if let Some(d) = &mut s.screen.dirty {
                                    d.extend(update.dirty.iter().copied());
                                }
                                s.screen.version += 1;
                                s.stats.frames += 1;
                                s.stats.bytes += bytes.len() as u64;
                                s.stats.decode_ms = decode_ms;
                                if latency.is_some() {
                                    s.stats.latency_ms = latency;
                                }
                            }
                            repaint();
                            let _ = tx.send(&SessionMsg::FrameAck { seq: update.seq }).await;
                        }
                        Err(e) => {
                            warn!(error = %e, "frame did not decode; asking for a keyframe");
                            let _ = tx.send(&SessionMsg::Control(SessionControl::KeyframeRequest)).await;
                        }
                    }
                }
                Ok(SessionMsg::Cursor { x, y }) => lock(&state).cursor = Some((x, y)),
                Ok(SessionMsg::Control(SessionControl::Paused)) => {
                    lock(&state).paused = true;
                    audit("session_paused", fields! {"session" => session});
                    repaint();
                }
                Ok(SessionMsg::Control(SessionControl::Resumed)) => {
                    lock(&state).paused = false;
                    audit("session_resumed", fields! {"session" => session});
                    repaint();
                }
                Ok(SessionMsg::Control(SessionControl::Scope(s))) => {
                    let changed = {
                        let mut st = lock(&state);
                        let changed = st.scope != s;
                        st.scope = s;
                        changed
                    };
                    if changed {
                        audit("scope_changed", fields! {"session" => session, "scope" => s.as_str()});
                    }
                }
                Ok(SessionMsg::Control(SessionControl::End)) => {
                    reason = "agent_ended".into();
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    info!(error = %e, "session channel closed");
                    reason = "agent_lost".into();
                    break;
                }
            },
            msg = viewer.control.recv() => {
                reason = match msg {
                    Ok(RelayMsg::SessionEnded { reason }) => reason.as_str().to_string(),
                    Ok(_) => continue,
                    Err(e) => format!("relay connection lost: {e}"),
                };
                break;
            }
            cmd = commands.recv() => match cmd {
                Some(Command::Input(ev)) => {
                    // View-only sessions send nothing (the agent would drop it anyway).
                    let (scope, paused) = { let s = lock(&state); (s.scope, s.paused) };
                    if scope == Scope::Control && !paused {
                        last_input = Some(Instant::now());
                        let _ = tx.send(&SessionMsg::Input(ev)).await;
                    }
                }
                Some(Command::RequestScope(s)) => {
                    info!(scope = s.as_str(), "asking the user for another scope");
                    let _ = tx.send(&SessionMsg::Control(SessionControl::ScopeRequest(s))).await;
                }
                Some(Command::End) | None => {
                    viewer_ended = true;
                    reason = EndReason::ViewerClosed.as_str().into();
                    break;
                }
            },
        }
    }

    // Close out: note (auto fields), audit, relay.
    let note = {
        let mut s = lock(&state);
        s.note
            .set("Session Ended", format!("Yes ({})", crate::now()));
        s.phase = Phase::Ended(reason.clone());
        s.note.clone()
    };
    repaint();
    audit(
        "session_end",
        fields! {"session" => session, "reason" => reason},
    );
    let note = if viewer_ended {
        // The agent hears of the end from the relay, which records it as
        // the technician's once the note and End below arrive. Telling the
        // agent first (end to end) let it reach the relay before us.
        note
    } else if wait_for_close {
        // Ended by the user, a limit or an admin: the technician finishes
        // the note in the window; the relay keeps the connection for it.
        info!("session ended ({reason}); waiting for the window to close");
        while let Some(cmd) = commands.recv().await {
            if cmd == Command::End {
                break;
            }
        }
        lock(&state).note.clone()
    } else {
        note
    };
    let note_path = note.write(&config.notes_dir, &session, &ticket).ok();
    let _ = viewer
        .control
        .send(&assent_proto::wire::ClientMsg::SessionNote {
            fields: note.to_wire(),
        })
        .await;
    audit(
        "session_note",
        fields! {"session" => session, "path" => note_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default()},
    );
    viewer.control.end().await;
    Ok(finished(Some(session), &reason, note_path))
}

/// The reason a request taken back before the session started ends with.
pub const WITHDRAWN: &str = "withdrawn";

/// Runs `fut` unless the technician gives up first (window closed,
/// SIGTERM/SIGINT, stdin EOF): then `None`. Other commands before the
/// session is live have nothing to act on and are dropped.
async fn unless_withdrawn<T>(
    commands: &mut mpsc::UnboundedReceiver<Command>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            v = &mut fut => return Some(v),
            cmd = commands.recv() => if matches!(cmd, Some(Command::End) | None) {
                return None;
            },
        }
    }
}

/// Waits for the user's answer: the granted scope once the session
/// started, or how it ended without one.
async fn await_answer(
    viewer: &mut Viewer,
    state: &SharedState,
    session: &str,
    device: &str,
    audit: &impl Fn(&str, Fields),
) -> Result<Scope, Finished> {
    loop {
        match viewer.next_event().await {
            Ok(ViewerEvent::Consent(d)) => {
                audit(
                    "consent",
                    fields! {"session" => session, "decision" => d.as_str(), "device" => device},
                );
                let when = crate::now();
                let confirmed = match d {
                    ConsentDecision::View | ConsentDecision::Control => {
                        format!("Yes ({}, {when})", d.as_str())
                    }
                    _ => format!("No ({}, {when})", d.as_str()),
                };
                lock(state).note.set("Consent Confirmed", confirmed);
            }
            Ok(ViewerEvent::Started { scope, .. }) => return Ok(scope),
            Ok(ViewerEvent::Ended(r)) => {
                return Err(end_without_session(state, session, r.as_str(), audit))
            }
            Ok(_) => continue,
            Err(e) => {
                let reason = match e.refusal() {
                    Some(ErrorKind::ConsentDenied) => "consent_denied".to_string(),
                    Some(ErrorKind::ConsentTimeout) => "consent_timeout".to_string(),
                    _ => e.to_string(),
                };
                return Err(end_without_session(state, session, &reason, audit));
            }
        }
    }
}

fn device_key_fp(k: PublicKey) -> String {
    k.fingerprint()
}

fn finished(session: Option<String>, reason: &str, note_path: Option<PathBuf>) -> Finished {
    Finished {
        session,
        reason: reason.to_string(),
        note_path,
    }
}

fn end_without_session(
    state: &SharedState,
    session: &str,
    reason: &str,
    audit: &impl Fn(&str, Fields),
) -> Finished {
    audit(
        "session_refused",
        fields! {"session" => session, "reason" => reason},
    );
    lock(state).phase = Phase::Ended(reason.to_string());
    finished(Some(session.to_string()), reason, None)
}

/// Stats line for `--headless`, computed over the last interval.
pub fn stats_line(now: &Stats, before: &Stats, interval: Duration) -> serde_json::Value {
    let secs = interval.as_secs_f64().max(1e-6);
    serde_json::json!({
        "frames": now.frames,
        "fps": ((now.frames - before.frames) as f64 / secs * 10.0).round() / 10.0,
        "bytes": now.bytes,
        "kbps": (((now.bytes - before.bytes) as f64 * 8.0 / 1000.0 / secs) * 10.0).round() / 10.0,
        "decode_ms": (now.decode_ms * 100.0).round() / 100.0,
        "latency_ms": now.latency_ms.map(|l| (l * 100.0).round() / 100.0),
    })
}
