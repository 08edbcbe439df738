//! Counts running session tasks so shutdown can wait for their `session_end`
//! records.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct Tracker {
    inner: Arc<(AtomicUsize, Notify)>,
}

pub struct Token(Tracker);

impl Tracker {
    pub fn token(&self) -> Token {
        self.inner.0.fetch_add(1, Ordering::SeqCst);
        Token(self.clone())
    }
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.inner.1.notified();
            if self.inner.0.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if self.0.inner.0.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.inner.1.notify_waiters();
        }
    }
}
