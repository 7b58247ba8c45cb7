//! Any store, measured: `chorus_store_seconds{op}`, `chorus_store_slow_total{op}` and
//! `chorus_store_errors_total{op}` for every operation of the seam.

use std::time::Instant;

use async_trait::async_trait;

use super::seam::{AppendOutcome, MyRoom, ReadState, RoomHead, RoomsCursor, Store, StoreError};
use super::search::{Hit, SearchQuery};
use crate::domain::{Message, NewMessage};
use crate::ids::{Epoch, RoomId, Seq, UserId};
use crate::metrics::Metrics;

/// Wraps any store with `chorus_store_seconds{op}`, `chorus_store_slow_total{op}` and
/// `chorus_store_errors_total{op}`.
pub struct Metered<S> {
    inner: S,
    metrics: Metrics,
}

impl<S: Store> Metered<S> {
    pub fn new(inner: S, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(
        &self,
        op: &str,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let out = fut.await;
        let took = start.elapsed().as_secs_f64();
        let m = &self.metrics;
        m.store_seconds.with_label_values(&[op]).observe(took);
        if took > crate::metrics::SLOW_STORE_S {
            m.store_slow.with_label_values(&[op]).inc();
        }
        if out.is_err() {
            m.store_errors.with_label_values(&[op]).inc();
        }
        out
    }
}

#[async_trait]
impl<S: Store> Store for Metered<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn head(&self, room: &RoomId) -> Result<RoomHead, StoreError> {
        self.timed("head", self.inner.head(room)).await
    }

    async fn append(
        &self,
        room: &RoomId,
        batch: &[NewMessage],
    ) -> Result<AppendOutcome, StoreError> {
        self.timed("append", self.inner.append(room, batch)).await
    }

    async fn after(
        &self,
        room: &RoomId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        self.timed("after", self.inner.after(room, after, limit))
            .await
    }

    async fn before(
        &self,
        room: &RoomId,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        self.timed("before", self.inner.before(room, before, limit))
            .await
    }

    async fn range(
        &self,
        room: &RoomId,
        after: Seq,
        upto: Seq,
    ) -> Result<Vec<Message>, StoreError> {
        self.timed("range", self.inner.range(room, after, upto))
            .await
    }

    async fn reset_epoch(&self, room: &RoomId, old: &Epoch) -> Result<RoomHead, StoreError> {
        self.timed("reset_epoch", self.inner.reset_epoch(room, old))
            .await
    }

    async fn mark_read(
        &self,
        room: &RoomId,
        reads: &[(UserId, Seq)],
    ) -> Result<Vec<(ReadState, bool)>, StoreError> {
        self.timed("mark_read", self.inner.mark_read(room, reads))
            .await
    }

    async fn read_state(
        &self,
        room: &RoomId,
        user: &UserId,
        upto: Seq,
    ) -> Result<ReadState, StoreError> {
        self.timed("read_state", self.inner.read_state(room, user, upto))
            .await
    }

    async fn my_rooms(
        &self,
        user: &UserId,
        after: Option<&RoomsCursor>,
        limit: usize,
    ) -> Result<Vec<MyRoom>, StoreError> {
        self.timed("my_rooms", self.inner.my_rooms(user, after, limit))
            .await
    }

    async fn search(&self, q: &SearchQuery) -> Result<Vec<Hit>, StoreError> {
        self.timed("search", self.inner.search(q)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", self.inner.ping()).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::store::MemoryStore;

    /// Every operation of the seam is measured under a name `STORE_OPS` lists, so its series
    /// exist from the start (alarms on a series that appears late miss the first burst).
    #[actix_web::test]
    async fn every_store_operation_is_measured_under_a_listed_name() {
        let metrics = Metrics::new();
        let store = Metered::new(MemoryStore::new(), metrics.clone());
        let room = RoomId::parse("r").expect("valid");
        let user = UserId::from("u");
        let head = store.head(&room).await.expect("head");
        store
            .append(&room, &[NewMessage::message(user.clone(), "hi")])
            .await
            .expect("append");
        store.after(&room, Seq::ZERO, 10).await.expect("after");
        store.before(&room, None, 10).await.expect("before");
        store
            .range(&room, Seq::ZERO, Seq::new(1))
            .await
            .expect("range");
        store.reset_epoch(&room, &head.epoch).await.expect("reset");
        store
            .mark_read(&room, &[(user.clone(), Seq::new(1))])
            .await
            .expect("mark_read");
        store
            .read_state(&room, &user, Seq::new(1))
            .await
            .expect("read_state");
        store.my_rooms(&user, None, 10).await.expect("my_rooms");
        let q = crate::store::SearchQuery {
            text: "hi".into(),
            scope: crate::store::RoomScope::All,
            before: None,
            limit: 10,
        };
        assert_eq!(store.search(&q).await.expect("search").len(), 1);
        store.ping().await.expect("ping");
        let measured: BTreeSet<String> = metrics
            .registry
            .gather()
            .into_iter()
            .filter(|f| f.name() == "chorus_store_seconds")
            .flat_map(|f| f.get_metric().to_vec())
            .filter(|m| m.get_histogram().get_sample_count() > 0)
            .flat_map(|m| {
                m.get_label()
                    .iter()
                    .map(|l| l.value().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        let listed: BTreeSet<String> = crate::metrics::STORE_OPS
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(measured, listed, "each op called once above, each listed");
    }
}
