//! Seeds for what the user keeps private (issue 14 item 1): the counts the
//! agent sends the viewer and the relay, and hostile variants of them.

use assent_proto::privacy::PrivacyCounts;
use assent_proto::session_msg::{SessionMsg, MAX_PRIVACY_COUNT};
use assent_proto::wire::ClientMsg;

pub(super) fn session_msgs() -> Vec<(&'static str, Vec<u8>)> {
    let enc = |m: SessionMsg| m.encode().expect("seed messages are small");
    vec![
        (
            "privacy-hidden",
            enc(SessionMsg::Privacy {
                hidden: 2,
                only_one: false,
            }),
        ),
        (
            "privacy-too-many",
            enc(SessionMsg::Privacy {
                hidden: MAX_PRIVACY_COUNT + 1,
                only_one: true,
            }),
        ),
    ]
}

pub(super) fn client_msgs() -> Vec<(&'static str, Vec<u8>)> {
    let counts = PrivacyCounts {
        hidden: 3,
        by_policy: 1,
        only_one: false,
    };
    let msg = ClientMsg::PrivacyChanged(counts);
    let bytes = assent_proto::wire::encode(&msg).expect("seed messages are small");
    // Counts past u32 (a varint of 5 bytes with the top bits set).
    let mut huge = bytes.clone();
    huge.truncate(huge.len() - 3);
    huge.extend([0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0]);
    vec![("privacy-changed", bytes), ("privacy-changed-huge", huge)]
}
