//! A connection that goes quiet mid-session, as the technician sees it:
//! this viewer's own path silent for a second, or the relay saying the
//! user's is. The window and `--headless` say so; no input is sent
//! meanwhile (the agent would drop it anyway). The relay ends the session
//! if the outage outlasts its reconnect grace.

use std::time::{Duration, Instant};

use assent_client::{PathWatch, PATH_SILENCE};
use tokio::time::{Interval, MissedTickBehavior};
use tracing::info;

use crate::live::LiveView;
use crate::session::{fields, lock};

const PATH_POLL: Duration = Duration::from_millis(250);

pub struct Outage {
    watch: PathWatch,
    pub(crate) tick: Interval,
    own: bool,
    peer: bool,
}

impl Default for Outage {
    fn default() -> Self {
        let mut tick = tokio::time::interval(PATH_POLL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Outage {
            watch: PathWatch::new(Instant::now()),
            tick,
            own: false,
            peer: false,
        }
    }
}

impl LiveView<'_> {
    pub(crate) fn on_path_tick(&mut self) {
        let silent = self
            .outage
            .watch
            .silence(&self.control.conn, Instant::now())
            >= PATH_SILENCE;
        if silent != self.outage.own {
            self.outage.own = silent;
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
