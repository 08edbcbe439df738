//! Targets for `assent-channel`: the agent's side of the end-to-end channel
//! fed by a hostile viewer.
//!
//! Random ciphertext only ever tests "authentication fails", so the record
//! target plays a viewer that completes a genuine Noise handshake (it has
//! the keys) and then seals whatever records the input describes: bad
//! flags, empty continuations, oversized messages, messages before its
//! identity proof, the proof split or wrong, garbage, skipped nonces. The
//! agent's output is compared with a model of what it must accept.

use std::collections::VecDeque;

use assent_channel::{
    binding_payload, Handshake, Opener, FLAG_LAST, FLAG_MORE, MAX_CHUNK, MAX_SESSION_MSG,
    NOISE_PARAMS, PROLOGUE, SIGNATURE_LEN,
};
use assent_proto::identity::SecretKey;
use assent_proto::session_msg::SessionMsg;
use assent_proto::wire::Role;

use crate::alloc::Meter;
use crate::{outcome, Outcome};

fn technician() -> SecretKey {
    SecretKey::from_seed(&[0x11; 32])
}

fn device() -> SecretKey {
    SecretKey::from_seed(&[0x22; 32])
}

fn stranger() -> SecretKey {
    SecretKey::from_seed(&[0x33; 32])
}

/// Raw bytes into the Noise phase of both roles' handshakes. The first input
/// byte picks the read size; nothing the input says can complete a
/// handshake, and nothing it says may be buffered beyond one read plus one
/// handshake message.
pub fn channel_handshake(data: &[u8]) -> Outcome {
    let Some((&cut, stream)) = data.split_first() else {
        return outcome("empty");
    };
    let chunk = usize::from(cut).max(1) * 16;
    let tech = technician();
    let dev = device();
    let mut label = String::new();
    for role in [Role::Agent, Role::Viewer] {
        let mut hs = match role {
            Role::Agent => Handshake::responder(&dev, tech.public()),
            Role::Viewer => Handshake::initiator(&tech, dev.public()),
        }
        .expect("handshake starts");
        let _first = hs.take_outgoing();
        let meter = Meter::start();
        let mut result = Ok(());
        for piece in stream.chunks(chunk) {
            result = hs.push(piece);
            let _ = hs.take_outgoing();
            meter.check("channel_handshake", 2 * piece.len() + 64 * 1024);
            if result.is_err() {
                break;
            }
        }
        assert!(
            !hs.is_established(),
            "channel_handshake: established with a peer that has no key"
        );
        label.push_str(&match result {
            Ok(()) => "waiting ".to_string(),
            Err(e) => e.to_string(),
        });
    }
    outcome(&label)
}

/// The hostile viewer: a Noise initiator holding the session's transport
/// keys and the technician's signature over this handshake.
struct Peer {
    transport: snow::StatelessTransportState,
    nonce: u64,
    /// Its genuine identity proof, and one by a key the agent does not expect.
    signature: Vec<u8>,
    wrong_signature: Vec<u8>,
    /// The agent's own proof, once sent, must verify against the device key.
    hash: Vec<u8>,
}

fn frame16(msg: &[u8]) -> Vec<u8> {
    let mut out = (msg.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    out
}

impl Peer {
    /// Runs Noise XX against `agent` up to the viewer's last handshake
    /// message, which it returns (length-prefixed) for the caller to deliver
    /// as the start of the stream.
    fn connect(agent: &mut Handshake<'_>) -> (Peer, Vec<u8>) {
        let builder = snow::Builder::new(NOISE_PARAMS.parse().expect("params"));
        let keys = builder.generate_keypair().expect("keypair");
        let mut noise = builder
            .local_private_key(&keys.private)
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_initiator())
            .expect("initiator");
        let mut buf = [0u8; 1024];
        let n = noise.write_message(&[], &mut buf).expect("message 1");
        agent
            .push(&frame16(&buf[..n]))
            .expect("agent reads message 1");
        let reply = agent.take_outgoing();
        let mut payload = [0u8; 1024];
        noise
            .read_message(&reply[2..], &mut payload)
            .expect("message 2");
        let n = noise.write_message(&[], &mut buf).expect("message 3");
        let hash = noise.get_handshake_hash().to_vec();
        let transport = noise.into_stateless_transport_mode().expect("transport");
        let proof = binding_payload(Role::Viewer, &hash);
        let peer = Peer {
            transport,
            nonce: 0,
            signature: technician().sign(&proof),
            wrong_signature: stranger().sign(&proof),
            hash,
        };
        (peer, frame16(&buf[..n]))
    }

    /// One record with any flag byte and any chunk, correctly sealed.
    fn seal(&mut self, flag: u8, chunk: &[u8], out: &mut Vec<u8>) {
        let mut plain = Vec::with_capacity(1 + chunk.len());
        plain.push(flag);
        plain.extend_from_slice(chunk);
        let mut sealed = vec![0u8; plain.len() + 16];
        let n = self
            .transport
            .write_message(self.nonce, &plain, &mut sealed)
            .expect("seal");
        self.nonce += 1;
        out.extend_from_slice(&frame16(&sealed[..n]));
    }

    /// The agent's proof of its device key, sealed by it with nonce 0.
    fn check_agent_proof(&self, wire: &[u8]) {
        let mut plain = vec![0u8; wire.len()];
        let n = self
            .transport
            .read_message(0, &wire[2..], &mut plain)
            .expect("the agent's proof opens");
        assert_eq!(plain[0], FLAG_LAST);
        device()
            .public()
            .verify(&binding_payload(Role::Agent, &self.hash), &plain[1..n])
            .expect("the agent proves the device key");
    }
}

