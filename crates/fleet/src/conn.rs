//! Connecting: the connection string, TLS (rustls on ring, verifying against
//! a CA file), the pool, and dedicated connections for LISTEN.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;
use tokio_postgres::config::SslMode;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{FleetError, Redactor};

/// How long to wait for a connection before calling the database
/// unavailable. Short, so a relay whose database is down fails a request
/// clearly instead of hanging its session tasks.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// Connections the pool keeps per relay: the relay's database work is a few
/// short statements per session event.
const POOL_SIZE: usize = 8;

/// The parsed connection settings and TLS connector, shared by the pool and
/// the control feed's dedicated connection.
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) tls: MakeRustlsConnect,
    pub(crate) redactor: Redactor,
}

impl Connector {
    /// Parses `database` (URL or key=value conninfo). TLS policy: with a CA
    /// file the connection must be TLS (`prefer`, the default, becomes
    /// `require`) and the server's certificate must chain to that CA and
    /// name the host; without one, `sslmode=disable` must be explicit so a
    /// password never crosses a network in the clear by accident.
    pub(crate) fn new(database: &str, ca_file: Option<&Path>) -> Result<Connector, FleetError> {
        let mut redactor = Redactor::for_conninfo(database);
        let mut pg: tokio_postgres::Config = database.parse().map_err(|e| {
            FleetError::Config(redactor.scrub(&format!("invalid database address: {e}")))
        })?;
        if let Some(p) = pg.get_password() {
            redactor.add(p);
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        pg.keepalives_idle(Duration::from_secs(10));
        if pg.get_application_name().is_none() {
            pg.application_name("assent-fleet");
        }
        let roots = match (ca_file, pg.get_ssl_mode()) {
            (Some(_), SslMode::Disable) => {
                return Err(FleetError::Config(
                    "a CA file is configured but the database address says sslmode=disable".into(),
                ))
            }
            (Some(path), mode) => {
                if mode == SslMode::Prefer {
                    pg.ssl_mode(SslMode::Require);
                }
                load_roots(path)?
            }
            (None, SslMode::Disable) => rustls::RootCertStore::empty(),
            (None, _) => {
                return Err(FleetError::Config(
                    "TLS to the database needs a CA file (ca_file); for a local Unix socket \
                     or loopback database add sslmode=disable to the address"
                        .into(),
                ))
            }
        };
        let tls = MakeRustlsConnect::new(client_config(roots)?);
        Ok(Connector { pg, tls, redactor })
    }

    pub(crate) fn pool(&self) -> Result<Pool, FleetError> {
        let manager = Manager::from_config(
            self.pg.clone(),
            self.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT * 2))
            .create_timeout(Some(CONNECT_TIMEOUT + Duration::from_secs(1)))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| FleetError::Config(self.redactor.scrub(&e.to_string())))
    }

    /// A connection outside the pool (for LISTEN). Its driver runs in a
    /// task that forwards notifications; the receiver ends (`None`) when the
    /// connection does, which is how the control feed notices a lost
    /// connection even while idle.
    pub(crate) async fn dedicated(
        &self,
        application_name: &str,
    ) -> Result<(tokio_postgres::Client, mpsc::UnboundedReceiver<()>), FleetError> {
        let mut pg = self.pg.clone();
        pg.application_name(application_name);
        let fut = pg.connect(self.tls.clone());
        let (client, mut connection) =
            match tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), fut).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => return Err(self.redactor.pg(&e)),
                Err(_) => {
                    return Err(FleetError::Unavailable(
                        "timed out connecting to the database".into(),
                    ))
                }
            };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(_))) => {
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "fleet listener connection ended");
                        return;
                    }
                    None => return,
                }
            }
        });
        Ok((client, rx))
    }
}

fn load_roots(path: &Path) -> Result<rustls::RootCertStore, FleetError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| FleetError::Config(format!("cannot read CA file {}: {e}", path.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(FleetError::Config(format!(
            "CA file {} holds no usable certificate",
            path.display()
        )));
    }
    Ok(roots)
}

/// A rustls client config on the ring provider explicitly, so nothing
/// depends on which provider some other crate installed as the default.
fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, FleetError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FleetError::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
