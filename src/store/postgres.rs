//! Postgres store: the source of truth and of order.
//!
//! `append` is one call of the `chorus_log_append` SQL function per batch (one statement, so one
//! transaction and one round trip): lock the room row (upsert), return the originals of repeated
//! client_msg_ids, insert the new messages, advance `rooms.last_seq`, and (with `[[webhooks]]`)
//! write the entries' outbox rows (`outbox.rs`) in the same commit. Concurrent appends to one
//! room (from this node's group commit or from other nodes) queue on the row lock, so seqs commit
//! in order and without gaps. Every operation is bounded by
//! `database.timeout_ms`; connection failures and time-outs surface as `StoreError::Unavailable`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, Row};

use super::{
    AppendOutcome, Appended, Kind, Message, MyRoom, NewMessage, ReactOp, Reaction, ReadState,
    Refusal, RoomHead, Store, StoreError, check_range, now_ts,
};
use crate::config;
use crate::domain::Change;
use crate::ids::{RoomId, Seq, UserId, random_id};

pub struct PostgresStore {
    writer: Pool,
    reader: Option<Pool>,
    timeout: Duration,
    /// False while a node that started with Postgres unreachable has not applied its migrations
    /// yet: every operation is `Unavailable` until then (see [`PostgresStore::schema_gate`]).
    schema: Arc<AtomicBool>,
    /// Webhook endpoints whose outbox rows the append writes, and who to wake when it did.
    routes: super::outbox::Routes,
    wake: Arc<tokio::sync::Notify>,
}

const COLUMNS: &str = "seq, id, user_id, user_name, body, ts, client_msg_id, kind, target, \
                       react_key, react_op, edited_ts, deleted_seq";

impl PostgresStore {
    /// Builds the pools (connections are opened lazily, so a node starts even while Postgres is down).
    pub fn new(settings: &config::Database) -> Result<Self, StoreError> {
        let timeout = Duration::from_millis(settings.timeout_ms);
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
    pub fn with_webhooks(
        mut self,
        routes: super::outbox::Routes,
        wake: Arc<tokio::sync::Notify>,
    ) -> Self {
        self.routes = routes;
        self.wake = wake;
        self
    }

    /// The webhook dispatcher's queries, on the writer's pool.
    pub fn outbox(&self) -> super::outbox::Outbox {
        super::outbox::Outbox::new(self.writer.clone(), self.timeout)
    }

    /// The flag that says the schema is migrated (true unless the node cleared it at start).
    pub fn schema_gate(&self) -> Arc<AtomicBool> {
        self.schema.clone()
    }

    /// Keeps the history partitions (PROTOCOL §9): creates the coming weeks' partitions and, with
    /// `retention_days` > 0, drops the weeks wholly older than that (`chorus_history_partitions`,
    /// migration V5). Runs now and then hourly for as long as the node runs (a minute after a
    /// failure, and only once the schema is migrated). Every node runs it; they take turns.
    pub fn keep_history(&self, retention_days: u32) -> impl Future<Output = ()> + Send + 'static {
        let (pool, schema) = (self.writer.clone(), self.schema.clone());
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

    async fn read_after(
        &self,
        pool: &Pool,
        room: &RoomId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let client = pool.get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages WHERE room = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ))
            .await
            .map_err(pg_error)?;
        let rows = client
            .query(&stmt, &[&room.as_str(), &after, &(limit as i64)])
            .await
            .map_err(pg_error)?;
        let entries = rows
            .iter()
            .map(|r| to_message(room, r, 0))
            .collect::<Result<_, _>>()?;
        with_reactions(&client, room, entries).await
    }

    fn read_pool(&self) -> &Pool {
        self.reader.as_ref().unwrap_or(&self.writer)
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

pub(super) fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    let text = match &e {
        deadpool_postgres::PoolError::Backend(pg) => describe(pg),
        deadpool_postgres::PoolError::Timeout(_) => "timeout: no connection in time".into(),
        other => other.to_string(),
    };
    StoreError::Unavailable(text)
}

