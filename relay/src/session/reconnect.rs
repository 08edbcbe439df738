//! A side of a live session back on a new connection (`Resume`): when its
//! old connection cannot reach the relay any more and QUIC migration could
//! not carry it. The side proves the session's resume credential (sent to
//! it alone when the session went live) and its key on the new
//! connection; then the relay swaps the connection in, opens new data
//! streams to both sides, and the two ends start a channel bound to the old
//! one (which the relay cannot do for them). Same session id, consent,
//! scope, slot and limits.

use std::time::Instant;

use assent_net::{close, PathWatch};
use assent_proto::session::Phase;
use assent_proto::wire::{RelayMsg, ResumeCredential, Role};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::side::Side;
use super::SessionTask;
use crate::fields;
use crate::state::Reconnect;

/// Each side's resume credential, once the session is live.
pub(super) struct Credentials {
    agent: [u8; 32],
    viewer: [u8; 32],
}

impl Credentials {
    pub(super) fn new() -> Option<Credentials> {
        let mut c = Credentials {
            agent: [0; 32],
            viewer: [0; 32],
        };
        assent_proto::random_bytes(&mut c.agent).ok()?;
        assent_proto::random_bytes(&mut c.viewer).ok()?;
        Some(c)
    }

    fn of(&self, role: Role) -> &[u8; 32] {
        match role {
            Role::Agent => &self.agent,
            Role::Viewer => &self.viewer,
        }
    }
}

/// Compared as digests, so the time a comparison takes says nothing about
/// the credential's bytes.
fn same_secret(a: &[u8; 32], b: &[u8; 32]) -> bool {
    Sha256::digest(a) == Sha256::digest(b)
}

impl SessionTask {
    /// Tells each side its credential, right after `SessionStarted`.
    pub(super) async fn hand_out_credentials(&mut self) {
        let Some(c) = Credentials::new() else {
            warn!(session = %self.id, "no randomness for resume credentials; this session cannot resume");
            return;
        };
        let (agent, viewer) = (c.agent, c.viewer);
        self.credentials = Some(c);
        let to_viewer = RelayMsg::ResumeCredential {
            credential: ResumeCredential(viewer),
        };
        self.viewer.tell(&to_viewer).await;
        if let Some(a) = self.agent.as_mut() {
            let to_agent = RelayMsg::ResumeCredential {
                credential: ResumeCredential(agent),
            };
            a.side.tell(&to_agent).await;
        }
    }

    pub(super) async fn on_reconnect(&mut self, r: Reconnect) {
        if let Err(reason) = self.check_reconnect(&r) {
            // The accept side audits it (`auth_failed`) as it refuses.
            warn!(session = %self.id, role = r.role.as_str(), reason, "resume refused");
            let _ = r.refused.send((r.peer, reason));
            return;
        }
        let (role, addr) = (r.role, r.peer.addr);
        let fresh = Side::new(r.peer);
        let old = match role {
            Role::Agent => match self.agent.as_mut() {
                Some(a) => std::mem::replace(&mut a.side, fresh),
                None => return,
            },
            Role::Viewer => std::mem::replace(&mut self.viewer, fresh),
        };
        old.conn
            .close(close::NORMAL, b"carried on by a new connection");
        let fields = fields! {
            "session" => self.id, "side" => role.as_str(), "peer" => addr.to_string(),
        };
        if let Err(e) = self
            .shared
            .audit
            .record("session_reconnected", fields)
            .await
        {
            warn!(session = %self.id, error = %e, "session_reconnected not recorded");
        }
        info!(session = %self.id, side = role.as_str(), peer = %addr, "side back on a new connection");
        self.paths.reset(role, Instant::now());
        self.reopen_data(role).await;
    }

    /// The credential and the key, for a live session only.
    fn check_reconnect(&self, r: &Reconnect) -> Result<(), &'static str> {
        if !matches!(self.machine.phase(), Phase::Live { .. }) {
            return Err("resume_not_live");
        }
        let Some(credentials) = &self.credentials else {
            return Err("resume_not_live");
        };
        if !same_secret(credentials.of(r.role), &r.credential.0) {
            return Err("bad_resume_credential");
        }
        let key = match (r.role, &self.agent) {
            (Role::Agent, Some(a)) => a.device_key,
            (Role::Agent, None) => return Err("resume_not_live"),
            (Role::Viewer, _) => self.technician_key,
        };
        key.verify(&r.payload, &r.signature)
            .map_err(|_| "bad_signature")
    }

    /// The old forwarders go with the old connection; both sides get a new
    /// data stream (the returning side after `Reconnected`, the other after
    /// `PeerReconnected`).
    async fn reopen_data(&mut self, role: Role) {
        for f in self.forwarders.drain(..) {
            f.abort();
        }
        let Some(a) = self.agent.as_mut() else { return };
        let reconnected = RelayMsg::Reconnected {
            session: self.id.clone(),
        };
        let peer_back = RelayMsg::PeerReconnected { side: role };
        let (back, other): (&mut Side, &mut Side) = match role {
            Role::Agent => (&mut a.side, &mut self.viewer),
            Role::Viewer => (&mut self.viewer, &mut a.side),
        };
        back.tell(&reconnected).await;
        other.tell(&peer_back).await;
        self.forward().await;
    }
}

impl super::paths::Paths {
    /// A side on a new connection starts with a fresh watch.
    pub(super) fn reset(&mut self, role: Role, now: Instant) {
        match role {
            Role::Agent => self.agent = PathWatch::new(now),
            Role::Viewer => self.viewer = PathWatch::new(now),
        }
    }
}
