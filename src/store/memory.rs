//! In-memory store: the embedded standalone default (not durable: a restart loses history and changes
//! every room's epoch, so reconnecting clients get `recovered:false` instead of a wrong backfill).
//! One mutex over all rooms; each operation is a short, non-blocking critical section. It keeps the
//! same rules as `chorus_log_append` (migrations/V3__room_log.sql); the conformance suite runs both.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::search::{self, Hit, SearchCursor, SearchQuery};
use super::{
    AppendOutcome, Appended, Change, Kind, Message, MyRoom, NewMessage, ReactOp, Reaction,
    ReadState, Refusal, RoomHead, RoomsCursor, Store, StoreError, now_ts,
};
use crate::domain::REACTION_USERS_MAX;
use crate::ids::{Epoch, RoomId, Seq, UserId};

#[derive(Default)]
pub struct MemoryStore {
    rooms: Mutex<HashMap<RoomId, Log>>,
    /// Orders rooms by their last entry (`my_rooms`), without ties.
    activity: std::sync::atomic::AtomicU64,
}

struct Log {
    epoch: Epoch,
    /// entries[i].seq == i + 1; `message` entries are kept in their current state.
    entries: Vec<Message>,
    /// (user, client_msg_id) → index into `entries`
    idempotency: HashMap<(UserId, String), usize>,
    /// message seq → the delete entry's seq
    deleted: HashMap<Seq, Seq>,
    /// message seq → key → user → the seq of the entry that added it
    reactions: BTreeMap<Seq, BTreeMap<String, BTreeMap<UserId, Seq>>>,
    /// Every user with a cursor here (0 until they read: posting adds one).
    cursors: HashMap<UserId, Seq>,
    /// The store's activity counter at this room's last entry.
    last_active: u64,
}

impl Log {
    fn new() -> Log {
        Log {
            epoch: Epoch::random(),
            entries: Vec::new(),
            idempotency: HashMap::new(),
            deleted: HashMap::new(),
            reactions: BTreeMap::new(),
            cursors: HashMap::new(),
            last_active: 0,
        }
    }

    fn head(&self) -> Seq {
        Seq::new(self.entries.len() as i64)
    }

