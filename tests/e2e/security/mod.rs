//! The adversarial scenario suite (SECURITY.md maps each scenario of the
//! threat model to its test). Hostile peers here speak the real protocol over
//! real QUIC through the real relay process, and misbehave on purpose; the
//! agent is the real session code with a fake screen and a recording input
//! sink (test doubles for the X display, which `desktop.rs` covers for real).
//!
//! One file a theme: [`consent`] (no consent, view only, scope, end, pause),
//! [`crash`] (killed viewer and relay, the audit under kill -9 and
//! tampering), [`codes`] (replay and brute force), [`network`] (rogue relay,
//! lossy link, session and connection limits), [`hostile`] (hostile metadata,
//! secrets in logs), [`load`] (many sessions).
//!
//! Scenarios covered by tests elsewhere in this binary are listed in
//! SECURITY.md with their test names.

mod codes;
mod consent;
mod crash;
mod hostile;
mod load;
mod network;
mod overload;

use assent_proto::wire::ClientMsg;
use assent_tests::TestRelay;

/// Every `session_start` in the relay's audit has a `session_end`.
pub(super) fn every_start_has_an_end(relay: &TestRelay) -> (usize, Vec<String>) {
    let records = relay.records();
    let ends: std::collections::HashSet<_> = records
        .iter()
        .filter(|r| r["event"] == "session_end")
        .map(|r| r["session"].as_str().unwrap_or_default().to_string())
        .collect();
    let starts: Vec<String> = records
        .iter()
        .filter(|r| r["event"] == "session_start")
        .map(|r| r["session"].as_str().unwrap_or_default().to_string())
        .collect();
    let missing = starts
        .iter()
        .filter(|s| !ends.contains(*s))
        .cloned()
        .collect();
    (starts.len(), missing)
}

/// A technician's raw control connection, authenticated: for sending what
/// the typed client never would.
pub(super) async fn signed_in_technician(
    relay: &TestRelay,
    key: &assent_proto::identity::SecretKey,
) -> assent_client::Control {
    use assent_proto::wire::Role;
    let mut control = assent_client::Control::open(&relay.addr, &relay.ca(), Role::Viewer)
        .await
        .unwrap();
    let signature = control.sign_challenge(Role::Viewer, key).unwrap();
    control
        .send(&ClientMsg::ViewerAuth {
            public_key: key.public().0,
            signature,
        })
        .await
        .unwrap();
    control.recv().await.unwrap();
    control
}
