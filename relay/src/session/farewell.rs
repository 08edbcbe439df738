//! The end of a session task: the last word to each side, the entries
//! removed, then what still belongs to the session after its end: the
//! technician's note (when the session was not theirs to end, they are
//! still writing it) and the user's answer to "Was your problem solved?".

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use assent_proto::session::{AbortReason, Phase, SessionMachine};
use assent_proto::wire::{ClientMsg, Confirmation, EndReason, RelayMsg};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::records::{
    abort_message, record_confirmation, record_note, record_note_update, ReceiptCtx, UserAnswers,
};
use super::side::{Agent, Side};
use super::{SessionTask, NOTE_GRACE};
use crate::fields;
use crate::state::Shared;

/// How long the user has, after the end, to say whether the problem was
/// solved; the agent's connection stays open for it.
pub(super) const CONFIRM_GRACE: Duration = Duration::from_secs(10 * 60);

impl SessionTask {
    /// Stops forwarding, then writes `session_end`.
    pub(super) async fn record_end(&mut self, reason: EndReason) {
        for f in self.forwarders.drain(..) {
            f.abort();
        }
        let duration_ms = match self.machine.phase() {
            Phase::Ended { duration, .. } => duration.as_millis() as u64,
            _ => 0,
        };
        let fields = fields! {
            "session" => self.id, "reason" => reason.as_str(),
            "duration_ms" => duration_ms,
            "bytes_to_viewer" => self.counters.to_viewer.load(Ordering::Relaxed),
            "bytes_to_agent" => self.counters.to_agent.load(Ordering::Relaxed),
            "chat_from_viewer" => self.chat_from_viewer,
            "chat_from_agent" => self.chat_from_agent,
        };
        let mut fields = fields;
        if let Some(to) = &self.escalated_to {
            fields.insert("escalated_to".into(), to.clone().into());
        }
        if let Err(e) = self.shared.audit.record("session_end", fields).await {
            warn!(session = %self.id, error = %e, "session_end not recorded");
        }
        info!(session = %self.id, reason = reason.as_str(), "session ended");
    }

    /// Goodbyes and cleanup, then the note and the user's confirmation for
    /// as long as each side may still send them.
    pub(super) async fn farewell(self) {
        let last = match self.machine.phase() {
            Phase::Ended { reason, .. } => RelayMsg::SessionEnded { reason },
            Phase::Aborted { reason } => abort_message(reason),
            _ => RelayMsg::SessionEnded {
                reason: EndReason::RelayShutdown,
            },
        };
        self.forget();
        let ended_by = match self.machine.phase() {
            Phase::Ended { reason, .. } => Some(reason),
            _ => None,
        };
        // The technician finishes the note after the end, whoever ended it
        // (a viewer that closed its connection has nothing more to say).
        let note_expected = ended_by
            .is_some_and(|r| !matches!(r, EndReason::ViewerLost | EndReason::RelayShutdown));
        // The user is asked after every end their agent is still there
        // for, except a handover: their session goes on with the specialist.
        let confirmation_expected = ended_by.is_some_and(|r| {
            !matches!(
                r,
                EndReason::AgentLost | EndReason::RelayShutdown | EndReason::Escalated
            )
        });
        let SessionTask {
            shared,
            id,
            machine,
            viewer,
            agent,
            shutdown,
            offer_bytes,
            answers,
            note_filed,
            permissions,
            ..
        } = self;
        let viewer_bye = async {
            let mut v = viewer;
            if note_expected {
                v.tell(&last).await;
                return Some(v);
            }
            v.finish(last.clone()).await;
            None
        };
        let agent_bye = async {
            match agent {
                Some(mut a) if confirmation_expected => {
                    a.side.tell(&last).await;
                    Some(a)
                }
                Some(a) => {
                    a.side.finish(last.clone()).await;
                    None
                }
                None => None,
            }
        };
        let (viewer, agent) = tokio::join!(viewer_bye, agent_bye);
        let mut aftercare = Aftercare {
            shared,
            id,
            machine,
            offer_bytes,
            answers,
            note_filed,
            shutdown,
            permissions,
        };
        aftercare.run(viewer, agent).await;
    }

