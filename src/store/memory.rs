//! In-memory store: the embedded standalone default (not durable: a restart loses history and changes
//! every room's epoch, so reconnecting clients get `recovered:false` instead of a wrong backfill).
//! One mutex over all rooms; each operation is a short, non-blocking critical section.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{AppendOutcome, Appended, Message, NewMessage, RoomHead, Store, StoreError, now_ts};
use crate::ids::{RoomId, Seq, UserId, random_id};

#[derive(Default)]
pub struct MemoryStore {
    rooms: Mutex<HashMap<RoomId, Log>>,
}

struct Log {
    epoch: String,
    /// messages[i].seq == i + 1
    messages: Vec<Arc<Message>>,
    /// (user, client_msg_id) → index into `messages`
    idempotency: HashMap<(UserId, String), usize>,
}

impl Log {
    fn new() -> Log {
        Log {
            epoch: random_id()[..12].to_owned(),
            messages: Vec::new(),
            idempotency: HashMap::new(),
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
            last_seq: Seq::new(log.messages.len() as i64),
        })
    }

    async fn append(
        &self,
        room: &RoomId,
        batch: &[NewMessage],
    ) -> Result<AppendOutcome, StoreError> {
        let ts = now_ts();
        self.with_log(room, |log| {
            let appended = batch
                .iter()
                .map(|m| {
                    let key = m.client_msg_id.clone().map(|c| (m.user.clone(), c));
                    if let Some(&i) = key.as_ref().and_then(|k| log.idempotency.get(k)) {
                        return Appended {
                            message: log.messages[i].clone(),
                            duplicate: true,
                        };
                    }
                    let message = Arc::new(Message {
                        room: room.clone(),
                        seq: Seq::new(log.messages.len() as i64 + 1),
                        id: uuid::Uuid::now_v7().to_string(),
                        user: m.user.clone(),
                        name: m.name.clone(),
                        body: m.body.clone(),
                        ts,
                        client_msg_id: m.client_msg_id.clone(),
                    });
                    if let Some(k) = key {
                        log.idempotency.insert(k, log.messages.len());
                    }
                    log.messages.push(message.clone());
                    Appended {
                        message,
                        duplicate: false,
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
            let start = (after.get().max(0) as usize).min(log.messages.len());
            log.messages[start..]
                .iter()
                .take(limit)
                .map(|m| (**m).clone())
                .collect()
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
                Some(b) => ((b.get() - 1).max(0) as usize).min(log.messages.len()),
                None => log.messages.len(),
            };
            let start = end.saturating_sub(limit);
            log.messages[start..end]
                .iter()
                .map(|m| (**m).clone())
                .collect()
        })
    }

    async fn reset_epoch(&self, room: &RoomId, old: &str) -> Result<RoomHead, StoreError> {
        self.with_log(room, |log| {
            if log.epoch == old {
                log.epoch = random_id()[..12].to_owned();
            }
            RoomHead {
                epoch: log.epoch.clone(),
                last_seq: Seq::new(log.messages.len() as i64),
            }
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
