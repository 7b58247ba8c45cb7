//! Schema migrations from `migrations/`, embedded at build time and applied by refinery
//! (`chorus migrate`, and at `serve` start). A Postgres advisory lock serialises nodes that start
//! together, so only one applies each migration.

use anyhow::Context;
use tokio_postgres::NoTls;

refinery::embed_migrations!("migrations");

/// Arbitrary constant key for `pg_advisory_lock` ("chorus" in ASCII).
const LOCK_KEY: i64 = 0x63686f727573;

pub async fn run(url: &str) -> anyhow::Result<usize> {
    let (mut client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .context("connecting to database.url for migrations")?;
    let conn = tokio::spawn(connection);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .context("taking the migration lock")?;
    let report = migrations::runner()
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
