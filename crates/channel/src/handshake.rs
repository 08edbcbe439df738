//! The sans-I/O handshake: Noise XX, then one signed identity message each
//! way, ending in an [`Established`] channel.

use std::fmt;
use std::sync::Arc;

use assent_proto::identity::{PublicKey, SecretKey};
use assent_proto::wire::Role;
use zeroize::Zeroizing;

use crate::record::{Opener, Sealer};
use crate::{
    binding_payload, noise_error, verification_code, ChannelError, Result, ResumeSecret,
    LEN_PREFIX, MAX_NOISE_MSG, MAX_SESSION_MSG, NOISE_PARAMS, PROLOGUE, RESUME_PROLOGUE,
    SIGNATURE_LEN,
};

/// Largest handshake message accepted. XX with empty payloads needs at most
/// 96 bytes; anything much bigger is not from a peer speaking this protocol.
const MAX_HANDSHAKE_FRAME: usize = 1024;

/// A finished, authenticated channel.
#[derive(Debug)]
pub struct Established {
    /// Seals messages for the peer.
    pub sender: Sealer,
    /// Opens messages from the peer. It already holds any bytes that arrived
    /// behind the handshake.
    pub receiver: Opener,
    /// Six digits both sides derive from this handshake.
    pub verification_code: String,
    /// The peer's identity key, proven by its signature on this handshake.
    pub peer: PublicKey,
    /// What a later channel of the same session is bound to
    /// ([`Handshake::resuming`]).
    pub resume: ResumeSecret,
}

enum State {
    Noise(Box<snow::HandshakeState>),
    /// Noise is done; waiting for the peer's identity signature.
    AwaitSignature {
        sender: Sealer,
        receiver: Opener,
        hash: Vec<u8>,
        resume: ResumeSecret,
    },
    Done(Box<Established>),
    Failed,
}

/// One side of the handshake. Feed it what arrives with [`Handshake::push`],
/// send what [`Handshake::take_outgoing`] returns, and once
/// [`Handshake::is_established`] take the result with
/// [`Handshake::into_established`].
///
/// The bytes form a stream (length-prefixed messages), so any chunking on
/// either side works.
pub struct Handshake<'k> {
    key: &'k SecretKey,
    role: Role,
    expected_peer: PublicKey,
    state: State,
    /// Received bytes the Noise phase has not consumed.
    inbox: Vec<u8>,
    outbox: Vec<u8>,
}

impl fmt::Debug for Handshake<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.state {
            State::Noise(_) => "noise",
            State::AwaitSignature { .. } => "awaiting peer signature",
            State::Done(_) => "established",
            State::Failed => "failed",
        };
        f.debug_struct("Handshake")
            .field("role", &self.role)
            .field("expected_peer", &self.expected_peer)
            .field("phase", &phase)
            .finish_non_exhaustive()
    }
}

impl<'k> Handshake<'k> {
    /// The viewer's side. Its first message is ready in
    /// [`Handshake::take_outgoing`] at once.
    pub fn initiator(my_key: &'k SecretKey, expected_peer: PublicKey) -> Result<Handshake<'k>> {
        Handshake::new(Role::Viewer, my_key, expected_peer, PROLOGUE.to_vec())
    }

    /// The agent's side.
    pub fn responder(my_key: &'k SecretKey, expected_peer: PublicKey) -> Result<Handshake<'k>> {
        Handshake::new(Role::Agent, my_key, expected_peer, PROLOGUE.to_vec())
    }

    /// A new channel for the same session after one side came back on a
    /// new connection (the old channel's records in flight are lost, so it
    /// cannot simply go on). The same identity binding as the first time,
    /// and the old channel's secret in the prologue: only the two parties
    /// of that channel can complete it, never the relay, whoever's keys it
    /// holds.
    pub fn resuming(
        role: Role,
        my_key: &'k SecretKey,
        expected_peer: PublicKey,
        previous: &ResumeSecret,
    ) -> Result<Handshake<'k>> {
        let mut prologue = RESUME_PROLOGUE.to_vec();
        prologue.extend_from_slice(previous.bytes());
        Handshake::new(role, my_key, expected_peer, prologue)
    }

    fn new(
        role: Role,
        key: &'k SecretKey,
        expected_peer: PublicKey,
        prologue: Vec<u8>,
    ) -> Result<Handshake<'k>> {
        let prologue = Zeroizing::new(prologue);
        let params = NOISE_PARAMS
            .parse()
            .map_err(|e: snow::Error| ChannelError::Handshake(e.to_string()))?;
        let builder = snow::Builder::new(params);
        // A fresh Noise static key per session: identity comes from the
        // ed25519 signature, so there is nothing to gain from keeping it.
        let keypair = builder.generate_keypair().map_err(noise_error)?;
        let private = Zeroizing::new(keypair.private);
        let builder = builder
            .local_private_key(&private)
            .and_then(|b| b.prologue(&prologue))
            .map_err(noise_error)?;
        let noise = match role {
            Role::Viewer => builder.build_initiator(),
            Role::Agent => builder.build_responder(),
        }
        .map_err(noise_error)?;
        let mut hs = Handshake {
            key,
            role,
            expected_peer,
            state: State::Noise(Box::new(noise)),
            inbox: Vec::new(),
            outbox: Vec::new(),
        };
        hs.advance()?;
        Ok(hs)
    }

