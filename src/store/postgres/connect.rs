//! One Postgres connection for migrations and tools, over the TLS its URL asks for
//! ([`crate::tls::postgres`] parses `sslmode` and `sslrootcert`).

use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

pub use crate::tls::postgres::parse;

/// One connection (for migrations and tools); its driver runs in the returned task, which ends
/// once the client is dropped and the connection closed.
pub async fn connect(url: &str) -> Result<(Client, JoinHandle<()>), String> {
    let target = parse(url)?;
    let describe = |e: tokio_postgres::Error| super::errors::describe(&e);
    Ok(match target.tls {
        Some(tls) => {
            let (client, conn) = target.config.connect(tls).await.map_err(describe)?;
            (client, tokio::spawn(async move { drop(conn.await) }))
        }
        None => {
            let (client, conn) = target.config.connect(NoTls).await.map_err(describe)?;
            (client, tokio::spawn(async move { drop(conn.await) }))
        }
    })
}
