//! # Chorus: an actor-based realtime messaging node
//!
//! Clients talk to any node over WebSocket (or REST); every message is committed to the store with a
//! per-room `seq` before anyone is told about it, and fanned out in `seq` order. The wire contract is
//! `PROTOCOL.md` (shipped in the repo's shared docs); this page is the map of the code.
//!
//! ```text
//! client ─text─▶ session/  decode ClientFrame, check limits and rights
//!                   │ Post { entry, reply }
//!                   ▼
//!                room/actor.rs  the Room actor: Input ─▶ room/core/ (decides) ─▶ Effects
//!                   ├─▶ store/  append → seq        (one statement per batch: group commit)
//!                   ├─▶ members: ToSession::Live(shared bytes) ─▶ session/ ─▶ socket
//!                   └─▶ bridge/ RoomEnvelope { origin, room, seq, event } ─▶ Redis PUBLISH <prefix>:room:<id>
//!    other node: bridge/ (drops origin == self) ─▶ room registry ─▶ Room (orders by seq, repairs gaps
//!                from store/) ─▶ members
//! ```
//!
//! **Where a room decides things: `room/core/`.** Every rule a room follows (ordering, gap
//! repair, group commit, acks before delivery, a batch failing for one entry, an epoch reset,
//! joins with backfill, presence, slow members, idling out) is a pure state machine there:
//! `RoomCore::step(now, input) → effects`, with no actor, I/O or clock. Its tests
//! (`room/core/tests/`, one file per part of the protocol, and a property test over any
//! interleaving) are the room's behaviour. The actor (`room/actor.rs`) only carries out effects.
//!
//! ## Glossary
//! - **Session**: one WebSocket connection (an actor). **Room**: one chat room's actor on one node.
//! - **Room core**: the room's decisions as a state machine; **Input**, **Effect**: what goes in and
//!   out of it; **Block**: a read the room waits for before anything else (inputs are kept).
//! - **seq**: an entry's position in its room's log, from 1, gap-free, assigned in the commit.
//! - **epoch**: a room history's identity ([`ids::Epoch`]); a `since` from another epoch cannot be trusted.
//! - **backfill**: the entries after a join's `since`, read from the store before going live.
//! - **Batcher**: group commit for anything a room writes (appends, read cursors).
//! - **Store**: the durable history seam (Postgres, or in-memory for standalone mode and tests).
//! - **Bus**: the pub/sub seam between nodes (Redis, or an in-process loopback); **Bridge**: the
//!   per-node actor on it; **Cluster**: the handle rooms publish and subscribe through.
//! - **Resync**: what a room does after the bus came back: repair from the store, re-read and
//!   re-announce presence, publish its head.
//!
//! ## Modules
//! - [`ids`]: validated identifiers and the one random-id source; [`domain`]: log entries and
//!   presence entries every layer shares.
//! - [`config`]: settings parsed once into types (`settings.rs`), the layered loader, the rules
//!   between keys; [`auth`]: JWT identity.
//! - [`protocol`]: client and server frames, error and close codes.
//! - [`edge`]: what each client connection holds (admission slot, socket).
//! - [`http`]: routes (WebSocket upgrade, REST, SSE, long-poll, health, metrics, admin).
//! - [`session`]: the Session actor; [`room`]: the room core, its actor and registry;
//!   [`store`]: the Store seam (`store/seam.rs`), Postgres (`store/postgres/`, one file per
//!   concern: log appends, reads, cursors, outbox, partitions) and memory.
//! - [`bridge`]: the cluster bridge (envelopes, heartbeats, presence) over the Bus seam.
//! - [`webhook`]: the dispatcher that sends the outbox (written by the append) to the
//!   application's endpoints, with retries, circuit breakers and dead letters.
//! - [`node`]: builds and runs one node; [`health`]: dependency readiness for `/readyz`;
//!   [`metrics`]: per-node Prometheus registry; [`telemetry`]: logging; [`tls`]: TLS settings
//!   (the Postgres and Redis clients, the node's own certificate).
//!
//! ## Layers
//! A module uses only modules on the lines above its own, and no two files use each other's items
//! (a `mod.rs` is an index: it declares and re-exports, its children define). Each seam can be
//! read without what sits on top of it. `src/layering.rs` checks both on every `cargo test`,
//! over every `use` form and every path in code (it parses the crate with `syn`).
//!
//! 0. `ids`: identifiers
//! 1. `domain`: messages, presence entries, timestamps
//! 2. `protocol`, `tls`, `edge`: the wire format; TLS settings; per-connection slots and sockets
//! 3. `config`, `metrics`: settings (checked with line 2's parsers); the Prometheus registry
//! 4. `auth`, `telemetry`, `store`, `bridge`: identity; logging; the two seams, Store and Bus
//!    (the bridge reaches rooms through its own `Directory` trait, which the registry implements)
//! 5. `room`, `health`, `webhook`: rooms and their registry; readiness; the webhook dispatcher
//! 6. `session`: the WebSocket actor (its own `SessionDeps`)
//! 7. `http`: routes and the state handlers share
//! 8. `node`: builds and runs it all

//! ## Guarantees
//! For every joined room a client receives messages in strictly increasing `seq` order, without gaps
//! or duplicates, from its join point (or `since`) for as long as the connection lives, whichever
//! node a message was posted on: Redis is only the fast path, the store fills every gap. An `ack` is
//! sent only after the commit. A dependency failure is an `unavailable` error, never a silent loss.

/// The release (Cargo's package version), as `chorus --version` and `chorus_build_info` say.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit it was built from (`build.rs`: git, else `CHORUS_COMMIT`, else `unknown`).
pub const COMMIT: &str = env!("CHORUS_COMMIT");

pub mod auth;
pub mod bridge;
pub mod config;
pub mod domain;
pub mod edge;
pub mod health;
pub mod http;
pub mod ids;
#[cfg(test)]
mod layering;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod room;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod webhook;