/// `host:port[,host:port…]` of a Postgres URL: what logs name, never the password.
pub fn hosts_of(url: &str) -> String {
    let Ok(cfg) = crate::tls::postgres::parse(url).map(|t| t.config) else {
        return "(unparsable url)".into();
    };
    let ports = cfg.get_ports();
    cfg.get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match h {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                tokio_postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The cause of a Postgres failure in an operator's words: `authentication`, `connection
/// refused`, `timeout`, `DNS`, `TLS`, `database does not exist`, … followed by the detail.
pub fn describe(e: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    if let Some(db) = e.as_db_error() {
        let cause = match db.code().code() {
            "28P01" | "28000" => "authentication",
            "3D000" => "database does not exist",
            "57P03" => "server starting up",
            "53300" => "too many connections",
            _ => "server error",
        };
        return format!("{cause}: {} ({})", db.message(), db.code().code());
    }
    let mut detail = e.to_string();
    let mut io_kind = None;
    let mut source = e.source();
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind = io_kind.or(Some(io.kind()));
        }
        source = s.source();
    }
    let lower = detail.to_lowercase();
    let cause = if lower.contains("tls") || lower.contains("certificate") {
        "TLS"
    } else if lower.contains("lookup") || lower.contains("resolve") {
        "DNS"
    } else {
        match io_kind {
            Some(std::io::ErrorKind::ConnectionRefused) => "connection refused",
            Some(std::io::ErrorKind::TimedOut) => "timeout",
            Some(std::io::ErrorKind::ConnectionReset) => "connection reset",
            Some(_) => "network",
            None if lower.contains("timed out") || lower.contains("timeout") => "timeout",
            None => "connection",
        }
    };
    format!("{cause}: {detail}")
}

/// Errors from the server (with an SQLSTATE) are internal, or `Invalid` for a data exception
/// (class 22: the data of one message); everything else is the connection.
pub(super) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if db.code().code().starts_with("22") => {
            StoreError::Invalid(format!("{}: {}", db.code().code(), db.message()))
        }
        Some(db) => StoreError::Internal(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Unavailable(describe(&e)),
    }
}

/// The unread count (PROTOCOL §7) of `user` with a cursor at `after`, as of the entry `upto` (SQL
/// expressions, e.g. `$2` or `c.read_seq`): message entries in (after, upto], not the user's own,
/// not deleted by an entry at or before `upto`. Computed as (messages in the range, from two `ord`
/// lookups) − (own messages in it) − (others' messages in it deleted by then), so it costs a few
/// index probes whatever the count: 10 000 unread messages are not 10 000 index entries. Written
/// out in each query rather than as an SQL function: Postgres cannot inline a function with
/// sub-selects, and calling one per room was 5x slower for `GET /api/me/rooms`. When retention
/// dropped every message up to the cursor, the count starts at the first message kept (the
/// fallback lookup runs only then), so dropped history is never unread.
fn unread_sql(room: &str, user: &str, after: &str, upto: &str) -> String {
    format!(
        "(coalesce((SELECT coalesce(m.ord, m.seq) FROM messages m \
            WHERE m.room = {room} AND m.kind = 'message' AND m.seq <= {upto} \
            ORDER BY m.seq DESC LIMIT 1), 0) \
        - coalesce((SELECT coalesce(m.ord, m.seq) FROM messages m \
            WHERE m.room = {room} AND m.kind = 'message' AND m.seq <= {after} \
            ORDER BY m.seq DESC LIMIT 1), \
            (SELECT coalesce(m.ord, m.seq) - 1 FROM messages m \
            WHERE m.room = {room} AND m.kind = 'message' AND m.seq > {after} \
            ORDER BY m.seq LIMIT 1), 0) \
        - (SELECT count(*) FROM messages m \
            WHERE m.room = {room} AND m.kind = 'message' AND m.user_id = {user} \
              AND m.seq > {after} AND m.seq <= {upto}) \
        - (SELECT count(*) FROM messages m \
            WHERE m.room = {room} AND m.kind = 'message' AND m.deleted_seq IS NOT NULL \
              AND m.seq > {after} AND m.seq <= {upto} AND m.deleted_seq <= {upto} \
              AND m.user_id <> {user}))"
    )
}

