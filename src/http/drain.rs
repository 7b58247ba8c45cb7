//! The drain as the HTTP streams see it (PROTOCOL §6): once SIGTERM starts it, every SSE stream
//! and every waiting long-poll of this node ends within `shutdown.drain_ms`, each at its own
//! random moment of the window (so their clients do not all reconnect to the other nodes at
//! once, the reason WebSocket closes are spread too), and the node waits for them before it
//! stops its HTTP server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

/// Whether the node drains, over what window, and how many streams are still open.
#[derive(Default)]
pub struct Drain {
    started: CancellationToken,
    /// When it started, and the window.
    window: OnceLock<(tokio::time::Instant, Duration)>,
    open: AtomicUsize,
}

impl Drain {
    /// From now on the node drains; streams end within `window`.
    pub fn start(&self, window: Duration) {
        let _ = self.window.set((tokio::time::Instant::now(), window));
        self.started.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.started.is_cancelled()
    }

    /// Resolves when this stream's turn to end has come: a random moment in the first 90 % of
    /// the window after the drain started (never, if it does not).
    pub async fn turn(&self) {
        self.started.cancelled().await;
        let Some(&(start, window)) = self.window.get() else {
            return;
        };
        let at = rand::rng().random_range(0..=window.as_millis() as u64 * 9 / 10);
        tokio::time::sleep_until(start + Duration::from_millis(at)).await;
    }

    /// Counts an open stream until the guard is dropped.
    pub fn open(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        StreamGuard(self.clone())
    }

    /// SSE streams and waiting long-polls still open.
    pub fn streams(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// One open stream, for [`Drain::streams`].
pub struct StreamGuard(Arc<Drain>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn every_turn_comes_inside_the_window_and_streams_are_counted() {
        let drain = Arc::new(Drain::default());
        let guards: Vec<_> = (0..50).map(|_| drain.open()).collect();
        assert_eq!(drain.streams(), 50);
        let waiting = tokio::time::timeout(Duration::from_secs(60), drain.turn()).await;
        assert!(waiting.is_err(), "no turn before the drain starts");
        drain.start(Duration::from_millis(2000));
        assert!(drain.is_draining());
        let t0 = tokio::time::Instant::now();
        for _ in 0..50 {
            drain.turn().await;
            assert!(t0.elapsed() <= Duration::from_millis(1800));
        }
        drop(guards);
        assert_eq!(drain.streams(), 0);
    }
}
