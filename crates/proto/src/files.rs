//! File transfer messages inside the end-to-end session channel, and the
//! agent's signed report of each transfer to the relay. Names are the
//! sender's word only: the receiver makes them safe (`assent-files`).

use serde::{Deserialize, Serialize};

use crate::permission::Direction;

/// Longest name an offer may carry, in bytes (hostile names up to this are
/// made safe; longer ones refused).
pub const MAX_OFFER_NAME: usize = 16 * 1024;
/// Largest chunk one message carries.
pub const MAX_CHUNK: usize = 1024 * 1024;

/// One step of a transfer; `id` numbers the sender's transfers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileMsg {
    /// Sender → receiver: a file of `size` bytes named `name`.
    Offer { id: u32, name: String, size: u64 },
    /// Receiver → sender: go ahead (`true`) or not.
    Answer { id: u32, accepted: bool },
    /// Sender → receiver: the next bytes, in order.
    Chunk { id: u32, data: Vec<u8> },
    /// Receiver → sender: bytes received so far (the sender's window).
    Ack { id: u32, received: u64 },
    /// Sender → receiver: everything is sent; its SHA-256.
    End { id: u32, sha256: [u8; 32] },
    /// Either way: stop transfer `id`. Both sides number their own
    /// transfers, so `from_sender` says whose: `true` from the side that
    /// sends it (the receiver drops what it has), `false` from the side
    /// receiving it.
    Cancel { id: u32, from_sender: bool },
    /// Receiver → sender: how it ended.
    Outcome { id: u32, outcome: FileOutcome },
}

/// How a transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum FileOutcome {
    /// Received whole, the SHA-256 matched, stored under its safe name.
    Completed = 1,
    /// The receiving user said no.
    Declined = 2,
    /// One side cancelled, or the session ended first.
    Cancelled = 3,
    /// The data did not match the sender's SHA-256 (or its size).
    Corrupted = 4,
    /// Over a limit (file size, session total).
    TooLarge = 5,
    /// The file could not be read or written.
    Failed = 6,
    /// Files are not allowed by the user now.
    NotAllowed = 7,
}

impl FileOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            FileOutcome::Completed => "completed",
            FileOutcome::Declined => "declined",
            FileOutcome::Cancelled => "cancelled",
            FileOutcome::Corrupted => "corrupted",
            FileOutcome::TooLarge => "too_large",
            FileOutcome::Failed => "failed",
            FileOutcome::NotAllowed => "not_allowed",
        }
    }
}

impl FileMsg {
    pub fn id(&self) -> u32 {
        match self {
            FileMsg::Offer { id, .. }
            | FileMsg::Answer { id, .. }
            | FileMsg::Chunk { id, .. }
            | FileMsg::Ack { id, .. }
            | FileMsg::End { id, .. }
            | FileMsg::Cancel { id, .. }
            | FileMsg::Outcome { id, .. } => *id,
        }
    }

    /// Limits the type does not express.
    pub fn validate(&self) -> Result<(), &'static str> {
        match self {
            FileMsg::Offer { name, .. } if name.len() > MAX_OFFER_NAME => Err("file name too long"),
            FileMsg::Chunk { data, .. } if data.is_empty() || data.len() > MAX_CHUNK => {
                Err("file chunk empty or too large")
            }
            _ => Ok(()),
        }
    }
}

/// Agent → relay: one transfer as it ended, signed by the device key over
/// [`crate::identity::file_payload`] (audited as `file_transfer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReport {
    /// Counts this session's reports from 1.
    pub number: u32,
    pub direction: Direction,
    /// The safe name (as stored at the user's end, or as sent).
    pub name: String,
    pub bytes: u64,
    pub sha256: [u8; 32],
    pub outcome: FileOutcome,
    pub receipt: Vec<u8>,
}