fn to_read_state(row: &Row) -> Result<ReadState, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Internal(e.to_string());
    Ok(ReadState {
        read_seq: row.try_get(0).map_err(get)?,
        unread: row.try_get(1).map_err(get)?,
        last_seq: row.try_get(2).map_err(get)?,
    })
}

/// Reads a room head from a row of (epoch, last_seq).
fn to_head(row: &Row) -> Result<RoomHead, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Internal(e.to_string());
    Ok(RoomHead {
        epoch: row.try_get(0).map_err(get)?,
        last_seq: row.try_get(1).map_err(get)?,
    })
}

/// A seq is a `bigint` in Postgres (the only place it is not a [`Seq`]).
impl tokio_postgres::types::ToSql for Seq {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.get().to_sql(ty, out)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <i64 as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<'a> tokio_postgres::types::FromSql<'a> for Seq {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Seq, Box<dyn std::error::Error + Sync + Send>> {
        i64::from_sql(ty, raw).map(Seq::new)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <i64 as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

/// Reads an entry from `row`, whose columns (in `COLUMNS` order) start at `at`.
pub(super) fn to_message(room: &RoomId, row: &Row, at: usize) -> Result<Message, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Internal(e.to_string());
    let kind: String = row.try_get(at + 7).map_err(get)?;
    let op: Option<String> = row.try_get(at + 10).map_err(get)?;
    let deleted_seq: Option<Seq> = row.try_get(at + 12).map_err(get)?;
    Ok(Message {
        kind: Kind::parse(&kind)
            .ok_or_else(|| StoreError::Internal(format!("unknown entry kind {kind:?}")))?,
        room: room.clone(),
        seq: row.try_get(at).map_err(get)?,
        id: row.try_get(at + 1).map_err(get)?,
        user: UserId::from(row.try_get::<_, String>(at + 2).map_err(get)?),
        name: row.try_get(at + 3).map_err(get)?,
        body: row.try_get(at + 4).map_err(get)?,
        ts: row.try_get(at + 5).map_err(get)?,
        client_msg_id: row.try_get(at + 6).map_err(get)?,
        target: row.try_get(at + 8).map_err(get)?,
        key: row.try_get(at + 9).map_err(get)?,
        op: op.as_deref().and_then(ReactOp::parse),
        edited_ts: row.try_get(at + 11).map_err(get)?,
        deleted: deleted_seq.is_some(),
        reactions: Vec::new(),
    })
}

/// Fills in the reactions of the `message` entries among `entries`: one query for the whole page
/// (grouped by message and key, at most 20 user ids each), never one per message.
async fn with_reactions(
    client: &deadpool_postgres::Client,
    room: &RoomId,
    mut entries: Vec<Message>,
) -> Result<Vec<Message>, StoreError> {
    let targets: Vec<Seq> = entries
        .iter()
        .filter(|m| m.kind == Kind::Message && !m.deleted)
        .map(|m| m.seq)
        .collect();
    if targets.is_empty() {
        return Ok(entries);
    }
    let stmt = client
        .prepare_cached(
            "SELECT target, react_key, count(*), \
                    (array_agg(user_id ORDER BY seq))[1:20] \
             FROM reactions WHERE room = $1 AND target = ANY($2) \
             GROUP BY target, react_key ORDER BY target, min(seq)",
        )
        .await
        .map_err(pg_error)?;
    let rows = client
        .query(&stmt, &[&room.as_str(), &targets])
        .await
        .map_err(pg_error)?;
    let get = |e: tokio_postgres::Error| StoreError::Internal(e.to_string());
    let mut by_target: std::collections::HashMap<Seq, Vec<Reaction>> = Default::default();
    for row in &rows {
        let users: Vec<String> = row.try_get(3).map_err(get)?;
        by_target
            .entry(row.try_get(0).map_err(get)?)
            .or_default()
            .push(Reaction {
                key: row.try_get(1).map_err(get)?,
                count: row.try_get(2).map_err(get)?,
                users: users.into_iter().map(UserId::from).collect(),
            });
    }
    for m in &mut entries {
        if let Some(r) = by_target.remove(&m.seq) {
            m.reactions = r;
        }
    }
    Ok(entries)
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn head(&self, room: &RoomId) -> Result<RoomHead, StoreError> {
        self.bounded(async {
            let client = self.writer.get().await.map_err(pool_error)?;
            let epoch = random_id()[..12].to_owned();
            client
                .execute(
                    "INSERT INTO rooms (id, epoch) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                    &[&room.as_str(), &epoch],
                )
                .await
                .map_err(pg_error)?;
            let row = client
                .query_one(
                    "SELECT epoch, last_seq FROM rooms WHERE id = $1",
                    &[&room.as_str()],
                )
                .await
                .map_err(pg_error)?;
            to_head(&row)
        })
        .await
    }

    async fn append(
        &self,
        room: &RoomId,
        batch: &[NewMessage],
    ) -> Result<AppendOutcome, StoreError> {
        self.bounded(async {
            let client = self.writer.get().await.map_err(pool_error)?;
            // One statement, one transaction, one round trip (migrations/V3__room_log.sql).
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT idx, outcome, {COLUMNS}, epoch FROM chorus_log_append(\
                     $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                ))
                .await
                .map_err(pg_error)?;
            let ts: DateTime<Utc> = now_ts();
            let ids: Vec<String> = batch
                .iter()
                .map(|_| uuid::Uuid::now_v7().to_string())
                .collect();
            let users: Vec<&str> = batch.iter().map(|m| m.user.as_str()).collect();
            let names: Vec<Option<&str>> = batch.iter().map(|m| m.name.as_deref()).collect();
            let bodies: Vec<&str> = batch.iter().map(|m| m.change.body()).collect();
            let cids: Vec<Option<&str>> =
                batch.iter().map(|m| m.client_msg_id.as_deref()).collect();
            let kinds: Vec<&str> = batch.iter().map(|m| m.change.kind().as_str()).collect();
            let targets: Vec<Option<Seq>> = batch.iter().map(|m| m.change.target()).collect();
            let (keys, ops): (Vec<Option<&str>>, Vec<Option<&str>>) = batch
                .iter()
                .map(|m| match &m.change {
                    Change::React { key, op, .. } => (Some(key.as_str()), Some(op.as_str())),
                    _ => (None, None),
                })
                .unzip();
            let mods: Vec<bool> = batch.iter().map(|m| m.moderator).collect();
            let new_epoch = random_id()[..12].to_owned();
            let (hook_endpoints, hook_kinds) = self.routes.for_room(room);
            let rows = client
                .query(
                    &stmt,
                    &[
                        &room.as_str(),
                        &new_epoch,
                        &ids,
                        &users,
                        &names,
                        &bodies,
                        &ts,
                        &cids,
                        &kinds,
                        &targets,
                        &keys,
                        &ops,
                        &mods,
                        &hook_endpoints,
                        &hook_kinds,
                    ],
                )
                .await
                .map_err(pg_error)?;
            if rows.len() != batch.len() {
                return Err(StoreError::Internal(format!(
                    "append returned {} rows for {} entries",
                    rows.len(),
                    batch.len()
                )));
            }
            let get = |e: tokio_postgres::Error| StoreError::Internal(e.to_string());
            let mut epoch = String::new();
            let mut appended = Vec::with_capacity(rows.len());
            for row in &rows {
                epoch = row.try_get(15).map_err(get)?;
                let outcome: String = row.try_get(1).map_err(get)?;
                appended.push(match outcome.as_str() {
                    "ok" | "duplicate" => Ok(Appended {
                        message: Arc::new(to_message(room, row, 2)?),
                        duplicate: outcome == "duplicate",
                    }),
                    "not_found" => Err(Refusal::NotFound),
                    "forbidden" => Err(Refusal::Forbidden),
                    "gone" => Err(Refusal::Gone),
                    other => {
                        return Err(StoreError::Internal(format!("unknown outcome {other:?}")));
                    }
                });
            }
            let fresh = |a: &Result<Appended, Refusal>| matches!(a, Ok(a) if !a.duplicate);
            if !hook_endpoints.is_empty() && appended.iter().any(fresh) {
                self.wake.notify_one();
            }
            Ok(AppendOutcome { epoch, appended })
        })
        .await
    }

