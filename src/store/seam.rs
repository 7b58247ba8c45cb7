//! The Store seam (this file defines it): durable, ordered message history. Postgres is the truth in production; the
//! in-memory backend is the standalone default and makes unit tests fast. Both pass one conformance
//! suite (`tests/it/store_conformance.rs`).
//!
//! Guarantees every backend keeps:
//! - `append` assigns each new message the next `seq` of its room: strictly increasing, gap-free,
//!   starting at 1, assigned in the commit; a batch commits all or nothing.
//! - A message whose (room, user, client_msg_id) already exists is not stored again: the original
//!   comes back with `duplicate: true`.
//! - Entries (PROTOCOL §7) are checked against the room's state in the same commit, including the
//!   earlier entries of the batch: a refused one takes no seq; an edit/delete/react that already
//!   holds comes back as a duplicate of the entry that made it hold. A delete erases the target's
//!   body and its edits' bodies.
//! - Reads return entries ascending by `seq`; `message` entries in their current state.
//! - When `append` returns `Ok`, the messages are committed; on `Err` nothing may be acknowledged.

use std::sync::Arc;

use async_trait::async_trait;

use super::search::{Hit, SearchQuery};
use crate::domain::{Message, NewMessage, Refusal};
use crate::ids::{Epoch, RoomId, Seq, UserId};

#[derive(Debug, Clone)]
pub struct Appended {
    pub message: Arc<Message>,
    /// True when the (room, user, client_msg_id) existed: `message` is the original.
    pub duplicate: bool,
}

/// Result of one append: one outcome per input, in input order. A refused entry took no seq.
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    pub epoch: Epoch,
    pub appended: Vec<Result<Appended, Refusal>>,
}

/// A user's read cursor in a room and what is unread after it (PROTOCOL §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    pub read_seq: Seq,
    pub unread: i64,
    /// The head the count runs to: later entries adjust it.
    pub last_seq: Seq,
}

/// One of a user's rooms (`GET /api/me/rooms`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct MyRoom {
    pub room: RoomId,
    pub last_seq: Seq,
    pub read_seq: Seq,
    pub unread: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Message>,
    /// How recently the room was active (higher = more recent; the backend's own scale).
    #[serde(skip)]
    #[schema(ignore)]
    pub activity: i64,
}

impl MyRoom {
    /// Where a page that ends with this room ends.
    pub fn cursor(&self) -> RoomsCursor {
        RoomsCursor {
            activity: self.activity,
            room: self.room.clone(),
        }
    }
}

/// Where a page of [`Store::my_rooms`] ends (PROTOCOL §10 `next`). Rooms are listed by activity,
/// most recent first, then by id; a page continues after its last room. Opaque to clients
/// (`<activity>.<room>`), and only meaningful to the store that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomsCursor {
    pub activity: i64,
    pub room: RoomId,
}

