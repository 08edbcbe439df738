//! What the user keeps private, as the relay and the viewer learn it:
//! counts only, never which windows or their titles. The mask itself is
//! the agent's state; nothing here can change it.

use serde::{Deserialize, Serialize};

/// Agent → relay (`ClientMsg::PrivacyChanged`, audited as
/// `privacy_changed`): what the user keeps private now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PrivacyCounts {
    /// Top-level windows painted over in every frame.
    pub hidden: u32,
    /// Of those, how many the organisation's policy hides.
    pub by_policy: u32,
    /// Only one window is shared: everything else is painted over.
    pub only_one: bool,
}
