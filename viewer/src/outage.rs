//! A connection that goes quiet mid-session, as the technician sees it:
//! this viewer's own path silent for a second, or the relay saying the
//! user's is. The window and `--headless` say so; no input is sent
//! meanwhile (the agent would drop it anyway). The relay ends the session
//! if the outage outlasts its reconnect grace.

use assent_client::PathClock;
use tracing::info;

use crate::live::LiveView;
use crate::session::{fields, lock};

#[derive(Default)]
pub struct Outage {
    pub(crate) clock: PathClock,
    own: bool,
    peer: bool,
}

impl LiveView<'_> {
    pub(crate) fn on_path_tick(&mut self) {
        if let Some(silent) = self.outage.clock.look(&self.control.conn) {
            self.outage.own = silent;
            self.show_outage();
        }
        if self
            .reconnect
            .look(self.outage.own, std::time::Instant::now())
        {
            info!("own path silent: trying a new connection");
        }
    }

    /// Back on a new connection: the path works.
    pub(crate) fn own_path_back(&mut self) {
        if std::mem::take(&mut self.outage.own) {
            self.show_outage();
        }
    }

    /// The relay's word on the user's path.
    pub(crate) fn on_peer_path(&mut self, silent: bool) {
        self.outage.peer = silent;
        self.show_outage();
    }

    fn show_outage(&mut self) {
        let why = match (self.outage.own, self.outage.peer) {
            (true, _) => Some("your connection to the relay is interrupted — reconnecting…"),
            (false, true) => Some("the user's connection is interrupted — reconnecting…"),
            (false, false) => None,
        };
        info!(?why, "connection state");
        let event = if why.is_some() {
            "connection_interrupted"
        } else {
            "connection_resumed"
        };
        let changed = {
            let mut s = lock(&self.state);
            let before = s.interrupted.is_some();
            s.interrupted = why.map(String::from);
            s.interrupted_version += 1;
            before != why.is_some()
        };
        if changed {
            self.audit
                .record(event, fields! {"session" => self.session});
        }
        (self.repaint)();
    }
}
