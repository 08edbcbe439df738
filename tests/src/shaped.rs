//! A UDP proxy that behaves like a home uplink: a rate limit with a
//! bounded drop-tail queue towards the upstream (the relay), and a fixed
//! delay each way. This machine's kernel has no `sch_netem`/`tbf` to do it
//! with `tc`. The client side (the agent) connects to `addr`.
//!
//! It records how long each datagram waited in its queue, which is what a
//! sender that adapts to the link keeps short.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The link's shape.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Towards the upstream, bits per second.
    pub rate_bps: u64,
    /// One way, each direction (half the round trip it adds).
    pub one_way: Duration,
    /// Longest a datagram may wait in the queue; later ones are dropped.
    pub queue_limit: Duration,
}

/// Queue waits and drops, towards the upstream.
#[derive(Debug, Default)]
pub struct Record {
    /// (when it arrived, how long it waited) for every datagram sent on.
    pub waits: Vec<(Instant, Duration)>,
    pub dropped: u64,
    pub bytes: u64,
}

pub struct ShapedLink {
    pub addr: SocketAddr,
    rate_bps: Arc<AtomicU64>,
    pub record: Arc<Mutex<Record>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ShapedLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ShapedLink {
    pub async fn start(upstream: SocketAddr, shape: Shape) -> ShapedLink {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let addr = front.local_addr().expect("address");
        let rate_bps = Arc::new(AtomicU64::new(shape.rate_bps));
        let record = Arc::new(Mutex::new(Record::default()));
        let task = tokio::spawn(run(
            front,
            upstream,
            shape,
            rate_bps.clone(),
            record.clone(),
        ));
        ShapedLink {
            addr,
            rate_bps,
            record,
            task,
        }
    }

    /// Changes the rate towards the upstream from now on.
    pub fn set_rate(&self, bps: u64) {
        self.rate_bps.store(bps, Relaxed);
    }

    /// The 95th percentile of the queue waits of datagrams that arrived
    /// in `from..to` (`None` when none did).
    pub fn p95_wait(&self, from: Instant, to: Instant) -> Option<Duration> {
        let record = self.record.lock().unwrap();
        let mut waits: Vec<Duration> = record
            .waits
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, w)| *w)
            .collect();
        waits.sort();
        waits.get(waits.len() * 95 / 100).copied()
    }
}

type Outbound = mpsc::UnboundedSender<(Instant, Vec<u8>)>;

async fn run(
    front: Arc<UdpSocket>,
    upstream: SocketAddr,
    shape: Shape,
    rate_bps: Arc<AtomicU64>,
    record: Arc<Mutex<Record>>,
) {
    let mut flows: HashMap<SocketAddr, Outbound> = HashMap::new();
    let mut free_at = Instant::now();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = front.recv_from(&mut buf).await else {
            return;
        };
        let out = match flows.get(&client) {
            Some(out) => out.clone(),
            None => {
                let Ok(back) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                let back = Arc::new(back);
                let out = spawn_sender(back.clone(), upstream);
                tokio::spawn(back_to_client(back, front.clone(), client, shape.one_way));
                flows.insert(client, out.clone());
                out
            }
        };
        let now = Instant::now();
        let start = free_at.max(now);
        let wait = start - now;
        let mut r = record.lock().unwrap();
        if wait > shape.queue_limit {
            r.dropped += 1;
            continue;
        }
        let bps = rate_bps.load(Relaxed).max(1);
        free_at = start + Duration::from_secs_f64(n as f64 * 8.0 / bps as f64);
        r.waits.push((now, wait));
        r.bytes += n as u64;
        drop(r);
        let _ = out.send((free_at + shape.one_way, buf[..n].to_vec()));
    }
}

/// Sends each datagram at its time, in order (the times only grow).
fn spawn_sender(socket: Arc<UdpSocket>, to: SocketAddr) -> Outbound {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((at, datagram)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            let _ = socket.send_to(&datagram, to).await;
        }
    });
    tx
}

async fn back_to_client(
    back: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    one_way: Duration,
) {
    let out = spawn_sender(front, client);
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, _)) = back.recv_from(&mut buf).await else {
            return;
        };
        let _ = out.send((Instant::now() + one_way, buf[..n].to_vec()));
    }
}
