//! A connection that cannot reach the relay any more, on either side. This
//! viewer comes back on a new connection when its own path has stayed
//! silent (`assent_client::resume::Reconnector`), and follows the user's
//! agent when the relay says it came back: either way a new data stream
//! carries a channel bound to the old one, so only the same two parties
//! can continue it.

use assent_client::e2e::E2e;
use assent_client::resume::{Reconnector, Resumed};
use assent_client::{ClientError, PathClock};
use assent_proto::identity::PublicKey;
use assent_proto::session_msg::{Control as SessionControl, SessionMsg};
use assent_proto::wire::{ErrorKind, Role};
use tracing::{info, warn};

use crate::live::{ended, LiveEnd, LiveView};
use crate::session::{fields, ConnectConfig};

/// This session's: the technician's key, and the agent the channel is with.
pub(crate) fn reconnector(config: &ConnectConfig, agent_key: PublicKey, e2e: &E2e) -> Reconnector {
    let relay = (config.relay.as_str(), config.ca.as_path());
    let key = config.key.clone();
    Reconnector::new(relay, Role::Viewer, key, agent_key, e2e.resume_secret())
}

impl LiveView<'_> {
    /// The user's agent is back on a new connection.
    pub(crate) async fn follow_agent(&mut self) -> Option<LiveEnd> {
        match self.reconnect.follow(self.control).await {
            Ok((tx, rx)) => {
                info!("the user's agent is back on a new connection");
                (self.tx, self.rx) = (tx, rx);
                self.after_new_channel("agent").await;
                None
            }
            Err(e) => {
                warn!(error = %e, "the agent's new connection could not carry the session");
                Some(ended(&format!(
                    "the user's agent came back on a new connection, but the session could not carry on: {e}"
                )))
            }
        }
    }

    /// The old connection failed under the session: when a new one is
    /// being made, its outcome decides whether the session goes on.
    pub(crate) async fn carried_on(&mut self) -> bool {
        let Some(result) = self.reconnect.outcome_in_flight().await else {
            return false;
        };
        let ok = result.is_ok();
        let _ = self.on_reconnected(result).await;
        ok
    }

    /// An attempt's outcome: carried on, try again later, or (the relay
    /// says there is no session left: the grace ran out) over.
    pub(crate) async fn on_reconnected(
        &mut self,
        result: Result<Resumed, ClientError>,
    ) -> Option<LiveEnd> {
        let resumed = match self.reconnect.settle(result) {
            Ok(r) => r,
            Err(e) if e.refusal() == Some(ErrorKind::NotResumable) => {
                warn!(
                    "the relay has no session to carry on: it ended while the connection was down"
                );
                return Some(ended("viewer_lost"));
            }
            Err(e) => {
                warn!(error = %e, "could not carry the session on over a new connection");
                return None;
            }
        };
        info!("the session carries on over a new connection");
        *self.control = resumed.control;
        (self.tx, self.rx) = (resumed.tx, resumed.rx);
        self.outage.clock = PathClock::default();
        self.own_path_back();
        self.after_new_channel("viewer").await;
        None
    }

    /// Frames in flight on the old channel are gone: ask for a whole one.
    async fn after_new_channel(&mut self, side: &str) {
        let f = fields! {"session" => self.session, "side" => side};
        self.audit.record("session_reconnected", f);
        let ask = SessionMsg::Control(SessionControl::KeyframeRequest);
        let _ = self.tx.send(&ask).await;
    }
}
