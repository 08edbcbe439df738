//! Carrying a live session on over a new connection, when the old one can
//! no longer reach the relay (its address is gone, a NAT forgot it, the
//! path stayed dead while another works). QUIC migration covers a changed
//! address on a live connection; this covers a connection that is lost.
//!
//! Two proofs, checked by different parties: the relay checks the
//! session's resume credential (sent to this side when the session went
//! live) and a signature by the same device or technician key over this
//! connection's TLS exporter; the peer checks, end to end, that the new
//! channel continues the old one ([`assent_channel::ResumeSecret`]).

use std::path::Path;
use std::time::Duration;

use assent_proto::identity::{PublicKey, SecretKey};
use assent_proto::wire::{ClientMsg, RelayMsg, Role};

use crate::e2e::{ChannelReader, ChannelWriter, ResumeSecret};
use crate::{unexpected, ClientError, Control, DataStream};

/// How long one attempt may take, connection to established channel.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);

/// What a side keeps to come back on a new connection.
#[derive(Clone)]
pub struct ResumeTicket {
    pub relay: String,
    pub ca: std::path::PathBuf,
    pub session: String,
    /// From the relay's `ResumeCredential`; a secret.
    pub credential: [u8; 32],
}

impl std::fmt::Debug for ResumeTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumeTicket")
            .field("relay", &self.relay)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// A session carried on: the new control connection and channel.
pub struct Resumed {
    pub control: Control,
    pub tx: ChannelWriter,
    pub rx: ChannelReader,
    /// What the next resumption is bound to.
    pub secret: ResumeSecret,
}

/// One attempt, bounded by [`ATTEMPT_TIMEOUT`]: a new connection (a new
/// local socket, so a dead address or NAT mapping is not reused), `Resume`,
/// then the channel bound to `previous` on the new data stream.
pub async fn resume(
    ticket: &ResumeTicket,
    role: Role,
    key: &SecretKey,
    peer: PublicKey,
    previous: &ResumeSecret,
) -> Result<Resumed, ClientError> {
    let attempt = async {
        let (control, data) = reconnect(ticket, role, key).await?;
        let ch = assent_channel::resume(role, data.send, data.recv, key, peer, previous)
            .await
            .map_err(|e| ClientError::Protocol(format!("resumed channel: {e}")))?;
        Ok(Resumed {
            control,
            tx: ch.writer,
            rx: ch.reader,
            secret: ch.resume,
        })
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT, attempt)
        .await
        .map_err(|_| ClientError::TimedOut("carrying the session on over a new connection"))?
}

async fn reconnect(
    ticket: &ResumeTicket,
    role: Role,
    key: &SecretKey,
) -> Result<(Control, DataStream), ClientError> {
    let mut control = Control::open(&ticket.relay, Path::new(&ticket.ca), role).await?;
    let signature = control.sign_challenge(role, key)?;
    control
        .send(&ClientMsg::Resume {
            session: ticket.session.clone(),
            credential: ticket.credential,
            signature,
        })
        .await?;
    match control.recv().await? {
        RelayMsg::Reconnected { session } if session == ticket.session => {}
        other => return Err(unexpected("Reconnected", &other)),
    }
    let data = control.accept_data().await?;
    Ok((control, data))
}

/// The other side came back on a new connection: its data stream on this
/// (unchanged) connection, and the channel bound to `previous`.
pub async fn follow(
    control: &mut Control,
    role: Role,
    key: &SecretKey,
    peer: PublicKey,
    previous: &ResumeSecret,
) -> Result<(ChannelWriter, ChannelReader, ResumeSecret), ClientError> {
    let attempt = async {
        let data = control.accept_data().await?;
        let ch = assent_channel::resume(role, data.send, data.recv, key, peer, previous)
            .await
            .map_err(|e| ClientError::Protocol(format!("resumed channel: {e}")))?;
        Ok((ch.writer, ch.reader, ch.resume))
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT, attempt)
        .await
        .map_err(|_| ClientError::TimedOut("the other side's new channel"))?
}
