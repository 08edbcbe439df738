//! Tests of the sans-I/O core and the async layer, over in-memory pipes.

use std::sync::Arc;

use assent_proto::identity::SecretKey;
use assent_proto::wire::Role;
use proptest::prelude::*;

use crate::handshake::{push_frame, take_frame};
use crate::*;

fn technician() -> SecretKey {
    SecretKey::from_seed(&[1; 32])
}

fn device() -> SecretKey {
    SecretKey::from_seed(&[2; 32])
}

fn stranger() -> SecretKey {
    SecretKey::from_seed(&[3; 32])
}

#[test]
fn verification_code_is_six_digits_and_depends_on_the_hash() {
    let a = verification_code(&[1; 32]);
    let b = verification_code(&[2; 32]);
    assert_eq!(a.len(), 6);
    assert!(a.bytes().all(|c| c.is_ascii_digit()));
    assert_eq!(a, verification_code(&[1; 32]));
    assert_ne!(a, b);
    // Zero padding: find a hash whose code is below 100000.
    let padded = (0u8..=255)
        .flat_map(|x| (0u8..=255).map(move |y| verification_code(&[x, y])))
        .find(|c| c.starts_with('0'))
        .expect("some code starts with 0");
    assert_eq!(padded.len(), 6);
}

#[test]
fn binding_payload_separates_roles_and_hashes() {
    let v = binding_payload(Role::Viewer, &[5; 32]);
    assert!(v.starts_with(BINDING_DOMAIN));
    assert_eq!(*v.last().unwrap(), 1);
    assert_eq!(*binding_payload(Role::Agent, &[5; 32]).last().unwrap(), 2);
    assert_ne!(v, binding_payload(Role::Viewer, &[6; 32]));
}

