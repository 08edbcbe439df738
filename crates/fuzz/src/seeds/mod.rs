//! The seed corpus, as code: valid encodings of every message each target
//! reads, plus hand-made hostile cases (1 GiB length prefixes, zstd bombs,
//! deep nesting, oversized fields, truncations). Everything here is
//! deterministic, so `corpus/` can be checked against it; regenerate with
//! `ASSENT_FUZZ_WRITE_CORPUS=1 cargo test -p assent-fuzz --test fuzz corpus`.

use assent_proto::escalation::{EscalatedFrom, EscalationState, HandoverInfo};
use assent_proto::framing::{encode_frame, MAX_CONTROL_FRAME};
use assent_proto::identity::SecretKey;
use assent_proto::session_msg::{Control, InputEvent, Key, MouseButton, SessionMsg};
use assent_proto::wire::{
    self, ClientMsg, Confirmation, ConsentDecision, EndReason, ErrorKind, Impact, InviteRequest,
    RelayMsg, Role, Scope, SessionOffer, Validation,
};

mod channel;
mod codec;
mod files;
mod permission;
mod privacy;
mod resume;

use channel::{channel_handshakes, channel_records};
use codec::codec_frames;
pub use codec::zstd_bomb;
use files::{admin_requests, audit_logs, relay_configs, technician_files, webhook_outboxes};

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
            ("offer-escalated", escalated_offer().to_bytes()),
        ],
        "session_msg" => session_msgs(),
        "identity_text" => identity_texts(),
        "codec_frame" => codec_frames(),
        "recording" => codec::recordings(),
        "channel_handshake" => channel_handshakes(),
        "channel_record" => channel_records(),
        "audit_verify" => audit_logs(),
        "relay_config" => relay_configs(),
        "relay_technicians" => technician_files(),
        "admin_request" => admin_requests(),
        "webhook_outbox" => webhook_outboxes(),
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
        identity_check: String::new(),
        permissions: vec![],
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
        escalated_from: None,
        permissions: vec![],
    }
}

/// A specialist's offer: the escalated session, who and why.
fn escalated_offer() -> SessionOffer {
    SessionOffer {
        technician: "bob".into(),
        escalated_from: Some(EscalatedFrom {
            session: "5f2a9c0e1b3d4a67".into(),
            technician: "alice".into(),
            trigger: "other:printer server".into(),
        }),
        ..offer()
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
    out.extend(procedure_client_msgs());
    out.extend(privacy::client_msgs());
    out.extend(permission::client_msgs());
    out.extend(hostile_client_msgs());
    out.extend(resume::client_msgs());
    out
}

/// Hostile: a signature claiming 1 GiB with nothing behind it; a note
/// claiming 2^32 fields; a string length past the end; trailing bytes.
fn hostile_client_msgs() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
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
    .into_iter()
    .chain(procedure_relay_msgs())
    .chain(resume::relay_msgs())
    .collect()
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
        ("screen-formats", enc(SessionMsg::ScreenFormats(vec![2, 1]))),
        (
            "screen-formats-too-many",
            enc(SessionMsg::ScreenFormats(vec![2; 17])),
        ),
        (
            "frame-claims-1gib",
            [vec![0], varint(u64::from(GIB))].concat(),
        ),
        (
            "frame-trailing",
            [enc(SessionMsg::FrameAck { seq: 1 }), vec![0]].concat(),
        ),
    ]
    .into_iter()
    .chain(procedure_session_msgs())
    .chain(privacy::session_msgs())
    .chain(permission::session_msgs())
    .chain(codec::monitor_msgs())
    .collect()
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

/// The support procedure's session messages (chat, "please test", who is
/// helped).
fn procedure_session_msgs() -> Vec<(&'static str, Vec<u8>)> {
    let enc = |m: SessionMsg| m.encode().expect("small");
    vec![
        (
            "chat",
            enc(SessionMsg::Chat("type your password now".into())),
        ),
        ("chat-max", enc(SessionMsg::Chat("é".repeat(2000)))),
        (
            "validation-request",
            enc(SessionMsg::ValidationRequest {
                number: 1,
                what: "Open Outlook".into(),
            }),
        ),
        (
            "validation-answer",
            enc(SessionMsg::ValidationAnswer {
                number: 1,
                answer: Validation::Works,
                comment: "it works".into(),
            }),
        ),
        (
            "affected-user",
            enc(SessionMsg::AffectedUser {
                login: "ada".into(),
                real_name: "Ada Lovelace".into(),
            }),
        ),
    ]
}

/// The relay's answers of the support procedure.
fn procedure_relay_msgs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "scope-recorded",
            encode(&RelayMsg::ScopeRecorded {
                change: 1,
                recorded: false,
            }),
        ),
        (
            "user-confirmed",
            encode(&RelayMsg::UserConfirmed {
                answer: Confirmation::Yes,
            }),
        ),
        (
            "escalation-pending",
            encode(&RelayMsg::Escalation {
                handover: "9c0e1b3d4a675f2a".into(),
                specialist: "bob".into(),
                state: EscalationState::Pending {
                    expires_in_secs: 600,
                },
            }),
        ),
        (
            "escalation-closed",
            encode(&RelayMsg::Escalation {
                handover: "9c0e1b3d4a675f2a".into(),
                specialist: "bob".into(),
                state: EscalationState::Closed {
                    reason: "consent_denied".into(),
                },
            }),
        ),
        (
            "specialists",
            encode(&RelayMsg::Specialists {
                names: vec!["bob".into(), "carol".into()],
            }),
        ),
        (
            "handovers",
            encode(&RelayMsg::Handovers {
                list: vec![HandoverInfo {
                    handover: "9c0e1b3d4a675f2a".into(),
                    from_technician: "alice".into(),
                    ticket: "T-1042".into(),
                    client: "Acme Ltd".into(),
                    trigger: "other:printer server".into(),
                    scope: Scope::Control,
                    expires_in_secs: 300,
                }],
            }),
        ),
        (
            "handover-claimed",
            encode(&RelayMsg::HandoverClaimed {
                invite: "1b3d4a675f2a9c0e".into(),
                request: request(),
                from_technician: "alice".into(),
                trigger: "outside-scope".into(),
                expires_in_secs: 600,
            }),
        ),
        (
            "escalation-code",
            encode(&RelayMsg::EscalationCode {
                handover: "9c0e1b3d4a675f2a".into(),
                code: "123-456-789-012-345".into(),
            }),
        ),
    ]
}

/// The support procedure's control messages.
fn procedure_client_msgs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("chat-sent", encode(&ClientMsg::ChatSent)),
        (
            "user-validation",
            encode(&ClientMsg::UserValidation {
                number: 1,
                answer: Validation::StillBroken,
                receipt: vec![9; 64],
            }),
        ),
        (
            "user-confirmation",
            encode(&ClientMsg::UserConfirmation {
                answer: Confirmation::NotSure,
                receipt: vec![8; 64],
            }),
        ),
        (
            "escalate",
            encode(&ClientMsg::Escalate {
                specialist: "bob".into(),
                trigger: "compromise-or-malware".into(),
                scope: Scope::View,
            }),
        ),
        ("list-specialists", encode(&ClientMsg::ListSpecialists)),
        ("list-handovers", encode(&ClientMsg::ListHandovers)),
        (
            "claim-handover",
            encode(&ClientMsg::ClaimHandover {
                handover: "9c0e1b3d4a675f2a".into(),
            }),
        ),
    ]
}
