//! Read cursors, grouped like commits: the requests that arrive while one batch is being written
//! go in the next one, so a room with many readers costs one statement per round trip, not one
//! per read (PROTOCOL §7). The session layer tells the user's other sessions and the other nodes.

use actix::prelude::*;

use super::Room;
use crate::store::StoreError;

impl Room {
    pub(super) fn maybe_read(&mut self, ctx: &mut Context<Self>) {
        if self.reading || self.reads.is_empty() {
            return;
        }
        self.reading = true;
        let n = self.reads.len().min(self.registry.deps.settings.batch_max);
        let batch: Vec<_> = self.reads.drain(..n).collect();
        let pairs: Vec<_> = batch.iter().map(|r| (r.user.clone(), r.seq)).collect();
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        ctx.spawn(
            async move { store.mark_read(&room, &pairs).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    act.reading = false;
                    match res {
                        Ok(states) if states.len() == batch.len() => {
                            for (read, state) in batch.into_iter().zip(states) {
                                let _ = read.reply.send(Ok(state));
                            }
                        }
                        other => {
                            let e = match other {
                                Err(e) => e,
                                Ok(_) => StoreError::Internal("mark_read answered short".into()),
                            };
                            tracing::warn!(room = %act.id, error = %e, "moving read cursors failed");
                            for read in batch {
                                let _ = read.reply.send(Err(e.clone()));
                            }
                        }
                    }
                    act.maybe_read(ctx);
                    act.check_idle(ctx);
                }),
        );
    }
}
