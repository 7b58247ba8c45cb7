//! The webhook outbox in Postgres (PROTOCOL §8, `migrations/V4__webhooks.sql`): the queries every
//! node's dispatcher (`src/webhook/`) works the outbox with ([`Outbox`]). The rows themselves are
//! written by the append (`log.rs`), for the endpoints [`Routes`](super::routes::Routes) names.
//!
//! Invariants:
//! - An entry's outbox rows are written by the append's own statement: acked ⇒ queued, and a batch
//!   that did not commit queued nothing.
//! - A queue is one (endpoint, room). A dispatcher leases a whole queue (`lease_token`, until
//!   `lease_until`), so one node at a time sends a room's events to an endpoint, one by one, in seq
//!   order: the head is delivered or dead-lettered before the next is sent. Claims use
//!   `FOR UPDATE SKIP LOCKED`, so nodes claiming together never wait on each other or take the same
//!   queue. A node that dies holds its leases until they expire; then another resends the head
//!   (at least once, with the same event id).
//! - Every change a dispatcher makes checks its lease token: a node whose lease ran out (it was
//!   stalled longer than the lease) changes nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;

use super::super::{Message, StoreError};
use super::errors::{pg_error, pool_error};
use super::rows::{M_COLUMNS, get, to_message};
use crate::ids::{RoomId, Seq};

/// One leased queue: the dispatcher owns sending its events until it releases the lease.
#[derive(Debug, Clone)]
pub struct Lease {
    pub endpoint: String,
    pub room: RoomId,
    /// Failed attempts of the queue's head so far.
    pub attempts: i32,
    /// Its last lease expired without being released: the node that held it stopped or stalled.
    pub taken_over: bool,
    token: String,
}

/// One event to send: the entry as it is now (a deleted message comes with its body erased).
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: Seq,
    /// `None` when the entry is not in the log (it cannot be sent: it goes to the dead letters).
    pub entry: Option<Message>,
}

/// An endpoint's figures for `GET /api/admin/webhooks`.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct EndpointStats {
    pub backlog: i64,
    pub dead: i64,
    /// When the oldest waiting event of the endpoint was committed.
    #[serde(serialize_with = "crate::domain::serialize_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub oldest: Option<DateTime<Utc>>,
}

/// A dead letter (`GET /api/admin/webhooks/dead`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    pub id: i64,
    pub endpoint: String,
    pub room: String,
    pub seq: i64,
    pub attempts: i32,
    pub error: String,
    #[serde(serialize_with = "crate::domain::serialize_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::domain::serialize_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub dead_at: DateTime<Utc>,
}

/// What happened to an event the dispatcher tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Failed; try the queue again after the delay.
    Retry(Duration),
    /// Failed its last attempt: into the dead letters, and the queue goes on.
    Dead,
}

/// The dispatcher's queries (on the writer).
#[derive(Clone)]
pub struct Outbox {
    pool: Pool,
    timeout: Duration,
}

impl Outbox {
    pub fn new(pool: Pool, timeout: Duration) -> Outbox {
        Outbox { pool, timeout }
    }

