//! QUIC transport for Assent: endpoints, certificates and message framing on
//! streams. This is the only crate that knows quinn and rustls; the relay,
//! agent and viewer see [`Connection`], [`SendStream`] and [`RecvStream`]
//! and the helpers here.
//!
//! Every connection uses TLS 1.3 with the ring provider, ALPN `assent/1`, and
//! a 0.5 s keep-alive, so a healthy path carries a packet each way at least
//! twice a second. Two clocks watch a path: [`PathWatch`] notices silence
//! within a second (the agent then stops capturing, the relay records an
//! interruption), and the QUIC idle timeout, which the relay sets to its
//! reconnect grace period plus a margin ([`server_endpoint`]; a connection
//! takes the smaller of both sides' values, and clients offer
//! [`CLIENT_IDLE_TIMEOUT`]), ends a connection that stays silent.

#![forbid(unsafe_code)]

mod drops;
pub mod pki;
mod socket;

pub use drops::{own_udp_drops, udp_drops};
pub use socket::{MAX_GSO_BATCH, RELAY_SOCKET_BUFFER};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use assent_proto::framing::{self, FrameError, MAX_CONTROL_FRAME, PREFIX_LEN};
use assent_proto::identity::{EXPORTER_LABEL, EXPORTER_LEN};
use assent_proto::ALPN;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{de::DeserializeOwned, Serialize};

pub use quinn::{Connection, ConnectionError, Endpoint, RecvStream, SendStream, VarInt};

/// Keep-alive period: a quarter of the idle timeout, so a healthy but quiet
/// connection survives the loss of three keep-alives in a row.
pub const KEEP_ALIVE: Duration = Duration::from_millis(500);
/// The idle timeout clients offer: the relay's (its grace period plus a
/// margin) is smaller and applies.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A path with no packet in for this long is interrupted: the agent stops
/// capturing and injecting until it comes back.
pub const PATH_SILENCE: Duration = Duration::from_secs(1);
/// Per-stream receive window. It bounds how much one slow session can make
/// the relay buffer, so many sessions cannot exhaust its memory.
pub const STREAM_WINDOW: u32 = 512 * 1024;
/// A connection's receive window at the relay until the relay sets its
/// share of one budget (`relay/src/windows.rs`, whose smallest share this
/// is; one 8952-byte datagram fits).
pub const RELAY_INITIAL_WINDOW: u32 = 16 * 1024;
/// How far path MTU discovery may grow a datagram (quinn stops at 1452 by
/// default): a jumbo-frame LAN or loopback carries 8952-byte datagrams, so
/// fewer packets, system calls and per-packet crypto for the same bytes.
/// Internet paths settle where their probes stop getting through. Both
/// ways grow this far (see `endpoint_config`).
pub const MTU_UPPER_BOUND: u16 = 8952;

/// Application close codes (QUIC CONNECTION_CLOSE), so a peer can tell a
/// deliberate close from a crash.
pub mod close {
    use quinn::VarInt;
    /// Session over or client done.
    pub const NORMAL: VarInt = VarInt::from_u32(0);
    /// The peer broke the protocol or failed authentication.
    pub const REFUSED: VarInt = VarInt::from_u32(1);
    /// The relay is shutting down.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(2);
    /// Too many connections from this address.
    pub const RATE_LIMITED: VarInt = VarInt::from_u32(3);
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot read {what}: {source}")]
    ReadFile {
        what: String,
        source: std::io::Error,
    },
    #[error("no certificate found in {0}")]
    NoCertificate(String),
    #[error("no private key found in {0}")]
    NoKey(String),
    #[error("invalid PEM in {what}: {detail}")]
    BadPem { what: String, detail: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("QUIC configuration: {0}")]
    Quic(String),
    #[error("cannot bind UDP socket {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot connect to the relay at {addr}: {detail}")]
    Connect { addr: String, detail: String },
    #[error("connection lost: {0}")]
    Connection(#[from] ConnectionError),
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("stream read failed: {0}")]
    Read(String),
    #[error("peer closed the stream")]
    Closed,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("TLS exporter unavailable")]
    Exporter,
}

impl NetError {
    /// True when the relay's certificate was not trusted (wrong CA, name).
    pub fn is_untrusted_relay(&self) -> bool {
        match self {
            NetError::Connect { detail, .. } => {
                detail.contains("certificate") || detail.contains("UnknownIssuer")
            }
            NetError::Connection(ConnectionError::TransportError(e)) => {
                e.to_string().contains("certificate")
            }
            _ => false,
        }
    }
}

