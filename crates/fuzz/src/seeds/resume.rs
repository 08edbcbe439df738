//! Seeds of a live session carried on over a new connection.

use assent_proto::wire::{ClientMsg, RelayMsg, ResumeCredential, Role};

use super::encode;

pub(super) fn client_msgs() -> Vec<(&'static str, Vec<u8>)> {
    vec![(
        "resume",
        encode(&ClientMsg::Resume {
            session: "s-1".into(),
            credential: ResumeCredential([9; 32]),
            signature: vec![5; 64],
        }),
    )]
}

/// A live session carried on over a new connection.
pub(super) fn relay_msgs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "resume-credential",
            encode(&RelayMsg::ResumeCredential {
                credential: ResumeCredential([4; 32]),
            }),
        ),
        (
            "reconnected",
            encode(&RelayMsg::Reconnected {
                session: "s-1".into(),
            }),
        ),
        (
            "peer-reconnected",
            encode(&RelayMsg::PeerReconnected { side: Role::Agent }),
        ),
        // Fleet mode: the agent is sent to the relay that holds its code.
        (
            "redirect",
            encode(&RelayMsg::Redirect {
                relay: "relay-a.example.com:4433".into(),
            }),
        ),
    ]
}