    /// The budget of one outbox query (`database.timeout_ms`).
    pub fn op_timeout(&self) -> Duration {
        self.timeout
    }

    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("timed out".into())))
    }

    /// Leases up to `limit` of `endpoint`'s queues that have events due, for `lease`.
    pub async fn claim(
        &self,
        endpoint: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        self.bounded(async {
            let client = self.pool.get().await.map_err(pool_error)?;
            let stmt = client
                .prepare_cached(
                    "UPDATE webhook_queues q \
                     SET lease_until = now() + $3 * interval '1 millisecond', lease_token = $4 \
                     FROM (SELECT endpoint, room, lease_token FROM webhook_queues \
                           WHERE endpoint = $1 AND pending > 0 AND next_at <= now() \
                             AND lease_until < now() \
                           ORDER BY next_at LIMIT $2 FOR UPDATE SKIP LOCKED) due \
                     WHERE q.endpoint = due.endpoint AND q.room = due.room \
                     RETURNING q.room, q.attempts, due.lease_token IS NOT NULL",
                )
                .await
                .map_err(pg_error)?;
            let token = uuid::Uuid::new_v4().to_string();
            let rows = client
                .query(
                    &stmt,
                    &[
                        &endpoint,
                        &(limit as i64),
                        &(lease.as_millis() as f64),
                        &token,
                    ],
                )
                .await
                .map_err(pg_error)?;
            let mut leases = Vec::with_capacity(rows.len());
            for row in &rows {
                let room: String = row.try_get(0).map_err(get)?;
                leases.push(Lease {
                    endpoint: endpoint.to_owned(),
                    room: RoomId::parse(&room)
                        .ok_or_else(|| StoreError::Internal(format!("bad room {room:?}")))?,
                    attempts: row.try_get(1).map_err(get)?,
                    taken_over: row.try_get(2).map_err(get)?,
                    token: token.clone(),
                });
            }
            Ok(leases)
        })
        .await
    }

    /// The queue's next `limit` events, oldest first. When there are none, the queue's count is
    /// checked against its rows (see [`recount`]).
    pub async fn events(&self, lease: &Lease, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.bounded(async {
            let mut client = self.pool.get().await.map_err(pool_error)?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT o.seq, {} FROM webhook_outbox o \
                     LEFT JOIN messages m ON m.room = o.room AND m.seq = o.seq \
                     WHERE o.endpoint = $1 AND o.room = $2 ORDER BY o.seq LIMIT $3",
                    *M_COLUMNS
                ))
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(
                    &stmt,
                    &[&lease.endpoint, &lease.room.as_str(), &(limit as i64)],
                )
                .await
                .map_err(pg_error)?;
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                let found: Option<Seq> = row.try_get(1).map_err(get)?;
                events.push(Event {
                    seq: row.try_get(0).map_err(get)?,
                    entry: match found {
                        Some(_) => Some(to_message(&lease.room, row, 1)?),
                        None => None,
                    },
                });
            }
            if events.is_empty() {
                recount(&mut client, lease).await?;
            }
            Ok(events)
        })
        .await
    }

    /// Records what happened: `Delivered` for every event of `seqs` (a worker settles what it
    /// delivered in batches), `Dead` and `Retry` for the queue's head, `seqs[0]`. Returns the
    /// events still pending in the queue, or `None` when this node no longer holds the lease (it
    /// must stop). `Delivered` and `Dead` renew the lease by `renew`; `Retry` releases it until
    /// its delay has passed.
    pub async fn settle(
        &self,
        lease: &Lease,
        seqs: &[Seq],
        outcome: Outcome,
        attempts: i32,
        error: &str,
        renew: Duration,
    ) -> Result<Option<i64>, StoreError> {
        self.bounded(async {
            let client = self.pool.get().await.map_err(pool_error)?;
            let room = lease.room.as_str();
            let all: Vec<Seq> = seqs.to_vec();
            let seq = *seqs
                .first()
                .ok_or_else(|| StoreError::Internal("settle without an event".into()))?;
            // Delivered/Dead: the lease's renewal; Retry: the delay before the next attempt.
            let ms = match outcome {
                Outcome::Retry(delay) => delay.as_millis() as f64,
                _ => renew.as_millis() as f64,
            };
            let (sql, params): (&str, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>) =
                match outcome {
                    Outcome::Delivered => (
                        "WITH held AS (SELECT 1 FROM webhook_queues \
                                       WHERE endpoint = $1 AND room = $2 AND lease_token = $4 \
                                       FOR UPDATE), \
                              done AS (DELETE FROM webhook_outbox \
                                       WHERE endpoint = $1 AND room = $2 AND seq = ANY($3) \
                                         AND EXISTS (SELECT 1 FROM held) RETURNING 1) \
                         UPDATE webhook_queues \
                         SET pending = pending - (SELECT count(*) FROM done), attempts = 0, \
                             last_error = NULL, \
                             lease_until = now() + $5 * interval '1 millisecond' \
                         WHERE endpoint = $1 AND room = $2 AND lease_token = $4 \
                         RETURNING pending",
                        vec![&lease.endpoint, &room, &all, &lease.token, &ms],
                    ),
                    Outcome::Dead => (
                        "WITH held AS (SELECT 1 FROM webhook_queues \
                                       WHERE endpoint = $1 AND room = $2 AND lease_token = $4 \
                                       FOR UPDATE), \
                              done AS (DELETE FROM webhook_outbox \
                                       WHERE endpoint = $1 AND room = $2 AND seq = $3 \
                                         AND EXISTS (SELECT 1 FROM held) RETURNING created_at), \
                              dead AS (INSERT INTO webhook_dead \
                                         (endpoint, room, seq, attempts, error, created_at) \
                                       SELECT $1, $2, $3, $6, $7, created_at FROM done \
                                       RETURNING 1) \
                         UPDATE webhook_queues \
                         SET pending = pending - (SELECT count(*) FROM dead), attempts = 0, \
                             last_error = $7, \
                             lease_until = now() + $5 * interval '1 millisecond' \
                         WHERE endpoint = $1 AND room = $2 AND lease_token = $4 \
                         RETURNING pending",
                        vec![
                            &lease.endpoint,
                            &room,
                            &seq,
                            &lease.token,
                            &ms,
                            &attempts,
                            &error,
                        ],
                    ),
                    Outcome::Retry(_) => (
                        "UPDATE webhook_queues \
                         SET attempts = $3, last_error = $4, \
                             next_at = now() + $5 * interval '1 millisecond', \
                             lease_until = '-infinity', lease_token = NULL \
                         WHERE endpoint = $1 AND room = $2 AND lease_token = $6 \
                         RETURNING pending",
                        vec![&lease.endpoint, &room, &attempts, &error, &ms, &lease.token],
                    ),
                };
            let stmt = client.prepare_cached(sql).await.map_err(pg_error)?;
            let row = client.query_opt(&stmt, &params).await.map_err(pg_error)?;
            row.map(|r| r.try_get(0).map_err(get)).transpose()
        })
        .await
    }

    /// Gives the queue back (nothing due, the circuit opened, or a fair share was sent): another
    /// claim, on any node, may take it at once, but claims take the longest-waiting queues first
    /// (`next_at` is now), so with more busy rooms than slots every room gets its turn. Returns
    /// the events still pending.
    pub async fn release(&self, lease: &Lease) -> Result<i64, StoreError> {
        self.bounded(async {
            let client = self.pool.get().await.map_err(pool_error)?;
            let row = client
                .query_opt(
                    "UPDATE webhook_queues \
                     SET lease_until = '-infinity', lease_token = NULL, next_at = now() \
                     WHERE endpoint = $1 AND room = $2 AND lease_token = $3 RETURNING pending",
                    &[&lease.endpoint, &lease.room.as_str(), &lease.token],
                )
                .await
                .map_err(pg_error)?;
            row.map(|r| r.try_get(0).map_err(get))
                .transpose()
                .map(Option::unwrap_or_default)
        })
        .await
    }

    /// Backlog, dead letters and the oldest waiting event, by endpoint name (configured or not:
    /// an endpoint removed from the configuration keeps its rows until an operator acts).
    pub async fn stats(&self) -> Result<Vec<(String, EndpointStats)>, StoreError> {
        self.bounded(async {
            let client = self.pool.get().await.map_err(pool_error)?;
            let rows = client
                .query(
                    "SELECT endpoint, sum(backlog)::bigint, sum(dead)::bigint, min(oldest) FROM ( \
                       SELECT endpoint, pending AS backlog, 0 AS dead, NULL::timestamptz AS oldest \
                       FROM webhook_queues WHERE pending > 0 \
                       UNION ALL \
                       SELECT endpoint, 0, count(*), NULL FROM webhook_dead GROUP BY endpoint \
                       UNION ALL \
                       SELECT q.endpoint, 0, 0, (SELECT o.created_at FROM webhook_outbox o \
                                                 WHERE o.endpoint = q.endpoint AND o.room = q.room \
                                                 ORDER BY o.seq LIMIT 1) \
                       FROM webhook_queues q WHERE q.pending > 0 \
                     ) t GROUP BY endpoint ORDER BY endpoint",
                    &[],
                )
                .await
                .map_err(pg_error)?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get(0).map_err(get)?,
                        EndpointStats {
                            backlog: r.try_get(1).map_err(get)?,
                            dead: r.try_get(2).map_err(get)?,
                            oldest: r.try_get(3).map_err(get)?,
                        },
                    ))
                })
                .collect()
        })
        .await
    }

    /// Deletes the queues that have been empty and unclaimed for `idle` (a room's queue row per
    /// endpoint would otherwise stay forever). Safe against a concurrent append: a queue that
    /// gets an event again is locked by that append, re-checked, and kept (or written anew).
    pub async fn prune(&self, idle: Duration) -> Result<u64, StoreError> {
        self.bounded(async {
            let client = self.pool.get().await.map_err(pool_error)?;
            client
                .execute(
                    "DELETE FROM webhook_queues WHERE pending = 0 AND lease_until < now() \
                       AND next_at < now() - $1 * interval '1 millisecond'",
                    &[&(idle.as_millis() as f64)],
                )
                .await
                .map_err(pg_error)
        })
        .await
    }

    /// The newest `limit` dead letters.
    pub async fn dead(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.bounded(async {
            let client = self.pool.get().await.map_err(pool_error)?;
            let rows = client
                .query(
                    "SELECT id, endpoint, room, seq, attempts, error, created_at, dead_at \
                     FROM webhook_dead ORDER BY id DESC LIMIT $1",
                    &[&(limit as i64)],
                )
                .await
                .map_err(pg_error)?;
            rows.iter().map(dead_letter).collect()
        })
        .await
    }

    /// Puts dead letter `id` back at its queue (before the later events of its room, which it
    /// precedes), with its attempts reset. `None` when there is no such dead letter.
    pub async fn replay(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        self.bounded(async {
            let mut client = self.pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(pg_error)?;
            let Some(row) = tx
                .query_opt(
                    "DELETE FROM webhook_dead WHERE id = $1 RETURNING id, endpoint, room, seq, \
                     attempts, error, created_at, dead_at",
                    &[&id],
                )
                .await
                .map_err(pg_error)?
            else {
                return Ok(None);
            };
            let letter = dead_letter(&row)?;
            let added = tx
                .execute(
                    "INSERT INTO webhook_outbox (endpoint, room, seq, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[
                        &letter.endpoint,
                        &letter.room,
                        &letter.seq,
                        &letter.created_at,
                    ],
                )
                .await
                .map_err(pg_error)?;
            tx.execute(
                "INSERT INTO webhook_queues AS q (endpoint, room, pending) VALUES ($1, $2, $3) \
                 ON CONFLICT (endpoint, room) \
                 DO UPDATE SET pending = q.pending + $3, attempts = 0, \
                               next_at = least(q.next_at, now())",
                &[&letter.endpoint, &letter.room, &(added as i64)],
            )
            .await
            .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            Ok(Some(letter))
        })
        .await
    }
}

