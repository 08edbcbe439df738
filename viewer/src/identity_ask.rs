//! Before the invite, in the window: a technician who did not say (with
//! `--identity-check`) how they verified who is asking for help is asked
//! (support procedure: "Confirm user identity"). Skipping is allowed and
//! recorded as not recorded; the checklist then shows the gap.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::checklist::Fact;
use crate::session::{lock, Command, Phase, SharedState};

/// The answer in the window: `Some(check)` (empty when skipped), or `None`
/// when the window was closed first.
pub(crate) async fn ask(
    state: &SharedState,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    repaint: &Arc<dyn Fn() + Send + Sync>,
) -> Option<String> {
    lock(state).phase = Phase::AskIdentity;
    repaint();
    let check = loop {
        match commands.recv().await? {
            Command::IdentityCheck(check) => break check,
            Command::End => return None,
            _ => continue,
        }
    };
    {
        let mut s = lock(state);
        if !check.is_empty() {
            s.checklist.know(Fact::IdentityChecked);
        }
        s.phase = Phase::Connecting;
    }
    repaint();
    Some(check)
}

/// The choices the window offers, with the words on their buttons.
pub const CHOICES: [(&str, &str); 5] = [
    ("phone-callback", "Phone call-back to a known number"),
    ("ticket-history", "Ticket history"),
    ("email", "Email from the known address"),
    ("in-person", "In person"),
    ("manager", "Confirmed by their manager"),
];
