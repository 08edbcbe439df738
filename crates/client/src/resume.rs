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
use assent_proto::wire::{ClientMsg, ErrorKind, RelayMsg, ResumeCredential, Role};

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
    pub credential: ResumeCredential,
}

impl std::fmt::Debug for ResumeTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumeTicket")
            .field("relay", &self.relay)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// Own path silent this long: try a new connection (migration and QUIC's
/// own retransmissions had their chance).
pub const RECONNECT_AFTER: Duration = Duration::from_secs(3);
/// Between failed attempts.
pub const RETRY_EVERY: Duration = Duration::from_secs(2);

/// One side's bookkeeping for coming back: the ticket once the relay sent
/// the credential, the secret the next channel is bound to, and the
/// attempt under way. The same for agent and viewer.
pub struct Reconnector {
    relay: String,
    ca: std::path::PathBuf,
    role: Role,
    key: SecretKey,
    peer: PublicKey,
    ticket: Option<ResumeTicket>,
    secret: ResumeSecret,
    attempt: Option<tokio::task::JoinHandle<Result<Resumed, ClientError>>>,
    silent_since: Option<std::time::Instant>,
    next_try: Option<std::time::Instant>,
    /// The relay said there is no session to carry on: stop trying.
    refused: bool,
}

impl Reconnector {
    /// For `role` at `relay` (checked against `ca`), proving `key`, with
    /// `peer` on the other end of `secret`'s channel.
    pub fn new(
        (relay, ca): (&str, &Path),
        role: Role,
        key: SecretKey,
        peer: PublicKey,
        secret: ResumeSecret,
    ) -> Reconnector {
        Reconnector {
            relay: relay.to_string(),
            ca: ca.to_path_buf(),
            role,
            key,
            peer,
            ticket: None,
            secret,
            attempt: None,
            silent_since: None,
            next_try: None,
            refused: false,
        }
    }

    /// The relay's `ResumeCredential` for this side of `session`.
    pub fn credential(&mut self, session: &str, credential: ResumeCredential) {
        self.ticket = Some(ResumeTicket {
            relay: self.relay.clone(),
            ca: self.ca.clone(),
            session: session.to_string(),
            credential,
        });
    }

    /// Called on every look at the own path: starts an attempt once it has
    /// been silent for [`RECONNECT_AFTER`], then every [`RETRY_EVERY`].
    /// Whether one started.
    pub fn look(&mut self, own_silent: bool, now: std::time::Instant) -> bool {
        if !own_silent {
            self.silent_since = None;
            self.next_try = None;
            return false;
        }
        let since = *self.silent_since.get_or_insert(now);
        let due = self.next_try.unwrap_or(since + RECONNECT_AFTER);
        if self.refused || self.attempt.is_some() || now < due {
            return false;
        }
        let Some(ticket) = self.ticket.clone() else {
            return false;
        };
        self.next_try = Some(now + RETRY_EVERY);
        let (role, key, peer) = (self.role, self.key.clone(), self.peer);
        let secret = self.secret.clone();
        self.attempt = Some(tokio::spawn(async move {
            resume(&ticket, role, &key, peer, &secret).await
        }));
        true
    }

    /// The outcome of the attempt under way, waited for; `None` without
    /// one. For when the old connection failed: the relay closes it as it
    /// takes the new one, so the attempt decides whether the session goes on.
    pub async fn outcome_in_flight(&mut self) -> Option<Result<Resumed, ClientError>> {
        match self.attempt {
            Some(_) => Some(self.finished().await),
            None => None,
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

    /// Takes an attempt's outcome: the session carried on (the caller swaps
    /// it in), or why not (a refusal ends the trying).
    pub fn settle(&mut self, result: Result<Resumed, ClientError>) -> Result<Resumed, ClientError> {
        match &result {
            Ok(r) => {
                self.secret = r.secret.clone();
                self.silent_since = None;
                self.next_try = None;
            }
            Err(e) => self.refused |= e.refusal() == Some(ErrorKind::NotResumable),
        }
        result
    }

    /// The other side came back on a new connection: its data stream on
    /// this connection, and the channel bound to the current secret.
    pub async fn follow(
        &mut self,
        control: &mut Control,
    ) -> Result<(ChannelWriter, ChannelReader), ClientError> {
        let (tx, rx, secret) =
            follow(control, self.role, &self.key, self.peer, &self.secret).await?;
        self.secret = secret;
        Ok((tx, rx))
    }
}

impl Drop for Reconnector {
    fn drop(&mut self) {
        if let Some(a) = self.attempt.take() {
            a.abort();
        }
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
            credential: ticket.credential.clone(),
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
