//! History partitions (PROTOCOL §9, migration V5): every node creates the coming weeks'
//! partitions and, with `room.retention_days` > 0, drops the weeks wholly older than that
//! (`chorus_history_partitions`), at start and hourly; an advisory lock makes them take turns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;

use super::super::StoreError;
use super::errors::{pg_error, pool_error};

/// Keeps the partitions for as long as the node runs (a minute after a failure, and only once
/// `schema` says the database is migrated).
pub fn keep(
    pool: Pool,
    schema: Arc<AtomicBool>,
    retention_days: u32,
) -> impl Future<Output = ()> + Send + 'static {
    let days = retention_days.min(i32::MAX as u32) as i32;
    async move {
        loop {
            let wait = if !schema.load(Ordering::Acquire) {
                Duration::from_secs(5)
            } else {
                match history_partitions(&pool, days).await {
                    Ok((created, dropped)) => {
                        if created > 0 || dropped > 0 {
                            tracing::info!(
                                created,
                                dropped,
                                retention_days,
                                "history partitions: created the coming weeks', dropped \
                                 those past retention"
                            );
                        }
                        HISTORY_EVERY
                    }
                    Err(e) => {
                        tracing::warn!(error = %e,
                            "history partitions not maintained; retrying in a minute");
                        Duration::from_secs(60)
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// How often every node maintains the history partitions (they are made two weeks ahead).
const HISTORY_EVERY: Duration = Duration::from_secs(3600);

/// One `chorus_history_partitions` call: (created, dropped).
async fn history_partitions(pool: &Pool, retention_days: i32) -> Result<(i32, i32), StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let row = client
        .query_one(
            "SELECT created, dropped FROM chorus_history_partitions($1)",
            &[&retention_days],
        )
        .await
        .map_err(pg_error)?;
    Ok((row.get(0), row.get(1)))
}
