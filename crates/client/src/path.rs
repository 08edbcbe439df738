//! This side's own path to the relay, looked at four times a second: silent
//! for [`PATH_SILENCE`], or back. The agent stops capturing meanwhile; the
//! viewer says so.

use std::time::{Duration, Instant};

use assent_net::{Connection, PathWatch, PATH_SILENCE};
use tokio::time::{Interval, MissedTickBehavior};

const PATH_POLL: Duration = Duration::from_millis(250);

pub struct PathClock {
    watch: PathWatch,
    tick: Interval,
    silent: bool,
}

impl Default for PathClock {
    fn default() -> Self {
        let mut tick = tokio::time::interval(PATH_POLL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        PathClock {
            watch: PathWatch::new(Instant::now()),
            tick,
            silent: false,
        }
    }
}

impl PathClock {
    /// Waits for the next look.
    pub async fn tick(&mut self) {
        self.tick.tick().await;
    }

    /// `Some(silent)` when the path changed since the last look.
    pub fn look(&mut self, conn: &Connection) -> Option<bool> {
        let silent = self.watch.silence(conn, Instant::now()) >= PATH_SILENCE;
        (silent != std::mem::replace(&mut self.silent, silent)).then_some(silent)
    }
}