#[test]
fn chunk_fills_a_noise_message_exactly() {
    assert_eq!(1 + MAX_CHUNK + TAG_LEN, MAX_NOISE_MSG);
    assert_eq!(MAX_NOISE_MSG, u16::MAX as usize);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dir {
    ToAgent,
    ToViewer,
}

/// Shuttles bytes between two handshakes until neither has anything to
/// say, letting `tamper` edit each batch in flight. Returns each side's last
/// `push` result.
fn pump(
    viewer: &mut Handshake,
    agent: &mut Handshake,
    tamper: &mut dyn FnMut(Dir, &mut Vec<u8>),
) -> (Result<()>, Result<()>) {
    let (mut rv, mut ra) = (Ok(()), Ok(()));
    loop {
        let mut progressed = false;
        let mut to_agent = viewer.take_outgoing();
        if !to_agent.is_empty() && ra.is_ok() {
            tamper(Dir::ToAgent, &mut to_agent);
            ra = agent.push(&to_agent);
            progressed = true;
        }
        let mut to_viewer = agent.take_outgoing();
        if !to_viewer.is_empty() && rv.is_ok() {
            tamper(Dir::ToViewer, &mut to_viewer);
            rv = viewer.push(&to_viewer);
            progressed = true;
        }
        if !progressed {
            return (rv, ra);
        }
    }
}

fn establish() -> (Established, Established) {
    let (tech, dev) = (technician(), device());
    let mut viewer = Handshake::initiator(&tech, dev.public()).unwrap();
    let mut agent = Handshake::responder(&dev, tech.public()).unwrap();
    let (rv, ra) = pump(&mut viewer, &mut agent, &mut |_, _| {});
    rv.unwrap();
    ra.unwrap();
    (
        viewer.into_established().unwrap(),
        agent.into_established().unwrap(),
    )
}

/// Seals `msg`, feeds it to `opener` in `piece`-sized bits and returns what
/// comes out.
fn transfer(sealer: &mut Sealer, opener: &mut Opener, msg: &[u8], piece: usize) -> Vec<u8> {
    let wire = sealer.seal(msg).unwrap();
    let mut out = None;
    for bit in wire.chunks(piece) {
        assert!(out.is_none(), "message complete before its last byte");
        opener.push(bit);
        out = opener.next_message().unwrap();
    }
    assert!(!opener.has_partial());
    out.expect("message complete after its last byte")
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

#[test]
fn handshake_agrees_on_code_and_messages_round_trip_both_ways() {
    let (mut v, mut a) = establish();
    assert_eq!(v.verification_code, a.verification_code);
    assert_eq!(v.verification_code.len(), 6);
    assert!(v.verification_code.bytes().all(|c| c.is_ascii_digit()));
    assert_eq!(v.peer, device().public());
    assert_eq!(a.peer, technician().public());

    let sizes = [
        0,
        1,
        MAX_CHUNK - 1,
        MAX_CHUNK,
        MAX_CHUNK + 1,
        70_000,
        3 * MAX_CHUNK,
        5 * 1024 * 1024 + 3,
    ];
    for &len in &sizes {
        let msg = pattern(len);
        assert_eq!(
            transfer(&mut v.sender, &mut a.receiver, &msg, usize::MAX),
            msg
        );
        assert_eq!(
            transfer(&mut a.sender, &mut v.receiver, &msg, usize::MAX),
            msg
        );
    }
    // Awkward chunking across record boundaries.
    let msg = pattern(150_000);
    assert_eq!(transfer(&mut v.sender, &mut a.receiver, &msg, 7), msg);
    assert_eq!(transfer(&mut a.sender, &mut v.receiver, &msg, 65_537), msg);
}

#[test]
fn message_at_the_limit_passes_and_one_byte_more_is_refused_by_the_sender() {
    let (mut v, mut a) = establish();
    let msg = vec![0xA5; MAX_SESSION_MSG];
    let got = transfer(&mut v.sender, &mut a.receiver, &msg, usize::MAX);
    assert_eq!(got, msg);
    assert!(got.capacity() <= MAX_SESSION_MSG, "{}", got.capacity());
    let over = vec![0; MAX_SESSION_MSG + 1];
    assert!(matches!(
        v.sender.seal(&over),
        Err(ChannelError::TooLarge { len, max }) if len == MAX_SESSION_MSG + 1 && max == MAX_SESSION_MSG
    ));
    // That refusal consumed nothing, so the channel still works.
    assert_eq!(transfer(&mut v.sender, &mut a.receiver, b"hi", 1), b"hi");
}

#[test]
fn several_messages_in_one_push_come_out_in_order() {
    let (mut v, mut a) = establish();
    let mut wire = Vec::new();
    for i in 0..5u8 {
        wire.extend(v.sender.seal(&pattern(i as usize * 40_000)).unwrap());
    }
    a.receiver.push(&wire);
    for i in 0..5u8 {
        let got = a.receiver.next_message().unwrap().unwrap();
        assert_eq!(got, pattern(i as usize * 40_000));
    }
    assert_eq!(a.receiver.next_message().unwrap(), None);
    assert_eq!(a.receiver.buffered_len(), 0);
}

#[test]
fn bytes_arriving_behind_the_handshake_are_kept() {
    let (tech, dev) = (technician(), device());
    let mut viewer = Handshake::initiator(&tech, dev.public()).unwrap();
    let mut agent = Handshake::responder(&dev, tech.public()).unwrap();
    agent.push(&viewer.take_outgoing()).unwrap();
    viewer.push(&agent.take_outgoing()).unwrap();
    agent.push(&viewer.take_outgoing()).unwrap();
    assert!(agent.is_established());
    // The agent sends at once, in the same batch as its signature.
    let mut batch = agent.take_outgoing();
    let mut a = agent.into_established().unwrap();
    batch.extend(a.sender.seal(b"first frame").unwrap());
    viewer.push(&batch).unwrap();
    let mut v = viewer.into_established().unwrap();
    assert_eq!(
        v.receiver.next_message().unwrap().as_deref(),
        Some(&b"first frame"[..])
    );
    // Bytes pushed into a finished handshake also reach the receiver.
    assert_eq!(transfer(&mut v.sender, &mut a.receiver, b"x", 1), b"x");
}

#[test]
fn a_resumed_channel_needs_the_old_channels_secret() {
    let (tech, dev) = (technician(), device());
    let (v, a) = establish();
    assert_eq!(v.resume.bytes(), a.resume.bytes(), "both ends derive it");
    fn resume<'k>(
        tech: &'k SecretKey,
        agent_key: &'k SecretKey,
        viewer_secret: &ResumeSecret,
        agent_secret: &ResumeSecret,
    ) -> (Result<()>, Handshake<'k>, Handshake<'k>) {
        let mut viewer =
            Handshake::resuming(Role::Viewer, tech, agent_key.public(), viewer_secret).unwrap();
        let mut agent =
            Handshake::resuming(Role::Agent, agent_key, tech.public(), agent_secret).unwrap();
        let (rv, ra) = pump(&mut viewer, &mut agent, &mut |_, _| {});
        (rv.and(ra), viewer, agent)
    }
    let (ok, viewer, agent) = resume(&tech, &dev, &v.resume, &a.resume);
    ok.unwrap();
    let (mut v2, mut a2) = (
        viewer.into_established().unwrap(),
        agent.into_established().unwrap(),
    );
    assert_eq!(
        transfer(&mut v2.sender, &mut a2.receiver, b"again", 3),
        b"again"
    );
    assert_ne!(
        v2.resume.bytes(),
        v.resume.bytes(),
        "each channel has its own"
    );
    // Another session's secret (a relay splicing two sessions of the same
    // technician and device) does not complete.
    let (other, _) = establish();
    let (failed, ..) = resume(&tech, &dev, &other.resume, &a.resume);
    assert!(failed.is_err(), "a foreign secret completed the handshake");
    // The right secret with another device's key does not either.
    let stranger = stranger();
    let mut viewer = Handshake::resuming(Role::Viewer, &tech, dev.public(), &v.resume).unwrap();
    let mut agent = Handshake::resuming(Role::Agent, &stranger, tech.public(), &a.resume).unwrap();
    let (rv, _) = pump(&mut viewer, &mut agent, &mut |_, _| {});
    assert!(
        matches!(rv, Err(ChannelError::PeerKeyMismatch)),
        "a stranger's key completed the handshake: {rv:?}"
    );
    // Nor does a first-time handshake against a resuming one.
    let mut fresh = Handshake::initiator(&tech, dev.public()).unwrap();
    let mut agent = Handshake::resuming(Role::Agent, &dev, tech.public(), &a.resume).unwrap();
    let (rv, ra) = pump(&mut fresh, &mut agent, &mut |_, _| {});
    assert!(rv.and(ra).is_err());
    assert_eq!(format!("{:?}", v.resume), "ResumeSecret(..)");
}

#[test]
fn viewer_expecting_another_agent_key_refuses() {
    let (tech, dev) = (technician(), device());
    let mut viewer = Handshake::initiator(&tech, stranger().public()).unwrap();
    let mut agent = Handshake::responder(&dev, tech.public()).unwrap();
    let (rv, _) = pump(&mut viewer, &mut agent, &mut |_, _| {});
    assert!(matches!(rv, Err(ChannelError::PeerKeyMismatch)), "{rv:?}");
    assert!(!viewer.is_established());
    assert!(matches!(
        viewer.into_established(),
        Err(ChannelError::Failed)
    ));
}

#[test]
fn agent_expecting_another_technician_refuses_without_revealing_itself() {
    let (tech, dev) = (technician(), device());
    let mut viewer = Handshake::initiator(&tech, dev.public()).unwrap();
    let mut agent = Handshake::responder(&dev, stranger().public()).unwrap();
    agent.push(&viewer.take_outgoing()).unwrap();
    viewer.push(&agent.take_outgoing()).unwrap();
    // The viewer's last handshake message and its signature, byte by byte:
    // the agent must say nothing at any point, not even after the handshake
    // completes and before the signature is in.
    let batch = viewer.take_outgoing();
    let mut result = Ok(());
    for b in &batch {
        result = agent.push(std::slice::from_ref(b));
        assert!(agent.take_outgoing().is_empty(), "agent signed anyway");
        if result.is_err() {
            break;
        }
    }
    assert!(
        matches!(result, Err(ChannelError::PeerKeyMismatch)),
        "{result:?}"
    );
    assert!(!viewer.is_established());
}

/// A relay that runs its own handshake with each side, with its own
/// ed25519 key: both sides catch it.
#[test]
fn man_in_the_middle_with_its_own_key_is_caught_on_both_sides() {
    let (tech, dev, mitm) = (technician(), device(), stranger());
    let mut viewer = Handshake::initiator(&tech, dev.public()).unwrap();
    let mut fake_agent = Handshake::responder(&mitm, tech.public()).unwrap();
    let mut fake_viewer = Handshake::initiator(&mitm, tech.public()).unwrap();
    let mut agent = Handshake::responder(&dev, tech.public()).unwrap();
    let (rv, _) = pump(&mut viewer, &mut fake_agent, &mut |_, _| {});
    let (_, ra) = pump(&mut fake_viewer, &mut agent, &mut |_, _| {});
    assert!(matches!(rv, Err(ChannelError::PeerKeyMismatch)), "{rv:?}");
    assert!(matches!(ra, Err(ChannelError::PeerKeyMismatch)), "{ra:?}");
}

fn raw_noise(initiator: bool) -> snow::HandshakeState {
    let builder = snow::Builder::new(NOISE_PARAMS.parse().unwrap());
    let keypair = builder.generate_keypair().unwrap();
    let builder = builder
        .local_private_key(&keypair.private)
        .unwrap()
        .prologue(PROLOGUE)
        .unwrap();
    if initiator {
        builder.build_initiator().unwrap()
    } else {
        builder.build_responder().unwrap()
    }
}

fn write_frame(noise: &mut snow::HandshakeState) -> Vec<u8> {
    let mut buf = [0u8; 1024];
    let n = noise.write_message(&[], &mut buf).unwrap();
    let mut out = Vec::new();
    push_frame(&mut out, &buf[..n]);
    out
}

/// Reads one frame from the front of `bytes`, returning what follows it.
fn read_frame(noise: &mut snow::HandshakeState, bytes: &[u8]) -> Vec<u8> {
    let frame = take_frame(bytes).unwrap().unwrap();
    let mut payload = [0u8; 1024];
    noise.read_message(frame, &mut payload).unwrap();
    bytes[LEN_PREFIX + frame.len()..].to_vec()
}

fn halves(noise: snow::HandshakeState) -> (Sealer, Opener, Vec<u8>) {
    let hash = noise.get_handshake_hash().to_vec();
    let transport = Arc::new(noise.into_stateless_transport_mode().unwrap());
    (
        Sealer::new(transport.clone()),
        Opener::new(transport, MAX_SESSION_MSG),
        hash,
    )
}

/// A smarter relay: plain Noise with each side, passing the viewer's genuine
/// signature on to the agent. The signature covers the other handshake's
/// hash, so it does not verify.
#[test]
fn man_in_the_middle_replaying_the_genuine_signature_is_caught() {
    let (tech, dev) = (technician(), device());

    // Leg 1: the viewer and the relay posing as agent.
    let mut viewer = Handshake::initiator(&tech, dev.public()).unwrap();
    let mut relay_as_agent = raw_noise(false);
    assert!(read_frame(&mut relay_as_agent, &viewer.take_outgoing()).is_empty());
    viewer.push(&write_frame(&mut relay_as_agent)).unwrap();
    let rest = read_frame(&mut relay_as_agent, &viewer.take_outgoing());
    let (_, mut leg1_in, h1) = halves(relay_as_agent);
    leg1_in.push(&rest);
    let viewer_signature = leg1_in.next_message().unwrap().unwrap();
    assert!(tech
        .public()
        .verify(&binding_payload(Role::Viewer, &h1), &viewer_signature)
        .is_ok());

    // Leg 2: the relay posing as viewer, and the agent.
    let mut relay_as_viewer = raw_noise(true);
    let mut agent = Handshake::responder(&dev, tech.public()).unwrap();
    agent.push(&write_frame(&mut relay_as_viewer)).unwrap();
    assert!(read_frame(&mut relay_as_viewer, &agent.take_outgoing()).is_empty());
    let mut batch = write_frame(&mut relay_as_viewer);
    let (mut leg2_out, _, h2) = halves(relay_as_viewer);
    assert_ne!(h1, h2);
    batch.extend(leg2_out.seal(&viewer_signature).unwrap());
    assert!(matches!(
        agent.push(&batch),
        Err(ChannelError::PeerKeyMismatch)
    ));
    assert!(agent.take_outgoing().is_empty());
}

/// Flipping any byte the relay forwards during the handshake stops the side
/// that receives it from ever being established.
#[test]
fn tampering_with_any_handshake_byte_is_caught() {
    let (tech, dev) = (technician(), device());
    // Handshake bytes per direction: 2+32, then 2+64 and the viewer's
    // signature record; 2+96, then the agent's signature record.
    for dir in [Dir::ToAgent, Dir::ToViewer] {
        let total = {
            let mut v = Handshake::initiator(&tech, dev.public()).unwrap();
            let mut a = Handshake::responder(&dev, tech.public()).unwrap();
            let mut n = 0;
            let (rv, ra) = pump(&mut v, &mut a, &mut |d, b| {
                if d == dir {
                    n += b.len()
                }
            });
            rv.unwrap();
            ra.unwrap();
            n
        };
        assert!(total > 100);
        for target in 0..total {
            for bit in [0x01u8, 0x80] {
                let mut v = Handshake::initiator(&tech, dev.public()).unwrap();
                let mut a = Handshake::responder(&dev, tech.public()).unwrap();
                let mut seen = 0;
                let (rv, ra) = pump(&mut v, &mut a, &mut |d, b| {
                    if d == dir {
                        if (seen..seen + b.len()).contains(&target) {
                            b[target - seen] ^= bit;
                        }
                        seen += b.len();
                    }
                });
                let (receiver_ok, result) = match dir {
                    Dir::ToAgent => (a.is_established(), ra),
                    Dir::ToViewer => (v.is_established(), rv),
                };
                assert!(
                    !receiver_ok,
                    "{dir:?} byte {target} flipped but handshake succeeded ({result:?})"
                );
            }
        }
    }
}

/// A relay flipping any bit of a transport record gets the channel killed,
/// never a panic and never a wrong message.
#[test]
fn tampering_with_any_record_byte_is_caught() {
    // One single-record message, and the second record of a two-record one.
    for (len, skip) in [
        (100usize, 0usize),
        (MAX_CHUNK + 50, LEN_PREFIX + MAX_NOISE_MSG),
    ] {
        let (mut v, _) = establish();
        let wire = v.sender.seal(&pattern(len)).unwrap();
        let positions: Vec<usize> = (skip..skip + 40)
            .chain(wire.len() - 40..wire.len())
            .collect();
        for &pos in &positions {
            let (mut v, mut a) = establish();
            let mut wire = v.sender.seal(&pattern(len)).unwrap();
            wire[pos] ^= 0x40;
            a.receiver.push(&wire);
            let result = a.receiver.next_message();
            let failed = result.is_err();
            if pos >= skip + LEN_PREFIX {
                assert!(
                    matches!(result, Err(ChannelError::Decrypt)),
                    "{len}/{pos}: {result:?}"
                );
            } else {
                // A changed length either breaks authentication or leaves
                // the record waiting for bytes that never come.
                match result {
                    Err(ChannelError::Decrypt) | Err(ChannelError::Malformed(_)) => {}
                    Ok(None) => assert!(a.receiver.has_partial()),
                    other => panic!("{len}/{pos}: {other:?}"),
                }
            }
            if failed {
                assert!(matches!(
                    a.receiver.next_message(),
                    Err(ChannelError::Failed)
                ));
            }
        }
    }
}

#[test]
fn records_replayed_dropped_or_reordered_fail() {
    let (mut v, mut a) = establish();
    let _dropped = v.sender.seal(b"one").unwrap();
    let second = v.sender.seal(b"two").unwrap();
    a.receiver.push(&second);
    assert!(matches!(
        a.receiver.next_message(),
        Err(ChannelError::Decrypt)
    ));
    let (mut v, mut a) = establish();
    let first_again = v.sender.seal(b"one").unwrap();
    a.receiver.push(&first_again);
    assert_eq!(a.receiver.next_message().unwrap().unwrap(), b"one");
    a.receiver.push(&first_again);
    assert!(matches!(
        a.receiver.next_message(),
        Err(ChannelError::Decrypt)
    ));
}

#[test]
fn bad_flags_short_records_and_empty_continuations_are_refused() {
    let (mut v, mut a) = establish();
    let mut wire = Vec::new();
    v.sender.seal_record(2, b"chunk", &mut wire).unwrap();
    a.receiver.push(&wire);
    assert!(matches!(
        a.receiver.next_message(),
        Err(ChannelError::Malformed(m)) if m.contains("flag")
    ));

    let (mut v, mut a) = establish();
    let mut wire = Vec::new();
    v.sender.seal_record(FLAG_MORE, b"", &mut wire).unwrap();
    a.receiver.push(&wire);
    assert!(matches!(
        a.receiver.next_message(),
        Err(ChannelError::Malformed(_))
    ));

    for len in [0u16, 1, 16] {
        let (_, mut a) = establish();
        a.receiver.push(&len.to_be_bytes());
        a.receiver.push(&vec![0; len as usize]);
        assert!(matches!(
            a.receiver.next_message(),
            Err(ChannelError::Malformed(_))
        ));
    }
}

/// A peer streaming "more follows" records forever is cut off at the limit,
/// without the receiver ever holding more than the limit.
#[test]
fn endless_message_is_refused_at_the_limit_with_bounded_memory() {
    let (mut v, mut a) = establish();
    let chunk = vec![7u8; MAX_CHUNK];
    // An odd first record, so buffer growth does not land on the limit by
    // luck.
    let mut wire = Vec::new();
    v.sender
        .seal_record(FLAG_MORE, &chunk[..1000], &mut wire)
        .unwrap();
    a.receiver.push(&wire);
    assert_eq!(a.receiver.next_message().unwrap(), None);
    let mut records = 0usize;
    let err = loop {
        let mut wire = Vec::new();
        v.sender.seal_record(FLAG_MORE, &chunk, &mut wire).unwrap();
        a.receiver.push(&wire);
        records += 1;
        match a.receiver.next_message() {
            Ok(None) => {
                assert!(a.receiver.assembled_capacity() <= MAX_SESSION_MSG);
                assert!(a.receiver.buffered_len() <= MAX_SESSION_MSG);
            }
            Ok(Some(_)) => panic!("a message without a last record"),
            Err(e) => break e,
        }
        assert!(records < MAX_SESSION_MSG / MAX_CHUNK + 2, "never refused");
    };
    assert_eq!(records, (MAX_SESSION_MSG - 1000) / MAX_CHUNK + 1);
    assert!(
        matches!(err, ChannelError::TooLarge { len, max } if len > MAX_SESSION_MSG && max == MAX_SESSION_MSG)
    );
    assert_eq!(a.receiver.buffered_len(), 0, "buffers released on failure");
}

/// Before the peer's signature checks out, nothing bigger than a signature
/// is accepted from it.
#[test]
fn unproven_peer_cannot_send_a_big_message() {
    let (tech, dev) = (technician(), device());
    let mut agent = Handshake::responder(&dev, tech.public()).unwrap();
    let mut relay_as_viewer = raw_noise(true);
    agent.push(&write_frame(&mut relay_as_viewer)).unwrap();
    read_frame(&mut relay_as_viewer, &agent.take_outgoing());
    let mut batch = write_frame(&mut relay_as_viewer);
    let (mut out, _, _) = halves(relay_as_viewer);
    batch.extend(out.seal(&[0; 1000]).unwrap());
    assert!(matches!(
        agent.push(&batch),
        Err(ChannelError::TooLarge {
            max: SIGNATURE_LEN,
            ..
        })
    ));
}

#[test]
fn truncated_input_is_reported_as_partial() {
    let (mut v, mut a) = establish();
    let wire = v.sender.seal(&pattern(MAX_CHUNK + 10)).unwrap();
    for cut in [
        1,
        LEN_PREFIX,
        100,
        LEN_PREFIX + MAX_NOISE_MSG,
        wire.len() - 1,
    ] {
        let (mut v, mut a) = establish();
        let wire = v.sender.seal(&pattern(MAX_CHUNK + 10)).unwrap();
        a.receiver.push(&wire[..cut]);
        assert_eq!(a.receiver.next_message().unwrap(), None);
        assert!(a.receiver.has_partial(), "cut at {cut}");
    }
    a.receiver.push(&wire);
    assert!(a.receiver.next_message().unwrap().is_some());
    assert!(!a.receiver.has_partial());
}

#[test]
fn debug_output_shows_no_key_material() {
    let (tech, dev) = (technician(), device());
    let hs = Handshake::initiator(&tech, dev.public()).unwrap();
    let (v, _) = establish();
    for text in [format!("{hs:?}"), format!("{v:?}")] {
        assert!(!text.contains("1, 1, 1"), "{text}");
        assert!(!text.contains("2, 2, 2"), "{text}");
        assert!(text.contains("SHA256:"), "{text}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_bytes_never_panic_the_handshake(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        split in 0usize..600,
    ) {
        let (tech, dev) = (technician(), device());
        let split = split.min(bytes.len());
        let mut agent = Handshake::responder(&dev, tech.public()).unwrap();
        if agent.push(&bytes[..split]).is_ok() {
            let _ = agent.push(&bytes[split..]);
        }
        prop_assert!(!agent.is_established());
        let mut viewer = Handshake::initiator(&tech, dev.public()).unwrap();
        let _ = viewer.take_outgoing();
        let _ = viewer.push(&bytes);
        prop_assert!(!viewer.is_established());
    }

    #[test]
    fn random_handshake_frames_never_panic(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..5),
    ) {
        let (tech, dev) = (technician(), device());
        let mut wire = Vec::new();
        for f in &frames {
            push_frame(&mut wire, f);
        }
        let mut agent = Handshake::responder(&dev, tech.public()).unwrap();
        let _ = agent.push(&wire);
        let mut viewer = Handshake::initiator(&tech, dev.public()).unwrap();
        let _ = viewer.push(&wire);
        prop_assert!(!agent.is_established() && !viewer.is_established());
    }

    #[test]
    fn random_bytes_never_panic_the_opener(
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        pieces in proptest::collection::vec(1usize..500, 1..10),
    ) {
        let (_, mut a) = establish();
        let mut rest = &bytes[..];
        for p in pieces.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at((*p).min(rest.len()));
            a.receiver.push(now);
            while let Ok(Some(_)) = a.receiver.next_message() {
                prop_assert!(false, "random bytes authenticated");
            }
            rest = later;
        }
    }

    #[test]
    fn random_records_never_panic_the_opener(
        records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..6),
    ) {
        let (_, mut a) = establish();
        for r in &records {
            a.receiver.push(&(r.len() as u16).to_be_bytes());
            a.receiver.push(r);
        }
        prop_assert!(!matches!(a.receiver.next_message(), Ok(Some(_))));
    }

    #[test]
    fn any_corruption_of_a_stream_is_an_error_not_a_wrong_message(
        lens in proptest::collection::vec(0usize..100_000, 1..4),
        pos in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (mut v, mut a) = establish();
        let msgs: Vec<Vec<u8>> = lens.iter().map(|&l| pattern(l)).collect();
        let mut wire = Vec::new();
        for m in &msgs {
            wire.extend(v.sender.seal(m).unwrap());
        }
        let pos = pos.index(wire.len());
        wire[pos] ^= flip;
        a.receiver.push(&wire);
        let mut got = Vec::new();
        while let Ok(Some(m)) = a.receiver.next_message() {
            got.push(m);
        }
        prop_assert!(got.len() < msgs.len());
        prop_assert_eq!(&got[..], &msgs[..got.len()]);
    }
}

