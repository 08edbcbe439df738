//! The seed corpus, as code: valid encodings of every message each target
//! reads, plus hand-made hostile cases (1 GiB length prefixes, zstd bombs,
//! deep nesting, oversized fields, truncations). Everything here is
//! deterministic, so `corpus/` can be checked against it; regenerate with
//! `ASSENT_FUZZ_WRITE_CORPUS=1 cargo test -p assent-fuzz --test fuzz corpus`.

use assent_audit::canonical_json;
use assent_codec::{Encoder, FrameRef};
use assent_proto::framing::{encode_frame, MAX_CONTROL_FRAME};
use assent_proto::identity::SecretKey;
use assent_proto::session_msg::{Control, InputEvent, Key, MouseButton, SessionMsg};
use assent_proto::wire::{
    self, ClientMsg, ConsentDecision, EndReason, ErrorKind, Impact, InviteRequest, RelayMsg, Role,
    Scope, SessionOffer,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::codec::join_updates;

/// One seed: a file name and its bytes.
pub type Seed = (String, Vec<u8>);

/// The seeds of `target` (empty for an unknown name).
pub fn seeds(target: &str) -> Vec<Seed> {
    let list: Vec<(&str, Vec<u8>)> = match target {
        "framing" => framing(),
        "wire_client_msg" => client_msgs(),
        "wire_relay_msg" => relay_msgs(),
        "session_offer" => vec![
            ("offer", offer().to_bytes()),
            (
                "offer-trailing-byte",
                [offer().to_bytes(), vec![0]].concat(),
            ),
            ("offer-truncated", offer().to_bytes()[..40].to_vec()),
        ],
        "session_msg" => session_msgs(),
        "identity_text" => identity_texts(),
        "codec_frame" => codec_frames(),
        "channel_handshake" => channel_handshakes(),
        "channel_record" => channel_records(),
        "audit_verify" => audit_logs(),
        "relay_config" => relay_configs(),
        "relay_technicians" => technician_files(),
        "admin_request" => admin_requests(),
        _ => Vec::new(),
    };
    list.into_iter().map(|(n, b)| (n.to_string(), b)).collect()
}

/// A postcard length (LEB128) claiming `n` elements.
fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

const GIB: u32 = 1 << 30;

fn framing() -> Vec<(&'static str, Vec<u8>)> {
    let mut stream = Vec::new();
    for msg in client_msgs().into_iter().take(6) {
        stream.extend(encode_frame(&msg.1, MAX_CONTROL_FRAME).expect("small"));
    }
    let largest = encode_frame(&vec![0; MAX_CONTROL_FRAME], MAX_CONTROL_FRAME).expect("at limit");
    let prefix = |len: u32| len.to_be_bytes().to_vec();
    vec![
        ("messages-at-once", [vec![0], stream.clone()].concat()),
        (
            "messages-in-small-reads",
            [vec![1], stream.clone()].concat(),
        ),
        (
            "messages-truncated",
            [vec![3], stream[..stream.len() - 3].to_vec()].concat(),
        ),
        ("one-gib-prefix", [vec![0], prefix(GIB)].concat()),
        // The prefix arrives in one read and is followed by far more than one
        // frame of body: none of it may be buffered.
        (
            "one-gib-prefix-with-body",
            [vec![7], prefix(GIB), vec![0xaa; 150_000]].concat(),
        ),
        (
            "max-prefix-split",
            [vec![1], vec![0xff], vec![0xff, 0xff, 0xff]].concat(),
        ),
        (
            "frame-at-limit-then-one-over",
            [
                vec![200],
                largest,
                prefix(MAX_CONTROL_FRAME as u32 + 1),
                vec![0; 16],
            ]
            .concat(),
        ),
        (
            "valid-then-one-gib",
            [vec![0], stream, prefix(GIB), vec![1, 2, 3]].concat(),
        ),
    ]
}

fn key(seed: u8) -> [u8; 32] {
    SecretKey::from_seed(&[seed; 32]).public().0
}

fn request() -> InviteRequest {
    InviteRequest {
        ticket: "T-1042".into(),
        client: "Müller & Söhne GmbH".into(),
        summary: "Outlook crashes on start".into(),
        impact: Impact::High,
        scope: Scope::Control,
    }
}

fn offer() -> SessionOffer {
    SessionOffer {
        session: "5f2a9c0e1b3d4a67".into(),
        technician: "alice".into(),
        technician_key: key(1),
        ticket: "T-1042".into(),
        client: "Acme Ltd".into(),
        summary: "printer offline".into(),
        impact: Impact::Normal,
        scope: Scope::View,
        device: "reception-pc".into(),
        device_key: key(2),
        consent_timeout_secs: 90,
    }
}

fn encode<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    wire::encode(msg).expect("seed messages are small")
}

