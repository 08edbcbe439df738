//! The user's agent came back on a new connection (its old one could not
//! reach the relay any more): the relay opened a new data stream to this
//! viewer, and the channel starts again on it, bound to the old channel
//! (`assent_client::resume`), so only the same agent can continue it.

use assent_client::e2e::{E2e, ResumeSecret};
use assent_client::resume;
use assent_proto::identity::{PublicKey, SecretKey};
use assent_proto::session_msg::{Control as SessionControl, SessionMsg};
use assent_proto::wire::Role;
use tracing::{info, warn};

use crate::live::{ended, LiveEnd, LiveView};
use crate::session::fields;

/// What a new channel with the same agent needs.
pub struct Resumption {
    pub key: SecretKey,
    pub agent_key: PublicKey,
    pub secret: ResumeSecret,
}

impl Resumption {
    pub fn new(key: &SecretKey, agent_key: PublicKey, e2e: &E2e) -> Resumption {
        Resumption {
            key: key.clone(),
            agent_key,
            secret: e2e.resume_secret(),
        }
    }
}

impl LiveView<'_> {
    pub(crate) async fn follow_agent(&mut self) -> Option<LiveEnd> {
        let r = &self.resumption;
        let control = &mut *self.control;
        match resume::follow(control, Role::Viewer, &r.key, r.agent_key, &r.secret).await {
            Ok((tx, rx, secret)) => {
                info!("the user's agent is back on a new connection");
                (self.tx, self.rx, self.resumption.secret) = (tx, rx, secret);
                let f = fields! {"session" => self.session, "side" => "agent"};
                self.audit.record("session_reconnected", f);
                // Frames in flight were lost with the old connection.
                let ask = SessionMsg::Control(SessionControl::KeyframeRequest);
                let _ = self.tx.send(&ask).await;
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
}
