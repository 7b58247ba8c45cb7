//! The room's I/O: each store (and presence-hash) effect of the core as a future whose output is
//! the [`Done`] the core waits for. The actor runs them; nothing here decides anything.

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;

use super::core::{Done, Effect, Handles};
use crate::bridge::Cluster;
use crate::ids::{RoomId, Seq, UserId};
use crate::store::{ReadState, Store};

/// The future that carries out `effect`, or the effect back when it is not I/O.
pub fn start<H: Handles>(
    effect: Effect<H>,
    store: Arc<dyn Store>,
    cluster: Option<Cluster>,
    room: RoomId,
) -> Result<LocalBoxFuture<'static, Done>, Effect<H>> {
    Ok(match effect {
        Effect::Attach => async move {
            if let Some(cluster) = &cluster {
                cluster.subscribe(&room).await;
            }
            let head = store.head(&room).await;
            let presence = match &cluster {
                Some(cluster) => cluster.presence(&room).await.ok(),
                None => None,
            };
            Done::Attached { head, presence }
        }
        .boxed_local(),
        Effect::ReadHead(why) => async move {
            let result = store.head(&room).await;
            Done::Head { why, result }
        }
        .boxed_local(),
        Effect::Append(batch) => async move {
            let result = store.append(&room, &batch).await;
            Done::Appended { batch, result }
        }
        .boxed_local(),
        Effect::Repair { after, upto } => async move {
            let result = store.range(&room, after, upto).await;
            Done::Repaired { result }
        }
        .boxed_local(),
        Effect::CatchUp { delivered, max } => async move {
            let result = async {
                let head = store.head(&room).await?;
                let upto = head.last_seq.min(delivered + max);
                let missed = match upto > delivered {
                    true => store.range(&room, delivered, upto).await?,
                    false => Vec::new(),
                };
                Ok((head, missed))
            }
            .await;
            Done::CaughtUp { result }
        }
        .boxed_local(),
        Effect::ReadForJoin {
            join,
            user,
            upto,
            backfill,
        } => async move {
            let read = match user {
                // Unknown (the store is down) is left out of `joined`, never guessed.
                Some(user) => store.read_state(&room, &user, upto).await.ok(),
                None => None,
            };
            let backfill = match backfill {
                Some((since, upto)) => store.range(&room, since, upto).await,
                None => Ok(Vec::new()),
            };
            Done::JoinRead {
                join,
                read,
                backfill,
            }
        }
        .boxed_local(),
        Effect::MarkRead(pairs) => async move {
            let result = store.mark_read(&room, &pairs).await;
            Done::ReadsMarked { result }
        }
        .boxed_local(),
        Effect::ResetEpoch { old } => async move {
            let result = store.reset_epoch(&room, &old).await;
            Done::EpochReset { result }
        }
        .boxed_local(),
        Effect::Resync { floor } => async move {
            let head = store.head(&room).await;
            let presence = match &cluster {
                Some(cluster) => cluster.presence(&room).await.ok(),
                None => None,
            };
            Done::Resynced {
                floor,
                head,
                presence,
            }
        }
        .boxed_local(),
        Effect::RefreshReads { users, upto } => async move {
            Done::ReadsRefreshed {
                states: read_states(&*store, &room, users, upto).await,
            }
        }
        .boxed_local(),
        other => return Err(other),
    })
}

/// The cursors of `users` as of `upto`; a cursor still at 0 never moved, so no notice about it
/// was lost.
async fn read_states(
    store: &dyn Store,
    room: &RoomId,
    users: Vec<UserId>,
    upto: Seq,
) -> Vec<(UserId, ReadState)> {
    let mut states = Vec::with_capacity(users.len());
    for user in users {
        match store.read_state(room, &user, upto).await {
            Ok(state) if state.read_seq > Seq::ZERO => states.push((user, state)),
            _ => {}
        }
    }
    states
}
