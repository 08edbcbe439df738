//! The async layer: drives [`Handshake`] over a tokio byte stream pair and
//! carries [`SessionMsg`]s over the established channel.

use std::fmt;

use assent_proto::framing::FrameError;
use assent_proto::identity::{PublicKey, SecretKey};
use assent_proto::session_msg::SessionMsg;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{ChannelError, Established, Handshake, Opener, Result, Sealer, LEN_PREFIX};

/// Read size: one full record per read when the peer is sending fast.
const READ_BUF: usize = LEN_PREFIX + crate::MAX_NOISE_MSG;

/// An established channel over a stream pair, ready to be split between a
/// sending and a receiving task.
pub struct Channel<S, R> {
    pub writer: ChannelWriter<S>,
    pub reader: ChannelReader<R>,
    /// Six digits both sides derive from this handshake.
    pub verification_code: String,
    /// The peer's proven identity key.
    pub peer: PublicKey,
    /// What a later channel of this session is bound to.
    pub resume: crate::ResumeSecret,
}

impl<S, R> fmt::Debug for Channel<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("verification_code", &self.verification_code)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<S, R> Channel<S, R> {
    /// Attaches a handshake completed elsewhere (for instance over the relay's
    /// control stream) to the data stream.
    pub fn from_established(established: Established, send: S, recv: R) -> Channel<S, R> {
        Channel {
            writer: ChannelWriter::new(send, established.sender),
            reader: ChannelReader::new(recv, established.receiver),
            verification_code: established.verification_code,
            peer: established.peer,
            resume: established.resume,
        }
    }
}

/// Runs the handshake as the viewer (Noise initiator) on `send`/`recv`,
/// requiring the agent to prove `expected_agent_key` (the device key the
/// relay reported). Bound it with a timeout: a silent peer is waited for.
pub async fn connect_viewer<S, R>(
    send: S,
    recv: R,
    key: &SecretKey,
    expected_agent_key: PublicKey,
) -> Result<Channel<S, R>>
where
    S: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    run(Handshake::initiator(key, expected_agent_key)?, send, recv).await
}

/// Runs the handshake as the agent (Noise responder) on `send`/`recv`,
/// requiring the viewer to prove `expected_viewer_key` (the technician key
/// the relay attested). Bound it with a timeout.
pub async fn accept_agent<S, R>(
    send: S,
    recv: R,
    key: &SecretKey,
    expected_viewer_key: PublicKey,
) -> Result<Channel<S, R>>
where
    S: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    run(Handshake::responder(key, expected_viewer_key)?, send, recv).await
}

/// Runs the handshake of a channel that carries on `previous` (see
/// [`Handshake::resuming`]) on a new stream pair, as `role`. Bound it with
/// a timeout.
pub async fn resume<S, R>(
    role: assent_proto::wire::Role,
    send: S,
    recv: R,
    key: &SecretKey,
    expected_peer: PublicKey,
    previous: &crate::ResumeSecret,
) -> Result<Channel<S, R>>
where
    S: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    run(
        Handshake::resuming(role, key, expected_peer, previous)?,
        send,
        recv,
    )
    .await
}

async fn run<S, R>(mut hs: Handshake<'_>, mut send: S, mut recv: R) -> Result<Channel<S, R>>
where
    S: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let out = hs.take_outgoing();
        if !out.is_empty() {
            send.write_all(&out).await?;
            send.flush().await?;
        }
        if hs.is_established() {
            break;
        }
        let n = recv.read(&mut buf).await?;
        if n == 0 {
            return Err(ChannelError::Closed);
        }
        hs.push(&buf[..n])?;
    }
    Ok(Channel::from_established(
        hs.into_established()?,
        send,
        recv,
    ))
}

/// Sends [`SessionMsg`]s to the peer.
pub struct ChannelWriter<S> {
    inner: S,
    sealer: Sealer,
    failed: bool,
}

impl<S> fmt::Debug for ChannelWriter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelWriter")
            .field("sealer", &self.sealer)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<S> ChannelWriter<S> {
    pub fn new(inner: S, sealer: Sealer) -> ChannelWriter<S> {
        ChannelWriter {
            inner,
            sealer,
            failed: false,
        }
    }
}

impl<S: AsyncWrite + Unpin> ChannelWriter<S> {
    /// Seals and writes one message, then flushes.
    ///
    /// Not cancel-safe: dropping the future mid-write leaves a partial record
    /// on the stream, so the writer refuses further use.
    pub async fn send(&mut self, msg: &SessionMsg) -> Result<()> {
        if self.failed {
            return Err(ChannelError::Failed);
        }
        let bytes = msg.encode().map_err(frame_error)?;
        let wire = self.sealer.seal(&bytes)?;
        // Marked failed until the write completes, which also covers a
        // cancelled future.
        self.failed = true;
        self.inner.write_all(&wire).await?;
        self.inner.flush().await?;
        self.failed = false;
        Ok(())
    }

    /// Closes the sending direction (for a quinn stream: `finish`), after
    /// which the peer's reader sees [`ChannelError::Closed`].
    pub async fn shutdown(&mut self) -> Result<()> {
        self.failed = true;
        self.inner.shutdown().await?;
        Ok(())
    }
}

/// Receives [`SessionMsg`]s from the peer.
pub struct ChannelReader<R> {
    inner: R,
    opener: Opener,
    buf: Vec<u8>,
    failed: bool,
}

impl<R> fmt::Debug for ChannelReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelReader")
            .field("opener", &self.opener)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<R> ChannelReader<R> {
    pub fn new(inner: R, opener: Opener) -> ChannelReader<R> {
        ChannelReader {
            inner,
            opener,
            buf: vec![0; READ_BUF],
            failed: false,
        }
    }
}

impl<R: AsyncRead + Unpin> ChannelReader<R> {
    /// The next message. [`ChannelError::Closed`] when the peer closed the
    /// stream between messages, [`ChannelError::Truncated`] when it closed
    /// inside one.
    ///
    /// Cancel-safe: bytes already read stay buffered for the next call, so
    /// it can sit in a `select!` loop.
    pub async fn recv(&mut self) -> Result<SessionMsg> {
        if self.failed {
            return Err(ChannelError::Failed);
        }
        let result = self.recv_inner().await;
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    async fn recv_inner(&mut self) -> Result<SessionMsg> {
        loop {
            // Drain what is buffered before reading more, which bounds the
            // buffer to one read beyond a partial record.
            if let Some(bytes) = self.opener.next_message()? {
                return SessionMsg::decode(&bytes).map_err(frame_error);
            }
            let n = self.inner.read(&mut self.buf).await?;
            if n == 0 {
                return Err(if self.opener.has_partial() {
                    ChannelError::Truncated
                } else {
                    ChannelError::Closed
                });
            }
            self.opener.push(&self.buf[..n]);
        }
    }
}

fn frame_error(e: FrameError) -> ChannelError {
    match e {
        FrameError::TooLarge { len, max } => ChannelError::TooLarge { len, max },
        other => ChannelError::Malformed(other.to_string()),
    }
}
