//! An authenticated connection as the relay holds it, and one that comes
//! back to carry a live session on. Apart from the shared state so that
//! the session's control messages can carry them without a circle.

use std::net::SocketAddr;

use assent_net::{Connection, RecvStream, SendStream};
use tokio::sync::oneshot;

/// One authenticated connection: its control stream and address.
pub struct Peer {
    pub conn: Connection,
    pub send: SendStream,
    pub recv: RecvStream,
    pub addr: SocketAddr,
}

/// A side of a live session back on a new connection (`Resume`), handed
/// to the session to check. A refusal gives the connection back with the
/// audit reason, so the accept side can tell the client and close.
pub struct Reconnect {
    pub peer: Peer,
    pub role: assent_proto::wire::Role,
    pub credential: assent_proto::wire::ResumeCredential,
    /// What the side's key must have signed on this connection.
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
    pub refused: oneshot::Sender<(Peer, &'static str)>,
}

impl std::fmt::Debug for Reconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credential is a secret: never in a log line.
        f.debug_struct("Reconnect")
            .field("role", &self.role)
            .field("peer", &self.peer.addr)
            .finish_non_exhaustive()
    }
}