    async fn after(
        &self,
        room: &RoomId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        self.bounded(self.read_after(self.read_pool(), room, after, limit))
            .await
    }

    async fn before(
        &self,
        room: &RoomId,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        self.bounded(async {
            let client = self.read_pool().get().await.map_err(pool_error)?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT * FROM (SELECT {COLUMNS} FROM messages WHERE room = $1 AND seq < $2 \
                     AND kind = 'message' ORDER BY seq DESC LIMIT $3) newest ORDER BY seq"
                ))
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(
                    &stmt,
                    &[
                        &room.as_str(),
                        &before.unwrap_or(Seq::new(i64::MAX)),
                        &(limit as i64),
                    ],
                )
                .await
                .map_err(pg_error)?;
            let page = rows
                .iter()
                .map(|r| to_message(room, r, 0))
                .collect::<Result<_, _>>()?;
            with_reactions(&client, room, page).await
        })
        .await
    }

    async fn range(
        &self,
        room: &RoomId,
        after: Seq,
        upto: Seq,
    ) -> Result<Vec<Message>, StoreError> {
        let want = (upto - after).max(0) as usize;
        if let Some(reader) = &self.reader {
            let got = self
                .bounded(self.read_after(reader, room, after, want))
                .await;
            if let Ok(Ok(complete)) = got.map(|g| check_range(g, after, upto)) {
                return Ok(complete);
            }
            // The replica lags (or is down): the writer has every committed message.
        }
        let got = self
            .bounded(self.read_after(&self.writer, room, after, want))
            .await?;
        check_range(got, after, upto)
    }

    async fn reset_epoch(&self, room: &RoomId, old: &str) -> Result<RoomHead, StoreError> {
        self.bounded(async {
            let client = self.writer.get().await.map_err(pool_error)?;
            let new = random_id()[..12].to_owned();
            // Conditional, so two nodes that both notice the rewind agree on one new epoch.
            let row = client
                .query_one(
                    "UPDATE rooms SET epoch = CASE WHEN epoch = $2 THEN $3 ELSE epoch END \
                     WHERE id = $1 RETURNING epoch, last_seq",
                    &[&room.as_str(), &old, &new],
                )
                .await
                .map_err(pg_error)?;
            to_head(&row)
        })
        .await
    }

    async fn mark_read(
        &self,
        room: &RoomId,
        reads: &[(UserId, Seq)],
    ) -> Result<Vec<(ReadState, bool)>, StoreError> {
        self.bounded(async {
            let client = self.writer.get().await.map_err(pool_error)?;
            // One statement for the batch: monotonic and clamped to the head; one row per user
            // (the highest seq asked: a row cannot be updated twice in one statement). The count
            // reads the writer so it includes every entry committed before the cursor moved.
            let stmt = client
                .prepare_cached(&format!(
                    "WITH head AS (SELECT last_seq FROM rooms WHERE id = $1), \
                     req AS (SELECT DISTINCT ON (u) u, s \
                             FROM unnest($2::text[], $3::bigint[]) AS t(u, s) ORDER BY u, s DESC), \
                     old AS (SELECT c.user_id, c.read_seq FROM read_cursors c \
                             WHERE c.room = $1 AND c.user_id IN (SELECT u FROM req)), \
                     moved AS ( \
                       INSERT INTO read_cursors AS c (room, user_id, read_seq) \
                       SELECT $1, req.u, LEAST(req.s, head.last_seq) FROM req, head \
                       ON CONFLICT (room, user_id) DO UPDATE \
                         SET read_seq = GREATEST(c.read_seq, EXCLUDED.read_seq) \
                       RETURNING c.user_id, c.read_seq) \
                     SELECT moved.user_id, moved.read_seq, {}, head.last_seq, \
                       coalesce(old.read_seq, 0) \
                     FROM moved CROSS JOIN head LEFT JOIN old ON old.user_id = moved.user_id",
                    unread_sql("$1", "moved.user_id", "moved.read_seq", "head.last_seq")
                ))
                .await
                .map_err(pg_error)?;
            let users: Vec<&str> = reads.iter().map(|(u, _)| u.as_str()).collect();
            let seqs: Vec<Seq> = reads.iter().map(|(_, s)| *s).collect();
            let rows = client
                .query(&stmt, &[&room.as_str(), &users, &seqs])
                .await
                .map_err(pg_error)?;
            let get = |e: tokio_postgres::Error| StoreError::Internal(e.to_string());
            let mut by_user = std::collections::HashMap::new();
            for row in &rows {
                let user: String = row.try_get(0).map_err(get)?;
                let state = ReadState {
                    read_seq: row.try_get(1).map_err(get)?,
                    unread: row.try_get(2).map_err(get)?,
                    last_seq: row.try_get(3).map_err(get)?,
                };
                let was: Seq = row.try_get(4).map_err(get)?;
                by_user.insert(user, (state, was));
            }
            Ok(reads
                .iter()
                .map(|(user, seq)| match by_user.get(user.as_str()) {
                    Some((state, was)) => {
                        let moved =
                            state.read_seq > *was && (*seq).min(state.last_seq) == state.read_seq;
                        (*state, moved)
                    }
                    // No such room yet: nothing to read, nothing unread.
                    None => (
                        ReadState {
                            read_seq: Seq::ZERO,
                            unread: 0,
                            last_seq: Seq::ZERO,
                        },
                        false,
                    ),
                })
                .collect())
        })
        .await
    }

    async fn read_state(
        &self,
        room: &RoomId,
        user: &UserId,
        upto: Seq,
    ) -> Result<ReadState, StoreError> {
        self.bounded(async {
            // The writer: a join must count what it goes live after, a replica may lag.
            let client = self.writer.get().await.map_err(pool_error)?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT c.read_seq, {}, $3::bigint \
                     FROM (SELECT coalesce((SELECT read_seq FROM read_cursors \
                                            WHERE room = $1 AND user_id = $2), 0) AS read_seq) c",
                    unread_sql("$1", "$2", "c.read_seq", "$3::bigint")
                ))
                .await
                .map_err(pg_error)?;
            let row = client
                .query_one(&stmt, &[&room.as_str(), &user.as_str(), &upto])
                .await
                .map_err(pg_error)?;
            to_read_state(&row)
        })
        .await
    }

    async fn my_rooms(&self, user: &UserId, limit: usize) -> Result<Vec<MyRoom>, StoreError> {
        self.bounded(async {
            let client = self.read_pool().get().await.map_err(pool_error)?;
            // One index-backed query: the user's cursors (read_cursors_by_user), their rooms'
            // heads, and per room chorus_unread (a few index probes, whatever the count) and the
            // newest message; the per-room parts run only for the rows the LIMIT keeps.
            let stmt = client
                .prepare_cached(&format!(
                    "WITH mine AS ( \
                       SELECT c.room, r.last_seq, c.read_seq, r.last_ts \
                       FROM read_cursors c JOIN rooms r ON r.id = c.room WHERE c.user_id = $1 \
                       ORDER BY r.last_ts DESC NULLS LAST, c.room LIMIT $2) \
                     SELECT c.room, c.last_seq, c.read_seq, {}, l.* \
                     FROM mine c LEFT JOIN LATERAL (SELECT {COLUMNS} FROM messages m \
                        WHERE m.room = c.room AND m.kind = 'message' \
                        ORDER BY m.seq DESC LIMIT 1) l ON true \
                     ORDER BY c.last_ts DESC NULLS LAST, c.room",
                    unread_sql("c.room", "$1", "c.read_seq", "c.last_seq")
                ))
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(&stmt, &[&user.as_str(), &(limit as i64)])
                .await
                .map_err(pg_error)?;
            let get = |e: tokio_postgres::Error| StoreError::Internal(e.to_string());
            rows.iter()
                .map(|row| {
                    let room = RoomId::parse(row.try_get::<_, &str>(0).map_err(get)?).ok_or_else(
                        || StoreError::Internal("a stored room id is invalid".into()),
                    )?;
                    let has_last = row.try_get::<_, Option<Seq>>(4).map_err(get)?.is_some();
                    let last_message = if has_last {
                        Some(to_message(&room, row, 4)?)
                    } else {
                        None
                    };
                    Ok(MyRoom {
                        last_seq: row.try_get(1).map_err(get)?,
                        read_seq: row.try_get(2).map_err(get)?,
                        unread: row.try_get(3).map_err(get)?,
                        last_message,
                        room,
                    })
                })
                .collect()
        })
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