/// What the agent must do with the records, as far as it is predictable.
#[derive(Debug)]
enum Model {
    /// Assembling the viewer's identity proof (at most a signature long).
    Proof(Vec<u8>),
    /// Proven; assembling a session message.
    Live(Vec<u8>),
    /// The agent must have failed (or be waiting on bytes it cannot use).
    Dead,
}

/// Stops generating records past this much plaintext per input: enough
/// for several maximal records, little enough for thousands of runs.
const MAX_GENERATED: usize = 2 * 1024 * 1024;

/// Memory the agent may use before the viewer has proven its key, whatever
/// the viewer sends: a read, one record, and the proof.
const UNPROVEN_BUDGET: usize = 1024 * 1024;

struct Run<'k> {
    agent: Option<Handshake<'k>>,
    receiver: Option<Opener>,
    failed: bool,
    /// The agent's first error, for the outcome label.
    error: String,
    /// Messages the model says the agent must deliver next, in order.
    expected: VecDeque<Vec<u8>>,
    /// The model saw the genuine proof complete before anything went wrong.
    proven: bool,
    /// Messages the agent delivered.
    delivered: usize,
    /// Longest message assembled so far (for the memory budget).
    largest_message: usize,
}

/// Reads the input front to back; past the end every read is empty.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n.min(self.0.len()));
        self.0 = tail;
        head
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).first().copied()
    }
}

pub fn channel_record(data: &[u8]) -> Outcome {
    let dev = device();
    let mut agent = Handshake::responder(&dev, technician().public()).expect("responder");
    let (mut peer, mut wire) = Peer::connect(&mut agent);
    let mut run = Run {
        agent: Some(agent),
        receiver: None,
        failed: false,
        error: String::new(),
        expected: VecDeque::new(),
        proven: false,
        delivered: 0,
        largest_message: 0,
    };
    let mut model = Model::Proof(Vec::new());
    let meter = Meter::start();
    let mut generated = 0usize;
    let mut input = Input(data);
    let mut read_size = 4096;

    while let Some(op) = input.byte() {
        if generated > MAX_GENERATED {
            break;
        }
        let records = match step(op, &mut input, &mut peer, &mut wire, &mut model) {
            Step::Records(records) => records,
            Step::Deliver(size) => {
                read_size = size;
                deliver(&mut run, &mut peer, &mut wire, read_size, &meter);
                continue;
            }
        };
        for (flag, chunk) in records {
            generated += chunk.len();
            peer.seal(flag, &chunk, &mut wire);
            model_record(&mut model, &mut run, &peer, flag, chunk);
            if wire.len() >= 64 * 1024 {
                deliver(&mut run, &mut peer, &mut wire, read_size, &meter);
            }
        }
    }
    deliver(&mut run, &mut peer, &mut wire, read_size, &meter);
    check_end(&run, &model)
}

/// What one instruction of the input has the hostile viewer do next.
enum Step {
    /// Seal these records (flag, chunk).
    Records(Vec<(u8, Vec<u8>)>),
    /// Deliver what is pending, in reads of this size.
    Deliver(usize),
}

