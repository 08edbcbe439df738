//! Coming back on a new connection when this agent's own path has stayed
//! silent for a while (its address gone, a NAT that forgot it), and
//! following the technician's viewer when it does the same. QUIC migration
//! carries a changed address on a live connection; this carries the
//! session when the connection itself cannot. Capture and input stay
//! stopped until the relay has taken the new connection and the channel
//! bound to the old one is up (`assent_client::resume`).

use std::time::Duration;

use assent_client::resume::Resumed;
use assent_client::{ClientError, PathClock};
use assent_proto::wire::{ErrorKind, RelayMsg};
use tracing::{info, warn};

use crate::live::LiveSession;

/// How long a closed channel waits for the relay's word that the viewer
/// is back on a new connection (it is sent just before the old channel
/// closes).
const PEER_WORD: Duration = Duration::from_secs(2);

impl LiveSession {
    /// The old connection failed under the session: when a new one is
    /// being made (the relay closes the old one as it takes the new), its
    /// outcome decides whether the session goes on.
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
    ) -> Result<(), String> {
        let resumed = match self.reconnect.settle(result) {
            Ok(r) => r,
            Err(e) if e.refusal() == Some(ErrorKind::NotResumable) => {
                warn!(
                    "the relay has no session to carry on: it ended while the connection was down"
                );
                return Err(format!(
                    "The connection to {} was down for too long: the session ended.",
                    self.technician()
                ));
            }
            Err(e) => {
                warn!(error = %e, "could not carry the session on over a new connection");
                return Ok(());
            }
        };
        info!("the session carries on over a new connection");
        self.control = resumed.control;
        (self.tx, self.rx) = (resumed.tx, resumed.rx);
        self.outage.clock = PathClock::default();
        self.own_path_back();
        self.after_new_channel().await;
        Ok(())
    }

    /// The technician's viewer came back on a new connection.
    pub(crate) async fn follow_viewer(&mut self) -> Result<(), String> {
        match self.reconnect.follow(&mut self.control).await {
            Ok((tx, rx)) => {
                info!("the technician's viewer is back on a new connection");
                (self.tx, self.rx) = (tx, rx);
                self.after_new_channel().await;
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, "the viewer's new connection could not carry the session");
                Err(format!(
                    "The technician came back on a new connection, but the session could not carry on: {e}"
                ))
            }
        }
    }

    /// The session channel closed: whether the relay says the viewer is
    /// back on a new connection (its word comes just before the close).
    pub(crate) async fn viewer_came_back(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + PEER_WORD;
        loop {
            match tokio::time::timeout_at(deadline, self.control.recv()).await {
                Ok(Ok(RelayMsg::PeerReconnected { .. })) => {
                    return self.follow_viewer().await.is_ok()
                }
                Ok(Ok(RelayMsg::SessionEnded { reason })) => {
                    self.end.relay_end = Some(reason);
                    return false;
                }
                Ok(Ok(_)) => continue,
                Ok(Err(_)) | Err(_) => return false,
            }
        }
    }

    /// Frames and file chunks in flight on the old channel are gone: the
    /// window starts afresh, the next frame is whole, and transfers end
    /// (both sides hear of the cancel).
    async fn after_new_channel(&mut self) {
        self.flow = Default::default();
        self.want_keyframe = true;
        self.stop_transfers().await;
    }
}