fn client_msgs() -> Vec<(&'static str, Vec<u8>)> {
    let sig = SecretKey::from_seed(&[1; 32]).sign(b"seed");
    let note: Vec<(String, String)> = [
        ("ticket", "T-1042"),
        ("outcome", "resolved"),
        ("notes", "line one\nline two"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut out = vec![
        (
            "hello",
            encode(&ClientMsg::Hello {
                version: 1,
                role: Role::Viewer,
            }),
        ),
        (
            "viewer-auth",
            encode(&ClientMsg::ViewerAuth {
                public_key: key(1),
                signature: sig.clone(),
            }),
        ),
        ("create-invite", encode(&ClientMsg::CreateInvite(request()))),
        (
            "agent-join",
            encode(&ClientMsg::AgentJoin {
                code: "123456789012345".into(),
                device: "reception-pc".into(),
                device_key: key(2),
                signature: sig.clone(),
            }),
        ),
        (
            "consent",
            encode(&ClientMsg::Consent {
                decision: ConsentDecision::Control,
                receipt: sig,
            }),
        ),
        ("handshake", encode(&ClientMsg::Handshake(vec![7; 96]))),
        (
            "session-note",
            encode(&ClientMsg::SessionNote { fields: note }),
        ),
        ("end", encode(&ClientMsg::End)),
        (
            "scope-change",
            encode(&ClientMsg::ScopeChange {
                scope: Scope::Control,
                change: 1,
                receipt: vec![9; 64],
            }),
        ),
    ];
    // Hostile: a signature claiming 1 GiB with nothing behind it; a note
    // claiming 2^32 fields; a string length past the end; trailing bytes.
    out.push(("viewer-auth-1gib-signature", {
        let mut b = vec![1];
        b.extend_from_slice(&key(1));
        b.extend(varint(u64::from(GIB)));
        b
    }));
    out.push(("note-4g-fields", [vec![6], varint(1 << 32)].concat()));
    out.push((
        "note-max-fields",
        [vec![6], varint(20_000), vec![0; 40_000]].concat(),
    ));
    out.push((
        "string-past-end",
        [vec![3], varint(5000), b"T-1".to_vec()].concat(),
    ));
    out.push(("end-trailing", vec![7, 0]));
    out.push(("bad-variant", vec![200]));
    out.push(("overlong-varint", [vec![5], vec![0xff; 12]].concat()));
    out
}

fn relay_msgs() -> Vec<(&'static str, Vec<u8>)> {
    let sig = SecretKey::from_seed(&[1; 32]).sign(b"seed");
    vec![
        (
            "challenge",
            encode(&RelayMsg::Challenge {
                nonce: [9; 32],
                relay_key: key(3),
            }),
        ),
        (
            "authenticated",
            encode(&RelayMsg::Authenticated {
                technician: "alice".into(),
            }),
        ),
        (
            "invite-created",
            encode(&RelayMsg::InviteCreated {
                invite: "inv-1".into(),
                code: "123-456-789-012-345".into(),
                expires_in_secs: 600,
            }),
        ),
        (
            "agent-joined",
            encode(&RelayMsg::AgentJoined {
                session: "s1".into(),
                device: "pc".into(),
                device_key: key(2),
            }),
        ),
        (
            "consent-request",
            encode(&RelayMsg::ConsentRequest {
                offer: offer().to_bytes(),
                relay_signature: sig,
            }),
        ),
        ("handshake", encode(&RelayMsg::Handshake(vec![3; 64]))),
        (
            "consent-result",
            encode(&RelayMsg::ConsentResult {
                decision: ConsentDecision::Denied,
            }),
        ),
        (
            "session-started",
            encode(&RelayMsg::SessionStarted {
                session: "s1".into(),
                scope: Scope::View,
            }),
        ),
        (
            "session-ended",
            encode(&RelayMsg::SessionEnded {
                reason: EndReason::TechnicianRevoked,
            }),
        ),
        (
            "error",
            encode(&RelayMsg::Error {
                kind: ErrorKind::Throttled,
                message: "slow down".into(),
            }),
        ),
        (
            "consent-request-1gib-offer",
            [vec![4], varint(u64::from(GIB))].concat(),
        ),
    ]
}

fn session_msgs() -> Vec<(&'static str, Vec<u8>)> {
    let enc = |m: SessionMsg| m.encode().expect("small");
    vec![
        ("frame", enc(SessionMsg::Frame(vec![1; 300]))),
        ("cursor", enc(SessionMsg::Cursor { x: 1919, y: 1079 })),
        (
            "mouse-move",
            enc(SessionMsg::Input(InputEvent::MouseMove { x: 10, y: 20 })),
        ),
        (
            "mouse-button",
            enc(SessionMsg::Input(InputEvent::MouseButton {
                button: MouseButton::Right,
                pressed: true,
            })),
        ),
        (
            "wheel",
            enc(SessionMsg::Input(InputEvent::Wheel { dx: -3, dy: 100 })),
        ),
        (
            "key-char",
            enc(SessionMsg::Input(InputEvent::Key {
                key: Key::Char('é'),
                pressed: true,
            })),
        ),
        (
            "key-f24",
            enc(SessionMsg::Input(InputEvent::Key {
                key: Key::F(24),
                pressed: false,
            })),
        ),
        (
            "text-at-limit",
            enc(SessionMsg::Input(InputEvent::Text("ü".repeat(1024)))),
        ),
        (
            "text-over-limit",
            enc(SessionMsg::Input(InputEvent::Text("x".repeat(1025)))),
        ),
        (
            "key-f99",
            enc(SessionMsg::Input(InputEvent::Key {
                key: Key::F(99),
                pressed: true,
            })),
        ),
        ("paused", enc(SessionMsg::Control(Control::Paused))),
        (
            "scope-request",
            enc(SessionMsg::Control(Control::ScopeRequest(Scope::Control))),
        ),
        (
            "keyframe-request",
            enc(SessionMsg::Control(Control::KeyframeRequest)),
        ),
        ("frame-ack", enc(SessionMsg::FrameAck { seq: u64::MAX })),
        (
            "frame-claims-1gib",
            [vec![0], varint(u64::from(GIB))].concat(),
        ),
        (
            "frame-trailing",
            [enc(SessionMsg::FrameAck { seq: 1 }), vec![0]].concat(),
        ),
    ]
}

fn identity_texts() -> Vec<(&'static str, Vec<u8>)> {
    let secret = SecretKey::from_seed(&[5; 32]);
    let line = secret.public().to_line();
    vec![
        (
            "public-key-line",
            format!("{line} alice@laptop").into_bytes(),
        ),
        ("public-key-bare", line.clone().into_bytes()),
        (
            "public-key-short",
            line.as_bytes()[..line.len() - 4].to_vec(),
        ),
        (
            "secret-key-file",
            secret.to_file_contents().as_bytes().to_vec(),
        ),
        ("invite-code", b"123-456-789-012-345".to_vec()),
        ("invite-code-spaced", b" 123 456 789 012 345\n".to_vec()),
        ("ticket", "T-1042 Müller".as_bytes().to_vec()),
        ("escape", b"pc\x1b[2J\x1b]0;owned\x07".to_vec()),
        ("bidi", "invoice\u{202E}fdp.exe".as_bytes().to_vec()),
        ("note", b"line one\nline two\r\n".to_vec()),
        ("long", vec![b'x'; 5000]),
    ]
}

/// Packed BGRX pixels: a gradient with a moving square, like a desktop.
fn screen(width: u32, height: u32, step: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity((width * height * 4) as usize);
    for y in 0..height {
        for x in 0..width {
            let inside = x.abs_diff(step * 9) < 12 && y.abs_diff(step * 5) < 12;
            let v = if inside { 250 } else { (x * 3 + y * 5) as u8 };
            out.extend_from_slice(&[v, (x as u8) ^ (y as u8), (y * 2) as u8, 0]);
        }
    }
    out
}

/// A keyframe and `deltas` updates of a `width` x `height` screen.
fn encoded_stream(width: u32, height: u32, deltas: u32) -> Vec<Vec<u8>> {
    let mut encoder = Encoder::new();
    let mut out = Vec::new();
    for step in 0..=deltas {
        let pixels = screen(width, height, step);
        let frame = FrameRef::new(&pixels, width, height, width as usize * 4).expect("valid");
        if let Some(update) = encoder.encode(frame, false).expect("encodes") {
            out.push(update.bytes);
        }
    }
    out
}

/// An update header (see the codec's wire format).
fn header(keyframe: bool, width: u32, height: u32, seq: u64) -> Vec<u8> {
    let mut out = vec![1, u8::from(keyframe)];
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out
}

/// A zstd frame (RFC 8878) that decompresses to `blocks` x 128 KiB of one
/// byte, from 4 bytes per block: 128 KiB RLE blocks. With `declared`, the
/// frame header states the size; otherwise the decoder only finds out by
/// decompressing. 8192 blocks make a 32 KiB input worth 1 GiB.
pub fn zstd_bomb(blocks: u32, declared: bool) -> Vec<u8> {
    const BLOCK: u32 = 128 * 1024;
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd];
    if declared {
        // Frame_Header_Descriptor: 8-byte content size, window descriptor.
        out.push(0b1100_0000);
        out.push(7 << 3); // window 2^17 = one block
        out.extend_from_slice(&(u64::from(blocks) * u64::from(BLOCK)).to_le_bytes());
    } else {
        out.push(0);
        out.push(7 << 3);
    }
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        let rle_block = 1 << 1;
        let header = last | rle_block | BLOCK << 3;
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.push(0x5a);
    }
    out
}

