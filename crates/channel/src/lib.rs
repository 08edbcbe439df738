//! The end-to-end encrypted session channel between agent and viewer.
//!
//! The relay forwards the channel's bytes but cannot read or alter them:
//!
//! 1. **Noise XX** (`Noise_XX_25519_ChaChaPoly_BLAKE2s`) with fresh static
//!    X25519 keys per session. The viewer initiates, the agent responds.
//! 2. **Identity binding.** Noise alone would happily talk to whoever
//!    answers, including a relay running one handshake with each side. So the
//!    first transport message each way is an ed25519 signature by the
//!    party's long-term key over the handshake hash (see
//!    [`binding_payload`]); each side checks it against the key the relay
//!    told it to expect. A relay in the middle has two different handshake
//!    hashes and cannot produce either signature: [`ChannelError::PeerKeyMismatch`].
//!    The agent checks the viewer's signature before revealing its own.
//! 3. **Verification code.** Both sides derive the same six digits from the
//!    handshake hash, for people who want to compare them by voice.
//! 4. **Records.** On the wire every Noise message is a 2-byte big-endian
//!    length and the message (≤ 65535 bytes). A session message is split into
//!    records whose plaintext is one flag byte ([`FLAG_MORE`] / [`FLAG_LAST`])
//!    and a chunk. The receiver refuses a message over
//!    [`MAX_SESSION_MSG`] before buffering past it.
//!
//! Any error is fatal: there is no resynchronisation and no plaintext
//! fallback. The core ([`Handshake`], [`Sealer`], [`Opener`]) does no I/O; the
//! async layer ([`connect_viewer`], [`accept_agent`], [`Channel`]; feature
//! `tokio`, on by default) drives it over any tokio byte stream pair, such as
//! a quinn stream.
//!
//! The handshake bytes can also travel apart from the data stream (the relay
//! passes them on the control stream while consent is pending, so the agent
//! can show the verification code in its prompt): push what arrives into
//! [`Handshake::push`], send what [`Handshake::take_outgoing`] returns, and
//! attach the [`Established`] halves to the data stream afterwards with
//! [`Channel::from_established`].

#![forbid(unsafe_code)]

mod handshake;
#[cfg(feature = "tokio")]
mod io;
mod record;

pub use assent_proto::session_msg::MAX_SESSION_MSG;
pub use handshake::{Established, Handshake};
#[cfg(feature = "tokio")]
pub use io::{accept_agent, connect_viewer, resume, Channel, ChannelReader, ChannelWriter};
pub use record::{Opener, Sealer};

use assent_proto::wire::Role;
use sha2::{Digest, Sha256};

/// The Noise protocol name; both sides must agree on it exactly.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// Mixed into the handshake so a transcript from any other protocol (or a
/// later version of this one) can never complete as this one.
pub const PROLOGUE: &[u8] = b"assent/1 channel prologue";
/// Largest Noise message, fixed by the Noise specification.
pub const MAX_NOISE_MSG: usize = 65535;
/// Bytes of the length prefix in front of every handshake message and record.
pub const LEN_PREFIX: usize = 2;
/// Poly1305 tag added to every encrypted record.
pub const TAG_LEN: usize = 16;
/// Largest chunk of a session message in one record (one byte goes to the flag).
pub const MAX_CHUNK: usize = MAX_NOISE_MSG - TAG_LEN - 1;
/// Record flag: more records of this message follow.
pub const FLAG_MORE: u8 = 0;
/// Record flag: this record ends the message.
pub const FLAG_LAST: u8 = 1;
/// Length of an ed25519 signature, the only content of the binding message.
pub const SIGNATURE_LEN: usize = 64;

/// Prologue of a channel that carries on an earlier one; the earlier
/// channel's [`ResumeSecret`] follows it.
pub const RESUME_PROLOGUE: &[u8] = b"assent/1 channel resume\0";

const BINDING_DOMAIN: &[u8] = b"assent/1 channel\0";
const VERIFY_DOMAIN: &[u8] = b"assent/1 verify\0";
const RESUME_DOMAIN: &[u8] = b"assent/1 resume\0";

/// A secret only the two ends of one channel know (derived from its
/// handshake hash, which the relay never sees): what a later channel of the
/// same session proves it continues.
#[derive(Clone)]
pub struct ResumeSecret(Box<zeroize::Zeroizing<[u8; 32]>>);

impl ResumeSecret {
    fn from_hash(handshake_hash: &[u8]) -> ResumeSecret {
        let digest = Sha256::new()
            .chain_update(RESUME_DOMAIN)
            .chain_update(handshake_hash)
            .finalize();
        ResumeSecret(Box::new(zeroize::Zeroizing::new(digest.into())))
    }

    fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for ResumeSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeSecret(..)")
    }
}

/// Everything that can go wrong on the channel. Every error is fatal for the
/// channel it came from. No variant carries key material.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("end-to-end handshake failed: {0}")]
    Handshake(String),
    /// The peer did not sign this handshake with the key the relay named: a
    /// man in the middle, or a relay swapping keys.
    #[error("the peer could not prove the expected identity key; the session must not proceed")]
    PeerKeyMismatch,
    /// Authentication failed: the bytes were altered, reordered or forged.
    #[error("a channel message failed authentication (tampered with or out of order)")]
    Decrypt,
    /// A message over the limit (for received messages, `len` is how far it
    /// had got when refused).
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed channel data: {0}")]
    Malformed(String),
    #[error("channel I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the stream cleanly between messages.
    #[error("the peer closed the channel")]
    Closed,
    /// The stream ended inside a record or a multi-record message.
    #[error("the stream ended in the middle of a message")]
    Truncated,
    /// An earlier error already ended this channel.
    #[error("the channel already failed and cannot be used")]
    Failed,
}

pub type Result<T, E = ChannelError> = std::result::Result<T, E>;

/// What `signer` signs to bind its identity key to one handshake.
///
/// The handshake hash covers both sides' ephemeral and static Noise keys, so
/// the signature is worthless in any other handshake; the role byte stops a
/// signature being reflected back to the party that made it.
pub fn binding_payload(signer: Role, handshake_hash: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BINDING_DOMAIN.len() + handshake_hash.len() + 1);
    out.extend_from_slice(BINDING_DOMAIN);
    out.extend_from_slice(handshake_hash);
    out.push(signer as u8);
    out
}

/// The six-digit code both sides show, from the handshake hash. Six digits
/// make a one-in-a-million chance for a relay in the middle to get two
/// handshakes with matching codes, and are easy to read out.
pub fn verification_code(handshake_hash: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(VERIFY_DOMAIN)
        .chain_update(handshake_hash)
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 2^64 mod 10^6 is tiny next to 2^64, so the modulo bias is negligible.
    format!("{:06}", u64::from_be_bytes(first) % 1_000_000)
}

fn noise_error(e: snow::Error) -> ChannelError {
    match e {
        snow::Error::Decrypt => ChannelError::Decrypt,
        // snow's messages name the failing step, never key bytes.
        other => ChannelError::Handshake(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
