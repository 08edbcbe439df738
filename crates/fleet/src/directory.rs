//! Relays, their leases, and the fleet-wide directory of live sessions.
//!
//! A relay holds a lease it renews periodically. "Lost" is computed when the
//! directory is read (not marked by a sweep): a session is lost while its
//! relay's lease is past, and live again if that relay renews, so there is
//! no sweeper to run and nothing to undo after a database blip. A relay that
//! restarts ends its own leftovers: [`Fleet::pending_ends_for_me`] lists
//! them, it writes their `session_end` to its audit log, then calls
//! [`Fleet::session_ended`].

use std::time::Duration;

use tokio_postgres::Row;

use crate::{col, millis, Fleet, FleetError};

/// A session as a relay announces it when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub session_id: String,
    pub technician: String,
    pub technician_key_hex: String,
    pub device: Option<String>,
    /// Free text, e.g. "waiting", "consent", "live", "aftercare".
    pub phase: String,
}

/// Whether a directory entry's relay still holds its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Live,
    /// Its relay's lease expired: the relay is presumed dead.
    Lost,
}

/// One open session of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub session_id: String,
    pub relay_id: String,
    pub technician: String,
    pub technician_key_hex: String,
    pub device: Option<String>,
    pub phase: String,
    /// Unix milliseconds (database clock).
    pub started_at_ms: i64,
    pub state: SessionState,
}

/// A relay whose lease has run out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredRelay {
    pub relay_id: String,
    pub public_address: String,
    pub lease_until_ms: i64,
}

const SESSION_COLUMNS: &str = "s.session_id, s.relay_id, s.technician, s.technician_key, \
     s.device, s.phase, s.started_ms, (r.lease_until_ms < fleet_now_ms()) AS lost";

