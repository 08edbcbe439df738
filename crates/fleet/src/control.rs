//! The control feed: kill a session or revoke a technician from any relay.
//!
//! Commands are rows of `control`, the durable record; `NOTIFY` only wakes
//! listeners early. Notifications sent while a listener is disconnected are
//! lost, so the feed always reads "rows after the last id I saw": after a
//! (re)connect, after each wake-up, and every [`POLL_INTERVAL`] as a safety
//! net. Posting takes a lock so ids become visible in id order and reading
//! by id never skips a row that committed late.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::Row;

use crate::conn::Connector;
use crate::{col, Fleet, FleetError};

/// `application_name` of the feed's dedicated connection (so an operator,
/// or a test, can find it in `pg_stat_activity`).
pub const CONTROL_FEED_APPLICATION_NAME: &str = "assent-fleet-control";

/// How often the feed reads the table even without a notification.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Longest wait for one catch-up read before the connection is taken as
/// dead and replaced.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Rows read per catch-up query.
const BATCH: i64 = 256;

/// A command for every relay of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// End this session wherever it runs.
    Kill { session_id: String },
    /// Refuse this technician key from now on (also marked revoked in the
    /// registry by the same transaction).
    Revoke { technician_key_hex: String },
}

impl Control {
    fn parts(&self) -> (&'static str, &str) {
        match self {
            Control::Kill { session_id } => ("kill", session_id),
            Control::Revoke { technician_key_hex } => ("revoke", technician_key_hex),
        }
    }
}

/// A command as read back from the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlEvent {
    /// Increasing; hand the last one seen to [`Fleet::control_feed`] to
    /// resume after a restart.
    pub id: i64,
    pub control: Control,
    pub issued_by: String,
    /// Unix milliseconds (database clock).
    pub at_ms: i64,
}

impl Fleet {
    /// Posts a command for the whole fleet and returns its id. The row and
    /// its notification commit together.
    pub async fn post(&self, control: &Control) -> Result<i64, FleetError> {
        let (kind, target) = control.parts();
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT fleet_post_control($1, $2, $3)",
                &[&kind, &target, &self.relay_id()],
            )
            .await
            .map_err(|e| self.pg(e))?;
        col(&row, 0)
    }

    /// The id of the newest command (0 if none): start a feed after it to
    /// get only what is posted from now on.
    pub async fn last_control_id(&self) -> Result<i64, FleetError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT coalesce(max(id), 0) FROM control", &[])
            .await
            .map_err(|e| self.pg(e))?;
        col(&row, 0)
    }

    /// Starts following commands with ids above `after_id`, on a dedicated
    /// connection that reconnects by itself. Must be called inside a tokio
    /// runtime. The feed stops when dropped.
    pub fn control_feed(&self, after_id: i64) -> ControlFeed {
        let (tx, rx) = mpsc::channel(64);
        let (state_tx, state_rx) = watch::channel(false);
        let connector = self.connector().clone();
        let task = tokio::spawn(run(connector, tx, state_tx, after_id));
        ControlFeed {
            rx,
            connected: state_rx,
            task,
        }
    }
}

/// Commands in id order, from a task holding a LISTEN connection.
pub struct ControlFeed {
    rx: mpsc::Receiver<ControlEvent>,
    connected: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl ControlFeed {
    /// The next command. Waits across disconnections; `None` only if the
    /// feed's task ended (it does not, short of a panic).
    pub async fn recv(&mut self) -> Option<ControlEvent> {
        self.rx.recv().await
    }

    /// Whether the feed's connection is up right now (for health reports).
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }
}

impl Drop for ControlFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why following stopped.
enum Stop {
    /// The receiver was dropped: end the task.
    Closed,
    /// The connection failed: reconnect.
    Lost(String),
}

async fn run(
    connector: Connector,
    tx: mpsc::Sender<ControlEvent>,
    state: watch::Sender<bool>,
    mut last: i64,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let stop = match connector.dedicated(CONTROL_FEED_APPLICATION_NAME).await {
            Ok((client, wake)) => {
                backoff = Duration::from_millis(100);
                follow(&client, wake, &tx, &state, &mut last).await
            }
            Err(e) => Stop::Lost(e.to_string()),
        };
        state.send_replace(false);
        match stop {
            Stop::Closed => return,
            Stop::Lost(why) => {
                tracing::warn!(error = %why, "fleet control feed disconnected; reconnecting");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = tx.closed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// LISTENs, then reads new rows after every wake-up and every poll
/// interval until the connection or the receiver goes away.
async fn follow(
    client: &tokio_postgres::Client,
    mut wake: mpsc::UnboundedReceiver<()>,
    tx: &mpsc::Sender<ControlEvent>,
    state: &watch::Sender<bool>,
    last: &mut i64,
) -> Stop {
    if let Err(e) = client.batch_execute("LISTEN assent_fleet_control").await {
        return Stop::Lost(e.to_string());
    }
    state.send_replace(true);
    loop {
        let after = *last;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&after, &BATCH];
        let read = client.query(
            "SELECT id, kind, target, issued_by, at_ms FROM control
             WHERE id > $1 ORDER BY id LIMIT $2",
            &params,
        );
        let rows = match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => return Stop::Lost(e.to_string()),
            Err(_) => return Stop::Lost("catch-up read timed out".into()),
        };
        let full = rows.len() as i64 == BATCH;
        for row in &rows {
            let (id, event) = parse(row);
            *last = (*last).max(id);
            if let Some(event) = event {
                if tx.send(event).await.is_err() {
                    return Stop::Closed;
                }
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            woke = wake.recv() => {
                if woke.is_none() {
                    return Stop::Lost("connection closed".into());
                }
                while wake.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = tx.closed() => return Stop::Closed,
        }
    }
}

/// A row as an event; a row this build cannot read is skipped (logged),
/// never allowed to stop the feed.
fn parse(row: &Row) -> (i64, Option<ControlEvent>) {
    let id: i64 = match col(row, 0) {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable control row");
            return (0, None);
        }
    };
    let event = (|| -> Result<ControlEvent, FleetError> {
        let kind: String = col(row, 1)?;
        let target: String = col(row, 2)?;
        let control = match kind.as_str() {
            "kill" => Control::Kill { session_id: target },
            "revoke" => Control::Revoke {
                technician_key_hex: target,
            },
            other => {
                return Err(FleetError::Corrupt(format!(
                    "unknown control kind {other:?}"
                )))
            }
        };
        Ok(ControlEvent {
            id,
            control,
            issued_by: col(row, 3)?,
            at_ms: col(row, 4)?,
        })
    })();
    match event {
        Ok(e) => (id, Some(e)),
        Err(e) => {
            tracing::warn!(id, error = %e, "skipping control command");
            (id, None)
        }
    }
}
