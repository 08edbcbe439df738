//! Permissions beyond the scope (view or control): each is the user's own
//! yes, asked in the agent's window, enforced at the agent, shown while in
//! force and audited by metadata only. The technician may ask for them in
//! the invite (the relay-signed offer names them, so the prompt can ask) or
//! mid-session; the agent alone decides what is in force.

use serde::{Deserialize, Serialize};

/// One permission of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Permission {
    /// Text copied on one side may be pasted on the other, both ways.
    Clipboard = 1,
    /// Files, each accepted (technician → user) or picked (user →
    /// technician) by the user.
    Files = 2,
    /// The technician's viewer may record the session and take
    /// screenshots; the user sees "Recording" while it is allowed.
    Recording = 3,
}

impl Permission {
    pub const ALL: [Permission; 3] = [
        Permission::Clipboard,
        Permission::Files,
        Permission::Recording,
    ];

    /// The INTERFACE.md name (audit records, command lines).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Clipboard => "clipboard",
            Permission::Files => "files",
            Permission::Recording => "recording",
        }
    }

    /// What the user reads when asked.
    pub fn plain_words(self) -> &'static str {
        match self {
            Permission::Clipboard => {
                "copy and paste text between your computer and theirs (both ways)"
            }
            Permission::Files => {
                "send you files (each only if you accept it) and receive files you pick"
            }
            Permission::Recording => {
                "record the session and take screenshots of your screen (you see Recording while allowed)"
            }
        }
    }
}

impl std::str::FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("unknown permission {s:?} (expected clipboard, files or recording)")
            })
    }
}

/// Most permissions one list may name (each at most once).
pub const MAX_PERMISSIONS: usize = 8;

/// Deserialises a permission list of at most [`MAX_PERMISSIONS`] items.
pub(crate) fn bounded<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Permission>, D::Error> {
    crate::escalation::bounded_list::<_, _, MAX_PERMISSIONS>(d)
}

/// The list without repeats, in [`Permission::ALL`] order: what a relay
/// puts in an offer, whatever order or repeats the technician sent.
pub fn normalized(list: &[Permission]) -> Vec<Permission> {
    Permission::ALL
        .into_iter()
        .filter(|p| list.contains(p))
        .collect()
}

/// Which way clipboard text moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Direction {
    /// From the technician to the user's computer.
    ToUser = 1,
    /// From the user's computer to the technician.
    FromUser = 2,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToUser => "to_user",
            Direction::FromUser => "from_user",
        }
    }
}

/// Agent → relay: one clipboard transfer, signed by the device key over
/// [`crate::identity::clipboard_payload`] (audited as `clipboard_transfer`).
/// Metadata only: the text itself stays in the end-to-end channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClipboardReport {
    /// Counts this session's transfers from 1 (no two receipts alike).
    pub number: u32,
    pub direction: Direction,
    pub bytes: u64,
    pub sha256: [u8; 32],
    pub receipt: Vec<u8>,
}

/// Agent → relay: the user turned a permission on or off, signed by the
/// device key over [`crate::identity::permission_payload`] (audited as
/// `permission_changed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionReport {
    pub permission: Permission,
    pub allowed: bool,
    /// Counts this session's permission changes from 1.
    pub change: u32,
    pub receipt: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_lists_normalise() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
        }
        assert!("file".parse::<Permission>().is_err());
        let twice = [Permission::Clipboard, Permission::Clipboard];
        assert_eq!(normalized(&twice), vec![Permission::Clipboard]);
        assert!(normalized(&[]).is_empty());
    }
}
