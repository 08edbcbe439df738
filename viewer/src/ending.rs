//! After the live session: the note (the facts, then what the technician
//! writes while the window stays open, with the user's answer to "Was your
//! problem solved?" when it comes), the audit, and the relay.

use assent_client::Viewer;
use assent_proto::wire::{ClientMsg, RelayMsg};
use tokio::sync::mpsc;
use tracing::info;

use crate::checklist::Fact;
use crate::live::LiveEnd;
use crate::session::{fields, finished, lock, Command, Ctx, Finished, Phase};

/// After the live session: the note (auto fields, then the technician's
/// when the session was not theirs to end), audit, relay.
pub(crate) async fn close_out(
    ctx: &Ctx<'_>,
    mut viewer: Viewer,
    session: String,
    end: LiveEnd,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    wait_for_close: bool,
) -> anyhow::Result<Finished> {
    let reason = end.reason;
    {
        let mut s = lock(ctx.state);
        s.note
            .set("Session Ended", format!("Yes ({})", crate::now()));
        s.phase = Phase::Ended(reason.clone());
        s.checklist.know(Fact::Disconnected);
        if reason == assent_proto::wire::EndReason::Escalated.as_str() {
            crate::escalate::note_escalated(&mut s);
        }
    }
    (ctx.repaint)();
    ctx.audit.record(
        "session_end",
        fields! {"session" => session, "reason" => reason, "chat_sent" => end.chat.0, "chat_received" => end.chat.1},
    );
    // The technician ended it: the relay hears so at once (it records the
    // end as theirs and tells the user), and keeps this connection open for
    // the note, which the technician finishes in the window.
    if end.by_viewer {
        let _ = viewer.control.send(&ClientMsg::End).await;
    }
    if wait_for_close {
        // The window sends End once the note may be filed (or on SIGTERM).
        info!("session ended ({reason}); waiting for the note and the window to close");
        wait_for_the_note(ctx, &mut viewer, &session, commands).await;
    }
    let note = {
        let mut s = lock(ctx.state);
        s.checklist.know(Fact::NoteDocumented);
        s.note.finalized(&s.checklist, s.outcome)
    };
    let ticket = &ctx.config.request.ticket;
    // The relay gets the note either way; the technician must hear when
    // their own copy could not be written.
    let note_path = match note.write(&ctx.config.notes_dir, &session, ticket) {
        Ok(path) => Some(path),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the session note file was not written");
            eprintln!("warning: the session note file was not written ({e:#}); the relay has it");
            None
        }
    };
    let _ = viewer
        .control
        .send(&assent_proto::wire::ClientMsg::SessionNote {
            fields: note.to_wire(),
        })
        .await;
    let path = note_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    ctx.audit.record(
        "session_note",
        fields! {"session" => session, "path" => path, "checklist_incomplete" => note.incomplete.join(", ")},
    );
    viewer.control.end().await;
    let mut finished = finished(Some(session), &reason, note_path);
    finished.note_incomplete = note.incomplete;
    Ok(finished)
}

/// Until the window files the note (it sends End), showing the user's
/// answer to "Was your problem solved?" when the relay passes it on.
async fn wait_for_the_note(
    ctx: &Ctx<'_>,
    viewer: &mut Viewer,
    session: &str,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) {
    let mut relay_open = true;
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::End) | None => return,
                Some(_) => {}
            },
            msg = viewer.control.recv(), if relay_open => match msg {
                Ok(RelayMsg::UserConfirmed { answer }) => {
                    info!(answer = answer.as_str(), "the user answered after the end");
                    ctx.audit.record(
                        "user_confirmation",
                        fields! {"session" => session, "answer" => answer.as_str()},
                    );
                    let mut s = lock(ctx.state);
                    let ended = s.note.get("Session Ended").to_string();
                    s.note.set(
                        "Session Ended",
                        format!("{ended}; the user was told and, asked whether the problem was solved, answered: {}", answer.plain_words()),
                    );
                    s.user_confirmation = Some(answer);
                    drop(s);
                    (ctx.repaint)();
                }
                Ok(_) => {}
                Err(_) => relay_open = false,
            },
        }
    }
}
