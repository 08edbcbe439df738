//! PostgreSQL storage for the relay's fleet mode.
//!
//! Several relays share one PostgreSQL database so they behave as one: an
//! invite created on relay A is redeemed on relay B exactly once, a kill or a
//! revocation issued on any relay reaches all of them, every relay's live
//! sessions are listed in one directory (with leases, so a dead relay's
//! sessions show as lost), and every relay ships its hash-chained audit log
//! to one append-only, verifiable store.
//!
//! The relay stays the authority for what it does: its local audit log is
//! written first and shipped afterwards ([`Fleet::ship`]); the database adds
//! what one relay alone cannot know. Atomicity lives in single SQL
//! statements (e.g. [`Fleet::redeem`] is one `UPDATE ... RETURNING`) and
//! every time that matters comes from the database server's clock.
//!
//! Connect with [`Fleet::connect`], bring the schema up with [`migrate`] (or
//! [`Fleet::migrate`]). The schema, its triggers and the writer role are
//! described in `schema.rs`.

#![forbid(unsafe_code)]

mod audit;
mod conn;
mod control;
mod directory;
mod error;
mod invites;
mod registry;
mod schema;
#[cfg(feature = "testing")]
pub mod testing;
mod verify;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use audit::{checkpoint_message, FleetRecord};
pub use conn::CONNECT_TIMEOUT;
pub use control::{Control, ControlEvent, ControlFeed, CONTROL_FEED_APPLICATION_NAME};
pub use directory::{ExpiredRelay, NewSession, SessionRow, SessionState};
pub use error::{FleetError, RedeemError};
pub use invites::{NewInvite, PruneReport, RedeemedInvite};
pub use registry::Technician;
pub use schema::{MigrationReport, LATEST_VERSION, WRITER_ROLE};
pub use verify::{Problem, ProblemKind, RelayVerdict};

use conn::Connector;

/// Where the fleet database is and who this relay is.
#[derive(Clone)]
pub struct FleetConfig {
    /// A `postgres://` URL or a key=value conninfo string. Without
    /// `ca_file` it must say `sslmode=disable` (Unix socket or loopback).
    pub database: String,
    /// This relay's stable id in the fleet.
    pub relay_id: String,
    /// Where agents and viewers reach this relay (`host:port`), handed to
    /// other relays that redeem this relay's invites.
    pub public_address: String,
    /// PEM file of the CA(s) the database server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetConfig")
            .field("database", &error::redact_conninfo(&self.database))
            .field("relay_id", &self.relay_id)
            .field("public_address", &self.public_address)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A relay's handle on the fleet database: a small connection pool plus
/// this relay's identity. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

struct Inner {
    pool: deadpool_postgres::Pool,
    connector: Connector,
    relay_id: String,
    public_address: String,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("relay_id", &self.inner.relay_id)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Parses the configuration and opens one connection right away, so a
    /// wrong address or a down database is reported at start-up (within
    /// [`CONNECT_TIMEOUT`]) rather than at the first session.
    pub async fn connect(config: FleetConfig) -> Result<Fleet, FleetError> {
        let fleet = Fleet::configure(config)?;
        drop(fleet.client().await?);
        Ok(fleet)
    }

    /// Parses the configuration and sets up the pool without connecting:
    /// for a relay that must start while its database is down (calls fail
    /// with [`FleetError::Unavailable`] until it is back).
    pub fn configure(config: FleetConfig) -> Result<Fleet, FleetError> {
        if config.relay_id.is_empty() {
            return Err(FleetError::Config("relay_id is empty".into()));
        }
        let connector = Connector::new(&config.database, config.ca_file.as_deref())?;
        let pool = connector.pool()?;
        let fleet = Fleet {
            inner: Arc::new(Inner {
                pool,
                connector,
                relay_id: config.relay_id,
                public_address: config.public_address,
            }),
        };
        Ok(fleet)
    }

    /// This relay's id.
    pub fn relay_id(&self) -> &str {
        &self.inner.relay_id
    }

    /// Runs the schema migrations on this connection (see [`migrate`]).
    pub async fn migrate(&self) -> Result<MigrationReport, FleetError> {
        let mut client = self.client().await?;
        schema::run(&mut client, &self.inner.connector.redactor).await
    }

    /// The schema version the database is at (0 before any migration).
    pub async fn schema_version(&self) -> Result<i32, FleetError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
            .await
            .map_err(|e| self.pg(e))?;
        let exists: bool = col(&row, 0)?;
        if !exists {
            return Ok(0);
        }
        let row = client
            .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
            .await
            .map_err(|e| self.pg(e))?;
        col(&row, 0)
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client, FleetError> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| self.inner.connector.redactor.pool(&e))
    }

    pub(crate) fn pg(&self, e: tokio_postgres::Error) -> FleetError {
        self.inner.connector.redactor.pg(&e)
    }

    pub(crate) fn connector(&self) -> &Connector {
        &self.inner.connector
    }
}

/// Connects with `config` (one connection, no pool) and migrates: for an
/// admin command or a deployment step that runs before any relay. Run it as
/// a role that owns the database and may create roles (the first run
/// creates [`WRITER_ROLE`]); relays can then log in as any role granted
/// [`WRITER_ROLE`].
pub async fn migrate(config: &FleetConfig) -> Result<MigrationReport, FleetError> {
    let connector = Connector::new(&config.database, config.ca_file.as_deref())?;
    let (mut client, _ended) = connector.dedicated("assent-fleet-migrate").await?;
    schema::run(&mut client, &connector.redactor).await
}

/// Milliseconds of a duration as the database's bigint, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A database bigint that must be a non-negative seq or count.
pub(crate) fn unsigned(v: i64, what: &str) -> Result<u64, FleetError> {
    u64::try_from(v).map_err(|_| FleetError::Corrupt(format!("negative {what}: {v}")))
}

/// A seq to send to the database, refused if it does not fit a bigint.
pub(crate) fn signed(v: u64) -> Result<i64, FleetError> {
    i64::try_from(v).map_err(|_| FleetError::BadRecord {
        seq: v,
        reason: "seq does not fit a bigint".into(),
    })
}

/// Column `i` of `row`, or [`FleetError::Corrupt`] if it is missing or of
/// another type than expected.
pub(crate) fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T, FleetError> {
    row.try_get(i)
        .map_err(|e| FleetError::Corrupt(format!("column {i}: {}", error::error_chain(&e))))
}