#[cfg(feature = "tokio")]
mod async_api {
    use super::*;
    use assent_proto::session_msg::{Control, SessionMsg};
    use std::future::Future;
    use tokio::io::{duplex, split, AsyncWriteExt};

    /// A hang is a failure, not a stuck test run.
    async fn within<F: Future<Output = ()>>(test: F) {
        tokio::time::timeout(std::time::Duration::from_secs(30), test)
            .await
            .expect("test timed out");
    }

    #[tokio::test]
    async fn duplex_session_round_trips_and_closes() {
        within(duplex_session_round_trips_and_closes_body()).await
    }

    async fn duplex_session_round_trips_and_closes_body() {
        let (tech, dev) = (technician(), device());
        let (viewer_end, agent_end) = duplex(64 * 1024);
        let (vr, vw) = split(viewer_end);
        let (ar, aw) = split(agent_end);
        let (viewer, agent) = tokio::join!(
            connect_viewer(vw, vr, &tech, dev.public()),
            accept_agent(aw, ar, &dev, tech.public()),
        );
        let (mut viewer, mut agent) = (viewer.unwrap(), agent.unwrap());
        assert_eq!(viewer.verification_code, agent.verification_code);
        assert_eq!(viewer.peer, dev.public());
        assert_eq!(agent.peer, tech.public());

        let big = SessionMsg::Frame(pattern(3 * 1024 * 1024));
        let to_agent = vec![
            SessionMsg::Control(Control::KeyframeRequest),
            SessionMsg::FrameAck { seq: 9 },
        ];
        let to_viewer = vec![
            big.clone(),
            SessionMsg::Cursor { x: 1, y: 2 },
            SessionMsg::Control(Control::End),
        ];
        // Both directions at once, as in a live session (the duplex buffer
        // is far smaller than the big frame).
        let send_viewer = async {
            for m in &to_agent {
                viewer.writer.send(m).await.unwrap();
            }
            viewer.writer.shutdown().await.unwrap();
            let mut got = Vec::new();
            for _ in 0..to_viewer.len() {
                got.push(viewer.reader.recv().await.unwrap());
            }
            got
        };
        let send_agent = async {
            let sending = async {
                for m in &to_viewer {
                    agent.writer.send(m).await.unwrap();
                }
            };
            let receiving = async {
                let mut got = Vec::new();
                for _ in 0..to_agent.len() {
                    got.push(agent.reader.recv().await.unwrap());
                }
                let end = agent.reader.recv().await;
                (got, end)
            };
            tokio::join!(sending, receiving).1
        };
        let (at_viewer, (at_agent, end)) = tokio::join!(send_viewer, send_agent);
        assert_eq!(at_viewer, to_viewer);
        assert_eq!(at_agent, to_agent);
        assert!(matches!(end, Err(ChannelError::Closed)), "{end:?}");
    }