impl RoomsCursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.activity, self.room)
    }

    pub fn parse(text: &str) -> Option<RoomsCursor> {
        let (activity, room) = text.split_once('.')?;
        Some(RoomsCursor {
            activity: activity.parse().ok()?,
            room: RoomId::parse(room)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomHead {
    pub epoch: Epoch,
    pub last_seq: Seq,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached in time; safe to retry (with the same client_msg_id).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refused one message's data (a Postgres data exception, SQLSTATE class 22). The
    /// boundary validation should make this unreachable; the room retries the other messages of
    /// the batch without the refused one and answers it with `invalid_body`.
    #[error("store refused the data: {0}")]
    Invalid(String),
    #[error("store error: {0}")]
    Internal(String),
    /// The log refused the entry by its rules (PROTOCOL §7): a client error, nothing committed.
    #[error("refused: {0:?}")]
    Refused(Refusal),
    /// A range reaches back into history that retention dropped (`room.retention_days`): what
    /// is kept runs gap-free up to the end of the range, but not from its start.
    #[error("history before this range's end was dropped by retention")]
    Truncated,
}

impl StoreError {
    /// The wire code and text for a client; internal detail never goes on the wire.
    pub fn wire(&self) -> (crate::protocol::ErrorCode, &'static str) {
        use crate::protocol::ErrorCode;
        match self {
            StoreError::Unavailable(_) => (
                ErrorCode::Unavailable,
                "store unavailable; retry with the same client_msg_id",
            ),
            StoreError::Invalid(_) => {
                (ErrorCode::InvalidBody, "the store cannot take this message")
            }
            StoreError::Internal(_) => (
                ErrorCode::Internal,
                "internal error; retry with the same client_msg_id",
            ),
            StoreError::Refused(Refusal::NotFound) => {
                (ErrorCode::NotFound, "no such message in this room")
            }
            StoreError::Refused(Refusal::Forbidden) => (
                ErrorCode::Forbidden,
                "only the author (or a moderator, to delete) may do that",
            ),
            StoreError::Refused(Refusal::Gone) => (ErrorCode::Gone, "that message was deleted"),
            StoreError::Truncated => (
                ErrorCode::Internal,
                "that history is past retention; reload through history",
            ),
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// "postgres" or "memory".
    fn backend(&self) -> &'static str;

    /// The room's epoch and last committed seq (creating the room if it is new). Reads the writer.
    async fn head(&self, room: &RoomId) -> Result<RoomHead, StoreError>;

    /// Appends a batch in one transaction (group commit); see the module guarantees.
    async fn append(
        &self,
        room: &RoomId,
        batch: &[NewMessage],
    ) -> Result<AppendOutcome, StoreError>;

    /// Up to `limit` messages with `seq > after`, ascending.
    async fn after(
        &self,
        room: &RoomId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;

    /// The `limit` newest messages with `seq < before` (all when `None`), ascending.
    async fn before(
        &self,
        room: &RoomId,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;

    /// Exactly the messages `after+1 ..= upto` (backfill). A backend with a lagging replica falls
    /// back to the writer rather than return a short range.
    async fn range(
        &self,
        room: &RoomId,
        after: Seq,
        upto: Seq,
    ) -> Result<Vec<Message>, StoreError> {
        let want = (upto - after).max(0) as usize;
        let got = self.after(room, after, want).await?;
        check_range(got, after, upto)
    }

    /// Moves read cursors in `room` (each never backwards; clamped to the head), a batch in one
    /// statement (the room groups them as it groups commits): for each request, in order, the
    /// user's cursor and unread count afterwards, and whether that request moved it.
    async fn mark_read(
        &self,
        room: &RoomId,
        reads: &[(UserId, Seq)],
    ) -> Result<Vec<(ReadState, bool)>, StoreError>;

    /// `user`'s cursor in `room` and the unread count as of `upto` (the seq a join goes live
    /// after): message entries in `(read_seq, upto]`, not the user's own, not deleted by an entry
    /// at or before `upto`, so later entries the client will receive adjust it exactly.
    async fn read_state(
        &self,
        room: &RoomId,
        user: &UserId,
        upto: Seq,
    ) -> Result<ReadState, StoreError>;

    /// `user`'s rooms (posted in, or read), most recently active first (then by id), at most
    /// `limit`, after `after` when given.
    async fn my_rooms(
        &self,
        user: &UserId,
        after: Option<&RoomsCursor>,
        limit: usize,
    ) -> Result<Vec<MyRoom>, StoreError>;

    /// Gives the room a new epoch if its epoch is still `old` (the room's history went backwards,
    /// e.g. a restore from backup: seqs a client saw may be issued again, so `since` under the old
    /// epoch can no longer be trusted). Returns the head afterwards; when another node already
    /// changed the epoch, that one is kept.
    async fn reset_epoch(&self, room: &RoomId, old: &Epoch) -> Result<RoomHead, StoreError>;

    /// Messages matching `q.text` in `q.scope` (PROTOCOL §13): current text only (an edit is
    /// found by its new words), never a deleted one, newest first, at most `q.limit`, below
    /// `q.before` when given.
    async fn search(&self, q: &SearchQuery) -> Result<Vec<Hit>, StoreError>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Verifies a backfill range is complete and contiguous: exactly `after+1 ..= upto`. When the
/// entries found run gap-free up to `upto` but start later (or none is found), retention dropped
/// the start: [`StoreError::Truncated`] (from a lagging replica this can also mean "not there
/// yet": only the writer's answer is final). Anything else is an internal error.
pub fn check_range(got: Vec<Message>, after: Seq, upto: Seq) -> Result<Vec<Message>, StoreError> {
    let runs_from = |got: &[Message], first: Seq| {
        got.iter()
            .enumerate()
            .all(|(i, m)| m.seq == first + i as i64)
    };
    if runs_from(&got, after + 1) && got.len() as i64 == (upto - after).max(0) {
        return Ok(got);
    }
    // Reading a count after `after` where the start is gone runs past `upto`.
    let kept: Vec<&Message> = got.iter().take_while(|m| m.seq <= upto).collect();
    let tail_complete = match (kept.first(), kept.last()) {
        (Some(first), Some(last)) => {
            first.seq > after + 1
                && last.seq == upto
                && kept
                    .iter()
                    .enumerate()
                    .all(|(i, m)| m.seq == first.seq + i as i64)
        }
        _ => upto > after,
    };
    if tail_complete {
        return Err(StoreError::Truncated);
    }
    Err(StoreError::Internal(format!(
        "range ({after}, {upto}] incomplete: {} messages",
        got.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(seqs: impl IntoIterator<Item = i64>) -> Vec<Message> {
        seqs.into_iter()
            .map(|s| {
                Message::new(
                    RoomId::parse("r").unwrap(),
                    Seq::new(s),
                    format!("id{s}"),
                    UserId::from("u"),
                    "b".into(),
                )
            })
            .collect()
    }

    #[test]
    fn a_range_is_complete_truncated_by_retention_or_broken() {
        let (after, upto) = (Seq::new(3), Seq::new(8));
        let seqs = |r: Result<Vec<Message>, StoreError>| {
            r.map(|m| m.iter().map(|m| m.seq.get()).collect::<Vec<_>>())
        };
        assert_eq!(
            seqs(check_range(msgs(4..=8), after, upto)).unwrap(),
            [4, 5, 6, 7, 8]
        );
        // The start dropped (reading a count after `after` runs past `upto`), or all of it.
        for got in [msgs(6..=10), msgs(8..=8), msgs([])] {
            assert!(matches!(
                check_range(got, after, upto),
                Err(StoreError::Truncated)
            ));
        }
        // A hole in the middle or a short end (a lagging replica) is not retention.
        for got in [msgs([4, 5, 7, 8]), msgs(4..=6), msgs([5, 6, 8])] {
            assert!(matches!(
                check_range(got, after, upto),
                Err(StoreError::Internal(_))
            ));
        }
        assert!(check_range(msgs([]), upto, upto).unwrap().is_empty());
    }
}
