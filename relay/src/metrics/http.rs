//! The `[metrics] listen` HTTP endpoint: `GET /metrics` (OpenMetrics text),
//! `GET /healthz` (the process is up) and `GET /readyz` (the relay accepts
//! connections and can write its audit log). Plain HTTP/1.1 through hyper;
//! a handful of connections at once, each bounded in time, because nothing
//! authenticates a scraper.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::Snapshot;
use crate::state::{EntryPhase, Shared};

/// Scrapers and probes served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;
/// A client must send its request line and headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection (keep-alive included) is closed after this.
const CONNECTION_LIMIT: Duration = Duration::from_secs(60);
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Written, fsynced and removed by every `/readyz`.
const PROBE: &str = ".readyz-probe";

/// Binds the endpoint, when configured, before the relay says it is
/// listening, so a taken port stops `serve` with a clear error instead of
/// a relay without metrics.
pub async fn bind(addr: Option<SocketAddr>) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint ([metrics] listen = \"{addr}\")"))?;
    Ok(Some(listener))
}

/// Serves until the task is aborted (after the relay's shutdown grace, so
/// `/readyz` says "shutting down" while sessions record their end).
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, typically: wait instead of spinning.
                warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(&shared, &req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIMIT, conn).await {
                debug!(error = %e, "metrics endpoint: connection failed");
            }
            drop(permit);
        });
    }
}

async fn route(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match req.uri().path() {
        "/metrics" => match shared.metrics.encode(snapshot(shared)) {
            Ok(body) => {
                let mut r = Response::new(Full::new(Bytes::from(body)));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
                r
            }
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
        },
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match readiness(shared).await {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {why}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n",
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// What the gauges read when scraped.
fn snapshot(shared: &Shared) -> Snapshot {
    let mut now = Snapshot {
        udp_drops: assent_net::own_udp_drops(),
        ..Snapshot::default()
    };
    for entry in shared.lock().sessions.values() {
        match entry.phase {
            EntryPhase::WaitingForAgent => now.waiting_for_agent += 1,
            EntryPhase::AskingUser => now.asking_user += 1,
            EntryPhase::Live => now.live += 1,
        }
    }
    now
}

/// Ready: the QUIC endpoint accepts connections, the relay is not shutting
/// down, and a file can be written and fsynced in the audit directory. The
/// reasons are fixed words; an I/O error's text never leaves the relay.
async fn readiness(shared: &Shared) -> Result<(), &'static str> {
    if *shared.shutdown.borrow() {
        return Err("shutting down");
    }
    if !shared.metrics.listening() {
        return Err("not listening");
    }
    let dir = audit_dir(&shared.dir.audit());
    let probe = tokio::task::spawn_blocking(move || write_probe(&dir)).await;
    match probe {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            warn!(error = %e, "readiness: the audit directory is not writable");
            Err("audit directory not writable")
        }
        Err(_) => Err("audit probe failed"),
    }
}

fn audit_dir(log: &Path) -> PathBuf {
    log.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Creates, fsyncs and removes a small file beside the audit log: what an
/// append needs (space, a writable directory, a disk that syncs).
pub fn write_probe(dir: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = dir.join(PROBE);
    let mut f = std::fs::File::create(&path)?;
    f.write_all(b"ready?\n")?;
    f.sync_all()?;
    match std::fs::remove_file(&path) {
        // Two probes at once: the other one removed it.
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        write_probe(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(write_probe(&dir.path().join("missing")).is_err());
    }
}
