//! The Bus seam: the pub/sub transport and small shared state the bridge runs on. Redis (fred) in
//! production; an in-process loopback for standalone tests. Both pass one conformance suite
//! (`tests/it/bus_conformance.rs`).
//!
//! Guarantees every backend keeps (and no more):
//! - `publish` is fire-and-forget and **at most once**: a payload reaches every bus subscribed to its
//!   channel when it is published, once, or (when the transport fails) not at all. Payloads from one
//!   bus on one channel arrive in publish order. Loss is always followed by a
//!   [`BusEvent::Connected`] (a reconnect) or a [`BusEvent::Lagged`] on some node, which is where the
//!   bridge repairs from the store: the bus never has to be reliable, only honest about failing.
//! - A bus receives its own publishes on channels it subscribes to; the bridge drops them by origin.
//! - `subscribe` and `unsubscribe` take effect in call order; subscribing twice is harmless.
//! - The hash and key operations are plain storage, lost when the server restarts (the bridge
//!   rewrites its entries after every reconnect, and its alive mark every heartbeat).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

/// What a bus tells the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum BusEvent {
    Message {
        channel: String,
        payload: Bytes,
    },
    /// The transport is (again) up. After a reconnect, subscriptions must be renewed and anything
    /// published meanwhile may be lost.
    Connected,
    /// The transport went down; publishes are dropped until `Connected`.
    Disconnected,
    /// This node fell behind reading and some payloads were dropped.
    Lagged,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

/// How long one bus command may take before it counts as failed (the bridge carries on; a reconnect
/// repairs what the command was for).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// "redis", "redis-cluster" or "loopback".
    fn backend(&self) -> &'static str;

    /// The event stream. Only the first call gets it.
    fn take_events(&self) -> Option<mpsc::Receiver<BusEvent>>;

    /// Whether publishes and subscriptions currently work.
    fn connected(&self) -> bool;

    async fn subscribe(&self, channels: Vec<String>) -> Result<(), BusError>;

    async fn unsubscribe(&self, channels: Vec<String>) -> Result<(), BusError>;

    /// Queues a payload; never blocks and never waits for a round trip (see the module guarantees).
    fn publish(&self, channel: String, payload: Bytes);

    /// Publishes one payload and waits until the server took it (heartbeats, goodbyes: rare, and
    /// they must not sit behind a queue).
    async fn publish_now(&self, channel: String, payload: Bytes) -> Result<(), BusError>;

    async fn hset(&self, key: &str, field: String, value: String) -> Result<(), BusError>;

    async fn hdel(&self, key: &str, fields: Vec<String>) -> Result<(), BusError>;

    async fn hgetall(&self, key: &str) -> Result<Vec<(String, String)>, BusError>;

    /// Sets `key` for `ttl` (a node's "alive" mark, refreshed every heartbeat).
    async fn set_expiring(&self, key: &str, ttl: Duration) -> Result<(), BusError>;

    /// Which of `keys` exist (unexpired), in order.
    async fn exist(&self, keys: Vec<String>) -> Result<Vec<bool>, BusError>;

    /// Up to `limit` keys (hashes or plain) that start with `prefix`, in no order. A scan of the
    /// key space: for operators' questions, never on a hot path.
    async fn keys(&self, prefix: &str, limit: usize) -> Result<Vec<String>, BusError>;

    /// Closes connections and ends the event stream.
    async fn close(&self);
}

/// Capacity of the event stream between a bus and its bridge. A bridge that falls this far behind
/// gets [`BusEvent::Lagged`] and repairs from the store.
pub const EVENT_CAPACITY: usize = 65_536;
