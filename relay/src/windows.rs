//! One receive budget for every client connection: each may have at most
//! its share of [`BUDGET`] sent and not yet read by the relay.
//!
//! Without it every connection could send a full window (1 MB) ahead of
//! the relay, a thousand sessions far more than its socket holds: under
//! overload the kernel dropped their datagrams, agents whose whole window
//! was lost sent only backed-off loss probes (quinn sends no
//! acknowledgements while congestion-blocked), and when those were lost
//! too the relay ended their sessions (BENCHMARKS.md, issue 16). Held by
//! flow control instead, a sender still acknowledges and answers
//! keep-alives, and the relay's socket is not overrun by data.
//!
//! Shares are powers of two between [`MIN_WINDOW`] and [`MAX_WINDOW`], so
//! windows are reset a few times as sessions come and go, not at every one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use assent_net::{Connection, VarInt};

/// What the kernel holds at the relay's socket: its request, which Linux
/// doubles for bookkeeping.
pub const BUDGET: u64 = 2 * assent_net::RELAY_SOCKET_BUFFER as u64;
/// The smallest share, also every connection's window from its handshake
/// until it joins (set by `assent_net::server_endpoint`): one 8952-byte
/// datagram fits.
pub const MIN_WINDOW: u64 = assent_net::RELAY_INITIAL_WINDOW as u64;
/// A connection's window when few share the budget (the transport's own).
pub const MAX_WINDOW: u64 = 2 * assent_net::STREAM_WINDOW as u64;

#[derive(Default)]
pub struct Windows {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    conns: HashMap<usize, Connection>,
    window: u64,
}

/// Each connection's share when `n` share the budget.
pub fn share(n: usize) -> u64 {
    let fair = (BUDGET / n.max(1) as u64).clamp(MIN_WINDOW, MAX_WINDOW);
    // The largest power of two not above it.
    1 << (63 - fair.leading_zeros())
}

impl Windows {
    /// `conn` takes its share until it closes; every share is reset when
    /// the count moves the share to another power of two.
    pub fn join(self: &Arc<Self>, conn: &Connection) {
        let id = conn.stable_id();
        {
            let mut s = self.lock();
            s.conns.insert(id, conn.clone());
            self.rebalance(&mut s, Some(conn));
        }
        let (windows, conn) = (self.clone(), conn.clone());
        tokio::spawn(async move {
            conn.closed().await;
            let mut s = windows.lock();
            s.conns.remove(&id);
            windows.rebalance(&mut s, None);
        });
    }

    /// Connections sharing the budget now, and each one's window.
    pub fn now(&self) -> (usize, u64) {
        let s = self.lock();
        (s.conns.len(), s.window)
    }

    fn rebalance(&self, s: &mut State, newcomer: Option<&Connection>) {
        let window = share(s.conns.len());
        let set =
            |c: &Connection| c.set_receive_window(VarInt::from_u64(window).unwrap_or(VarInt::MAX));
        if window != s.window {
            tracing::info!(
                connections = s.conns.len(),
                window_kib = window / 1024,
                "receive windows: each connection's share of the relay's budget"
            );
            s.window = window;
            s.conns.values().for_each(set);
        } else if let Some(c) = newcomer {
            set(c);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
#[path = "windows_tests.rs"]
mod quic_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_halve_as_connections_double_within_bounds() {
        assert_eq!(share(0), MAX_WINDOW);
        assert_eq!(share(1), MAX_WINDOW);
        assert_eq!(share(16), MAX_WINDOW);
        assert_eq!(share(32), 512 * 1024);
        assert_eq!(share(2000), 8 * 1024 * 2);
        assert_eq!(share(20_000), MIN_WINDOW);
        for n in 1..5000 {
            assert!(share(n).is_power_of_two());
            assert!(share(n) * n as u64 <= BUDGET || share(n) == MIN_WINDOW);
        }
    }
}
