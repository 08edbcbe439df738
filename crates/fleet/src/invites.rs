//! Invites shared by the fleet, the fleet-wide wrong-code throttle, and
//! pruning of old rows.
//!
//! Codes are never stored: the relay passes a 32-byte digest (e.g. an HMAC
//! of the code under a fleet secret), so a database dump does not hand out
//! working codes.

use std::time::Duration;

use crate::{col, millis, Fleet, FleetError, RedeemError};

/// An invite as the relay that hosts its session creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvite {
    pub invite_id: String,
    pub code_digest: [u8; 32],
    pub technician: String,
    pub session_id: String,
    pub expires_in: Duration,
}

/// What a successful redemption tells the redeeming relay: which session,
/// and where the relay that hosts it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeemedInvite {
    pub invite_id: String,
    pub session_id: String,
    pub relay_id: String,
    pub public_address: String,
}

/// Rows removed by [`Fleet::prune`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub invites: u64,
    pub sessions: u64,
    pub code_failures: u64,
    pub control: u64,
}

impl Fleet {
    /// Stores an invite hosted by this relay, expiring `expires_in` from now
    /// by the database's clock.
    pub async fn create_invite(&self, invite: &NewInvite) -> Result<(), FleetError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO invites (invite_id, code_digest, technician, session_id, relay_id,
                                      created_ms, expires_ms)
                 VALUES ($1, $2, $3, $4, $5, fleet_now_ms(), fleet_now_ms() + $6)",
                &[
                    &invite.invite_id,
                    &&invite.code_digest[..],
                    &invite.technician,
                    &invite.session_id,
                    &self.relay_id(),
                    &millis(invite.expires_in),
                ],
            )
            .await
            .map_err(|e| self.pg(e))?;
        Ok(())
    }

    /// Redeems a code on behalf of this relay. One `UPDATE ... RETURNING`
    /// does it: concurrent redemptions of one code on any number of relays
    /// serialise on the row and exactly one sees it unredeemed. Only a
    /// refusal takes a second statement, to say why.
    pub async fn redeem(&self, code_digest: &[u8; 32]) -> Result<RedeemedInvite, RedeemError> {
        let client = self.client().await?;
        let digest = &code_digest[..];
        let row = client
            .query_opt(
                "UPDATE invites i SET redeemed_ms = fleet_now_ms(), redeemed_by = $2
                 FROM relays r
                 WHERE i.code_digest = $1 AND r.relay_id = i.relay_id
                   AND i.redeemed_ms IS NULL AND i.withdrawn_ms IS NULL
                   AND i.expires_ms > fleet_now_ms()
                 RETURNING i.invite_id, i.session_id, i.relay_id, r.public_address",
                &[&digest, &self.relay_id()],
            )
            .await
            .map_err(|e| self.pg(e))?;
        if let Some(r) = row {
            return Ok(RedeemedInvite {
                invite_id: col(&r, 0)?,
                session_id: col(&r, 1)?,
                relay_id: col(&r, 2)?,
                public_address: col(&r, 3)?,
            });
        }
        let why = client
            .query_opt(
                "SELECT withdrawn_ms IS NOT NULL, redeemed_ms IS NOT NULL,
                        expires_ms <= fleet_now_ms()
                 FROM invites WHERE code_digest = $1",
                &[&digest],
            )
            .await
            .map_err(|e| self.pg(e))?;
        let Some(r) = why else {
            return Err(RedeemError::Unknown);
        };
        let (withdrawn, used, expired): (bool, bool, bool) =
            (col(&r, 0)?, col(&r, 1)?, col(&r, 2)?);
        Err(if withdrawn {
            RedeemError::Withdrawn
        } else if used {
            RedeemError::Used
        } else if expired {
            RedeemError::Expired
        } else {
            // Open and unexpired yet not redeemable: its relay row is gone.
            RedeemError::Unknown
        })
    }

    /// Withdraws an unredeemed invite. Returns false if it was already
    /// redeemed, withdrawn or unknown.
    pub async fn withdraw(&self, invite_id: &str) -> Result<bool, FleetError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE invites SET withdrawn_ms = fleet_now_ms()
                 WHERE invite_id = $1 AND redeemed_ms IS NULL AND withdrawn_ms IS NULL",
                &[&invite_id],
            )
            .await
            .map_err(|e| self.pg(e))?;
        Ok(n == 1)
    }

    /// Withdraws every open invite of a technician (on any relay), e.g. when
    /// the technician is revoked. Returns how many.
    pub async fn cancel_technician(&self, technician: &str) -> Result<u64, FleetError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE invites SET withdrawn_ms = fleet_now_ms()
                 WHERE technician = $1 AND redeemed_ms IS NULL AND withdrawn_ms IS NULL",
                &[&technician],
            )
            .await
            .map_err(|e| self.pg(e))
    }

    /// Counts one wrong code fleet-wide in the current fixed window of
    /// length `window` and returns the count so far, in one upsert. Sharing
    /// the count means adding relays does not multiply an attacker's
    /// guesses.
    pub async fn code_failure(&self, window: Duration) -> Result<u32, FleetError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO code_failures (window_ms, window_start_ms, failures)
                 VALUES ($1, fleet_now_ms() - fleet_now_ms() % $1, 1)
                 ON CONFLICT (window_ms, window_start_ms)
                 DO UPDATE SET failures = code_failures.failures + 1
                 RETURNING failures",
                &[&window_ms(window)],
            )
            .await
            .map_err(|e| self.pg(e))?;
        let n: i32 = col(&row, 0)?;
        Ok(u32::try_from(n).unwrap_or(0))
    }

    /// The fleet-wide wrong codes in the current window, without counting.
    pub async fn code_failures(&self, window: Duration) -> Result<u32, FleetError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT failures FROM code_failures
                 WHERE window_ms = $1 AND window_start_ms = fleet_now_ms() - fleet_now_ms() % $1",
                &[&window_ms(window)],
            )
            .await
            .map_err(|e| self.pg(e))?;
        match row {
            Some(r) => Ok(u32::try_from(col::<i32>(&r, 0)?).unwrap_or(0)),
            None => Ok(0),
        }
    }

    /// Removes rows older than `retention`: invites expired (or closed)
    /// that long ago, sessions ended that long ago, old throttle windows and
    /// control commands (a feed that was away longer than `retention` starts
    /// from what is left). The audit tables are never pruned.
    pub async fn prune(&self, retention: Duration) -> Result<PruneReport, FleetError> {
        let client = self.client().await?;
        let keep = millis(retention);
        let pg = |e| self.pg(e);
        let invites = client
            .execute(
                "DELETE FROM invites WHERE greatest(expires_ms, coalesce(redeemed_ms, 0),
                     coalesce(withdrawn_ms, 0)) < fleet_now_ms() - $1",
                &[&keep],
            )
            .await
            .map_err(pg)?;
        let sessions = client
            .execute(
                "DELETE FROM sessions WHERE ended_ms < fleet_now_ms() - $1",
                &[&keep],
            )
            .await
            .map_err(pg)?;
        let code_failures = client
            .execute(
                "DELETE FROM code_failures
                 WHERE window_start_ms + window_ms < fleet_now_ms() - $1",
                &[&keep],
            )
            .await
            .map_err(pg)?;
        let control = client
            .execute(
                "DELETE FROM control WHERE at_ms < fleet_now_ms() - $1",
                &[&keep],
            )
            .await
            .map_err(pg)?;
        Ok(PruneReport {
            invites,
            sessions,
            code_failures,
            control,
        })
    }
}

/// A throttle window in milliseconds, at least 1 (a zero window would
/// divide by zero in the database).
fn window_ms(window: Duration) -> i64 {
    millis(window).max(1)
}
