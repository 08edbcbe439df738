//! `privacy_changed`: the agent reports what its user keeps private (how
//! many windows are painted over, how many of them by the organisation's
//! policy, whether only one window is shared). Counts only: the relay never
//! learns a window's title, and the mask itself is the agent's alone.

use assent_proto::privacy::PrivacyCounts as Counts;
use assent_proto::session::{Phase, SessionMachine};
use tracing::warn;

use crate::fields;
use crate::state::Shared;

/// `privacy_changed` records one session may write; later changes are
/// logged (as counts) and dropped, so an agent cannot flood the audit log.
const MAX_RECORDS: u32 = 500;

/// What a session remembers of its privacy reports.
#[derive(Debug, Default)]
pub(super) struct PrivacyLog {
    written: u32,
    last: Option<Counts>,
}

impl PrivacyLog {
    /// Records a live session's report when it differs from the last.
    pub(super) async fn record(
        &mut self,
        shared: &Shared,
        session: &str,
        machine: &SessionMachine,
        counts: Counts,
    ) {
        if !matches!(machine.phase(), Phase::Live { .. }) || self.last == Some(counts) {
            return;
        }
        if self.written >= MAX_RECORDS {
            warn!(session = %session, hidden = counts.hidden, "too many privacy changes; not recorded");
            return;
        }
        self.written += 1;
        self.last = Some(counts);
        let written = shared
            .audit
            .record(
                "privacy_changed",
                fields! {
                    "session" => session, "hidden_windows" => counts.hidden,
                    "hidden_by_policy" => counts.by_policy.min(counts.hidden),
                    "share_only_one" => counts.only_one,
                },
            )
            .await;
        if let Err(e) = written {
            warn!(session = %session, error = %e, "privacy change not recorded");
        }
    }
}
