//! The specialist's side of an escalation: the handovers waiting for them
//! (`assent-viewer handovers`) and claiming one (`connect --handover ID`).
//! A claimed handover runs as any session from the pairing on: the user is
//! asked afresh, naming this technician, and nothing of the screen comes
//! before their yes.

use anyhow::Context as _;
use assent_client::Viewer;
use assent_proto::escalation::{trigger_words, HandoverInfo};
use assent_proto::identity::SecretKey;
use assent_proto::text::sanitize;

use crate::record::AuditWriter;
use crate::session::{fields, lock, ConnectConfig, Phase, SharedState, ViewState};

/// The handovers waiting for the technician of `key`.
pub async fn list(
    relay: &str,
    ca: &std::path::Path,
    key: &SecretKey,
) -> anyhow::Result<Vec<HandoverInfo>> {
    Viewer::handovers(relay, ca, key)
        .await
        .context("asking the relay for your handovers")
}

/// The list as a table for the terminal.
pub fn table(list: &[HandoverInfo]) -> String {
    if list.is_empty() {
        return "No handovers are waiting for you.".into();
    }
    let mut out = format!(
        "{:<18} {:<16} {:<16} {:<8} {:<9} WHY\n",
        "HANDOVER", "FROM", "TICKET", "SCOPE", "EXPIRES"
    );
    for h in list {
        out.push_str(&format!(
            "{:<18} {:<16} {:<16} {:<8} {:<9} {}\n",
            sanitize(&h.handover, 32),
            sanitize(&h.from_technician, 16),
            sanitize(&h.ticket, 16),
            h.scope.as_str(),
            format!("{} min", h.expires_in_secs / 60),
            sanitize(&trigger_words(&h.trigger), 80),
        ));
    }
    out.push_str("Take one with: assent-viewer connect --relay ... --ca ... --handover HANDOVER\n");
    out
}

/// Claims `config.handover`: the request becomes the escalated session's
/// (its ticket, with the scope asked for), and the note and window say
/// who escalated it and why.
pub(crate) async fn claim(
    config: &mut ConnectConfig,
    state: &SharedState,
    audit: &AuditWriter,
) -> anyhow::Result<Viewer> {
    let id = config.handover.clone().unwrap_or_default();
    audit.record(
        "connect",
        fields! {"relay" => config.relay, "handover" => id},
    );
    let claimed = Viewer::claim_handover(&config.relay, &config.ca, &config.key, &id)
        .await
        .with_context(|| format!("claiming handover {id}"))?;
    config.request = claimed.request.clone();
    let from = sanitize(&claimed.from_technician, 64);
    let why = trigger_words(&claimed.trigger);
    audit.record(
        "handover_claimed",
        fields! {"handover" => id, "invite" => claimed.viewer.invite.id, "ticket" => config.request.ticket, "from_technician" => from, "scope" => config.request.scope.as_str()},
    );
    {
        let mut s = lock(state);
        let fresh = ViewState::new(&config.request);
        for field in ["Client", "Issue Summary", "Business Impact"] {
            s.note.set(field, fresh.note.get(field));
        }
        s.checklist = fresh.checklist;
        s.ticket = fresh.ticket;
        s.scope = fresh.scope;
        s.note.set("Technician", claimed.viewer.technician.clone());
        let taken = s.note.get("Actions Taken").trim().to_string();
        let escalated = format!("Escalated by {from}, because {why}.");
        let taken = match taken.is_empty() {
            true => escalated,
            false => format!("{escalated} {taken}"),
        };
        s.note.set("Actions Taken", taken);
        s.escalated_from = Some((from.clone(), why.clone()));
        s.phase = Phase::Invited {
            code: String::new(),
        };
    }
    eprintln!(
        "Handover {id} claimed: escalated by {from} (ticket {}), because {why}. The user is being asked to accept you; nothing is shown before their yes.",
        sanitize(&config.request.ticket, 64)
    );
    Ok(claimed.viewer)
}
