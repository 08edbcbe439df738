//! When a session is lost under load, what its agent's connection saw in
//! its last seconds, from the client's side: datagrams sent and received,
//! packets declared lost, congestion window, round trip and path MTU, each
//! quarter second. It tells a relay that stopped answering from an agent
//! that stopped sending (it found agents whose send batches vanished, see
//! `assent_net::MAX_GSO_BATCH`, and agents left sending only loss probes).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use assent_net::Connection;

const EVERY: Duration = Duration::from_millis(250);
/// Samples kept per connection: the last 30 s.
const KEEP: usize = 120;
/// Lost sessions whose trace is printed.
const PRINT_AT_MOST: usize = 3;

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    sent: u64,
    sent_bytes: u64,
    received: u64,
    lost: u64,
    cwnd: u64,
    rtt_ms: u128,
    mtu: u16,
}

impl Sample {
    fn of(conn: &Connection, at: Instant) -> Sample {
        let s = conn.stats();
        Sample {
            at,
            sent: s.udp_tx.datagrams,
            sent_bytes: s.udp_tx.bytes,
            received: s.udp_rx.datagrams,
            lost: s.path.lost_packets,
            cwnd: s.path.cwnd,
            rtt_ms: s.path.rtt.as_millis(),
            mtu: s.path.current_mtu,
        }
    }
}

/// Watches each session's agent connection (with the relay's session id)
/// until `stop`; prints the trace of the first sessions whose `ended` flag
/// rises.
pub async fn watch(
    agents: Vec<(Connection, String)>,
    ended: Vec<Arc<AtomicBool>>,
    stop: Arc<AtomicBool>,
) {
    let mut rings: Vec<VecDeque<Sample>> = agents.iter().map(|_| VecDeque::new()).collect();
    let mut done = vec![false; agents.len()];
    let mut printed = 0;
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(EVERY);
    while !stop.load(Ordering::Relaxed) && printed < PRINT_AT_MOST {
        tick.tick().await;
        let now = Instant::now();
        for (i, (conn, session)) in agents.iter().enumerate() {
            if done[i] {
                continue;
            }
            if rings[i].len() == KEEP {
                rings[i].pop_front();
            }
            rings[i].push_back(Sample::of(conn, now));
            if ended[i].load(Ordering::Relaxed) && printed < PRINT_AT_MOST {
                done[i] = true;
                printed += 1;
                print(session, &rings[i], t0);
            }
        }
    }
}

/// The samples where the agent's datagrams stood still either way.
fn print(session: &str, ring: &VecDeque<Sample>, t0: Instant) {
    eprintln!(
        "lost session {session}, its agent every 0.25 s where datagrams stood still \
         (s since the run began: sent (bytes) / received / declared lost / cwnd / rtt / mtu):"
    );
    let mut prev: Option<&Sample> = None;
    for s in ring {
        if prev.is_none_or(|p| p.sent == s.sent || p.received == s.received) {
            eprintln!(
                "  {:6.2}  {} ({} B) / {} / {} / {} / {} ms / {}",
                s.at.duration_since(t0).as_secs_f64(),
                s.sent,
                s.sent_bytes,
                s.received,
                s.lost,
                s.cwnd,
                s.rtt_ms,
                s.mtu
            );
        }
        prev = Some(s);
    }
}
