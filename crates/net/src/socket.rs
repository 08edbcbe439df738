//! The UDP sockets under Assent's endpoints.
//!
//! quinn batches up to ten datagrams into one `sendmsg` with segmentation
//! offload (GSO), but the kernel takes a batch of at most
//! [`MAX_GSO_BATCH`] bytes: at the [`MTU_UPPER_BOUND`](crate::MTU_UPPER_BOUND)
//! that path MTU discovery reaches on loopback and jumbo-frame LANs, eight
//! or more 8952-byte datagrams are refused with `EMSGSIZE`, which
//! quinn-udp ignores (it expects that error only from MTU probes). Every
//! datagram of such a batch was lost without a trace: under load an agent
//! lost about a third of its packets to it, and quinn took the losses for
//! an MTU black hole (BENCHMARKS.md, issue 16). So every endpoint's socket
//! sends at most as many datagrams a batch as fit, and sizes its reads for
//! what the kernel delivers at once.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};

/// The largest UDP payload one datagram (and so one GSO batch) carries
/// over IPv4: 65,535 bytes less the IP and UDP headers.
pub const MAX_GSO_BATCH: usize = 65_535 - 20 - 8;
/// What the relay asks of the kernel for its one UDP socket, each way.
pub const RELAY_SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// Datagrams of the largest size (path MTU discovery's upper bound) that
/// fit in one send batch.
const SEND_FIT: usize = MAX_GSO_BATCH / crate::MTU_UPPER_BOUND as usize;
/// Datagrams of the largest size one read is told to expect: quinn sizes
/// each read's buffer as that many of them (64 by default, so 573 kB a
/// read and 18 MB an endpoint at 8952 bytes), but the kernel never
/// coalesces more than 64 kB of UDP into one read.
const READ_FIT: usize = MAX_GSO_BATCH.div_ceil(crate::MTU_UPPER_BOUND as usize);

/// A client's socket, bound to `bind`.
pub(crate) fn client(
    bind: SocketAddr,
    runtime: &dyn Runtime,
) -> io::Result<Arc<dyn AsyncUdpSocket>> {
    let socket = std::net::UdpSocket::bind(bind)?;
    Ok(FittingBatches::around(runtime.wrap_udp_socket(socket)?))
}

/// The relay's socket on `listen`, with large buffers: every session's
/// packets arrive on it, and the kernel's default (~200 kB) overflows when
/// many sessions send at once (measured: tens of thousands of drops a
/// minute at 200 sessions, enough to time connections out). The kernel
/// caps the request at `net.core.rmem_max` / `wmem_max`.
pub(crate) fn relay(
    listen: SocketAddr,
    runtime: &dyn Runtime,
) -> io::Result<Arc<dyn AsyncUdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    let _ = socket.set_recv_buffer_size(RELAY_SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(RELAY_SOCKET_BUFFER);
    // Linux reports twice what it grants (bookkeeping included).
    let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
    if granted < 1024 * 1024 {
        tracing::warn!(
            granted_kib = granted / 1024,
            "the kernel granted a small UDP receive buffer; with many sessions, raise \
             net.core.rmem_max (e.g. sysctl -w net.core.rmem_max=8388608)"
        );
    } else {
        tracing::info!(granted_kib = granted / 1024, "UDP receive buffer");
    }
    socket.bind(&listen.into())?;
    let socket: std::net::UdpSocket = socket.into();
    report_offload(&socket);
    Ok(FittingBatches::around(runtime.wrap_udp_socket(socket)?))
}

/// Says at start which UDP offloads the kernel gives the relay: with
/// segmentation (GSO) one system call sends many datagrams, with receive
/// offload (GRO) one call takes many; quinn uses both where they exist.
fn report_offload(socket: &std::net::UdpSocket) {
    match quinn::udp::UdpSocketState::new(socket.into()) {
        Ok(state) => {
            let (gso, gro) = (state.max_gso_segments(), state.gro_segments());
            tracing::info!(
                gso_segments = gso,
                gro_segments = gro,
                batch = gso.min(SEND_FIT),
                "UDP offload: segmentation (GSO) {}, receive offload (GRO) {}",
                if gso > 1 { "on" } else { "off" },
                if gro > 1 { "on" } else { "off" },
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot ask the kernel about UDP offload"),
    }
}

/// A socket that tells quinn to batch no more datagrams than fit
/// [`MAX_GSO_BATCH`] at the largest datagram size, and to expect no more
/// in one read than the kernel coalesces.
struct FittingBatches {
    inner: Arc<dyn AsyncUdpSocket>,
}

impl FittingBatches {
    fn around(inner: Arc<dyn AsyncUdpSocket>) -> Arc<dyn AsyncUdpSocket> {
        Arc::new(FittingBatches { inner })
    }
}

impl fmt::Debug for FittingBatches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FittingBatches")
            .field("send_fit", &SEND_FIT)
            .field("read_fit", &READ_FIT)
            .finish_non_exhaustive()
    }
}

impl AsyncUdpSocket for FittingBatches {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments().min(SEND_FIT)
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments().min(READ_FIT)
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
#[path = "socket_tests.rs"]
mod tests;