fn transport(peer_bidi_streams: u32, idle: Duration) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    // Minutes are far below quinn's VarInt ceiling; the conversion cannot fail.
    if let Ok(idle) = quinn::IdleTimeout::try_from(idle) {
        t.max_idle_timeout(Some(idle));
    }
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_UPPER_BOUND);
    t.mtu_discovery_config(Some(mtu));
    t.max_concurrent_bidi_streams(VarInt::from_u32(peer_bidi_streams));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.stream_receive_window(VarInt::from_u32(STREAM_WINDOW));
    t.receive_window(VarInt::from_u32(STREAM_WINDOW * 2));
    t.send_window(u64::from(STREAM_WINDOW) * 2);
    t
}

/// Every endpoint's settings: it accepts datagrams up to
/// [`MTU_UPPER_BOUND`]. quinn advertises 1472 bytes by default, and path MTU
/// discovery never goes past what the receiving end advertises. Measured
/// (BENCHMARKS.md, 2026-12-03 late night): the relay's datagrams to viewers
/// grew from 1470 to 8876 bytes on loopback, and one session's relay CPU
/// per GB fell from 2.7-3.1 to 1.25-1.28 core-s.
///
/// An endpoint's receive buffer is this size times the datagrams one read
/// may carry times 32 reads; the socket says a read carries at most 8
/// of them (`socket::READ_FIT`), so 2.3 MB.
fn endpoint_config() -> Result<quinn::EndpointConfig, NetError> {
    let mut config = quinn::EndpointConfig::default();
    config
        .max_udp_payload_size(MTU_UPPER_BOUND)
        .map_err(|e| NetError::Quic(e.to_string()))?;
    Ok(config)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, NetError> {
    std::fs::read(path).map_err(|source| NetError::ReadFile {
        what: format!("{what} {}", path.display()),
        source,
    })
}

/// Parses every certificate in a PEM document.
pub fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NetError::BadPem {
            what: what.to_string(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(NetError::NoCertificate(what.to_string()));
    }
    Ok(certs)
}

/// The relay's endpoint, serving with the certificate chain and key in
/// these PEM files.
pub fn server_endpoint(
    listen: SocketAddr,
    (cert_path, key_path): (&std::path::Path, &std::path::Path),
    idle: Duration,
) -> Result<Endpoint, NetError> {
    let chain = certs_from_pem(
        &read(cert_path, "certificate")?,
        &cert_path.display().to_string(),
    )?;
    let key = PrivateKeyDer::from_pem_slice(&read(key_path, "private key")?)
        .map_err(|_| NetError::NoKey(key_path.display().to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| NetError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    // A client opens its control stream; nothing more.
    let mut transport = transport(2, idle);
    // The relay gives each connection its share of one budget as it takes
    // it in (`relay/src/windows.rs`); until then, a small one, so a
    // thousand sessions starting at once cannot send a megabyte each.
    transport.receive_window(VarInt::from_u32(RELAY_INITIAL_WINDOW));
    config.transport_config(Arc::new(transport));
    let bind_err = |source| NetError::Bind {
        addr: listen,
        source,
    };
    let runtime = runtime()?;
    let socket = socket::relay(listen, &*runtime).map_err(bind_err)?;
    Endpoint::new_with_abstract_socket(endpoint_config()?, Some(config), socket, runtime)
        .map_err(bind_err)
}

fn runtime() -> Result<Arc<dyn quinn::Runtime>, NetError> {
    quinn::default_runtime()
        .ok_or_else(|| NetError::Quic("no async runtime for the endpoint".into()))
}

/// A client endpoint that trusts only the CA certificates in `ca_pem`
/// (never the system store: the relay's own CA is the trust anchor).
pub fn client_endpoint(ca_pem: &std::path::Path, remote: SocketAddr) -> Result<Endpoint, NetError> {
    let what = ca_pem.display().to_string();
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs_from_pem(&read(ca_pem, "CA certificate")?, &what)? {
        roots.add(cert).map_err(|e| NetError::BadPem {
            what: what.clone(),
            detail: e.to_string(),
        })?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.enable_early_data = false;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| NetError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    // The relay opens one data stream to each client.
    config.transport_config(Arc::new(transport(2, CLIENT_IDLE_TIMEOUT)));
    let bind: SocketAddr = if remote.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let bind_err = |source| NetError::Bind { addr: bind, source };
    let runtime = runtime()?;
    let socket = socket::client(bind, &*runtime).map_err(bind_err)?;
    let mut endpoint =
        Endpoint::new_with_abstract_socket(endpoint_config()?, None, socket, runtime)
            .map_err(bind_err)?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// Splits `HOST:PORT` (or `[v6]:PORT`) into the TLS server name and resolves it.
pub async fn resolve(relay: &str) -> Result<(String, SocketAddr), NetError> {
    let host = match relay.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']').to_string(),
        None => return Err(NetError::Resolve(format!("{relay} (expected HOST:PORT)"))),
    };
    let addr = tokio::net::lookup_host(relay)
        .await
        .map_err(|e| NetError::Resolve(format!("{relay}: {e}")))?
        .next()
        .ok_or_else(|| NetError::Resolve(relay.to_string()))?;
    Ok((host, addr))
}

/// Connects to the relay at `HOST:PORT`, verifying its certificate against `ca_pem`.
pub async fn connect(
    relay: &str,
    ca_pem: &std::path::Path,
) -> Result<(Endpoint, Connection), NetError> {
    connect_within(relay, ca_pem, CONNECT_TIMEOUT).await
}

/// How long a client waits for the relay to complete the handshake. Without
/// it a relay that does not answer (a wrong address, a closed UDP port, a
/// handshake lost under load) would keep the user waiting for the whole
/// 120 s idle timeout; a handshake takes a few round trips.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// When a handshake has not finished by then, a second one starts beside
/// it from a fresh endpoint (new source port, new connection IDs), and
/// whichever finishes first is used. Measured (BENCHMARKS.md, 2026-12-03):
/// pairing 1000 sessions at once, 1 to 6 handshakes in a run never finish
/// while the relay asks every new address to Retry, and none without Retry;
/// the cause is inside quinn and not found. A healthy handshake, even on a
/// lossy path whose first Initial is lost and resent after 1 s, is over by
/// then.
pub const SECOND_ATTEMPT_AFTER: Duration = Duration::from_secs(5);

/// [`connect`] giving up after `limit`.
pub async fn connect_within(
    relay: &str,
    ca_pem: &std::path::Path,
    limit: Duration,
) -> Result<(Endpoint, Connection), NetError> {
    let (host, addr) = resolve(relay).await?;
    let failed = |detail: String| NetError::Connect {
        addr: relay.to_string(),
        detail,
    };
    let attempt = || async {
        let endpoint = match SHARED_ENDPOINT.try_with(Endpoint::clone) {
            Ok(shared) => shared,
            Err(_) => client_endpoint(ca_pem, addr)?,
        };
        let connecting = endpoint
            .connect(addr, &host)
            .map_err(|e| failed(e.to_string()))?;
        let conn = connecting.await.map_err(|e| failed(e.to_string()))?;
        Ok::<_, NetError>((endpoint, conn))
    };
    let both = async {
        let first = attempt();
        tokio::pin!(first);
        tokio::select! {
            done = &mut first => return done,
            _ = tokio::time::sleep(SECOND_ATTEMPT_AFTER) => {}
        }
        tracing::debug!(%addr, "handshake not finished; a second attempt starts beside it");
        let second = attempt();
        tokio::pin!(second);
        // The first answer wins; an error is an answer too (the relay
        // refused, or its certificate is not trusted).
        tokio::select! {
            done = &mut first => done,
            done = &mut second => done,
        }
    };
    match tokio::time::timeout(limit, both).await {
        Ok(done) => done,
        Err(_) => Err(failed(format!(
            "no answer within {} s (check the address, and that UDP port {} is open to the relay)",
            limit.as_secs_f64(),
            addr.port()
        ))),
    }
}

tokio::task_local! {
    /// The endpoint connections come from instead of one each, inside
    /// [`connecting_from`].
    static SHARED_ENDPOINT: Endpoint;
}

/// Runs `work` with every connection it opens to the relay coming from
/// `endpoint` (made by [`client_endpoint`] with the relay's CA), one UDP
/// socket for all of them. For load generators that hold more connections
/// than a process may open sockets (the relay benchmark's 10,000 idle
/// sessions are 20,000 connections); agents and viewers use one endpoint
/// each.
pub async fn connecting_from<F: std::future::Future>(endpoint: Endpoint, work: F) -> F::Output {
    SHARED_ENDPOINT.scope(endpoint, work).await
}

/// The TLS exporter value of this connection (RFC 8446 §7.5): both ends
/// compute the same bytes, and no other connection has them.
pub fn exporter(conn: &Connection) -> Result<[u8; EXPORTER_LEN], NetError> {
    let mut out = [0u8; EXPORTER_LEN];
    conn.export_keying_material(&mut out, EXPORTER_LABEL, b"")
        .map_err(|_| NetError::Exporter)?;
    Ok(out)
}

/// Writes one length-prefixed control message.
pub async fn send_msg<T: Serialize>(send: &mut SendStream, msg: &T) -> Result<(), NetError> {
    let body = assent_proto::wire::encode(msg)?;
    let frame = framing::encode_frame(&body, MAX_CONTROL_FRAME)?;
    send.write_all(&frame).await?;
    Ok(())
}

/// Reads one length-prefixed control message. The prefix is checked against
/// the control frame limit before the body buffer is allocated.
pub async fn recv_msg<T: DeserializeOwned>(recv: &mut RecvStream) -> Result<T, NetError> {
    let mut prefix = [0u8; PREFIX_LEN];
    read_exact(recv, &mut prefix, true).await?;
    let len = framing::check_len(prefix, MAX_CONTROL_FRAME)?;
    let mut body = vec![0u8; len];
    read_exact(recv, &mut body, false).await?;
    Ok(assent_proto::wire::decode(&body)?)
}

/// Reads control frames through the fuzzed [`framing::FrameDecoder`].
/// Unlike [`recv_msg`], `recv` is cancel-safe: a `select!` that drops it
/// mid-frame loses nothing, because bytes already read stay in the decoder
/// (quinn's `read_chunk` itself is cancel-safe). The buffer never holds more
/// than one maximal frame plus one chunk.
pub struct FrameReader {
    recv: RecvStream,
    decoder: framing::FrameDecoder,
}

impl FrameReader {
    pub fn new(recv: RecvStream) -> FrameReader {
        FrameReader {
            recv,
            decoder: framing::FrameDecoder::new(MAX_CONTROL_FRAME),
        }
    }

    /// The next whole message.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, NetError> {
        loop {
            if let Some(body) = self.decoder.next_frame()? {
                return Ok(assent_proto::wire::decode(&body)?);
            }
            match self.recv.read_chunk(MAX_CONTROL_FRAME, true).await {
                Ok(Some(chunk)) => self.decoder.push(&chunk.bytes)?,
                Ok(None) if self.decoder.buffered() == 0 => return Err(NetError::Closed),
                Ok(None) => return Err(NetError::Frame(FrameError::Truncated)),
                Err(quinn::ReadError::ConnectionLost(e)) => return Err(NetError::Connection(e)),
                Err(e) => return Err(NetError::Read(e.to_string())),
            }
        }
    }
}

async fn read_exact(
    recv: &mut RecvStream,
    buf: &mut [u8],
    at_boundary: bool,
) -> Result<(), NetError> {
    match recv.read_exact(buf).await {
        Ok(()) => Ok(()),
        Err(quinn::ReadExactError::FinishedEarly(0)) if at_boundary => Err(NetError::Closed),
        Err(quinn::ReadExactError::FinishedEarly(_)) => Err(NetError::Frame(FrameError::Truncated)),
        Err(quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(e))) => {
            Err(NetError::Connection(e))
        }
        Err(quinn::ReadExactError::ReadError(e)) => Err(NetError::Read(e.to_string())),
    }
}

/// Watches one connection for silence: how long since a datagram last
/// arrived on it, polled from the connection's own counters (no extra
/// traffic; the keep-alive guarantees packets on a healthy path).
#[derive(Debug, Clone, Copy)]
pub struct PathWatch {
    datagrams: u64,
    heard: std::time::Instant,
}

impl PathWatch {
    pub fn new(now: std::time::Instant) -> PathWatch {
        PathWatch {
            datagrams: 0,
            heard: now,
        }
    }

    /// How long `conn` has been silent at `now`.
    pub fn silence(&mut self, conn: &Connection, now: std::time::Instant) -> Duration {
        let datagrams = conn.stats().udp_rx.datagrams;
        if datagrams != self.datagrams {
            self.datagrams = datagrams;
            self.heard = now;
        }
        now.saturating_duration_since(self.heard)
    }
}

#[cfg(test)]
mod connect_tests;
