//! Reading the log: entries after a cursor (backfill, repair, SSE, long-poll, `?after=`), folded
//! history pages before one (`history`, `?before=`), with each page's reactions in one query.

use std::collections::HashMap;

use deadpool_postgres::Pool;

use super::super::{Hit, Kind, Message, Reaction, RoomScope, SearchQuery, StoreError};
use super::errors::{pg_error, pool_error};
use super::rows::{COLUMNS, get, to_message};
use crate::ids::{Epoch, RoomId, Seq, UserId};

/// The search statement (PROTOCOL §13; `loadtest/search` runs it as it is): the page is looked for
/// first among the newest 1200 live messages in scope (an ordered walk of
/// `messages_search_newest`, each one's words checked), which finds a frequent word's page at
/// once; only if that holds fewer than a page are all matches fetched through the GIN index
/// `messages_search` and the newest taken, which is quick because such a word is rare. (Left to
/// itself the planner picks one plan for both, and its frequency estimates for words outside the
/// most common ones are guesses: 50–100 ms either way for the wrong kind of word over 1M
/// messages.) The window: checking a message's words costs ~8 µs, fetching a GIN match ~1.2 µs;
/// 1200 keeps both halves under ~20 ms at 1M messages (`loadtest/search`, RESULTS.md). The text is
/// read by `websearch_to_tsquery`, which never fails on syntax (operators
/// alone match nothing). `highlight` is `ts_headline` over the HTML-escaped body.
pub const SEARCH: &str = "
WITH q AS (SELECT websearch_to_tsquery('simple', $1) AS q),
recent AS (
    SELECT r.room, r.seq, r.user_id, r.user_name, r.body, r.ts
    FROM (SELECT m.room, m.seq, m.user_id, m.user_name, m.body, m.ts FROM messages m
          WHERE m.kind = 'message' AND m.deleted_seq IS NULL
            AND ($2 OR m.room = ANY($3)
                 OR EXISTS (SELECT 1 FROM unnest($4::text[]) p WHERE starts_with(m.room, p)))
            AND ($5::timestamptz IS NULL OR (m.ts, m.room, m.seq) < ($5, $6, $7))
          ORDER BY m.ts DESC, m.room DESC, m.seq DESC LIMIT 1200) r, q
    WHERE to_tsvector('simple'::regconfig, r.body) @@ q.q
    ORDER BY r.ts DESC, r.room DESC, r.seq DESC LIMIT $8),
enough AS (SELECT count(*) >= $8 AS yes FROM recent),
older AS MATERIALIZED (
    SELECT m.room, m.seq, m.user_id, m.user_name, m.body, m.ts FROM messages m, q
    WHERE NOT (SELECT yes FROM enough)
      AND to_tsvector('simple'::regconfig, m.body) @@ q.q
      AND m.kind = 'message' AND m.deleted_seq IS NULL
      AND ($2 OR m.room = ANY($3)
           OR EXISTS (SELECT 1 FROM unnest($4::text[]) p WHERE starts_with(m.room, p)))
      AND ($5::timestamptz IS NULL OR (m.ts, m.room, m.seq) < ($5, $6, $7))),
hits AS (
    SELECT * FROM recent WHERE (SELECT yes FROM enough)
    UNION ALL
    (SELECT * FROM older ORDER BY ts DESC, room DESC, seq DESC LIMIT $8))
SELECT h.room, h.seq, h.user_id, h.user_name, h.body, h.ts,
       ts_headline('simple', replace(replace(replace(replace(h.body, '&', '&amp;'),
           '<', '&lt;'), '>', '&gt;'), '\"', '&quot;'), (SELECT q FROM q),
           'StartSel=<mark>, StopSel=</mark>, MaxWords=35, MinWords=15, ShortWord=0')
FROM hits h
ORDER BY h.ts DESC, h.room DESC, h.seq DESC";

/// Messages matching `q`, newest first ([`SEARCH`]).
pub async fn search(pool: &Pool, q: &SearchQuery) -> Result<Vec<Hit>, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let stmt = client.prepare_cached(SEARCH).await.map_err(pg_error)?;
    let (all, rooms, prefixes): (bool, Vec<&str>, Vec<&str>) = match &q.scope {
        RoomScope::All => (true, Vec::new(), Vec::new()),
        RoomScope::Only { rooms, prefixes } => (
            false,
            rooms.iter().map(RoomId::as_str).collect(),
            prefixes.iter().map(String::as_str).collect(),
        ),
    };
    let before = q.before.as_ref();
    let rows = client
        .query(
            &stmt,
            &[
                &q.text,
                &all,
                &rooms,
                &prefixes,
                &before.map(|c| c.ts),
                &before.map(|c| c.room.as_str()),
                &before.map(|c| c.seq),
                &(q.limit as i64),
            ],
        )
        .await
        .map_err(pg_error)?;
    rows.iter()
        .map(|r| {
            let room: &str = r.try_get(0).map_err(get)?;
            Ok(Hit {
                room: RoomId::parse(room)
                    .ok_or_else(|| StoreError::Internal(format!("stored room id {room:?}")))?,
                seq: r.try_get(1).map_err(get)?,
                user: UserId::from(r.try_get::<_, &str>(2).map_err(get)?),
                name: r.try_get(3).map_err(get)?,
                body: r.try_get(4).map_err(get)?,
                ts: r.try_get(5).map_err(get)?,
                highlight: r.try_get(6).map_err(get)?,
            })
        })
        .collect()
}

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