/// Decodes one instruction; garbage and skipped nonces are applied here.
fn step(
    op: u8,
    input: &mut Input<'_>,
    peer: &mut Peer,
    wire: &mut Vec<u8>,
    model: &mut Model,
) -> Step {
    let mut records: Vec<(u8, Vec<u8>)> = Vec::new();
    match op % 8 {
        // A record with an arbitrary flag and a chunk from the input.
        0 => {
            let flag = input.byte().unwrap_or(FLAG_LAST);
            let n = usize::from(input.byte().unwrap_or(0));
            records.push((flag, input.take(n).to_vec()));
        }
        // A record of up to the largest chunk, filled with one byte.
        1 => {
            let flag = match input.byte().unwrap_or(0) {
                f if f < 120 => FLAG_MORE,
                f if f < 240 => FLAG_LAST,
                f => f,
            };
            let len = input
                .take(2)
                .iter()
                .fold(0usize, |a, &b| a << 8 | usize::from(b));
            let fill = input.byte().unwrap_or(0);
            records.push((flag, vec![fill; len % (MAX_CHUNK + 1)]));
        }
        // The genuine proof, whole or split into two records.
        2 => records.push((FLAG_LAST, peer.signature.clone())),
        3 => {
            let at = 1 + usize::from(input.byte().unwrap_or(0)) % (SIGNATURE_LEN - 1);
            records.push((FLAG_MORE, peer.signature[..at].to_vec()));
            records.push((FLAG_LAST, peer.signature[at..].to_vec()));
        }
        // A proof by a key the agent was not told to expect.
        4 => records.push((FLAG_LAST, peer.wrong_signature.clone())),
        // Unsealed garbage: from here on nothing may be accepted.
        5 => {
            let n = usize::from(input.byte().unwrap_or(0));
            let garbage = input.take(n);
            if !garbage.is_empty() {
                wire.extend_from_slice(garbage);
                *model = Model::Dead;
            }
        }
        // A record sealed out of order (a nonce skipped).
        6 => {
            peer.nonce += 1;
            *model = Model::Dead;
        }
        _ => return Step::Deliver(1 + usize::from(input.byte().unwrap_or(0)) * 257),
    }
    Step::Records(records)
}

/// The checks once everything is delivered, and the run's outcome.
fn check_end(run: &Run<'_>, model: &Model) -> Outcome {
    assert!(
        run.expected.is_empty(),
        "channel_record: the agent did not deliver {} message(s) it should have",
        run.expected.len()
    );
    if !matches!(model, Model::Dead) {
        assert!(
            !run.failed,
            "channel_record: the agent failed on a valid stream"
        );
    }
    let proven = run.receiver.is_some();
    let delivered = run.delivered;
    assert_eq!(
        proven, run.proven,
        "channel_record: whether the viewer proved its key differs from the model"
    );
    // In words: `outcome` ignores digits.
    let count = ["no", "one", "two", "many"][delivered.min(3)];
    outcome(&format!("proven {proven}, {count} messages, {}", run.error))
}

/// Advances the model by one sealed record.
fn model_record(model: &mut Model, run: &mut Run<'_>, peer: &Peer, flag: u8, chunk: Vec<u8>) {
    let (assembled, max) = match model {
        Model::Proof(a) => (a, SIGNATURE_LEN),
        Model::Live(a) => (a, MAX_SESSION_MSG),
        Model::Dead => return,
    };
    let bad_flag = flag != FLAG_LAST && flag != FLAG_MORE;
    let empty_more = flag == FLAG_MORE && chunk.is_empty();
    if bad_flag || empty_more || assembled.len() + chunk.len() > max {
        *model = Model::Dead;
        return;
    }
    assembled.extend_from_slice(&chunk);
    run.largest_message = run.largest_message.max(assembled.len());
    if flag != FLAG_LAST {
        return;
    }
    let message = std::mem::take(assembled);
    match model {
        Model::Proof(_) if message == peer.signature => {
            run.proven = true;
            *model = Model::Live(Vec::new())
        }
        Model::Proof(_) => *model = Model::Dead,
        Model::Live(_) => run.expected.push_back(message),
        Model::Dead => {}
    }
}

/// Pushes the pending wire bytes to the agent and checks what comes out.
fn deliver(
    run: &mut Run<'_>,
    peer: &mut Peer,
    wire: &mut Vec<u8>,
    read_size: usize,
    meter: &Meter,
) {
    let pending = std::mem::take(wire);
    for piece in pending.chunks(read_size) {
        if run.failed {
            return;
        }
        if let Some(agent) = run.agent.as_mut() {
            if let Err(e) = agent.push(piece) {
                run.failed = true;
                run.error = e.to_string();
                return;
            }
            meter.check(
                "channel_record before the viewer proved its key",
                UNPROVEN_BUDGET,
            );
            if !agent.is_established() {
                continue;
            }
            let proof = agent.take_outgoing();
            peer.check_agent_proof(&proof);
            let agent = run.agent.take().expect("present");
            run.receiver = Some(agent.into_established().expect("established").receiver);
        } else if let Some(receiver) = run.receiver.as_mut() {
            receiver.push(piece);
        }
        let Some(receiver) = run.receiver.as_mut() else {
            continue;
        };
        loop {
            match receiver.next_message() {
                Ok(Some(message)) => {
                    let want = run.expected.pop_front();
                    assert!(
                        want.as_ref() == Some(&message),
                        "channel_record: the agent delivered a message the viewer did not send \
                         ({} bytes)",
                        message.len()
                    );
                    run.delivered += 1;
                    let _ = SessionMsg::decode(&message);
                }
                Ok(None) => break,
                Err(e) => {
                    run.failed = true;
                    run.error = e.to_string();
                    break;
                }
            }
        }
        // Per message byte: the agent's buffer while it doubles (old and
        // new, 3x), the model's copy and the expected queue.
        meter.check(
            "channel_record",
            UNPROVEN_BUDGET + 6 * run.largest_message + 2 * read_size,
        );
    }
}