    #[tokio::test]
    async fn async_handshake_with_wrong_key_fails() {
        within(async_handshake_with_wrong_key_fails_body()).await
    }

    async fn async_handshake_with_wrong_key_fails_body() {
        let (tech, dev) = (technician(), device());
        let (viewer_end, agent_end) = duplex(4096);
        let (vr, vw) = split(viewer_end);
        let (ar, aw) = split(agent_end);
        let (viewer, agent) = tokio::join!(
            // The viewer's streams are dropped whatever happens, so the agent
            // below is never left waiting.
            async {
                connect_viewer(vw, vr, &tech, stranger().public())
                    .await
                    .map(drop)
            },
            async {
                let agent = accept_agent(aw, ar, &dev, tech.public()).await;
                // The agent is satisfied; then its peer hangs up on it.
                let mut agent = agent.unwrap();
                agent.reader.recv().await
            },
        );
        assert!(matches!(viewer, Err(ChannelError::PeerKeyMismatch)));
        assert!(agent.is_err());
    }

    #[tokio::test]
    async fn stream_ending_mid_handshake_is_closed() {
        within(stream_ending_mid_handshake_is_closed_body()).await
    }

    async fn stream_ending_mid_handshake_is_closed_body() {
        let (tech, dev) = (technician(), device());
        let (viewer_end, agent_end) = duplex(4096);
        drop(agent_end);
        let (vr, vw) = split(viewer_end);
        let result = connect_viewer(vw, vr, &tech, dev.public()).await;
        assert!(result.is_err());

        // A peer that says a few bytes and hangs up.
        let (agent_end, mut fake_viewer) = duplex(4096);
        fake_viewer.write_all(&[0, 32, 1, 2, 3]).await.unwrap();
        drop(fake_viewer);
        let (ar, aw) = split(agent_end);
        let result = accept_agent(aw, ar, &dev, tech.public()).await;
        assert!(matches!(result, Err(ChannelError::Closed)), "{result:?}");
    }