fn codec_frames() -> Vec<(&'static str, Vec<u8>)> {
    let desktop = encoded_stream(150, 90, 4);
    let edges = encoded_stream(130, 65, 2);
    let single = encoded_stream(64, 64, 0);
    let refs = |v: &[Vec<u8>]| join_updates(v.iter().map(Vec::as_slice));
    // A delta whose tile count claims 2^63 tiles, after a valid keyframe.
    let huge_count = [
        header(false, 150, 90, 1),
        vec![0xff; 8],
        vec![0x7f],
        vec![0; 8],
    ]
    .concat();
    vec![
        ("desktop-keyframe-and-deltas", refs(&desktop)),
        ("edge-tiles", refs(&edges)),
        ("single-tile", refs(&single)),
        (
            "deltas-out-of-order",
            join_updates([&desktop[0][..], &desktop[2], &desktop[1]]),
        ),
        ("delta-without-keyframe", refs(&desktop[1..])),
        (
            "bomb-1gib-in-64x64",
            join_updates([&[header(true, 64, 64, 0), zstd_bomb(8192, false)].concat()[..]]),
        ),
        (
            "bomb-1gib-declared",
            join_updates([&[header(true, 64, 64, 0), zstd_bomb(8192, true)].concat()[..]]),
        ),
        (
            "bomb-16mib-delta",
            join_updates([
                &desktop[0][..],
                &[header(false, 150, 90, 1), vec![1, 0], zstd_bomb(128, false)].concat(),
            ]),
        ),
        (
            "max-size-tiny-payload",
            join_updates([&[header(true, 8192, 8192, 0), vec![0; 12]].concat()[..]]),
        ),
        (
            "tile-count-2-63",
            join_updates([&desktop[0][..], &huge_count]),
        ),
        ("truncated-header", desktop[0][..10].to_vec()),
    ]
}

