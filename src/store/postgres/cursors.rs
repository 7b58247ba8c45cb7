//! Read cursors and unread counts (PROTOCOL §7): moving cursors in batches, a user's state as of a
//! join point, and `GET /api/me/rooms`. Every count is exact, from a few index probes whatever its
//! size ([`unread_sql`]).

use deadpool_postgres::Pool;

use super::super::{Message, MyRoom, ReadState, RoomsCursor, StoreError};
use super::errors::{pg_error, pool_error};
use super::reads::fold_reactions;
use super::rows::{COLUMNS, get, to_message, to_read_state};
use crate::ids::{RoomId, Seq, UserId};

/// The unread count (PROTOCOL §7) of `user` with a cursor at `after`, as of the entry `upto` (SQL
/// expressions, e.g. `$2` or `c.read_seq`): message entries in (after, upto], not the user's own,
/// not deleted by an entry at or before `upto`. Computed as (messages in the range, from two `ord`
/// lookups) − (own messages in it) − (others' messages in it deleted by then), so it costs a few
/// index probes whatever the count: 10 000 unread messages are not 10 000 index entries. Written
/// out in each query rather than as an SQL function: Postgres cannot inline a function with
/// sub-selects, and calling one per room was 5x slower for `GET /api/me/rooms`. When retention
/// dropped every message up to the cursor, the count starts at the first message kept (the
/// fallback lookup runs only then), so dropped history is never unread.
pub fn unread_sql(room: &str, user: &str, after: &str, upto: &str) -> String {
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

pub async fn mark_read(
    pool: &Pool,
    room: &RoomId,
    reads: &[(UserId, Seq)],
) -> Result<Vec<(ReadState, bool)>, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
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
                let moved = state.read_seq > *was && (*seq).min(state.last_seq) == state.read_seq;
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
}

pub async fn read_state(
    pool: &Pool,
    room: &RoomId,
    user: &UserId,
    upto: Seq,
) -> Result<ReadState, StoreError> {
    // The writer: a join must count what it goes live after, a replica may lag.
    let client = pool.get().await.map_err(pool_error)?;
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
}

/// `user`'s rooms after `after`, most recently active first (activity = the room's last post
/// time in microseconds; a room never posted in sorts last), then by id.
pub async fn my_rooms(
    pool: &Pool,
    user: &UserId,
    after: Option<&RoomsCursor>,
    limit: usize,
) -> Result<Vec<MyRoom>, StoreError> {
    let columns: &str = &COLUMNS;
    let client = pool.get().await.map_err(pool_error)?;
    // One index-backed query: the user's cursors (read_cursors_by_user), their rooms' heads,
    // and per room the unread count (a few index probes, whatever the count) and the newest
    // message; the per-room parts run only for the rows the LIMIT keeps. No cursor = after
    // (i64::MAX, ""), which every room is.
    let stmt = client
        .prepare_cached(&format!(
            "WITH mine AS ( \
               SELECT * FROM (SELECT c.room, r.last_seq, c.read_seq, \
                   coalesce((extract(epoch FROM r.last_ts) * 1000000)::bigint, \
                            -9223372036854775808) AS activity \
                 FROM read_cursors c JOIN rooms r ON r.id = c.room WHERE c.user_id = $1) a \
               WHERE a.activity < $3 OR (a.activity = $3 AND a.room > $4) \
               ORDER BY a.activity DESC, a.room LIMIT $2) \
             SELECT c.room, c.last_seq, c.read_seq, {}, c.activity, l.* \
             FROM mine c LEFT JOIN LATERAL (SELECT {columns} FROM messages m \
                WHERE m.room = c.room AND m.kind = 'message' \
                ORDER BY m.seq DESC LIMIT 1) l ON true \
             ORDER BY c.activity DESC, c.room",
            unread_sql("c.room", "$1", "c.read_seq", "c.last_seq")
        ))
        .await
        .map_err(pg_error)?;
    let (activity, room) = match after {
        Some(c) => (c.activity, c.room.as_str()),
        None => (i64::MAX, ""),
    };
    let rows = client
        .query(&stmt, &[&user.as_str(), &(limit as i64), &activity, &room])
        .await
        .map_err(pg_error)?;
    let mut rooms: Vec<MyRoom> = rows
        .iter()
        .map(|row| {
            let room = RoomId::parse(row.try_get::<_, &str>(0).map_err(get)?)
                .ok_or_else(|| StoreError::Internal("a stored room id is invalid".into()))?;
            let has_last = row.try_get::<_, Option<Seq>>(5).map_err(get)?.is_some();
            let last_message = if has_last {
                Some(to_message(&room, row, 5)?)
            } else {
                None
            };
            Ok(MyRoom {
                last_seq: row.try_get(1).map_err(get)?,
                read_seq: row.try_get(2).map_err(get)?,
                unread: row.try_get(3).map_err(get)?,
                activity: row.try_get(4).map_err(get)?,
                last_message,
                room,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    // The last messages in their folded state, reactions included, in one more query.
    let with_last: Vec<usize> = (0..rooms.len())
        .filter(|&i| rooms[i].last_message.is_some())
        .collect();
    let last: Vec<Message> = with_last
        .iter()
        .filter_map(|&i| rooms[i].last_message.take())
        .collect();
    let folded = fold_reactions(&client, last).await?;
    for (i, m) in with_last.into_iter().zip(folded) {
        rooms[i].last_message = Some(m);
    }
    Ok(rooms)
}
