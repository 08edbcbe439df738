//! A connection that goes quiet mid-session. When this agent's own path to
//! the relay has been silent for a second, or the relay says the
//! technician's has, the agent stops capturing and injecting at once:
//! nothing is captured while nobody can be shown to be watching. When both
//! are back, capture resumes with a keyframe. The relay decides when an
//! outage has lasted too long (its reconnect grace) and ends the session.

use assent_client::PathClock;
use tracing::info;

use crate::live::LiveSession;
use crate::ui::UiEvent;

#[derive(Default)]
pub struct Outage {
    pub(crate) clock: PathClock,
    /// This agent's own path is silent.
    own: bool,
    /// The relay says the technician's path is silent.
    peer: bool,
}

impl Outage {
    /// Nothing is captured or injected while this holds.
    pub fn suspended(&self) -> bool {
        self.own || self.peer
    }
}

impl LiveSession {
    /// Looks at this agent's own path.
    pub(crate) fn on_path_tick(&mut self) {
        if let Some(own) = self.outage.clock.look(&self.control.conn) {
            info!(own, "own path changed");
            self.set_outage(|o| o.own = own);
        }
        if self
            .reconnect
            .look(self.outage.own, std::time::Instant::now())
        {
            info!("own path silent: trying a new connection");
        }
    }

    /// Back on a new connection: the path works (the clock starts afresh).
    pub(crate) fn own_path_back(&mut self) {
        self.set_outage(|o| o.own = false);
    }

    /// The relay's word on the technician's path.
    pub(crate) fn on_peer_path(&mut self, silent: bool) {
        info!(silent, "the technician's path changed");
        self.set_outage(|o| o.peer = silent);
    }

    fn set_outage(&mut self, change: impl FnOnce(&mut Outage)) {
        let before = self.outage.suspended();
        change(&mut self.outage);
        let now = self.outage.suspended();
        if before == now {
            return;
        }
        if now {
            info!("connection interrupted: capture and input stopped");
            // Keys the technician held must not stay down meanwhile.
            self.guarded.release_keys();
        } else {
            info!("connection back: capture resumes with a keyframe");
            self.want_keyframe = true;
        }
        self.ui.show(UiEvent::Interrupted(now));
    }
}
