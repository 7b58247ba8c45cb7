//! The cluster bridge: relays room events between nodes over a [`Bus`] (Redis pub/sub in
//! production), tracks which nodes are alive, and keeps presence cluster-wide.
//!
//! ```text
//! Room ──Cluster::publish(RoomEnvelope)──▶ bus  PUBLISH <prefix>:room:<id>   (pipelined, at most once;
//!                                              Redis Cluster: SPUBLISH <prefix>:room:{<id>})
//! bus ──BusEvent──▶ Bridge actor ──drops origin == self──▶ Registry ──FromCluster──▶ Room
//!                   │  heartbeats on <prefix>:nodes every cluster.heartbeat_ms; dead after dead_after_ms
//!                   └─ on (re)connect or lag: renew subscriptions, then every room Resyncs:
//!                      repair from the store, re-read presence, re-announce its own, publish its head
//! ```
//!
//! Two halves: the [`Cluster`] handle is what rooms call (publish, subscribe, presence; cheap to clone,
//! no actor hop on the hot path), and the [`Bridge`] actor consumes the bus's events, beats, and
//! decides when nodes are dead.
//!
//! Guarantee (the seam's, written where it is defined): the bridge delivers another node's events
//! to this node's rooms **at most once** and drops its own; it never promises delivery. Every loss it
//! can cause is followed by a Resync (reconnect, lag, failed publish) or shows as a seq gap, and the
//! room fills it from the store, which is the truth. Nobody is disconnected for it.

mod actor;
pub mod bus;
mod cluster;
pub mod envelope;
pub mod liveness;
pub mod loopback;
pub mod redis;
mod seams;

pub use actor::Bridge;
pub use bus::{Bus, BusError, BusEvent};
pub use cluster::{ActiveRoom, Cluster};
pub use envelope::Names;
pub use loopback::{LoopbackBus, LoopbackHub};
pub use redis::RedisBus;
pub use seams::{Directory, FromCluster, Users};
