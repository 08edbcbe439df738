//! Targets for `assent-proto`: control-stream framing, the postcard wire
//! messages, session-channel messages, and the text forms of keys and codes.

use assent_proto::framing::{self, FrameDecoder, FrameError, MAX_CONTROL_FRAME, PREFIX_LEN};
use assent_proto::identity::{PublicKey, SecretKey};
use assent_proto::invite::{InviteCode, CODE_DIGITS};
use assent_proto::session_msg::{InputEvent, Key, SessionMsg, MAX_TEXT_INPUT};
use assent_proto::text;
use assent_proto::wire::{self, ClientMsg, RelayMsg, SessionOffer};
use serde::{Deserialize, Serialize};

use crate::alloc::Meter;
use crate::{linear_budget, outcome, outcome_of, Outcome};

/// The control stream as a receiver sees it. The first input byte picks how
/// the stream is cut into reads (0: all at once), the rest is the stream.
///
/// Both ways the code reads frames are driven: the incremental
/// [`FrameDecoder`], checked against an independent model of the format,
/// and the pull form `assent-net`'s `recv_msg` uses (`check_len`, then a
/// body buffer of that length), whose allocation must stay within the frame
/// limit whatever the prefix says.
pub fn framing(data: &[u8]) -> Outcome {
    let Some((&cut, stream)) = data.split_first() else {
        return outcome("empty");
    };
    let chunk = if cut == 0 {
        stream.len().max(1)
    } else {
        usize::from(cut) * 97
    };
    let meter = Meter::start();
    let (expected, end) = model_frames(stream, MAX_CONTROL_FRAME);
    let failed = incremental(stream, chunk, &expected, &end);
    pull(stream);
    // A stream of one-byte frames is the worst honest case: every frame
    // costs its own buffer and a slot in a list, in the model and in the
    // decoder's output (about 100 bytes of heap per 5 input bytes); a
    // prefix that claims more than the stream holds costs nothing extra.
    meter.check(
        "framing",
        32 * data.len() + 2 * (PREFIX_LEN + MAX_CONTROL_FRAME) + 64 * 1024,
    );
    match (failed, end) {
        (Some(e), _) => outcome(&e.to_string()),
        (None, ModelEnd::Partial) => outcome("partial"),
        (None, _) => outcome("clean"),
    }
}

/// The incremental form (`FrameDecoder`, as `assent_net::FrameReader` uses
/// it), fed `chunk` bytes at a time and checked against the model: the same
/// frames, the same end, an oversize prefix refused before its body.
/// Returns the error it stopped at.
fn incremental(
    stream: &[u8],
    chunk: usize,
    expected: &[&[u8]],
    end: &ModelEnd,
) -> Option<FrameError> {
    let mut decoder = FrameDecoder::new(MAX_CONTROL_FRAME);
    let mut got = 0usize;
    let mut fed = 0usize;
    let mut failed = None;
    'feed: for piece in stream.chunks(chunk) {
        if let Err(e) = decoder.push(piece) {
            failed = Some(e);
            break;
        }
        fed += piece.len();
        // Only what arrived since the last frame may be held, plus at most
        // one frame: an oversized prefix must not make it buffer the body.
        assert!(
            decoder.buffered() <= 2 * (PREFIX_LEN + MAX_CONTROL_FRAME + piece.len()),
            "framing: decoder holds {} bytes",
            decoder.buffered()
        );
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= MAX_CONTROL_FRAME);
                    assert_eq!(
                        Some(&frame[..]),
                        expected.get(got).copied(),
                        "framing: frame {got} differs from the model"
                    );
                    got += 1;
                    decode_control(&frame);
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break 'feed;
                }
            }
        }
    }
    match (end, &failed) {
        (ModelEnd::TooLarge { at }, Some(FrameError::TooLarge { .. })) => {
            // Refused as soon as the prefix was visible, before its body.
            assert!(
                fed < at + PREFIX_LEN + chunk,
                "framing: oversize prefix at {at} noticed only after {fed} bytes"
            );
        }
        (ModelEnd::TooLarge { at }, None) => {
            panic!("framing: prefix at byte {at} is over the limit but was accepted")
        }
        (_, Some(e)) => panic!("framing: unexpected error {e} on a well-formed stream"),
        (ModelEnd::Clean, None) => assert_eq!(decoder.finish(), Ok(())),
        (ModelEnd::Partial, None) => assert_eq!(decoder.finish(), Err(FrameError::Truncated)),
    }
    assert_eq!(got, expected.len(), "framing: frames missing");
    failed
}