impl Fleet {
    /// Registers this relay (or updates its address) and gives it a lease of
    /// `lease`. Refused if the id is registered with a different key: two
    /// machines configured with the same relay id would otherwise end each
    /// other's sessions.
    pub async fn register(&self, public_key_hex: &str, lease: Duration) -> Result<(), FleetError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "INSERT INTO relays (relay_id, public_address, public_key, lease_until_ms, registered_ms)
                 VALUES ($1, $2, $3, fleet_now_ms() + $4, fleet_now_ms())
                 ON CONFLICT (relay_id) DO UPDATE
                 SET public_address = EXCLUDED.public_address,
                     lease_until_ms = EXCLUDED.lease_until_ms
                 WHERE relays.public_key = EXCLUDED.public_key
                 RETURNING relay_id",
                &[
                    &self.relay_id(),
                    &self.inner.public_address,
                    &public_key_hex,
                    &millis(lease),
                ],
            )
            .await
            .map_err(|e| self.pg(e))?;
        if rows.is_empty() {
            return Err(FleetError::KeyMismatch(self.relay_id().to_string()));
        }
        Ok(())
    }

    /// Extends this relay's lease to `ttl` from now (database clock) and
    /// returns the new end, in unix milliseconds.
    pub async fn renew_lease(&self, ttl: Duration) -> Result<i64, FleetError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE relays SET lease_until_ms = fleet_now_ms() + $2
                 WHERE relay_id = $1 RETURNING lease_until_ms",
                &[&self.relay_id(), &millis(ttl)],
            )
            .await
            .map_err(|e| self.pg(e))?
            .ok_or_else(|| FleetError::NotRegistered(self.relay_id().to_string()))?;
        col(&row, 0)
    }

    /// The registered public key (hex) of every relay: what an auditor
    /// feeds [`Fleet::verify_fleet`] when it trusts the registry.
    pub async fn relay_keys(&self) -> Result<Vec<(String, String)>, FleetError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT relay_id, public_key FROM relays ORDER BY relay_id",
                &[],
            )
            .await
            .map_err(|e| self.pg(e))?;
        rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
    }

    /// Relays whose lease has run out.
    pub async fn expired_relays(&self) -> Result<Vec<ExpiredRelay>, FleetError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT relay_id, public_address, lease_until_ms FROM relays
                 WHERE lease_until_ms < fleet_now_ms() ORDER BY relay_id",
                &[],
            )
            .await
            .map_err(|e| self.pg(e))?;
        rows.iter()
            .map(|r| {
                Ok(ExpiredRelay {
                    relay_id: col(r, 0)?,
                    public_address: col(r, 1)?,
                    lease_until_ms: col(r, 2)?,
                })
            })
            .collect()
    }

    /// Announces a session hosted by this relay. Announcing the same id
    /// again from this relay updates it (a relay may retry after a lost
    /// reply); the same id on another relay is a conflict.
    pub async fn session_started(&self, s: &NewSession) -> Result<(), FleetError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO sessions (session_id, relay_id, technician, technician_key, device,
                                       phase, started_ms, updated_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, fleet_now_ms(), fleet_now_ms())
                 ON CONFLICT (session_id) DO UPDATE
                 SET phase = EXCLUDED.phase, device = EXCLUDED.device,
                     updated_ms = EXCLUDED.updated_ms
                 WHERE sessions.relay_id = EXCLUDED.relay_id AND sessions.ended_ms IS NULL",
                &[
                    &s.session_id,
                    &self.relay_id(),
                    &s.technician,
                    &s.technician_key_hex,
                    &s.device,
                    &s.phase,
                ],
            )
            .await
            .map_err(|e| self.pg(e))?;
        if n == 0 {
            return Err(FleetError::Db {
                code: "23505".into(),
                message: format!("session {} is already in the directory", s.session_id),
            });
        }
        Ok(())
    }

    /// Records a session's new phase. Returns false if this relay has no
    /// such open session.
    pub async fn session_phase(&self, session_id: &str, phase: &str) -> Result<bool, FleetError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE sessions SET phase = $3, updated_ms = fleet_now_ms()
                 WHERE session_id = $1 AND relay_id = $2 AND ended_ms IS NULL",
                &[&session_id, &self.relay_id(), &phase],
            )
            .await
            .map_err(|e| self.pg(e))?;
        Ok(n == 1)
    }

    /// Closes a session of this relay in the directory (after its
    /// `session_end` is in the relay's audit log). Returns false if it was
    /// not open, so calling it twice is harmless.
    pub async fn session_ended(&self, session_id: &str, reason: &str) -> Result<bool, FleetError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE sessions SET ended_ms = fleet_now_ms(), end_reason = $3,
                                     updated_ms = fleet_now_ms()
                 WHERE session_id = $1 AND relay_id = $2 AND ended_ms IS NULL",
                &[&session_id, &self.relay_id(), &reason],
            )
            .await
            .map_err(|e| self.pg(e))?;
        Ok(n == 1)
    }

    /// Every open session of the fleet, live or lost, oldest first.
    pub async fn sessions(&self) -> Result<Vec<SessionRow>, FleetError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s JOIN relays r USING (relay_id)
             WHERE s.ended_ms IS NULL ORDER BY s.started_ms, s.session_id"
        );
        let rows = client.query(&sql, &[]).await.map_err(|e| self.pg(e))?;
        rows.iter().map(Self::session_row).collect()
    }

    /// This relay's sessions the directory still shows open: after a
    /// restart these are the sessions that died with the old process.
    pub async fn pending_ends_for_me(&self) -> Result<Vec<SessionRow>, FleetError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s JOIN relays r USING (relay_id)
             WHERE s.relay_id = $1 AND s.ended_ms IS NULL ORDER BY s.started_ms, s.session_id"
        );
        let rows = client
            .query(&sql, &[&self.relay_id()])
            .await
            .map_err(|e| self.pg(e))?;
        rows.iter().map(Self::session_row).collect()
    }

    fn session_row(r: &Row) -> Result<SessionRow, FleetError> {
        let lost: bool = col(r, 7)?;
        Ok(SessionRow {
            session_id: col(r, 0)?,
            relay_id: col(r, 1)?,
            technician: col(r, 2)?,
            technician_key_hex: col(r, 3)?,
            device: col(r, 4)?,
            phase: col(r, 5)?,
            started_at_ms: col(r, 6)?,
            state: if lost {
                SessionState::Lost
            } else {
                SessionState::Live
            },
        })
    }
}
