//! SIGHUP: read `relay.toml`'s limits and `technicians.json` again without
//! dropping a session. Audit first, as everywhere: the reload is recorded
//! (`config_reloaded`) before it takes effect, and a file that does not load
//! changes nothing (`config_reload_failed`). `listen`, `public_name` and
//! `[metrics]` need a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::Signal;
use tracing::{info, warn};

use crate::config::Limits;
use crate::fields;
use crate::state::Shared;

/// Reloads on every SIGHUP until the task is aborted.
pub async fn on_hangup(shared: Arc<Shared>, mut hangup: Signal) {
    while hangup.recv().await.is_some() {
        reload(&shared).await;
    }
}

/// One reload; what happened is in the audit log and the log.
pub async fn reload(shared: &Shared) {
    let loaded = crate::config::load(&shared.dir.config())
        .map_err(|e| e.to_string())
        .and_then(|c| {
            let t = crate::registry::load(&shared.dir).map_err(|e| e.to_string())?;
            Ok((c, t))
        });
    let (config, technicians) = match loaded {
        Ok(x) => x,
        Err(error) => {
            warn!(%error, "reload refused: nothing changed");
            let _ = shared
                .audit
                .record("config_reload_failed", fields! {"error" => error})
                .await;
            return;
        }
    };
    let changed = changed_limits(&shared.limits(), &config.limits);
    let active = technicians
        .list
        .iter()
        .filter(|t| t.revoked.is_none())
        .count();
    let record = fields! {
        "limits_changed" => changed.join(","),
        "technicians_active" => active,
    };
    if let Err(e) = shared.audit.record("config_reloaded", record).await {
        warn!(error = %e, "reload not applied: could not record it");
        return;
    }
    apply_limits(shared, &config.limits);
    let gone = shared.technicians.replace(technicians).await;
    let mut ended = 0;
    for name in &gone {
        ended += crate::actions::end_technician(shared, name).await;
    }
    info!(
        limits_changed = %changed.join(","),
        technicians_active = active,
        technicians_gone = gone.len(),
        sessions_ended = ended,
        "reloaded relay.toml limits and technicians.json"
    );
}

/// The limits into force: the copy sessions read, and the tables built
/// from them (pending invites, strikes and buckets are kept).
fn apply_limits(shared: &Shared, limits: &Limits) {
    *shared.limits.write().unwrap_or_else(|p| p.into_inner()) = limits.clone();
    let mut st = shared.lock();
    st.invites.set_limits(
        Duration::from_secs(limits.invite_ttl_secs),
        limits.max_pending_invites_per_technician,
    );
    st.code_guard.set_config(limits.code_guard());
    st.conn_rate
        .set_per_period(limits.connections_per_minute_per_address);
    // The strike tables only shrink with time; nothing else to redo.
    st.code_guard.prune(Instant::now());
}

/// The `[limits]` keys whose values differ.
fn changed_limits(old: &Limits, new: &Limits) -> Vec<&'static str> {
    let pairs: [(&'static str, u64, u64); 13] = [
        (
            "max_sessions",
            old.max_sessions as u64,
            new.max_sessions as u64,
        ),
        (
            "max_pending_invites_per_technician",
            old.max_pending_invites_per_technician as u64,
            new.max_pending_invites_per_technician as u64,
        ),
        ("invite_ttl_secs", old.invite_ttl_secs, new.invite_ttl_secs),
        (
            "consent_timeout_secs",
            old.consent_timeout_secs,
            new.consent_timeout_secs,
        ),
        (
            "idle_timeout_secs",
            old.idle_timeout_secs,
            new.idle_timeout_secs,
        ),
        (
            "max_session_secs",
            old.max_session_secs,
            new.max_session_secs,
        ),
        (
            "connections_per_minute_per_address",
            u64::from(old.connections_per_minute_per_address),
            u64::from(new.connections_per_minute_per_address),
        ),
        (
            "code_failure_base_delay_ms",
            old.code_failure_base_delay_ms,
            new.code_failure_base_delay_ms,
        ),
        (
            "code_failure_max_delay_secs",
            old.code_failure_max_delay_secs,
            new.code_failure_max_delay_secs,
        ),
        (
            "code_failures_per_minute",
            u64::from(old.code_failures_per_minute),
            u64::from(new.code_failures_per_minute),
        ),
        (
            "auth_timeout_secs",
            old.auth_timeout_secs,
            new.auth_timeout_secs,
        ),
        ("busy_lag_ms", old.busy_lag_ms, new.busy_lag_ms),
        (
            "busy_drops_per_sec",
            old.busy_drops_per_sec,
            new.busy_drops_per_sec,
        ),
    ];
    pairs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(k, _, _)| k)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_limits_that_changed() {
        let old = Limits::default();
        assert!(changed_limits(&old, &old).is_empty());
        let new = Limits {
            max_sessions: 7,
            invite_ttl_secs: 60,
            ..Limits::default()
        };
        assert_eq!(
            changed_limits(&old, &new),
            ["max_sessions", "invite_ttl_secs"]
        );
    }
}
