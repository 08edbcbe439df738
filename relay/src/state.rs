//! The relay's shared state: what the accept loop, the session tasks and
//! the admin socket all see. Kept apart from authentication (server.rs) and
//! the session task (session/) so that neither imports the other.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use assent_net::{NetError, RecvStream};
use assent_proto::identity::{PublicKey, SecretKey};
use assent_proto::invite::InviteBook;
use assent_proto::limits::{CodeGuard, ConnectionRate};
use assent_proto::wire::{ClientMsg, Scope};
use tokio::sync::{mpsc, oneshot, watch};

use crate::audit_writer::AuditHandle;
use crate::config::Limits;
use crate::handover::{Control, Handovers};
use crate::metrics::{ForwardedBytes, Metrics};
pub use crate::peer::{Peer, Reconnect};
use crate::registry::Registry;
use crate::store::DataDir;

/// Where a session stands, as `assent-relay sessions` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPhase {
    /// The code was handed out; the user's agent has not joined yet.
    WaitingForAgent,
    /// The agent joined; the user is being asked.
    AskingUser,
    Live,
}

impl EntryPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryPhase::WaitingForAgent => "waiting for the user to join",
            EntryPhase::AskingUser => "asking the user",
            EntryPhase::Live => "live",
        }
    }
}

/// Byte counters of a live session, shared with its forwarders, and the
/// figures its task measures for `assent-relay sessions`.
#[derive(Debug, Default)]
pub struct Counters {
    pub to_viewer: AtomicU64,
    pub to_agent: AtomicU64,
    /// Bytes a second each way over the last second or so.
    pub rate_to_viewer: AtomicU64,
    pub rate_to_agent: AtomicU64,
    /// Each side's smoothed round trip to the relay, in microseconds
    /// (0 until known).
    pub rtt_viewer_us: AtomicU64,
    pub rtt_agent_us: AtomicU64,
    /// The relay-wide totals the metrics show (none in unit tests).
    pub relay: Option<ForwardedBytes>,
}

impl Counters {
    pub fn new(relay: ForwardedBytes) -> Counters {
        Counters {
            relay: Some(relay),
            ..Counters::default()
        }
    }

    /// Counts `n` bytes forwarded to the viewer or to the agent.
    pub fn add(&self, to_viewer: bool, n: u64) {
        let (session, relay) = if to_viewer {
            (&self.to_viewer, self.relay.as_ref().map(|r| &r.to_viewer))
        } else {
            (&self.to_agent, self.relay.as_ref().map(|r| &r.to_agent))
        };
        session.fetch_add(n, Ordering::Relaxed);
        if let Some(r) = relay {
            r.inc_by(n);
        }
    }
}

/// What the admin socket and the accept loop know of a session.
pub struct SessionEntry {
    pub technician: String,
    pub ticket: String,
    pub scope: Scope,
    pub device: Option<String>,
    /// RFC 3339 start time, once live.
    pub started: Option<String>,
    /// When the invite was created (the age of a pending request).
    pub created: Instant,
    pub phase: EntryPhase,
    pub counters: Arc<Counters>,
    pub control: mpsc::Sender<Control>,
    /// Counts against `max_sessions` from the agent's join on.
    pub holds_slot: bool,
    /// A specialist's session: only this device may redeem its code.
    pub bound_device: Option<PublicKey>,
}

/// An authenticated agent handed from its connection task to the session.
pub struct AgentArrival {
    pub peer: Peer,
    pub device: String,
    pub device_key: PublicKey,
}

/// Mutable relay state. Held only for short, non-async sections.
pub struct State {
    pub invites: InviteBook,
    pub code_guard: CodeGuard<IpAddr>,
    pub conn_rate: ConnectionRate<IpAddr>,
    /// Invite id → the session waiting for its agent.
    pub waiting: HashMap<String, (String, oneshot::Sender<AgentArrival>)>,
    /// Session id → entry, from invite creation to the session's end.
    pub sessions: HashMap<String, SessionEntry>,
    /// Escalations waiting for their specialist.
    pub handovers: Handovers,
}

pub struct Shared {
    pub dir: DataDir,
    /// `[limits]` of relay.toml, replaced by a SIGHUP reload: read it
    /// through [`Shared::limits`] at each use, never keep a copy.
    pub limits: RwLock<Limits>,
    pub signing: SecretKey,
    pub audit: AuditHandle,
    pub metrics: Arc<Metrics>,
    pub technicians: Registry,
    pub state: Mutex<State>,
    pub shutdown: watch::Receiver<bool>,
    pub tasks: crate::tracker::Tracker,
    /// Whether the relay keeps up (new sessions wait while it does not).
    pub load: Arc<crate::load::LoadGauge>,
    /// The receive budget every client connection shares.
    pub windows: Arc<crate::windows::Windows>,
    /// Fleet mode (`[fleet]`): the shared database; `None` on its own.
    pub fleet: Option<Arc<crate::fleet::FleetLink>>,
}

impl Shared {
    /// Moves a session's entry on (what `assent-relay sessions` shows).
    pub fn set_phase(&self, session: &str, phase: EntryPhase) {
        if let Some(e) = self.lock().sessions.get_mut(session) {
            e.phase = phase;
        }
    }

    /// The limits in force now (they change on a SIGHUP reload).
    pub fn limits(&self) -> Limits {
        self.limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock would already have ended the relay
        // (panic = abort is not set, but no code path panics under it);
        // recover the guard rather than cascade.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One side's control messages, read by their own task.
pub struct Messages {
    // Boxed: a channel allocates its slots 32 at a time whatever its
    // capacity, and an unboxed message is a few hundred bytes, so every
    // connection held ~6.5 KB of empty slots (issue 16's heap profile).
    rx: mpsc::Receiver<Box<Result<ClientMsg, NetError>>>,
}

impl Messages {
    pub async fn recv(&mut self) -> Option<Result<ClientMsg, NetError>> {
        self.rx.recv().await.map(|m| *m)
    }
}

/// The control stream of one side, as the session task owns it.
pub fn spawn_reader(recv: RecvStream) -> Messages {
    let mut recv = assent_net::FrameReader::new(recv);
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let msg = recv.recv::<ClientMsg>().await;
            let failed = msg.is_err();
            if tx.send(Box::new(msg)).await.is_err() || failed {
                break;
            }
        }
    });
    Messages { rx }
}
