//! The end of a session task: the last word to each side, the entries
//! removed, and the technician's connection kept open for the note when the
//! session was not theirs to end.

use assent_proto::session::{AbortReason, Phase};
use assent_proto::wire::{ClientMsg, EndReason, RelayMsg};

use super::records::{abort_message, record_note};
use super::{SessionTask, NOTE_GRACE};

impl SessionTask {
    /// Goodbyes and cleanup. A session the technician did not end
    /// themselves (the user clicked End, a limit, an admin) leaves them
    /// writing the note: keep their connection open for it, for a while.
    pub(super) async fn farewell(self) {
        let SessionTask {
            shared,
            id,
            invite,
            machine,
            mut viewer,
            agent,
            mut shutdown,
            ..
        } = self;
        let last = match machine.phase() {
            Phase::Ended { reason, .. } => RelayMsg::SessionEnded { reason },
            Phase::Aborted { reason } => abort_message(reason),
            _ => RelayMsg::SessionEnded {
                reason: EndReason::RelayShutdown,
            },
        };
        {
            let mut st = shared.lock();
            st.sessions.remove(&id);
            st.waiting.remove(&invite.id);
            if machine.phase()
                == (Phase::Aborted {
                    reason: AbortReason::Withdrawn,
                })
            {
                st.invites.withdraw(&invite.id);
            } else {
                st.invites.cancel(&invite.id);
            }
        }
        let agent_bye = async {
            if let Some(a) = agent {
                a.side.finish(last.clone()).await;
            }
        };
        let viewer_may_write_note = matches!(
            machine.phase(),
            Phase::Ended { reason, .. } if !matches!(
                reason,
                EndReason::ViewerClosed | EndReason::ViewerLost | EndReason::RelayShutdown
            )
        );
        if !viewer_may_write_note {
            tokio::join!(viewer.finish(last.clone()), agent_bye);
            return;
        }
        viewer.tell(&last).await;
        let note_wait = async {
            let deadline = tokio::time::Instant::now() + NOTE_GRACE;
            loop {
                tokio::select! {
                    msg = viewer.messages.recv() => match msg {
                        Some(Ok(ClientMsg::SessionNote { fields })) => {
                            record_note(&shared, &id, &machine, fields).await;
                        }
                        Some(Ok(_)) | Some(Err(_)) | None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = shutdown.changed() => break,
                }
            }
        };
        tokio::join!(note_wait, agent_bye);
        viewer.close();
    }
}
