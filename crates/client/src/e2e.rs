//! The end-to-end channel between agent and viewer, set up *before* the
//! consent prompt: the Noise handshake's messages travel as `Handshake`
//! control messages the relay passes on unread while consent is pending,
//! so the user sees the verification code while deciding. Once the session
//! is live, the established keys seal the data stream, and the first
//! messages on it agree on the screen format.

use assent_channel::{Established, Handshake};
use assent_net::{RecvStream, SendStream};
use assent_proto::identity::{PublicKey, SecretKey};
use assent_proto::session_msg::SessionMsg;
use assent_proto::wire::{ClientMsg, RelayMsg};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{AgentPending, ClientError, Control, Viewer, ViewerEvent};

pub use assent_channel::ResumeSecret;
pub type ChannelWriter = assent_channel::ChannelWriter<SendStream>;
pub type ChannelReader = assent_channel::ChannelReader<RecvStream>;

/// An established end-to-end channel, not yet bound to the data stream.
pub struct E2e {
    established: Established,
}

impl std::fmt::Debug for E2e {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2e")
            .field("verification_code", &self.established.verification_code)
            .finish_non_exhaustive()
    }
}

impl E2e {
    /// The 6-digit code both sides show.
    pub fn verification_code(&self) -> &str {
        &self.established.verification_code
    }

    /// The peer's key, as verified by its signature over the handshake.
    pub fn peer(&self) -> PublicKey {
        self.established.peer
    }

    /// What a later channel of this session is bound to.
    pub fn resume_secret(&self) -> ResumeSecret {
        self.established.resume.clone()
    }

    /// Seals the live data stream with the established keys.
    pub fn into_channel(
        self,
        send: SendStream,
        recv: RecvStream,
    ) -> (ChannelWriter, ChannelReader) {
        let ch = assent_channel::Channel::from_established(self.established, send, recv);
        (ch.writer, ch.reader)
    }
}

fn channel_error(e: assent_channel::ChannelError) -> ClientError {
    match e {
        assent_channel::ChannelError::PeerKeyMismatch => ClientError::Protocol(
            "the other side's key is not the one the relay named: someone may be in the middle; session refused".into(),
        ),
        other => ClientError::Protocol(format!("secure handshake failed: {other}")),
    }
}

async fn flush(control: &mut Control, hs: &mut Handshake<'_>) -> Result<(), ClientError> {
    let out = hs.take_outgoing();
    if !out.is_empty() {
        control.send(&ClientMsg::Handshake(out)).await?;
    }
    Ok(())
}

/// The viewer's side: initiates, expecting the device key the relay reported.
pub async fn initiate(
    viewer: &mut Viewer,
    key: &SecretKey,
    device_key: PublicKey,
) -> Result<E2e, ClientError> {
    let mut hs = Handshake::initiator(key, device_key).map_err(channel_error)?;
    flush(&mut viewer.control, &mut hs).await?;
    while !hs.is_established() {
        match viewer.next_event().await? {
            ViewerEvent::Handshake(bytes) => {
                hs.push(&bytes).map_err(channel_error)?;
                flush(&mut viewer.control, &mut hs).await?;
            }
            ViewerEvent::Ended(reason) => return Err(ClientError::Ended(reason)),
            other => {
                return Err(ClientError::Protocol(format!(
                    "unexpected {other:?} during the secure handshake"
                )))
            }
        }
    }
    Ok(E2e {
        established: hs.into_established().map_err(channel_error)?,
    })
}

/// The agent's side: responds, expecting the technician key in the
/// relay-signed offer.
pub async fn respond(
    pending: &mut AgentPending,
    technician_key: PublicKey,
) -> Result<E2e, ClientError> {
    let key = pending.device_key_clone();
    let mut hs = Handshake::responder(&key, technician_key).map_err(channel_error)?;
    flush(&mut pending.control, &mut hs).await?;
    while !hs.is_established() {
        match pending.control.recv().await? {
            RelayMsg::Handshake(bytes) => {
                hs.push(&bytes).map_err(channel_error)?;
                flush(&mut pending.control, &mut hs).await?;
            }
            RelayMsg::SessionEnded { reason } => return Err(ClientError::Ended(reason)),
            _ => {
                return Err(ClientError::Protocol(
                    "unexpected relay message during the secure handshake".into(),
                ))
            }
        }
    }
    Ok(E2e {
        established: hs.into_established().map_err(channel_error)?,
    })
}

/// Agent and viewer could not agree on a screen format, or the channel
/// failed while they tried; the message says which side to update.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScreenFormatError(pub String);

fn channel_failed(e: assent_channel::ChannelError) -> ScreenFormatError {
    ScreenFormatError(format!("the session channel failed: {e}"))
}

