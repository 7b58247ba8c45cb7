//! Reading the log: entries after a cursor (backfill, repair, SSE, long-poll, `?after=`), folded
//! history pages before one (`history`, `?before=`), with each page's reactions in one query.

use std::collections::HashMap;

use deadpool_postgres::Pool;

use super::super::{Kind, Message, Reaction, StoreError};
use super::errors::{pg_error, pool_error};
use super::rows::{COLUMNS, get, to_message};
use crate::ids::{Epoch, RoomId, Seq, UserId};

/// The room's epoch and last seq as this server has them (`None`: no such room here). On a
/// replica, every entry up to that seq is applied: the head and the entries commit together.
pub async fn applied(pool: &Pool, room: &RoomId) -> Result<Option<(Epoch, Seq)>, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let stmt = client
        .prepare_cached("SELECT epoch, last_seq FROM rooms WHERE id = $1")
        .await
        .map_err(pg_error)?;
    let row = client
        .query_opt(&stmt, &[&room.as_str()])
        .await
        .map_err(pg_error)?;
    row.map(|r| Ok((r.try_get(0).map_err(get)?, r.try_get(1).map_err(get)?)))
        .transpose()
}

/// Up to `limit` entries with `seq > after`, ascending.
pub async fn after(
    pool: &Pool,
    room: &RoomId,
    after: Seq,
    limit: usize,
) -> Result<Vec<Message>, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {} FROM messages WHERE room = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            *COLUMNS
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
    fold_reactions(&client, entries).await
}

/// The `limit` newest messages with `seq < before` (all when `None`), ascending, folded.
pub async fn before(
    pool: &Pool,
    room: &RoomId,
    before: Option<Seq>,
    limit: usize,
) -> Result<Vec<Message>, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT * FROM (SELECT {} FROM messages WHERE room = $1 AND seq < $2 \
             AND kind = 'message' ORDER BY seq DESC LIMIT $3) newest ORDER BY seq",
            *COLUMNS
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
    fold_reactions(&client, page).await
}

/// Fills in the reactions of the `message` entries among `entries`, of any rooms: one query for
/// the whole page (grouped by message and key, at most 20 user ids each), never one per message.
/// A deleted message has none (its delete removed them).
pub async fn fold_reactions(
    client: &deadpool_postgres::Client,
    mut entries: Vec<Message>,
) -> Result<Vec<Message>, StoreError> {
    let (rooms, targets): (Vec<&str>, Vec<Seq>) = entries
        .iter()
        .filter(|m| m.kind == Kind::Message && !m.deleted)
        .map(|m| (m.room.as_str(), m.seq))
        .unzip();
    if targets.is_empty() {
        return Ok(entries);
    }
    let stmt = client
        .prepare_cached(
            "SELECT r.room, r.target, r.react_key, count(*), \
                    (array_agg(r.user_id ORDER BY r.seq))[1:20] \
             FROM reactions r \
             JOIN unnest($1::text[], $2::bigint[]) AS t(room, target) \
               ON r.room = t.room AND r.target = t.target \
             GROUP BY r.room, r.target, r.react_key ORDER BY r.room, r.target, min(r.seq)",
        )
        .await
        .map_err(pg_error)?;
    let rows = client
        .query(&stmt, &[&rooms, &targets])
        .await
        .map_err(pg_error)?;
    let mut by_target: HashMap<(String, Seq), Vec<Reaction>> = HashMap::new();
    for row in &rows {
        let users: Vec<String> = row.try_get(4).map_err(get)?;
        by_target
            .entry((row.try_get(0).map_err(get)?, row.try_get(1).map_err(get)?))
            .or_default()
            .push(Reaction {
                key: row.try_get(2).map_err(get)?,
                count: row.try_get(3).map_err(get)?,
                users: users.into_iter().map(UserId::from).collect(),
            });
    }
    for m in &mut entries {
        if let Some(r) = by_target.remove(&(m.room.as_str().to_owned(), m.seq)) {
            m.reactions = r;
        }
    }
    Ok(entries)
}
