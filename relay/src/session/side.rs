//! One side of a session as its task holds it (control stream, reader,
//! address), and the forwarders that move the opaque session bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use assent_net::{close, Connection, ConnectionError, NetError, RecvStream, SendStream};
use assent_proto::identity::PublicKey;
use assent_proto::session::{Phase, SessionMachine};
use assent_proto::wire::{RelayMsg, DATA_PREAMBLE};
use assent_proto::wire::{MAX_HANDSHAKE_MSG, MAX_HANDSHAKE_MSGS};
use tracing::{info, warn};

use crate::state::{spawn_reader, Counters, Peer};

/// Largest chunk a forwarder moves at once.
const CHUNK: usize = 64 * 1024;

pub(super) struct Side {
    pub conn: Connection,
    send: SendStream,
    pub addr: SocketAddr,
    pub messages: crate::state::Messages,
}

impl Side {
    pub fn new(peer: Peer) -> Side {
        Side {
            conn: peer.conn,
            send: peer.send,
            addr: peer.addr,
            messages: spawn_reader(peer.recv),
        }
    }

    pub async fn tell(&mut self, msg: &RelayMsg) {
        if let Err(e) = assent_net::send_msg(&mut self.send, msg).await {
            info!(peer = %self.addr, error = %e, "could not send to peer");
        }
    }

    pub fn close(mut self) {
        let _ = self.send.finish();
        self.conn.close(close::NORMAL, b"session over");
    }

    /// Final message, then close once the peer had a moment to read it.
    pub async fn finish(mut self, last: RelayMsg) {
        self.tell(&last).await;
        let _ = self.send.finish();
        let _ = tokio::time::timeout(Duration::from_millis(1000), self.conn.closed()).await;
        self.conn.close(close::NORMAL, b"session over");
    }
}

pub(super) struct Agent {
    pub side: Side,
    pub device: String,
    pub device_key: PublicKey,
}

/// Whether a failed control stream was a deliberate close or a lost peer.
pub(super) fn lost_or_closed(e: &NetError) -> bool {
    matches!(
        e,
        NetError::Closed | NetError::Connection(ConnectionError::ApplicationClosed(_))
    )
}

type Pair = (SendStream, RecvStream);

/// Opens the data stream to each side. The preamble makes the stream visible
/// to the client's `accept_bi` at once.
async fn open_data(viewer: &Connection, agent: &Connection) -> Result<(Pair, Pair), NetError> {
    let open = |conn: Connection| async move {
        let (mut send, recv) = conn.open_bi().await?;
        send.write_all(DATA_PREAMBLE).await?;
        Ok::<_, NetError>((send, recv))
    };
    let (v, a) = tokio::join!(open(viewer.clone()), open(agent.clone()));
    Ok((v?, a?))
}

/// Moves one direction of a session's bytes. Chunks are passed on as the
/// `Bytes` quinn read them (no copy); while the receiving side's window is
/// full, `write_chunk` waits and nothing more is read, so QUIC flow control
/// pushes back on the sender instead of the relay buffering.
async fn pump(mut from: RecvStream, mut to: SendStream, counters: Arc<Counters>, to_viewer: bool) {
    loop {
        match from.read_chunk(CHUNK, true).await {
            Ok(Some(chunk)) => {
                let n = chunk.bytes.len() as u64;
                if to.write_chunk(chunk.bytes).await.is_err() {
                    break;
                }
                counters.add(to_viewer, n);
            }
            Ok(None) => {
                let _ = to.finish();
                break;
            }
            Err(_) => break,
        }
    }
}

impl super::SessionTask {
    /// Opens a data stream to each side and forwards between them (at the
    /// start, and again after a side came back on a new connection).
    pub(super) async fn forward(&mut self) {
        let Some(a) = self.agent.as_ref() else { return };
        match open_data(&self.viewer.conn, &a.side.conn).await {
            Ok(((v_send, v_recv), (a_send, a_recv))) => {
                let c = &self.counters;
                self.forwarders
                    .push(tokio::spawn(pump(a_recv, v_send, c.clone(), true)));
                self.forwarders
                    .push(tokio::spawn(pump(v_recv, a_send, c.clone(), false)));
            }
            Err(e) => info!(session = %self.id, error = %e, "could not open data streams"),
        }
    }
}

/// Whether one end-to-end handshake message may pass to the other side:
/// only while consent is pending and only a few small ones (the relay
/// cannot read them, and they carry no session content).
pub(super) fn handshake_allowed(
    session: &str,
    machine: &SessionMachine,
    count: &mut usize,
    bytes: &[u8],
) -> bool {
    if !matches!(machine.phase(), Phase::AwaitingConsent { .. }) {
        warn!(session = %session, "handshake message outside the consent phase; dropped");
        return false;
    }
    if *count >= MAX_HANDSHAKE_MSGS || bytes.len() > MAX_HANDSHAKE_MSG {
        warn!(session = %session, "handshake message over the limits; dropped");
        return false;
    }
    *count += 1;
    true
}