/// The pull form: what `assent_net::recv_msg` does with each prefix.
fn pull(stream: &[u8]) {
    let mut rest = stream;
    while let Some((prefix, after)) = rest.split_first_chunk::<PREFIX_LEN>() {
        let Ok(len) = framing::check_len(*prefix, MAX_CONTROL_FRAME) else {
            break;
        };
        let mut body = vec![0u8; len];
        let n = len.min(after.len());
        body[..n].copy_from_slice(&after[..n]);
        if n < len {
            break;
        }
        decode_control(&body);
        rest = &after[len..];
    }
}

/// How a stream ends according to the model.
#[derive(Debug)]
enum ModelEnd {
    Clean,
    Partial,
    /// The prefix starting at byte `at` announces more than the maximum.
    TooLarge {
        at: usize,
    },
}

/// The frames in `stream`, read the obvious way.
fn model_frames(stream: &[u8], max: usize) -> (Vec<&[u8]>, ModelEnd) {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let rest = &stream[at..];
        if rest.is_empty() {
            return (frames, ModelEnd::Clean);
        }
        if rest.len() < PREFIX_LEN {
            return (frames, ModelEnd::Partial);
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > max {
            return (frames, ModelEnd::TooLarge { at });
        }
        match rest.get(PREFIX_LEN..PREFIX_LEN + len) {
            Some(body) => frames.push(body),
            None => return (frames, ModelEnd::Partial),
        }
        at += PREFIX_LEN + len;
    }
}

/// A control frame body is a message from either side.
fn decode_control(body: &[u8]) {
    let _ = check_wire::<ClientMsg>("framing/ClientMsg", body);
    let _ = check_wire::<RelayMsg>("framing/RelayMsg", body);
}

/// Decodes `data` as `T` with `assent_proto::wire::decode` and checks the
/// result: bounded memory, and a decoded message is exactly the input (no
/// trailing bytes) and survives encode → decode unchanged.
fn check_wire<T>(what: &str, data: &[u8]) -> Result<T, FrameError>
where
    T: for<'a> Deserialize<'a> + Serialize + PartialEq + std::fmt::Debug,
{
    let meter = Meter::start();
    let decoded = wire::decode::<T>(data);
    meter.check(what, linear_budget(data.len()));
    if let Ok(msg) = &decoded {
        assert_consumed_all::<T>(what, data);
        let again = wire::encode(msg).expect("a decoded message encodes");
        assert!(again.len() <= data.len(), "{what}: re-encoding grew");
        assert_eq!(
            &wire::decode::<T>(&again).expect("re-decodes"),
            msg,
            "{what}"
        );
    }
    decoded
}

/// A message followed by anything else is not that message.
fn assert_consumed_all<T: for<'a> Deserialize<'a>>(what: &str, data: &[u8]) {
    if let Ok((_, rest)) = postcard::take_from_bytes::<T>(data) {
        assert!(
            rest.is_empty(),
            "{what}: accepted {} trailing bytes after the message",
            rest.len()
        );
    }
}

pub fn wire_client_msg(data: &[u8]) -> Outcome {
    outcome_of(&check_wire::<ClientMsg>("wire_client_msg", data))
}

pub fn wire_relay_msg(data: &[u8]) -> Outcome {
    outcome_of(&check_wire::<RelayMsg>("wire_relay_msg", data))
}

/// The relay-signed offer the agent decodes before showing the prompt.
pub fn session_offer(data: &[u8]) -> Outcome {
    let meter = Meter::start();
    let decoded = SessionOffer::from_bytes(data);
    meter.check("session_offer", linear_budget(data.len()));
    if let Ok(offer) = &decoded {
        assert_consumed_all::<SessionOffer>("session_offer", data);
        let again = offer.to_bytes();
        assert_eq!(
            &SessionOffer::from_bytes(&again).expect("re-decodes"),
            offer
        );
    }
    outcome_of(&decoded)
}