/// How long either side waits for the other's screen formats.
const FORMATS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The agent's side of the screen-format agreement, the first thing on the
/// live channel: says which formats it can send (best first) and returns
/// the one the viewer chose. Nothing else is sent until it returns.
pub async fn offer_screen_formats<S, R>(
    tx: &mut assent_channel::ChannelWriter<S>,
    rx: &mut assent_channel::ChannelReader<R>,
    formats: &[u8],
) -> Result<u8, ScreenFormatError>
where
    S: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    tx.send(&SessionMsg::ScreenFormats(formats.to_vec()))
        .await
        .map_err(channel_failed)?;
    let answer = tokio::time::timeout(FORMATS_TIMEOUT, rx.recv()).await;
    let chosen = match answer {
        Err(_) => None,
        Ok(Ok(SessionMsg::ScreenFormats(chosen))) => chosen.first().copied(),
        Ok(_) => None,
    };
    chosen.filter(|c| formats.contains(c)).ok_or_else(|| {
        ScreenFormatError(format!(
            "the technician's viewer did not agree on a screen format (this agent sends \
             format {formats:?}): it is probably older than this agent; update the viewer"
        ))
    })
}

/// The viewer's side: reads the agent's formats (its first message) and
/// answers with the first one in `readable` it offers. An agent that sends
/// anything else first predates the agreement (its frames would not decode).
pub async fn choose_screen_format<S, R>(
    tx: &mut assent_channel::ChannelWriter<S>,
    rx: &mut assent_channel::ChannelReader<R>,
    readable: &[u8],
) -> Result<u8, ScreenFormatError>
where
    S: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let offer = tokio::time::timeout(FORMATS_TIMEOUT, rx.recv()).await;
    let offered = match offer {
        Ok(Ok(SessionMsg::ScreenFormats(offered))) => offered,
        Err(_) | Ok(Ok(_)) => {
            return Err(ScreenFormatError(format!(
                "the agent did not say which screen format it sends: it is older than this \
                 viewer (which reads format {readable:?}); the user needs to update the agent"
            )))
        }
        Ok(Err(e)) => return Err(channel_failed(e)),
    };
    let Some(&chosen) = readable.iter().find(|f| offered.contains(f)) else {
        return Err(ScreenFormatError(format!(
            "the agent sends screen format {offered:?}, this viewer reads {readable:?}: \
             update the older of the two"
        )));
    };
    tx.send(&SessionMsg::ScreenFormats(vec![chosen]))
        .await
        .map_err(channel_failed)?;
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use assent_channel::{accept_agent, connect_viewer, Channel};
    use assent_proto::session_msg::Control;
    use assent_proto::wire::Scope;
    use tokio::io::{duplex, DuplexStream, ReadHalf, WriteHalf};

    type Half = Channel<WriteHalf<DuplexStream>, ReadHalf<DuplexStream>>;

    /// An agent's and a viewer's channel over an in-memory pipe.
    async fn pair() -> (Half, Half) {
        let (agent_key, viewer_key) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let (a, v) = duplex(1 << 16);
        let ((ar, aw), (vr, vw)) = (tokio::io::split(a), tokio::io::split(v));
        let (agent, viewer) = tokio::join!(
            accept_agent(aw, ar, &agent_key, viewer_key.public()),
            connect_viewer(vw, vr, &viewer_key, agent_key.public()),
        );
        (agent.unwrap(), viewer.unwrap())
    }

    #[tokio::test]
    async fn both_sides_agree_on_the_common_format() {
        let (mut agent, mut viewer) = pair().await;
        let (a, v) = tokio::join!(
            offer_screen_formats(&mut agent.writer, &mut agent.reader, &[3, 2]),
            choose_screen_format(&mut viewer.writer, &mut viewer.reader, &[2]),
        );
        assert_eq!((a.unwrap(), v.unwrap()), (2, 2));
    }

    #[tokio::test]
    async fn an_agent_from_before_the_agreement_is_named_as_older() {
        let (mut agent, mut viewer) = pair().await;
        // What an older agent sends first once live.
        let first = SessionMsg::Control(Control::Scope(Scope::View));
        agent.writer.send(&first).await.unwrap();
        let err = choose_screen_format(&mut viewer.writer, &mut viewer.reader, &[2])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("older than this viewer"), "{err}");
    }

    #[tokio::test]
    async fn no_common_format_ends_both_sides_with_a_reason() {
        let (mut agent, mut viewer) = pair().await;
        let offered = offer_screen_formats(&mut agent.writer, &mut agent.reader, &[3]);
        let chosen = async {
            let r = choose_screen_format(&mut viewer.writer, &mut viewer.reader, &[2]).await;
            // The viewer ends the session: the channel closes.
            drop(viewer);
            r
        };
        let (a, v) = tokio::join!(offered, chosen);
        let v = v.unwrap_err().to_string();
        assert!(
            v.contains("sends screen format [3], this viewer reads [2]"),
            "{v}"
        );
        let a = a.unwrap_err().to_string();
        assert!(a.contains("update the viewer"), "{a}");
    }

    #[tokio::test]
    async fn a_viewer_from_before_the_agreement_is_named_as_older() {
        let (mut agent, mut viewer) = pair().await;
        let offered = offer_screen_formats(&mut agent.writer, &mut agent.reader, &[2]);
        // An older viewer cannot decode the offer; it would only ever
        // acknowledge frames or ask for a keyframe.
        let old = viewer.writer.send(&SessionMsg::FrameAck { seq: 0 });
        let (a, _) = tokio::join!(offered, old);
        let a = a.unwrap_err().to_string();
        assert!(a.contains("probably older than this agent"), "{a}");
    }
}