    #[tokio::test]
    async fn stream_ending_mid_message_is_truncated() {
        within(stream_ending_mid_message_is_truncated_body()).await
    }

    async fn stream_ending_mid_message_is_truncated_body() {
        let (mut v, a) = establish();
        let wire = v
            .sender
            .seal(&SessionMsg::Frame(pattern(100_000)).encode().unwrap())
            .unwrap();
        let (mut tx, rx) = duplex(256 * 1024);
        tx.write_all(&wire[..wire.len() / 2]).await.unwrap();
        drop(tx);
        let mut reader = ChannelReader::new(rx, a.receiver);
        let result = reader.recv().await;
        assert!(matches!(result, Err(ChannelError::Truncated)), "{result:?}");
        assert!(matches!(reader.recv().await, Err(ChannelError::Failed)));
    }

    #[tokio::test]
    async fn handshake_over_a_side_channel_then_data_stream() {
        within(handshake_over_a_side_channel_then_data_stream_body()).await
    }

    async fn handshake_over_a_side_channel_then_data_stream_body() {
        // As over the relay's control stream: each batch travels as one
        // discrete message, then the halves move onto a data stream.
        let (tech, dev) = (technician(), device());
        let mut viewer = Handshake::initiator(&tech, dev.public()).unwrap();
        let mut agent = Handshake::responder(&dev, tech.public()).unwrap();
        let mut batches = 0;
        let (rv, ra) = pump(&mut viewer, &mut agent, &mut |_, b| {
            batches += 1;
            assert!(b.len() <= 4096);
        });
        rv.unwrap();
        ra.unwrap();
        assert!(batches <= 8, "{batches}");
        let (viewer_end, agent_end) = duplex(4096);
        let (vr, vw) = split(viewer_end);
        let (ar, aw) = split(agent_end);
        let mut v = Channel::from_established(viewer.into_established().unwrap(), vw, vr);
        let mut a = Channel::from_established(agent.into_established().unwrap(), aw, ar);
        assert_eq!(v.verification_code, a.verification_code);
        let msg = SessionMsg::Control(Control::Paused);
        a.writer.send(&msg).await.unwrap();
        assert_eq!(v.reader.recv().await.unwrap(), msg);
    }
}
