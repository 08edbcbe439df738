//! Both sides' paths, watched four times a second. A live session whose
//! side goes silent for a second is interrupted (`session_interrupted`,
//! the other side told, the agent stops capturing) and resumes when the
//! path is back (`session_resumed`), or ends after the reconnect grace (the
//! machine's deadline). Before the session is live a side silent for a few
//! seconds is simply gone.

use std::time::{Duration, Instant};

use assent_net::{PathWatch, PATH_SILENCE};
use assent_proto::session::{Event, Phase};
use assent_proto::wire::{RelayMsg, Role};
use tracing::{info, warn};

use super::SessionTask;
use crate::fields;

/// How often the paths are looked at.
pub(super) const PATH_POLL: Duration = Duration::from_millis(250);
/// Before the session is live, a side silent this long has left.
const GONE_BEFORE_LIVE: Duration = Duration::from_secs(2);

pub(super) struct Paths {
    pub(super) viewer: PathWatch,
    pub(super) agent: PathWatch,
    /// Where the last throughput figure was taken: when, and the byte
    /// counts each way then.
    rate_from: (Instant, u64, u64),
}

impl Paths {
    pub(super) fn new() -> Paths {
        let now = Instant::now();
        Paths {
            viewer: PathWatch::new(now),
            agent: PathWatch::new(now),
            rate_from: (now, 0, 0),
        }
    }
}

impl SessionTask {
    /// What the paths say now: an interruption, a resumption, or a side
    /// gone before the session went live.
    pub(super) fn on_path_tick(&mut self) -> Option<Event> {
        let now = Instant::now();
        self.measure(now);
        let viewer = self.paths.viewer.silence(&self.viewer.conn, now);
        let agent = match &self.agent {
            Some(a) => self.paths.agent.silence(&a.side.conn, now),
            None => Duration::ZERO,
        };
        let silence = |role: Role| match role {
            Role::Agent => agent,
            Role::Viewer => viewer,
        };
        match self.machine.phase() {
            Phase::Live {
                interrupted: Some((side, _)),
                ..
            } => (silence(side) < PATH_SILENCE).then_some(Event::PathBack(side)),
            Phase::Live { .. } => [Role::Agent, Role::Viewer]
                .into_iter()
                .find(|r| silence(*r) >= PATH_SILENCE)
                .map(Event::PathSilent),
            Phase::AwaitingAgent { .. } | Phase::AwaitingConsent { .. } => {
                if viewer >= GONE_BEFORE_LIVE {
                    Some(Event::ViewerLost)
                } else if agent >= GONE_BEFORE_LIVE {
                    Some(Event::AgentLost)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// Throughput each way (about once a second) and both round trips,
    /// for `assent-relay sessions`.
    fn measure(&mut self, now: Instant) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.counters;
        let store_rtt = |slot: &std::sync::atomic::AtomicU64, conn: &assent_net::Connection| {
            let us = u64::try_from(conn.rtt().as_micros()).unwrap_or(u64::MAX);
            slot.store(us.max(1), Relaxed);
        };
        store_rtt(&c.rtt_viewer_us, &self.viewer.conn);
        if let Some(a) = &self.agent {
            store_rtt(&c.rtt_agent_us, &a.side.conn);
        }
        let (since, v0, a0) = self.paths.rate_from;
        let secs = now.duration_since(since).as_secs_f64();
        if secs < 1.0 {
            return;
        }
        let (v, a) = (c.to_viewer.load(Relaxed), c.to_agent.load(Relaxed));
        let rate = |now: u64, then: u64| (now.saturating_sub(then) as f64 / secs) as u64;
        c.rate_to_viewer.store(rate(v, v0), Relaxed);
        c.rate_to_agent.store(rate(a, a0), Relaxed);
        self.paths.rate_from = (now, v, a);
    }

    /// On record, then the other side is told.
    pub(super) async fn record_interrupted(&mut self, side: Role) {
        // The connection's own counts, for whoever reads the log after a
        // loss: a side that sent nothing since versus a relay that heard
        // nothing (its socket full) look alike from the session.
        let conn = match side {
            Role::Viewer => Some(&self.viewer.conn),
            Role::Agent => self.agent.as_ref().map(|a| &a.side.conn),
        };
        let (heard, sent, lost, rtt_ms) = conn.map_or((0, 0, 0, 0), |c| {
            let s = c.stats();
            let rtt_ms = u64::try_from(s.path.rtt.as_millis()).unwrap_or(u64::MAX);
            (
                s.udp_rx.datagrams,
                s.udp_tx.datagrams,
                s.path.lost_packets,
                rtt_ms,
            )
        });
        info!(
            session = %self.id, side = side.as_str(),
            datagrams_heard = heard, datagrams_sent = sent, packets_lost = lost, rtt_ms,
            "path silent; session interrupted"
        );
        let fields = fields! { "session" => self.id, "side" => side.as_str() };
        if let Err(e) = self
            .shared
            .audit
            .record("session_interrupted", fields)
            .await
        {
            warn!(session = %self.id, error = %e, "session_interrupted not recorded");
        }
        self.tell_other(side, RelayMsg::PeerInterrupted { side })
            .await;
    }

    /// `interrupted` counts from when the silence was noticed; the outage
    /// began a second (of silence) before that.
    pub(super) async fn record_resumed(&mut self, side: Role, interrupted: Duration) {
        let outage = interrupted + PATH_SILENCE;
        info!(session = %self.id, side = side.as_str(), outage_ms = outage.as_millis() as u64, "path back; session resumed");
        let fields = fields! {
            "session" => self.id, "side" => side.as_str(),
            "outage_ms" => outage.as_millis() as u64,
        };
        if let Err(e) = self.shared.audit.record("session_resumed", fields).await {
            warn!(session = %self.id, error = %e, "session_resumed not recorded");
        }
        self.tell_other(side, RelayMsg::PeerResumed { side }).await;
    }

    async fn tell_other(&mut self, side: Role, msg: RelayMsg) {
        match side {
            Role::Agent => self.viewer.tell(&msg).await,
            Role::Viewer => {
                if let Some(a) = self.agent.as_mut() {
                    a.side.tell(&msg).await;
                }
            }
        }
    }
}
