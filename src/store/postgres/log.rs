//! The log's writes: a room's head (made on first use), appends, and epoch resets.
//!
//! `append` is one call of `chorus_append_entries` per batch (migrations/functions.sql): one
//! statement, so one transaction and one round trip. The batch travels as one JSON document, an
//! entry per element with named fields ([`EntryDoc`]), and so do the webhook routes: adding a
//! field to an entry (a thread's parent, an attachment) is a new key, not a new positional array.
//! The function locks the room row, returns the originals of repeated `client_msg_id`s, checks
//! each entry against the room's state (and the batch's earlier entries), inserts the new ones,
//! advances the head and writes the outbox rows, all in the same commit. Concurrent appends to
//! one room queue on the row lock, so seqs commit in order and without gaps.

use std::sync::Arc;
use std::sync::LazyLock;

use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::types::Json;

use super::super::{
    AppendOutcome, Appended, Change, NewMessage, Refusal, RoomHead, StoreError, now_ts,
};
use super::errors::{pg_error, pool_error};
use super::routes::Routes;
use super::rows::{COLUMNS, get, to_head, to_message};
use crate::ids::{Epoch, RoomId, Seq, entry_id};

/// One entry of an append's batch, as `chorus_append_entries` reads it.
#[derive(Debug, Serialize)]
struct EntryDoc<'a> {
    id: String,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    kind: &'static str,
    body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<Seq>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    op: Option<&'static str>,
    /// The poster may delete others' messages.
    #[serde(rename = "mod", skip_serializing_if = "std::ops::Not::not")]
    moderator: bool,
}

impl<'a> EntryDoc<'a> {
    fn of(m: &'a NewMessage) -> EntryDoc<'a> {
        let (key, op) = match &m.change {
            Change::React { key, op, .. } => (Some(key.as_str()), Some(op.as_str())),
            _ => (None, None),
        };
        EntryDoc {
            id: entry_id(),
            user: m.user.as_str(),
            name: m.name.as_deref(),
            kind: m.change.kind().as_str(),
            body: m.change.body(),
            cid: m.client_msg_id.as_deref(),
            target: m.change.target(),
            key,
            op,
            moderator: m.moderator,
        }
    }
}

/// A webhook endpoint that wants entries of `kind` (its outbox rows are written with them).
#[derive(Debug, Serialize)]
struct HookDoc<'a> {
    endpoint: &'a str,
    kind: &'static str,
}

static APPEND: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT idx, outcome, {}, epoch FROM chorus_append_entries($1, $2, $3, $4, $5)",
        *COLUMNS
    )
});

pub async fn head(pool: &Pool, room: &RoomId) -> Result<RoomHead, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let epoch = Epoch::random();
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
}

/// Appends a batch (see the module doc); one outcome per entry, in order. `true` with it when
/// the commit wrote outbox rows (the dispatcher should look now).
pub async fn append(
    pool: &Pool,
    routes: &Routes,
    room: &RoomId,
    batch: &[NewMessage],
) -> Result<(AppendOutcome, bool), StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let stmt = client.prepare_cached(&APPEND).await.map_err(pg_error)?;
    let entries: Vec<EntryDoc> = batch.iter().map(EntryDoc::of).collect();
    let (endpoints, kinds) = routes.for_room(room);
    let hooks: Vec<HookDoc> = endpoints
        .iter()
        .zip(kinds)
        .map(|(endpoint, kind)| HookDoc { endpoint, kind })
        .collect();
    let new_epoch = Epoch::random();
    let rows = client
        .query(
            &stmt,
            &[
                &room.as_str(),
                &new_epoch,
                &now_ts(),
                &Json(&entries),
                &Json(&hooks),
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
    let mut epoch = new_epoch;
    let mut appended = Vec::with_capacity(rows.len());
    for row in &rows {
        epoch = row.try_get(15).map_err(get)?;
        let outcome: &str = row.try_get(1).map_err(get)?;
        appended.push(match outcome {
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
    let fresh = appended.iter().any(|a| matches!(a, Ok(a) if !a.duplicate));
    Ok((
        AppendOutcome { epoch, appended },
        fresh && !hooks.is_empty(),
    ))
}

/// Gives the room a new epoch if its epoch is still `old`; the head afterwards.
pub async fn reset_epoch(pool: &Pool, room: &RoomId, old: &Epoch) -> Result<RoomHead, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let new = Epoch::random();
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
}