    fn at(&self, seq: Seq) -> Option<&Message> {
        usize::try_from(seq.get() - 1)
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// The entry as a read returns it: a message with its reactions.
    fn folded(&self, i: usize) -> Message {
        let mut m = self.entries[i].clone();
        if m.kind == Kind::Message {
            m.reactions = self
                .reactions
                .get(&m.seq)
                .map(|keys| {
                    keys.iter()
                        .filter(|(_, users)| !users.is_empty())
                        .map(|(key, users)| Reaction {
                            key: key.clone(),
                            count: users.len() as i64,
                            users: users.keys().take(REACTION_USERS_MAX).cloned().collect(),
                        })
                        .collect()
                })
                .unwrap_or_default();
        }
        m
    }

    /// The rule check of one entry: `Ok(None)` = append it, `Ok(Some(seq))` = it holds already
    /// (a duplicate of that entry), `Err` = refused.
    fn check(&self, m: &NewMessage) -> Result<Option<Seq>, Refusal> {
        let Some(target_seq) = m.change.target() else {
            return Ok(None);
        };
        let target = self
            .at(target_seq)
            .filter(|t| t.kind == Kind::Message)
            .ok_or(Refusal::NotFound)?;
        let deleted = self.deleted.get(&target_seq).copied();
        match &m.change {
            Change::Message { .. } => Ok(None),
            Change::Edit { .. } if target.user != m.user => Err(Refusal::Forbidden),
            Change::Edit { .. } => deleted.map_or(Ok(None), |_| Err(Refusal::Gone)),
            Change::Delete { .. } if target.user != m.user && !m.moderator => {
                Err(Refusal::Forbidden)
            }
            Change::Delete { .. } => Ok(deleted),
            Change::React { .. } if deleted.is_some() => Err(Refusal::Gone),
            Change::React { key, op, .. } => {
                let held = self
                    .reactions
                    .get(&target_seq)
                    .and_then(|k| k.get(key))
                    .and_then(|u| u.get(&m.user))
                    .copied();
                Ok(match (op, held) {
                    (ReactOp::Add, Some(seq)) => Some(seq),
                    (ReactOp::Remove, None) => Some(target_seq),
                    _ => None,
                })
            }
        }
    }

    fn append(&mut self, room: &RoomId, m: &NewMessage, ts: DateTime<Utc>) -> Appended {
        let seq = self.head() + 1;
        let change = &m.change;
        let entry = Message {
            kind: change.kind(),
            target: change.target(),
            name: m.name.clone(),
            body: change.body().to_owned(),
            ts,
            client_msg_id: m.client_msg_id.clone(),
            key: match change {
                Change::React { key, .. } => Some(key.clone()),
                _ => None,
            },
            op: match change {
                Change::React { op, .. } => Some(*op),
                _ => None,
            },
            ..Message::new(
                room.clone(),
                seq,
                crate::ids::entry_id(),
                m.user.clone(),
                String::new(),
            )
        };
        match change {
            Change::Message { .. } => {}
            Change::Edit { target, body } => {
                if let Some(t) = self.entry_mut(*target) {
                    t.body = body.clone();
                    t.edited_ts = Some(ts);
                }
            }
            Change::Delete { target } => {
                self.deleted.insert(*target, seq);
                self.reactions.remove(target);
                for e in &mut self.entries {
                    if e.seq == *target || (e.kind == Kind::Edit && e.target == Some(*target)) {
                        e.body.clear();
                        e.deleted = true;
                    }
                }
            }
            Change::React { target, key, op } => {
                let users = self
                    .reactions
                    .entry(*target)
                    .or_default()
                    .entry(key.clone())
                    .or_default();
                match op {
                    ReactOp::Add => {
                        users.insert(m.user.clone(), seq);
                    }
                    ReactOp::Remove => {
                        users.remove(&m.user);
                    }
                }
            }
        }
        if let Some(c) = &m.client_msg_id {
            self.idempotency
                .insert((m.user.clone(), c.clone()), self.entries.len());
        }
        self.cursors.entry(m.user.clone()).or_insert(Seq::ZERO);
        self.entries.push(entry.clone());
        Appended {
            message: Arc::new(entry),
            duplicate: false,
        }
    }

    fn entry_mut(&mut self, seq: Seq) -> Option<&mut Message> {
        usize::try_from(seq.get() - 1)
            .ok()
            .and_then(|i| self.entries.get_mut(i))
    }

    fn unread(&self, user: &UserId, read: Seq, upto: Seq) -> i64 {
        self.entries
            .iter()
            .filter(|e| e.seq > read && e.seq <= upto && e.kind == Kind::Message)
            .filter(|e| &e.user != user)
            .filter(|e| self.deleted.get(&e.seq).is_none_or(|d| *d > upto))
            .count() as i64
    }

    fn state(&self, user: &UserId, upto: Seq) -> ReadState {
        let read_seq = self.cursors.get(user).copied().unwrap_or_default();
        ReadState {
            read_seq,
            unread: self.unread(user, read_seq, upto),
            last_seq: upto,
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_log<T>(&self, room: &RoomId, f: impl FnOnce(&mut Log) -> T) -> Result<T, StoreError> {
        let mut rooms = self
            .rooms
            .lock()
            .map_err(|_| StoreError::Internal("memory store lock poisoned".into()))?;
        Ok(f(rooms.entry(room.clone()).or_insert_with(Log::new)))
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn head(&self, room: &RoomId) -> Result<RoomHead, StoreError> {
        self.with_log(room, |log| RoomHead {
            epoch: log.epoch.clone(),
            last_seq: log.head(),
        })
    }

    async fn append(
        &self,
        room: &RoomId,
        batch: &[NewMessage],
    ) -> Result<AppendOutcome, StoreError> {
        let ts = now_ts();
        let active = 1 + self
            .activity
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.with_log(room, |log| {
            log.last_active = active;
            let appended = batch
                .iter()
                .map(|m| {
                    let key = m.client_msg_id.clone().map(|c| (m.user.clone(), c));
                    if let Some(&i) = key.as_ref().and_then(|k| log.idempotency.get(k)) {
                        return Ok(Appended {
                            message: Arc::new(log.entries[i].clone()),
                            duplicate: true,
                        });
                    }
                    match log.check(m)? {
                        Some(holds) => Ok(Appended {
                            message: Arc::new(log.folded(holds.get() as usize - 1)),
                            duplicate: true,
                        }),
                        None => Ok(log.append(room, m, ts)),
                    }
                })
                .collect();
            AppendOutcome {
                epoch: log.epoch.clone(),
                appended,
            }
        })
    }

    async fn after(
        &self,
        room: &RoomId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        self.with_log(room, |log| {
            let start = (after.get().max(0) as usize).min(log.entries.len());
            let end = start.saturating_add(limit).min(log.entries.len());
            (start..end).map(|i| log.folded(i)).collect()
        })
    }

    async fn before(
        &self,
        room: &RoomId,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        self.with_log(room, |log| {
            let end = match before {
                Some(b) => ((b.get() - 1).max(0) as usize).min(log.entries.len()),
                None => log.entries.len(),
            };
            let mut page: Vec<Message> = (0..end)
                .rev()
                .filter(|&i| log.entries[i].kind == Kind::Message)
                .take(limit)
                .map(|i| log.folded(i))
                .collect();
            page.reverse();
            page
        })
    }

    async fn mark_read(
        &self,
        room: &RoomId,
        reads: &[(UserId, Seq)],
    ) -> Result<Vec<(ReadState, bool)>, StoreError> {
        self.with_log(room, |log| {
            let head = log.head();
            let mut was: HashMap<UserId, Seq> = HashMap::new();
            for (user, seq) in reads {
                let cursor = log.cursors.entry(user.clone()).or_insert(Seq::ZERO);
                was.entry(user.clone()).or_insert(*cursor);
                *cursor = (*cursor).max((*seq).min(head));
            }
            reads
                .iter()
                .map(|(user, seq)| {
                    let state = log.state(user, head);
                    // As in one statement: a request moved the cursor if it set the new value.
                    let moved = state.read_seq > was[user] && (*seq).min(head) == state.read_seq;
                    (state, moved)
                })
                .collect()
        })
    }

    async fn read_state(
        &self,
        room: &RoomId,
        user: &UserId,
        upto: Seq,
    ) -> Result<ReadState, StoreError> {
        self.with_log(room, |log| log.state(user, upto))
    }

    async fn my_rooms(
        &self,
        user: &UserId,
        after: Option<&RoomsCursor>,
        limit: usize,
    ) -> Result<Vec<MyRoom>, StoreError> {
        let rooms = self
            .rooms
            .lock()
            .map_err(|_| StoreError::Internal("memory store lock poisoned".into()))?;
        let mut mine: Vec<MyRoom> = rooms
            .iter()
            .filter(|(_, log)| log.cursors.contains_key(user))
            .map(|(room, log)| {
                let state = log.state(user, log.head());
                let last_message = (0..log.entries.len())
                    .rev()
                    .find(|&i| log.entries[i].kind == Kind::Message)
                    .map(|i| log.folded(i));
                MyRoom {
                    room: room.clone(),
                    last_seq: log.head(),
                    read_seq: state.read_seq,
                    unread: state.unread,
                    last_message,
                    activity: log.last_active as i64,
                }
            })
            .collect();
        let order = |r: &MyRoom| (std::cmp::Reverse(r.activity), r.room.clone());
        mine.sort_by_key(order);
        let from = match after {
            Some(c) => {
                let at = (std::cmp::Reverse(c.activity), c.room.clone());
                mine.partition_point(|r| order(r) <= at)
            }
            None => 0,
        };
        Ok(mine.into_iter().skip(from).take(limit).collect())
    }

    async fn reset_epoch(&self, room: &RoomId, old: &Epoch) -> Result<RoomHead, StoreError> {
        self.with_log(room, |log| {
            if log.epoch == *old {
                log.epoch = Epoch::random();
            }
            RoomHead {
                epoch: log.epoch.clone(),
                last_seq: log.head(),
            }
        })
    }

    async fn search(&self, q: &SearchQuery) -> Result<Vec<Hit>, StoreError> {
        let words = search::words(&q.text);
        let rooms = self
            .rooms
            .lock()
            .map_err(|_| StoreError::Internal("memory store lock poisoned".into()))?;
        let below = q.before.as_ref().map(SearchCursor::key);
        let mut hits: Vec<Hit> = rooms
            .iter()
            .filter(|(room, _)| q.scope.admits(room))
            .flat_map(|(_, log)| log.entries.iter())
            .filter(|m| m.kind == Kind::Message && !m.deleted && search::matches(&words, &m.body))
            .map(|m| Hit {
                room: m.room.clone(),
                seq: m.seq,
                user: m.user.clone(),
                name: m.name.clone(),
                body: m.body.clone(),
                ts: m.ts,
                highlight: search::highlight(&m.body, &words),
            })
            .filter(|h| below.as_ref().is_none_or(|b| h.cursor().key() > *b))
            .collect();
        hits.sort_by_key(|h| h.cursor().key());
        hits.truncate(q.limit);
        Ok(hits)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