    /// Feeds bytes received from the peer. After the handshake is
    /// established, further bytes go to the [`Established::receiver`].
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        match &mut self.state {
            State::Failed => return Err(ChannelError::Failed),
            State::Noise(_) => self.inbox.extend_from_slice(bytes),
            State::AwaitSignature { receiver, .. } => receiver.push(bytes),
            State::Done(established) => {
                established.receiver.push(bytes);
                return Ok(());
            }
        }
        self.advance()
    }

    /// Bytes to send to the peer now (empty when there are none). Send them
    /// before waiting for more input.
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outbox)
    }

    /// True once the peer's identity is proven. Outgoing bytes may still be
    /// pending (the agent's signature).
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    /// The established channel. Fails if the handshake is not finished or
    /// its last outgoing bytes were not taken (the peer would wait forever).
    pub fn into_established(self) -> Result<Established> {
        match self.state {
            State::Done(_) if !self.outbox.is_empty() => Err(ChannelError::Handshake(
                "outgoing handshake bytes were not sent".into(),
            )),
            State::Done(established) => Ok(*established),
            State::Failed => Err(ChannelError::Failed),
            _ => Err(ChannelError::Handshake("handshake not finished".into())),
        }
    }

    /// Runs the state machine as far as the input allows; any error is final.
    fn advance(&mut self) -> Result<()> {
        let result = self.advance_inner();
        if result.is_err() {
            self.state = State::Failed;
            self.inbox = Vec::new();
            self.outbox = Vec::new();
        }
        result
    }

    fn advance_inner(&mut self) -> Result<()> {
        loop {
            match &mut self.state {
                State::Noise(noise) if noise.is_handshake_finished() => {
                    self.finish_noise()?;
                }
                State::Noise(noise) if noise.is_my_turn() => {
                    let mut buf = [0u8; MAX_HANDSHAKE_FRAME];
                    let n = noise.write_message(&[], &mut buf).map_err(noise_error)?;
                    push_frame(&mut self.outbox, &buf[..n]);
                }
                State::Noise(noise) => {
                    let Some(frame) = take_frame(&self.inbox)? else {
                        return Ok(());
                    };
                    let mut payload = [0u8; MAX_HANDSHAKE_FRAME];
                    let n = noise
                        .read_message(frame, &mut payload)
                        .map_err(noise_error)?;
                    if n != 0 {
                        // Identity travels after the handshake, signed;
                        // unauthenticated early payloads are not accepted.
                        return Err(ChannelError::Malformed(
                            "unexpected handshake payload".into(),
                        ));
                    }
                    let used = LEN_PREFIX + frame.len();
                    self.inbox.drain(..used);
                }
                State::AwaitSignature {
                    sender,
                    receiver,
                    hash,
                    ..
                } => {
                    let Some(signature) = receiver.next_message()? else {
                        return Ok(());
                    };
                    let peer_role = match self.role {
                        Role::Viewer => Role::Agent,
                        Role::Agent => Role::Viewer,
                    };
                    self.expected_peer
                        .verify(&binding_payload(peer_role, hash), &signature)
                        .map_err(|_| ChannelError::PeerKeyMismatch)?;
                    // The agent proves its identity only to a viewer that
                    // has proven its own (see `finish_noise`).
                    if self.role == Role::Agent {
                        let own = self.key.sign(&binding_payload(self.role, hash));
                        let bytes = sender.seal(&own)?;
                        self.outbox.extend_from_slice(&bytes);
                    }
                    receiver.set_max_message(MAX_SESSION_MSG);
                    let code = verification_code(hash);
                    let State::AwaitSignature {
                        sender,
                        receiver,
                        resume,
                        ..
                    } = std::mem::replace(&mut self.state, State::Failed)
                    else {
                        unreachable!("matched above")
                    };
                    self.state = State::Done(Box::new(Established {
                        sender,
                        receiver,
                        verification_code: code,
                        peer: self.expected_peer,
                        resume,
                    }));
                    return Ok(());
                }
                State::Done(_) | State::Failed => return Ok(()),
            }
        }
    }

    /// Noise is complete: switch to transport keys and, as the viewer, send
    /// the identity signature straight away (it rides with the last
    /// handshake message, costing no round trip).
    fn finish_noise(&mut self) -> Result<()> {
        let State::Noise(noise) = std::mem::replace(&mut self.state, State::Failed) else {
            unreachable!("only called in the Noise state")
        };
        let hash = noise.get_handshake_hash().to_vec();
        let transport = Arc::new(noise.into_stateless_transport_mode().map_err(noise_error)?);
        let mut sender = Sealer::new(transport.clone());
        // Until the signature is in, the only acceptable message is one
        // signature: nothing larger is buffered from an unproven peer.
        let mut receiver = Opener::new(transport, SIGNATURE_LEN);
        receiver.push(&std::mem::take(&mut self.inbox));
        if self.role == Role::Viewer {
            let own = self.key.sign(&binding_payload(self.role, &hash));
            let bytes = sender.seal(&own)?;
            self.outbox.extend_from_slice(&bytes);
        }
        self.state = State::AwaitSignature {
            sender,
            receiver,
            resume: ResumeSecret::from_hash(&hash),
            hash,
        };
        Ok(())
    }
}

/// Appends a length-prefixed handshake message.
pub(crate) fn push_frame(out: &mut Vec<u8>, message: &[u8]) {
    debug_assert!(message.len() <= MAX_NOISE_MSG);
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message);
}

/// The first complete handshake message in `buf`, if there is one.
pub(crate) fn take_frame(buf: &[u8]) -> Result<Option<&[u8]>> {
    if buf.len() < LEN_PREFIX {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
    if len > MAX_HANDSHAKE_FRAME {
        return Err(ChannelError::Malformed(format!(
            "handshake message of {len} bytes"
        )));
    }
    Ok(buf.get(LEN_PREFIX..LEN_PREFIX + len))
}