/// A message from the peer inside the end-to-end channel.
pub fn session_msg(data: &[u8]) -> Outcome {
    let meter = Meter::start();
    let decoded = SessionMsg::decode(data);
    meter.check("session_msg", linear_budget(data.len()));
    if let Ok(msg) = &decoded {
        assert_consumed_all::<SessionMsg>("session_msg", data);
        // What validation promises the agent's input thread.
        match msg {
            SessionMsg::Input(InputEvent::Text(t)) => {
                assert!(t.chars().count() <= MAX_TEXT_INPUT)
            }
            SessionMsg::Input(InputEvent::Key { key: Key::F(n), .. }) => {
                assert!((1..=24).contains(n))
            }
            SessionMsg::Input(InputEvent::Wheel { dx, dy }) => {
                assert!(dx.unsigned_abs() <= 100 && dy.unsigned_abs() <= 100)
            }
            _ => {}
        }
        let again = msg.encode().expect("a decoded message encodes");
        assert!(again.len() <= data.len());
        assert_eq!(&SessionMsg::decode(&again).expect("re-decodes"), msg);
    }
    outcome_of(&decoded)
}

/// Text forms read from files and from people: public key lines (enrolment,
/// `technicians.json`), private key files, typed invite codes, and the free
/// text fields peers send.
pub fn identity_text(data: &[u8]) -> Outcome {
    let s = String::from_utf8_lossy(data);
    let meter = Meter::start();
    let mut label = String::new();

    match PublicKey::parse_line(&s) {
        Ok((key, hint)) => {
            label.push_str("key ");
            let (again, _) = PublicKey::parse_line(&key.to_line()).expect("to_line parses");
            assert_eq!(again, key);
            if let Some(h) = hint {
                assert!(!h.is_empty() && h.trim() == h);
            }
        }
        Err(e) => label.push_str(&e.to_string()),
    }
    match SecretKey::from_file_contents(&s) {
        Ok(key) => {
            label.push_str("secret ");
            let again = SecretKey::from_file_contents(&key.to_file_contents()).expect("parses");
            assert_eq!(again.public(), key.public());
        }
        Err(e) => label.push_str(&e.to_string()),
    }
    if let Some(code) = InviteCode::parse(&s) {
        label.push_str("code ");
        let grouped = code.grouped();
        assert_eq!(grouped.len(), CODE_DIGITS + CODE_DIGITS / 3 - 1);
        assert!(InviteCode::parse(&grouped).is_some());
    }
    // A join link arrives from a browser or a chat message: untrusted.
    match assent_proto::link::JoinLink::parse(&s) {
        Ok(link) => {
            label.push_str("link ");
            assert!(s.len() <= assent_proto::link::MAX_LINK);
            let url = assent_proto::link::JoinLink::url(&link.relay, &link.code.grouped());
            let again = assent_proto::link::JoinLink::parse(&url).expect("its own url parses");
            assert_eq!(again.relay, link.relay);
            assert_eq!(again.code.grouped(), link.code.grouped());
        }
        Err(e) => label.push_str(&e.to_string()),
    }
    for (max, r) in [
        (
            text::MAX_TICKET,
            text::single_line("f", &s, text::MAX_TICKET),
        ),
        (
            text::MAX_SUMMARY,
            text::optional_line("f", &s, text::MAX_SUMMARY),
        ),
        (
            text::MAX_NOTE_FIELD,
            text::multi_line("f", &s, text::MAX_NOTE_FIELD),
        ),
    ] {
        match r {
            Ok(v) => {
                assert!(v.chars().count() <= max);
                assert_eq!(v.trim(), v);
                assert!(!v.chars().any(|c| c != '\n' && c.is_control()));
                label.push_str("text ");
            }
            Err(e) => label.push_str(&e.to_string()),
        }
    }
    let clean = text::sanitize(&s, text::MAX_NAME);
    assert!(!clean.is_empty() && clean.chars().count() <= text::MAX_NAME);
    assert!(!clean.chars().any(char::is_control));
    meter.check("identity_text", linear_budget(data.len()));
    outcome(&label)
}