fn channel_handshakes() -> Vec<(&'static str, Vec<u8>)> {
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

fn channel_records() -> Vec<(&'static str, Vec<u8>)> {
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

/// An audit line written the way the format's docs describe it, computed
/// here independently of the crate's writer.
fn audit_line(seq: u64, prev: &str, event: &str, fields: Value) -> (String, String) {
    let mut obj = fields.as_object().cloned().unwrap_or_default();
    obj.insert("seq".into(), json!(seq));
    obj.insert("time".into(), json!("2026-11-23T14:00:00.123Z"));
    obj.insert("event".into(), json!(event));
    obj.insert("prev".into(), json!(prev));
    let hash: String = Sha256::digest(canonical_json(&Value::Object(obj.clone())).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    obj.insert("hash".into(), json!(hash));
    (canonical_json(&Value::Object(obj)) + "\n", hash)
}

fn audit_logs() -> Vec<(&'static str, Vec<u8>)> {
    let (a, h1) = audit_line(
        1,
        assent_audit::ZERO_HASH,
        "relay_started",
        json!({"listen": "0.0.0.0:4433"}),
    );
    let (b, h2) = audit_line(
        2,
        &h1,
        "consent",
        json!({"session": "s1", "decision": "view", "nested": {"b": [1, 2.5, null], "a": "é\n"}}),
    );
    let (c, _) = audit_line(3, &h2, "session_end", json!({"reason": "viewer_closed"}));
    let log = format!("{a}{b}{c}");
    let deep = "[".repeat(100_000);
    vec![
        ("valid-log", log.clone().into_bytes()),
        ("torn-last-line", log.as_bytes()[..log.len() - 20].to_vec()),
        ("reordered", format!("{b}{a}{c}").into_bytes()),
        ("edited", log.replace("view", "control").into_bytes()),
        (
            "deep-nesting",
            format!("{a}{{\"seq\":2,\"x\":{deep}\n").into_bytes(),
        ),
        ("huge-seq", b"{\"seq\":18446744073709551616}\n".to_vec()),
        (
            "not-utf8",
            [a.as_bytes(), b"{\"seq\":2,\"e\":\"\xff\"}\n"].concat(),
        ),
    ]
}

fn relay_configs() -> Vec<(&'static str, Vec<u8>)> {
    let template = assent_relay_formats::config::RelayConfig::template(
        "0.0.0.0:4433".parse().expect("address"),
        "relay.example.com",
    );
    vec![
        ("template", template.into_bytes()),
        ("minimal", b"[limits]\nmax_sessions = 3\n".to_vec()),
        (
            "escaped-name",
            b"public_name = \"relay \\\"one\\\" \\\\ x\"\n".to_vec(),
        ),
        ("zero-limit", b"[limits]\nmax_sessions = 0\n".to_vec()),
        ("unknown-key", b"[limits]\nmax_sesions = 3\n".to_vec()),
        (
            "huge-number",
            b"[limits]\ninvite_ttl_secs = 18446744073709551616\n".to_vec(),
        ),
        (
            "deep-nesting",
            format!("public_name = {}", "[".repeat(100_000)).into_bytes(),
        ),
        (
            "deep-tables",
            format!("public_name = {}", "{a=".repeat(10_000)).into_bytes(),
        ),
    ]
}

fn technician_files() -> Vec<(&'static str, Vec<u8>)> {
    let k1 = SecretKey::from_seed(&[1; 32]).public().to_line();
    let k2 = SecretKey::from_seed(&[2; 32]).public().to_line();
    let list = json!([
        {"name": "alice", "key": k1, "added": "2026-01-01T00:00:00Z"},
        {"name": "bob", "key": k2, "added": "2026-01-01T00:00:00Z", "revoked": "2026-02-01T00:00:00Z"},
        {"name": "eve", "key": "ed25519:AAAA", "added": "x"},
    ]);
    vec![
        (
            "registry",
            serde_json::to_vec_pretty(&list).expect("serialises"),
        ),
        ("empty", b"[]\n".to_vec()),
        ("deep-nesting", "[".repeat(100_000).into_bytes()),
        (
            "huge-string-claim",
            b"[{\"name\":\"\\u00e9\\ud800\",\"key\":1}]".to_vec(),
        ),
    ]
}

fn admin_requests() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("sessions", br#"{"cmd":"sessions"}"#.to_vec()),
        ("kill", br#"{"cmd":"kill","session":"5f2a9c0e"}"#.to_vec()),
        (
            "technician-add",
            br#"{"cmd":"technician_add","name":"alice","key":"ed25519:AAAA alice@laptop"}"#
                .to_vec(),
        ),
        (
            "technician-revoke",
            br#"{"cmd":"technician_revoke","name":"alice"}"#.to_vec(),
        ),
        (
            "response",
            br#"{"ok":true,"sessions":[{"id":"s","technician":"a","ticket":"T","device":"d","scope":"view","started":"now","bytes_to_viewer":1,"bytes_to_agent":18446744073709551615}]}"#
                .to_vec(),
        ),
        (
            "deep-nesting",
            format!("{{\"cmd\":\"kill\",\"session\":{}", "[".repeat(100_000)).into_bytes(),
        ),
        (
            "duplicate-keys",
            br#"{"cmd":"kill","cmd":"sessions","session":"a","session":"b"}"#.to_vec(),
        ),
    ]
}
