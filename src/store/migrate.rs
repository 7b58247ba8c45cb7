//! Schema migrations from `migrations/`, embedded at build time and applied by refinery
//! (`chorus migrate`, and at `serve` start), then the SQL functions of `migrations/functions.sql`
//! whenever that file changed ([`FUNCTIONS_VERSION`]). A Postgres advisory lock serialises nodes
//! that start together, so only one applies each migration. A node whose Postgres is unreachable
//! at start still starts (not ready) and applies them as soon as it can ([`until_applied`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;

refinery::embed_migrations!("migrations");

/// Arbitrary constant key for `pg_advisory_lock` ("chorus" in ASCII).
const LOCK_KEY: i64 = 0x63686f727573;

/// The functions nodes call, as this release defines them (`migrations/functions.sql`).
const FUNCTIONS: &str = include_str!("../../migrations/functions.sql");
/// Raised with every change to `functions.sql`: a database never takes an older copy than it has
/// (an older node starting during a rolling upgrade leaves the newer functions alone).
pub const FUNCTIONS_VERSION: i32 = 2;

pub async fn run(url: &str) -> anyhow::Result<usize> {
    run_to(url, None).await
}

/// Applies the migrations up to and including `version` (all when `None`): upgrade tests start
/// from a database written by an earlier schema.
pub async fn run_to(url: &str, version: Option<i32>) -> anyhow::Result<usize> {
    let (mut client, conn) = super::postgres::connect::connect(url).await.map_err(|e| {
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
    let mut report = runner
        .run_async(&mut client)
        .await
        .context("applying migrations")
        .map(|r| r.applied_migrations().len());
    // The functions belong to the newest schema: an upgrade test's older target goes without.
    if version.is_none()
        && report.is_ok()
        && let Err(e) = apply_functions(&mut client).await
    {
        report = Err(e);
    }
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    drop(client);
    let _ = conn.await;
    report
}

/// Applies `functions.sql` unless the database has it already, or a newer version of it.
async fn apply_functions(client: &mut tokio_postgres::Client) -> anyhow::Result<()> {
    let checksum = checksum(FUNCTIONS);
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS chorus_functions (\
               version int NOT NULL, checksum text NOT NULL)",
        )
        .await
        .context("creating chorus_functions")?;
    let row = client
        .query_opt("SELECT version, checksum FROM chorus_functions", &[])
        .await
        .context("reading chorus_functions")?;
    let stored: Option<(i32, String)> = row.map(|r| (r.get(0), r.get(1)));
    match &stored {
        Some((v, _)) if *v > FUNCTIONS_VERSION => {
            tracing::info!(
                database = v,
                ours = FUNCTIONS_VERSION,
                "the database has newer SQL functions than this node's; keeping them"
            );
            return Ok(());
        }
        Some((v, sum)) if *v == FUNCTIONS_VERSION && *sum == checksum => return Ok(()),
        _ => {}
    }
    let tx = client
        .transaction()
        .await
        .context("starting the functions' transaction")?;
    tx.batch_execute(FUNCTIONS)
        .await
        .context("applying migrations/functions.sql")?;
    tx.execute("DELETE FROM chorus_functions", &[]).await?;
    tx.execute(
        "INSERT INTO chorus_functions (version, checksum) VALUES ($1, $2)",
        &[&FUNCTIONS_VERSION, &checksum],
    )
    .await?;
    tx.commit().await.context("committing the SQL functions")?;
    Ok(())
}

/// SHA-256 of the functions' text, in hex.
fn checksum(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
