//! The Assent protocol core: wire messages, bounded framing, invite codes,
//! limits and the relay's pairing/session state machine.
//!
//! This crate does no I/O and reads no clock: callers pass bytes in and the
//! current time as `now`, so every transition and timeout is testable without
//! sockets (see ARCHITECTURE.md). It must never depend on tokio, quinn,
//! rustls or anything that touches a display; CI checks that with `cargo tree`.

#![forbid(unsafe_code)]

pub mod escalation;
pub mod files;
pub mod framing;
pub mod identity;
pub mod invite;
pub mod limits;
pub mod link;
pub mod permission;
pub mod privacy;
pub mod session;
pub mod session_msg;
pub mod text;
pub mod wire;

/// Protocol version carried in `Hello`; a peer with another version is
/// refused with a clear error rather than misreading messages it does not
/// know. 2: the support procedure's messages (chat counts, "please test",
/// the confirmation after the end, scope records) and the screen-format
/// agreement on the session channel. 3: escalation to a specialist
/// (handover messages, the offer's `escalated_from`). 4: permissions of
/// their own (the invite's and offer's `permissions`, clipboard reports).
/// 5: a live session carried on over a new connection (`Resume`).
pub const PROTOCOL_VERSION: u16 = 5;

/// ALPN identifier negotiated on every QUIC connection.
pub const ALPN: &[u8] = b"assent/1";

/// Fills `buf` from the operating system's CSPRNG.
///
/// Randomness failing is not something a security product may paper over, so
/// the error is surfaced rather than falling back to anything weaker.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|e| RandomError(e.to_string()))
}

/// The operating system could not provide random bytes.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct RandomError(String);

/// A fresh random identifier of `bytes` random bytes, hex encoded.
pub fn random_id(bytes: usize) -> Result<String, RandomError> {
    let mut buf = vec![0u8; bytes];
    random_bytes(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
