//! Assent patch: the queue of events from the endpoint to one connection.
//!
//! It replaces a tokio unbounded channel, whose state is cache-line padded
//! (about 0.5 kB) and which allocates its slots 32 at a time and keeps a
//! spare block: about 3 kB a connection, most of an idle relay connection's
//! share of the channels (Assent's BENCHMARKS.md, issue 16). A connection
//! gets a few events per datagram and drains them at its next poll, so a
//! mutex around a `VecDeque` that starts empty and is shrunk after a burst
//! is enough. Same interface as the channel: `send` fails once the
//! receiver is gone, `poll_recv` gives `None` once every sender is gone
//! and the queue is empty.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::ConnectionEvent;

/// Capacity kept after a burst is drained; anything above is released.
const KEPT_CAPACITY: usize = 16;

#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<ConnectionEvent>,
    waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

pub(crate) fn channel() -> (Sender, Receiver) {
    let shared = Arc::new(Mutex::new(Queue::default()));
    (Sender(shared.clone()), Receiver(shared))
}

/// The endpoint's end. Not `Clone`: each connection has one.
#[derive(Debug)]
pub(crate) struct Sender(Arc<Mutex<Queue>>);

/// The receiver is gone (its connection ended); the event is dropped.
#[derive(Debug)]
pub(crate) struct Closed;

impl Sender {
    pub(crate) fn send(&self, event: ConnectionEvent) -> Result<(), Closed> {
        let waker = {
            let mut q = lock(&self.0);
            if q.receiver_gone {
                return Err(Closed);
            }
            q.events.push_back(event);
            q.waker.take()
        };
        // Woken outside the lock, so the driver does not wait on it.
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let waker = {
            let mut q = lock(&self.0);
            q.sender_gone = true;
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The connection's end.
#[derive(Debug)]
pub(crate) struct Receiver(Arc<Mutex<Queue>>);

impl Receiver {
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ConnectionEvent>> {
        let mut q = lock(&self.0);
        if let Some(event) = q.events.pop_front() {
            if q.events.is_empty() && q.events.capacity() > KEPT_CAPACITY {
                q.events.shrink_to(KEPT_CAPACITY);
            }
            return Poll::Ready(Some(event));
        }
        if q.sender_gone {
            return Poll::Ready(None);
        }
        match &q.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => q.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut q = lock(&self.0);
        q.receiver_gone = true;
        q.events.clear();
    }
}

/// A panic while the lock was held left the queue consistent (every
/// critical section is a single push, pop or flag), so poisoning is ignored.
fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn close_event() -> ConnectionEvent {
        ConnectionEvent::Close {
            error_code: crate::VarInt::from_u32(0),
            reason: bytes::Bytes::new(),
        }
    }

    #[test]
    fn events_arrive_in_order_then_none_when_the_sender_is_gone() {
        let (tx, mut rx) = channel();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(rx.poll_recv(&mut cx).is_pending());
        for _ in 0..100 {
            tx.send(close_event()).unwrap();
        }
        for _ in 0..100 {
            assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(Some(_))));
        }
        assert!(lock(&rx.0).events.capacity() <= KEPT_CAPACITY);
        assert!(rx.poll_recv(&mut cx).is_pending());
        drop(tx);
        assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn send_fails_once_the_receiver_is_gone() {
        let (tx, rx) = channel();
        drop(rx);
        assert!(tx.send(close_event()).is_err());
    }
}