/// Sets a leased queue's `pending` to the number of its rows. The queue row is locked *before* the
/// rows are counted, in a statement of its own: an append that already counted its events on the
/// queue has committed by then (the count sees its rows), and one that has not yet adds its count
/// after this. (One `UPDATE … WHERE NOT EXISTS (…)` would judge by a snapshot taken before it
/// waited for such an append's lock, and zero a count whose rows had just committed: an event
/// stranded, never claimed.)
async fn recount(client: &mut deadpool_postgres::Client, lease: &Lease) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    let held = tx
        .query_opt(
            "SELECT 1 FROM webhook_queues \
             WHERE endpoint = $1 AND room = $2 AND lease_token = $3 FOR UPDATE",
            &[&lease.endpoint, &lease.room.as_str(), &lease.token],
        )
        .await
        .map_err(pg_error)?;
    if held.is_some() {
        tx.execute(
            "UPDATE webhook_queues SET pending = (SELECT count(*) FROM webhook_outbox \
                                                 WHERE endpoint = $1 AND room = $2) \
             WHERE endpoint = $1 AND room = $2",
            &[&lease.endpoint, &lease.room.as_str()],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)
}

fn dead_letter(r: &tokio_postgres::Row) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        id: r.try_get(0).map_err(get)?,
        endpoint: r.try_get(1).map_err(get)?,
        room: r.try_get(2).map_err(get)?,
        seq: r.try_get(3).map_err(get)?,
        attempts: r.try_get(4).map_err(get)?,
        error: r.try_get(5).map_err(get)?,
        created_at: r.try_get(6).map_err(get)?,
        dead_at: r.try_get(7).map_err(get)?,
    })
}
