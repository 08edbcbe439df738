//! Coming back on a new connection when this agent's own path has stayed
//! silent for a while (its address gone, a NAT that forgot it): QUIC
//! migration carries a changed address on a live connection, this carries
//! the session when the connection itself cannot. Capture and input stay
//! stopped until the relay has taken the new connection and the channel
//! bound to the old one is up (`assent_client::resume`).

use std::time::{Duration, Instant};

use assent_client::e2e::ResumeSecret;
use assent_client::resume::{self, ResumeTicket, Resumed};
use assent_client::{ClientError, PathClock};
use assent_proto::identity::PublicKey;
use assent_proto::wire::{ErrorKind, Role};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::live::LiveSession;

/// Own path silent this long: try a new connection (migration and QUIC's
/// own retransmissions had their chance).
const RECONNECT_AFTER: Duration = Duration::from_secs(3);
/// Between failed attempts.
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// What coming back needs, and the attempt under way.
pub struct Reconnection {
    /// Once the relay sent this side's credential.
    ticket: Option<ResumeTicket>,
    /// What the next channel is bound to.
    secret: ResumeSecret,
    attempt: Option<JoinHandle<Result<Resumed, ClientError>>>,
    silent_since: Option<Instant>,
    next_try: Option<Instant>,
    /// The relay said there is no session to carry on: stop trying.
    refused: bool,
}

impl Reconnection {
    pub fn new(secret: ResumeSecret) -> Reconnection {
        Reconnection {
            ticket: None,
            secret,
            attempt: None,
            silent_since: None,
            next_try: None,
            refused: false,
        }
    }

    /// The attempt's result, once there is one (never, without one).
    pub async fn finished(&mut self) -> Result<Resumed, ClientError> {
        let Some(attempt) = self.attempt.as_mut() else {
            return std::future::pending().await;
        };
        let result = attempt
            .await
            .unwrap_or_else(|e| Err(ClientError::Protocol(format!("resume attempt: {e}"))));
        self.attempt = None;
        result
    }
}

impl Drop for Reconnection {
    fn drop(&mut self) {
        if let Some(a) = self.attempt.take() {
            a.abort();
        }
    }
}

impl LiveSession {
    /// The relay's credential for this side, right after the start.
    pub(crate) fn on_resume_credential(&mut self, credential: [u8; 32]) {
        self.reconnect.ticket = Some(ResumeTicket {
            relay: self.rejoin.relay.clone(),
            ca: self.rejoin.ca.clone(),
            session: self.offer.session.clone(),
            credential,
        });
    }

    /// Called on every path look: starts an attempt once the own path has
    /// been silent long enough.
    pub(crate) fn maybe_reconnect(&mut self, own_silent: bool, now: Instant) {
        let r = &mut self.reconnect;
        if !own_silent {
            r.silent_since = None;
            r.next_try = None;
            return;
        }
        let since = *r.silent_since.get_or_insert(now);
        let due = r.next_try.unwrap_or(since + RECONNECT_AFTER);
        if r.refused || r.attempt.is_some() || now < due {
            return;
        }
        let Some(ticket) = r.ticket.clone() else {
            return;
        };
        info!("own path silent; trying a new connection");
        r.next_try = Some(now + RETRY_EVERY);
        let key = self.rejoin.device_key.clone();
        let technician = PublicKey(self.offer.technician_key);
        let secret = r.secret.clone();
        r.attempt = Some(tokio::spawn(async move {
            resume::resume(&ticket, Role::Agent, &key, technician, &secret).await
        }));
    }

    /// The old connection failed under the session: when a new one is
    /// being made (the relay closes the old one as it takes the new), its
    /// outcome decides whether the session goes on.
    pub(crate) async fn carried_on(&mut self) -> bool {
        if self.reconnect.attempt.is_none() {
            return false;
        }
        let result = self.reconnect.finished().await;
        let ok = result.is_ok();
        self.on_reconnected(result).await;
        ok
    }

    pub(crate) async fn on_reconnected(&mut self, result: Result<Resumed, ClientError>) {
        let resumed = match result {
            Ok(r) => r,
            Err(e) => {
                let refused = e.refusal() == Some(ErrorKind::NotResumable);
                self.reconnect.refused |= refused;
                warn!(error = %e, refused, "could not carry the session on over a new connection");
                return;
            }
        };
        info!("the session carries on over a new connection");
        self.control = resumed.control;
        self.tx = resumed.tx;
        self.rx = resumed.rx;
        self.reconnect.secret = resumed.secret;
        self.reconnect.silent_since = None;
        self.reconnect.next_try = None;
        // Frames in flight on the old connection are gone: no acks will come.
        self.flow = Default::default();
        self.outage.clock = PathClock::default();
        self.own_path_back();
        // Their chunks in flight are gone too; both ends hear of the cancel.
        self.stop_transfers().await;
    }
}
