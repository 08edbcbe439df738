//! The technician registry shared by the fleet.
//!
//! Every change bumps one `registry_version` counter in the same
//! statement, so a relay can poll a single number to know whether its copy
//! is current; [`Fleet::is_revoked`] is one primary-key read, cheap enough
//! to call for every new session so a revocation is never missed.

use serde_json::Value;

use crate::{col, unsigned, Fleet, FleetError};

/// One technician as the registry holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Technician {
    pub key_hex: String,
    pub document: Value,
    pub revoked: bool,
    /// The registry version of this technician's last change.
    pub version: u64,
}

impl Fleet {
    /// Adds or replaces a technician and returns the new registry version.
    pub async fn put_technician(
        &self,
        key_hex: &str,
        document: &Value,
        revoked: bool,
    ) -> Result<u64, FleetError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "WITH v AS (UPDATE registry_state SET version = version + 1 RETURNING version)
                 INSERT INTO technicians (key_hex, document, revoked, changed_ms, version)
                 SELECT $1, $2, $3, fleet_now_ms(), v.version FROM v
                 ON CONFLICT (key_hex) DO UPDATE
                 SET document = EXCLUDED.document, revoked = EXCLUDED.revoked,
                     changed_ms = EXCLUDED.changed_ms, version = EXCLUDED.version
                 RETURNING version",
                &[&key_hex, document, &revoked],
            )
            .await
            .map_err(|e| self.pg(e))?;
        unsigned(col(&row, 0)?, "registry version")
    }

    /// Every technician, by key.
    pub async fn technicians(&self) -> Result<Vec<Technician>, FleetError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key_hex, document, revoked, version FROM technicians ORDER BY key_hex",
                &[],
            )
            .await
            .map_err(|e| self.pg(e))?;
        rows.iter()
            .map(|r| {
                Ok(Technician {
                    key_hex: col(r, 0)?,
                    document: col(r, 1)?,
                    revoked: col(r, 2)?,
                    version: unsigned(col(r, 3)?, "registry version")?,
                })
            })
            .collect()
    }

    /// The registry's version: it changes whenever any technician does.
    pub async fn registry_version(&self) -> Result<u64, FleetError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT version FROM registry_state", &[])
            .await
            .map_err(|e| self.pg(e))?;
        unsigned(col(&row, 0)?, "registry version")
    }

    /// Whether this key is revoked (false if the registry does not know it).
    pub async fn is_revoked(&self, key_hex: &str) -> Result<bool, FleetError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT revoked FROM technicians WHERE key_hex = $1",
                &[&key_hex],
            )
            .await
            .map_err(|e| self.pg(e))?;
        match row {
            Some(r) => col(&r, 0),
            None => Ok(false),
        }
    }
}