    /// Removes the session and its invite from the relay's tables.
    fn forget(&self) {
        let mut st = self.shared.lock();
        st.sessions.remove(&self.id);
        st.waiting.remove(&self.invite.id);
        let withdrawn = Phase::Aborted {
            reason: AbortReason::Withdrawn,
        };
        if self.machine.phase() == withdrawn {
            st.invites.withdraw(&self.invite.id);
        } else {
            st.invites.cancel(&self.invite.id);
        }
    }
}

/// What a session still takes after its end.
struct Aftercare {
    shared: Arc<Shared>,
    id: String,
    machine: SessionMachine,
    offer_bytes: Vec<u8>,
    answers: UserAnswers,
    note_filed: bool,
    shutdown: watch::Receiver<bool>,
    /// File transfers the end cut short are still reported after it.
    permissions: super::permissions::PermissionLog,
}

impl Aftercare {
    /// Waits for the note (from `viewer`) and the user's confirmation (from
    /// `agent`), each until its side closes or its grace period passes.
    async fn run(&mut self, mut viewer: Option<Side>, mut agent: Option<Agent>) {
        let note_until = Instant::now() + NOTE_GRACE;
        let confirm_until = Instant::now() + CONFIRM_GRACE;
        while viewer.is_some() || agent.is_some() {
            tokio::select! {
                msg = next_msg(viewer.as_mut()), if viewer.is_some() => match msg {
                    Some(ClientMsg::SessionNote { fields }) => {
                        let filed =
                            record_note(&self.shared, &self.id, &self.machine, fields, self.answers);
                        self.note_filed |= filed.await;
                    }
                    // A recording the end closed is reported just after it.
                    Some(m @ ClientMsg::RecordingStopped { .. }) => {
                        if let Some(v) = viewer.as_ref() {
                            let peer = v.addr;
                            self.permissions.record_viewer(&self.shared, &self.id, peer, m).await;
                        }
                    }
                    Some(_) | None => close_side(&mut viewer),
                },
                msg = next_msg(agent.as_mut().map(|a| &mut a.side)), if agent.is_some() => match msg {
                    Some(ClientMsg::UserConfirmation { answer, receipt }) => {
                        if let Some(a) = agent.take() {
                            self.on_confirmation(&a, answer, &receipt, viewer.as_mut()).await;
                            a.side.close();
                        }
                    }
                    Some(m @ ClientMsg::FileTransfer(_)) => {
                        if let Some(a) = agent.as_ref() {
                            let session = (self.id.as_str(), &self.machine, self.offer_bytes.as_slice());
                            let ctx = ReceiptCtx::new(&self.shared, session, a);
                            self.permissions.record(&ctx, m).await;
                        }
                    }
                    // Sent before the agent saw the end: not for after it.
                    Some(_) => {}
                    None => close_agent(&mut agent),
                },
                _ = tokio::time::sleep_until(note_until), if viewer.is_some() => close_side(&mut viewer),
                _ = tokio::time::sleep_until(confirm_until), if agent.is_some() => close_agent(&mut agent),
                _ = self.shutdown.changed() => break,
            }
        }
        close_side(&mut viewer);
        close_agent(&mut agent);
    }

    /// Records the user's answer; the technician, still writing the note,
    /// is told it.
    async fn on_confirmation(
        &mut self,
        a: &Agent,
        answer: Confirmation,
        receipt: &[u8],
        viewer: Option<&mut Side>,
    ) {
        let session = (self.id.as_str(), &self.machine, self.offer_bytes.as_slice());
        let ctx = ReceiptCtx::new(&self.shared, session, a);
        let already = self.answers.confirmation;
        let Some(answer) = record_confirmation(&ctx, already, answer, receipt).await else {
            return;
        };
        self.answers.confirmation = Some(answer);
        if let Some(v) = viewer {
            v.tell(&RelayMsg::UserConfirmed { answer }).await;
        }
        if self.note_filed {
            record_note_update(&self.shared, &self.id, self.answers).await;
        }
    }
}

fn close_side(side: &mut Option<Side>) {
    if let Some(s) = side.take() {
        s.close();
    }
}

fn close_agent(agent: &mut Option<Agent>) {
    if let Some(a) = agent.take() {
        a.side.close();
    }
}

/// The next message of a side still open; `None` when it closed or failed.
async fn next_msg(side: Option<&mut Side>) -> Option<ClientMsg> {
    match side?.messages.recv().await {
        Some(Ok(msg)) => Some(msg),
        Some(Err(_)) | None => None,
    }
}
