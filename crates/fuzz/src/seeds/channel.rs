//! Seeds of `channel_handshake` and `channel_record`: handshake frames and
//! scripts for the hostile viewer.

use assent_proto::session_msg::{InputEvent, Key, SessionMsg};

pub(super) fn channel_handshakes() -> Vec<(&'static str, Vec<u8>)> {
    let frame = |len: u16, fill: u8| {
        let mut v = len.to_be_bytes().to_vec();
        v.extend(std::iter::repeat_n(fill, usize::from(len)));
        v
    };
    vec![
        // An XX first message is a bare ephemeral key: 32 bytes.
        ("ephemeral-key", [vec![0], frame(32, 7)].concat()),
        ("second-message-size", [vec![1], frame(96, 9)].concat()),
        ("over-limit", [vec![0], frame(1025, 1)].concat()),
        ("max-length-prefix", vec![0, 0xff, 0xff, 1, 2, 3]),
        ("empty-frame", [vec![2], frame(0, 0), frame(32, 1)].concat()),
        ("payload-in-first", [vec![0], frame(40, 3)].concat()),
    ]
}

/// Instructions for the hostile viewer of the `channel_record` target.
mod op {
    pub fn record(flag: u8, chunk: &[u8]) -> Vec<u8> {
        let mut v = vec![0, flag, chunk.len() as u8];
        v.extend_from_slice(chunk);
        v
    }
    pub fn fill(flag: u8, len: u16, byte: u8) -> Vec<u8> {
        let [hi, lo] = len.to_be_bytes();
        vec![1, flag, hi, lo, byte]
    }
    pub const MORE: u8 = 0;
    pub const LAST: u8 = 130;
    pub const PROOF: u8 = 2;
    pub fn split_proof(at: u8) -> Vec<u8> {
        vec![3, at]
    }
    pub const WRONG_PROOF: u8 = 4;
    pub fn garbage(bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![5, bytes.len() as u8];
        v.extend_from_slice(bytes);
        v
    }
    pub const SKIP_NONCE: u8 = 6;
    pub fn deliver(read: u8) -> Vec<u8> {
        vec![7, read]
    }
}

pub(super) fn channel_records() -> Vec<(&'static str, Vec<u8>)> {
    use assent_channel::{FLAG_LAST, FLAG_MORE, MAX_CHUNK};
    let msg = |m: SessionMsg| m.encode().expect("small");
    let key_press = msg(SessionMsg::Input(InputEvent::Key {
        key: Key::Char('a'),
        pressed: true,
    }));
    let ack = msg(SessionMsg::FrameAck { seq: 3 });
    let max = MAX_CHUNK as u16;
    let mut big = vec![op::PROOF];
    for _ in 0..20 {
        big.extend(op::fill(op::MORE, max, 0x41));
    }
    big.extend(op::fill(op::LAST, 1000, 0x42));
    big.extend(op::record(FLAG_LAST, &ack));
    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.extend(op::fill(op::MORE, max, 0x43));
    }
    flood.push(op::PROOF);
    vec![
        (
            "proof-then-messages",
            [
                vec![op::PROOF],
                op::record(FLAG_LAST, &key_press),
                op::record(FLAG_MORE, &ack[..1]),
                op::record(FLAG_LAST, &ack[1..]),
                op::deliver(0),
                op::record(FLAG_LAST, &[]),
            ]
            .concat(),
        ),
        (
            "split-proof-small-reads",
            [
                op::deliver(0),
                op::split_proof(20),
                op::record(FLAG_LAST, &key_press),
            ]
            .concat(),
        ),
        ("big-message-after-proof", big),
        // Before its proof the viewer may not make the agent buffer more
        // than a signature.
        ("flood-before-proof", flood),
        (
            "message-before-proof",
            [op::record(FLAG_LAST, &key_press), vec![op::PROOF]].concat(),
        ),
        (
            "wrong-key",
            [vec![op::WRONG_PROOF], op::record(FLAG_LAST, &ack)].concat(),
        ),
        ("bad-flag", [vec![op::PROOF], op::record(7, &ack)].concat()),
        (
            "empty-continuation",
            [
                vec![op::PROOF],
                op::record(FLAG_MORE, &[]),
                op::record(FLAG_LAST, &ack),
            ]
            .concat(),
        ),
        (
            "garbage-after-proof",
            [
                vec![op::PROOF],
                op::garbage(&[0, 17, 1, 2, 3]),
                op::record(FLAG_LAST, &ack),
            ]
            .concat(),
        ),
        (
            "skipped-nonce",
            [vec![op::PROOF, op::SKIP_NONCE], op::record(FLAG_LAST, &ack)].concat(),
        ),
    ]
}
