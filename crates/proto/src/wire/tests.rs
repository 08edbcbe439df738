//! Round trips, the scope rule, and hostile bytes.
use super::*;
use proptest::prelude::*;

#[test]
fn messages_round_trip() {
    let msgs = vec![
        ClientMsg::Hello {
            version: 1,
            role: Role::Agent,
        },
        ClientMsg::CreateInvite(InviteRequest {
            ticket: "T-1".into(),
            client: "Acme".into(),
            summary: "printer".into(),
            impact: Impact::High,
            scope: Scope::Control,
            identity_check: String::new(),
            permissions: vec![],
        }),
        ClientMsg::Consent {
            decision: ConsentDecision::Denied,
            receipt: vec![1; 64],
        },
        ClientMsg::End,
    ];
    for msg in msgs {
        let bytes = encode(&msg).unwrap();
        assert_eq!(decode::<ClientMsg>(&bytes).unwrap(), msg);
    }
}

#[test]
fn decision_never_grants_more_than_requested() {
    assert_eq!(
        ConsentDecision::Control.granted_scope(Scope::View),
        Some(Scope::View)
    );
    assert_eq!(
        ConsentDecision::Control.granted_scope(Scope::Control),
        Some(Scope::Control)
    );
    assert_eq!(ConsentDecision::Denied.granted_scope(Scope::Control), None);
    assert_eq!(ConsentDecision::Timeout.granted_scope(Scope::View), None);
}

#[test]
fn oversized_length_inside_message_is_rejected() {
    // A postcard varint claiming a 1 GiB string, with no bytes behind it.
    let mut bytes = vec![2u8]; // ViewerAuth variant index... any variant with a Vec
    bytes.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x04]);
    assert!(decode::<ClientMsg>(&bytes).is_err());
}

/// Found by fuzzing (`assent-fuzz`): postcard ignores bytes after a
/// complete value, so a message followed by anything was accepted.
#[test]
fn trailing_bytes_are_refused() {
    let mut end = encode(&ClientMsg::End).unwrap();
    end.push(0);
    assert!(matches!(
        decode::<ClientMsg>(&end),
        Err(FrameError::Decode(why)) if why.contains("after the message")
    ));
    let offer = SessionOffer {
        session: "s".into(),
        technician: "alice".into(),
        technician_key: [1; 32],
        ticket: "T-1".into(),
        client: "Acme".into(),
        summary: "printer".into(),
        impact: Impact::Low,
        scope: Scope::View,
        device: "pc".into(),
        device_key: [2; 32],
        consent_timeout_secs: 90,
        escalated_from: None,
        permissions: vec![],
    };
    let mut bytes = offer.to_bytes();
    assert_eq!(SessionOffer::from_bytes(&bytes).unwrap(), offer);
    bytes.extend_from_slice(b"extra");
    assert!(SessionOffer::from_bytes(&bytes).is_err());
}

#[test]
fn a_resume_credential_round_trips_and_never_shows_in_debug() {
    let credential = ResumeCredential([0xab; 32]);
    let msgs = (
        RelayMsg::ResumeCredential {
            credential: credential.clone(),
        },
        ClientMsg::Resume {
            session: "s".into(),
            credential,
            signature: vec![1; 64],
        },
    );
    let relay = encode(&msgs.0).unwrap();
    assert_eq!(decode::<RelayMsg>(&relay).unwrap(), msgs.0);
    let client = encode(&msgs.1).unwrap();
    assert_eq!(decode::<ClientMsg>(&client).unwrap(), msgs.1);
    // The same bytes as a plain [u8; 32] on the wire (transparent).
    assert_eq!(relay.len(), 1 + 32);
    for shown in [format!("{:?}", msgs.0), format!("{:?}", msgs.1)] {
        assert!(!shown.contains("171") && !shown.contains("ab"), "{shown}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]
    #[test]
    fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<ClientMsg>(&bytes);
        let _ = decode::<RelayMsg>(&bytes);
        let _ = SessionOffer::from_bytes(&bytes);
    }
}
