//! Schema migrations from `migrations/`, embedded at build time and applied by refinery
//! (`chorus migrate`, and at `serve` start). A Postgres advisory lock serialises nodes that start
//! together, so only one applies each migration. A node whose Postgres is unreachable at start
//! still starts (not ready) and applies them as soon as it can ([`until_applied`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;

refinery::embed_migrations!("migrations");

/// Arbitrary constant key for `pg_advisory_lock` ("chorus" in ASCII).
const LOCK_KEY: i64 = 0x63686f727573;

pub async fn run(url: &str) -> anyhow::Result<usize> {
    run_to(url, None).await
}

/// Applies the migrations up to and including `version` (all when `None`): upgrade tests start
/// from a database written by an earlier schema.
pub async fn run_to(url: &str, version: Option<i32>) -> anyhow::Result<usize> {
    let (mut client, conn) = super::pg_tls::connect(url).await.map_err(|e| {
        anyhow::anyhow!(
            "connecting to database.url ({}) for migrations: {e}",
            super::postgres::hosts_of(url),
        )
    })?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .context("taking the migration lock")?;
    let mut runner = migrations::runner();
    if let Some(v) = version {
        runner = runner.set_target(refinery::Target::Version(v));
    }
    let report = runner
        .run_async(&mut client)
        .await
        .context("applying migrations");
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    drop(client);
    let _ = conn.await;
    Ok(report?.applied_migrations().len())
}

/// At `serve` start with Postgres unreachable: keeps trying to migrate (backoff 1 s → 10 s), logs
/// each change of cause once, and opens `gate` (the store answers again) when the schema is in.
pub async fn until_applied(url: String, gate: Arc<AtomicBool>, timeout: Duration) {
    let host = super::postgres::hosts_of(&url);
    let mut last_cause = String::new();
    let mut wait = Duration::from_secs(1);
    loop {
        let attempt = tokio::time::timeout(timeout, run(&url)).await;
        match attempt {
            Ok(Ok(applied)) => {
                gate.store(true, Ordering::Release);
                tracing::info!(host = %host, applied, "database reachable: migrations applied, store open");
                return;
            }
            failed => {
                let cause = match failed {
                    Ok(Err(e)) => format!("{e:#}"),
                    _ => format!("timeout: no answer within {} ms", timeout.as_millis()),
                };
                if cause != last_cause {
                    tracing::warn!(host = %host, cause = %cause,
                        "database unreachable: cannot apply migrations; not ready, retrying");
                    last_cause = cause;
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}
