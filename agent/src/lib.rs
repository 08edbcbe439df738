//! The Assent agent: joins with a one-time code, asks the user, and only
//! after a yes shares the screen (and input, if allowed) over the
//! end-to-end encrypted channel. `main.rs` is the command line; the logic
//! here is testable with fake screens and input sinks.

#![forbid(unsafe_code)]

pub mod consent;
pub mod conversation;
pub mod device;
pub mod ending;
pub mod escalation;
pub mod files;
pub mod flow;
pub mod guarded;
pub mod link;
pub mod live;
pub mod outage;
pub mod permissions;
pub mod privacy;
pub mod prompt;
pub mod quality;
pub mod reconnect;
pub mod session;
pub mod tty;
pub mod ui;
