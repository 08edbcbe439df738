//! What the technician asks of a live session, from the window or the
//! `--headless` lines.

use assent_proto::session_msg::InputEvent;
use assent_proto::wire::Scope;

/// What the window or the headless loop asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Input(InputEvent),
    /// Ask the user for another scope; the agent asks them in its prompt
    /// (more) or applies it at once (less).
    RequestScope(Scope),
    /// Window closed, SIGTERM/SIGINT, or stdin EOF in headless mode.
    End,
    /// A chat message to the user.
    Chat(String),
    /// Ask the user to test the fix; the text says what to test (may be empty).
    AskValidation(String),
    /// How the technician verified the requester (empty: not verified).
    IdentityCheck(String),
    /// Ask the relay who may receive an escalation.
    ListSpecialists,
    /// See only this monitor of the user's screen (an index into the
    /// monitors of the last keyframe's view), or all of it (`None`).
    ShowMonitor(Option<u8>),
    /// Hand the session to a specialist: who, the trigger, the scope to ask
    /// the user for.
    Escalate {
        specialist: String,
        trigger: String,
        scope: Scope,
    },
    /// Ask the user for a permission beyond the scope (the clipboard).
    AskPermission(assent_proto::permission::Permission),
    /// Send this file (the user accepts or declines it).
    SendFile(std::path::PathBuf),
    /// Stop the file transfers in progress.
    CancelFile,
    /// Start (`true`) or stop recording; only while the user allows it.
    Record(bool),
    /// Save a PNG of the screen; only while the user allows recording.
    Screenshot,
    /// How the user's screen is coded: photos follow the link, all exact,
    /// or motion first.
    Quality(assent_proto::session_msg::ScreenQuality),
}
