//! Readiness of the node's dependencies, as `/readyz` reports it: a background task checks the
//! store every second (each check bounded by a second, so a blackholed Postgres makes the node
//! unready within about two seconds), and `/readyz` only reads the last answer, so it answers at
//! once whatever the database does. Each change of state is logged once, with the host and the
//! cause, never a password.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::store::Store;

/// How often the store is checked, and how long one check may take.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Health {
    store_ok: AtomicBool,
}

impl Health {
    pub fn store_ok(&self) -> bool {
        self.store_ok.load(Ordering::Acquire)
    }

    /// Checks `store` once now, then every [`CHECK_EVERY`] until the handle is aborted.
    /// `host` names the store in log lines (e.g. `db.internal:5432`).
    pub async fn watch(self: Arc<Self>, store: Arc<dyn Store>, host: String) -> JoinHandle<()> {
        let first = self.check(&*store).await;
        self.store_ok.store(first.is_ok(), Ordering::Release);
        tokio::spawn(async move {
            let mut last = first;
            if let Err(cause) = &last {
                tracing::warn!(host = %host, cause = %cause, "store unreachable: not ready");
            }
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                let now = self.check(&*store).await;
                self.store_ok.store(now.is_ok(), Ordering::Release);
                match (&last, &now) {
                    (Ok(()), Err(cause)) => tracing::warn!(host = %host, cause = %cause,
                        "store unreachable: not ready; requests get `unavailable` until it answers"),
                    (Err(old), Err(cause)) if old != cause => {
                        tracing::warn!(host = %host, cause = %cause, "store still unreachable")
                    }
                    (Err(_), Ok(())) => {
                        tracing::info!(host = %host, "store reachable again: ready")
                    }
                    _ => {}
                }
                last = now;
            }
        })
    }

    async fn check(&self, store: &dyn Store) -> Result<(), String> {
        match tokio::time::timeout(CHECK_EVERY, store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "timeout: no answer within {} ms",
                CHECK_EVERY.as_millis()
            )),
        }
    }
}
