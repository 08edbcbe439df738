//! The end of a live session, as the user meets it: capture and input stop
//! first, then the user is told and asked "Was your problem solved?" (the
//! signed answer goes to the relay), and transfers the end cut short are
//! reported.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use assent_client::{ClientError, Control};
use assent_proto::wire::{Confirmation, EndReason, RelayMsg};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::conversation::chat_time;
use crate::live::{EndSignals, LiveSession};
use crate::ui::{EndQuestion, UiCommand, UiEvent};

/// How long the question after the end stays (the relay keeps the agent's
/// connection open for ten minutes after the end).
const CONFIRM_WAIT: Duration = Duration::from_secs(590);
/// How long the end waits for the relay to confirm it.
const END_NOTICE_WAIT: Duration = Duration::from_secs(3);

impl LiveSession {
    /// Stops capturing and releases held keys before anything else; then,
    /// with nothing shared any more, tells the user and asks whether the
    /// problem was solved (the signed answer goes to the relay), and closes.
    pub(crate) async fn finish(
        mut self,
        end_message: String,
        commands: &mut mpsc::UnboundedReceiver<UiCommand>,
    ) -> String {
        // A transfer the end cut short: its part file goes, the relay hears
        // how it ended (it takes the report just after the end, too).
        self.stop_transfers().await;
        let technician = self.technician();
        let LiveSession {
            guarded,
            mut control,
            reporter,
            ui,
            stats,
            end:
                EndSignals {
                    relay_end,
                    input_closed,
                    channel_closed,
                },
            ..
        } = self;
        stats
            .inputs_dropped
            .store(guarded.gate().dropped_inputs(), Relaxed);
        tokio::task::spawn_blocking(move || guarded.end())
            .await
            .ok();
        // The End the relay records was sent above if the user ended; if the
        // technician did, their viewer tells the relay, and saying End here
        // too could reach the relay first and be recorded as the user's.
        let relay_end = match relay_end {
            Some(reason) => Some(reason),
            None => relay_says_ended(&mut control).await,
        };
        // The channel closing says only that the other side went: the
        // relay's reason says who ended it.
        let end_message = match relay_end {
            Some(reason) if channel_closed => crate::prompt::session_ended(reason, &technician),
            _ => end_message,
        };
        let askable = relay_end
            .is_some_and(|r| !matches!(r, EndReason::AgentLost | EndReason::RelayShutdown));
        if askable && !input_closed {
            let deadline = Instant::now() + CONFIRM_WAIT;
            let question = EndQuestion::new(&technician, &chat_time(), &end_message, deadline);
            ui.show(UiEvent::Confirm(question));
            if let Some(answer) = confirmation(commands, &mut control, deadline).await {
                info!(answer = answer.as_str(), "user confirmed the end");
                if let Err(e) = reporter.report_confirmation(&mut control, answer).await {
                    warn!(error = %e, "the answer could not be sent to the relay");
                }
            }
        }
        ui.show(UiEvent::Ended(end_message.clone()));
        control.close_when_ended(Duration::from_secs(2)).await;
        end_message
    }
}

/// Waits a moment for the relay to confirm the end (it follows an End the
/// user gave, or the technician's): why it ended, or `None` when the relay
/// is gone.
pub(crate) async fn relay_says_ended(control: &mut Control) -> Option<EndReason> {
    let deadline = tokio::time::Instant::now() + END_NOTICE_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, control.recv()).await {
            Ok(Ok(RelayMsg::SessionEnded { reason })) => return Some(reason),
            Ok(Ok(_)) => continue,
            Ok(Err(ClientError::Ended(reason))) => return Some(reason),
            Ok(Err(_)) | Err(_) => return None,
        }
    }
}

/// The user's answer to "Was your problem solved?"; `None` when they close
/// the window, the terminal ends, `deadline` passes, or the relay goes away
/// (the answer could not be recorded any more).
async fn confirmation(
    commands: &mut mpsc::UnboundedReceiver<UiCommand>,
    control: &mut Control,
    deadline: Instant,
) -> Option<Confirmation> {
    let deadline = tokio::time::Instant::from_std(deadline);
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(UiCommand::Confirm(answer)) => return Some(answer),
                Some(UiCommand::End | UiCommand::InputClosed) | None => return None,
                Some(_) => continue,
            },
            msg = control.recv() => match msg {
                Ok(_) => continue,
                Err(e) => {
                    info!(error = %e, "the relay went away before the user answered");
                    return None;
                }
            },
            _ = tokio::time::sleep_until(deadline) => return None,
        }
    }
}
