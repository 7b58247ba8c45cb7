//! [`PostgresStore`]: the pools (a writer, an optional reader), the schema gate and the time
//! budget every operation runs under; each operation is one of the concern files' functions.
//! Connection failures and time-outs surface as `StoreError::Unavailable`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::super::{
    AppendOutcome, Hit, Message, MyRoom, NewMessage, ReadState, RoomHead, RoomsCursor, SearchQuery,
    Store, StoreError, check_range,
};
use super::errors::{pg_error, pool_error};
use super::outbox::Outbox;
use super::routes::Routes;
use super::{cursors, log, partitions, reads};
use crate::config;
use crate::ids::{Epoch, RoomId, Seq, UserId};

pub struct PostgresStore {
    writer: Pool,
    reader: Option<Pool>,
    timeout: Duration,
    /// False while a node that started with Postgres unreachable has not applied its migrations
    /// yet: every operation is `Unavailable` until then (see [`PostgresStore::schema_gate`]).
    schema: Arc<AtomicBool>,
    /// Webhook endpoints whose outbox rows the append writes, and who to wake when it did.
    routes: Routes,
    wake: Arc<tokio::sync::Notify>,
}

impl PostgresStore {
    /// Builds the pools (connections are opened lazily, so a node starts even while Postgres is down).
    pub fn new(settings: &config::Database) -> Result<Self, StoreError> {
        let timeout = settings.timeout;
        let writer = pool(&settings.url, settings.pool_size, timeout)?;
        let reader = if settings.read_url.is_empty() {
            None
        } else {
            Some(pool(&settings.read_url, settings.pool_size, timeout)?)
        };
        Ok(Self {
            writer,
            reader,
            timeout,
            schema: Arc::new(AtomicBool::new(true)),
            routes: Default::default(),
            wake: Default::default(),
        })
    }

    /// Writes outbox rows for these endpoints with every append, and notifies `wake` after a
    /// commit that wrote some (this node's dispatcher starts at once).
    pub fn with_webhooks(mut self, routes: Routes, wake: Arc<tokio::sync::Notify>) -> Self {
        self.routes = routes;
        self.wake = wake;
        self
    }

    /// The webhook dispatcher's queries, on the writer's pool.
    pub fn outbox(&self) -> Outbox {
        Outbox::new(self.writer.clone(), self.timeout)
    }

    /// The flag that says the schema is migrated (true unless the node cleared it at start).
    pub fn schema_gate(&self) -> Arc<AtomicBool> {
        self.schema.clone()
    }

    /// Keeps the history partitions for as long as the node runs (`partitions.rs`).
    pub fn keep_history(&self, retention_days: u32) -> impl Future<Output = ()> + Send + 'static {
        partitions::keep(self.writer.clone(), self.schema.clone(), retention_days)
    }

    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if !self.schema.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(
                "database not migrated yet (retrying in the background)".into(),
            ));
        }
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("timed out".into())))
    }

    fn read_pool(&self) -> &Pool {
        self.reader.as_ref().unwrap_or(&self.writer)
    }

    /// Where to read a page of `room` that must hold every entry up to `need(the writer's last
    /// seq)`: the replica if it has applied that much (under the same epoch), else the writer. So
    /// a replica that lags, or is down, never answers with less than the writer had committed
    /// when the read began, and so with less than a client was acked (PROTOCOL §12). The replica
    /// is asked for its head before the page, so the page's snapshot is at least as new.
    async fn page_pool(&self, room: &RoomId, need: impl FnOnce(Seq) -> Seq) -> &Pool {
        let Some(reader) = &self.reader else {
            return &self.writer;
        };
        let Ok(Some((epoch, last))) = self.bounded(reads::applied(&self.writer, room)).await else {
            // No such room (nothing to miss), or the writer did not answer: the replica's page
            // is the best there is, as before a replica was checked.
            return reader;
        };
        let need = need(last);
        match self.bounded(reads::applied(reader, room)).await {
            Ok(Some((e, applied))) if e == epoch && applied >= need => reader,
            _ if need <= Seq::ZERO => reader,
            _ => &self.writer,
        }
    }
}

fn pool(url: &str, size: usize, timeout: Duration) -> Result<Pool, StoreError> {
    let target = crate::tls::postgres::parse(url).map_err(StoreError::Internal)?;
    let mut cfg = target.config;
    cfg.connect_timeout(timeout);
    let recycling = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match target.tls {
        Some(tls) => Manager::from_config(cfg, tls, recycling),
        None => Manager::from_config(cfg, NoTls, recycling),
    };
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Internal(e.to_string()))
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn head(&self, room: &RoomId) -> Result<RoomHead, StoreError> {
        self.bounded(log::head(&self.writer, room)).await
    }

    async fn append(
        &self,
        room: &RoomId,
        batch: &[NewMessage],
    ) -> Result<AppendOutcome, StoreError> {
        let (outcome, hooked) = self
            .bounded(log::append(&self.writer, &self.routes, room, batch))
            .await?;
        if hooked {
            self.wake.notify_one();
        }
        Ok(outcome)
    }

    async fn after(
        &self,
        room: &RoomId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let upto = |last: Seq| last.min(after + limit as i64);
        let pool = self.page_pool(room, upto).await;
        self.bounded(reads::after(pool, room, after, limit)).await
    }

    async fn before(
        &self,
        room: &RoomId,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let top = |last: Seq| before.map_or(last, |b| last.min(b - 1));
        let pool = self.page_pool(room, top).await;
        self.bounded(reads::before(pool, room, before, limit)).await
    }

    async fn range(
        &self,
        room: &RoomId,
        after: Seq,
        upto: Seq,
    ) -> Result<Vec<Message>, StoreError> {
        let want = (upto - after).max(0) as usize;
        if let Some(reader) = &self.reader {
            let got = self.bounded(reads::after(reader, room, after, want)).await;
            if let Ok(Ok(complete)) = got.map(|g| check_range(g, after, upto)) {
                return Ok(complete);
            }
            // The replica lags (or is down): the writer has every committed entry.
        }
        let got = self
            .bounded(reads::after(&self.writer, room, after, want))
            .await?;
        check_range(got, after, upto)
    }

    async fn reset_epoch(&self, room: &RoomId, old: &Epoch) -> Result<RoomHead, StoreError> {
        self.bounded(log::reset_epoch(&self.writer, room, old))
            .await
    }

    async fn mark_read(
        &self,
        room: &RoomId,
        reads: &[(UserId, Seq)],
    ) -> Result<Vec<(ReadState, bool)>, StoreError> {
        self.bounded(cursors::mark_read(&self.writer, room, reads))
            .await
    }

    async fn read_state(
        &self,
        room: &RoomId,
        user: &UserId,
        upto: Seq,
    ) -> Result<ReadState, StoreError> {
        // The writer: a join must count what it goes live after, a replica may lag.
        self.bounded(cursors::read_state(&self.writer, room, user, upto))
            .await
    }

    async fn search(&self, q: &SearchQuery) -> Result<Vec<Hit>, StoreError> {
        // The replica as it is: a search may be as stale as its lag (PROTOCOL §12).
        self.bounded(reads::search(self.read_pool(), q)).await
    }

    async fn my_rooms(
        &self,
        user: &UserId,
        after: Option<&RoomsCursor>,
        limit: usize,
    ) -> Result<Vec<MyRoom>, StoreError> {
        self.bounded(cursors::my_rooms(self.read_pool(), user, after, limit))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async {
            let client = self.writer.get().await.map_err(pool_error)?;
            client.simple_query("SELECT 1").await.map_err(pg_error)?;
            Ok(())
        })
        .await
    }
}
