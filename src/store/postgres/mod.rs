//! The Postgres store: the source of truth and of order. One file per concern:
//! - [`log`]: appends (one statement per batch, the batch as one JSON document), heads, epochs;
//! - [`reads`]: entries after a cursor, folded history pages, reactions;
//! - [`cursors`]: read cursors, unread counts, a user's rooms;
//! - [`outbox`] and [`routes`]: the webhook outbox's queries, and which endpoints want what;
//! - [`partitions`]: history partitions and retention;
//! - [`store`]: the pools and the [`Store`](super::Store) implementation over all of them;
//! - [`rows`], [`errors`], [`connect`]: decoding rows, naming failures, one-off connections.
//!
//! The SQL functions these call are defined in `migrations/functions.sql` (see `migrate.rs`).

pub mod connect;
mod cursors;
pub mod errors;
mod log;
pub mod outbox;
mod partitions;
mod reads;
pub mod routes;
mod rows;
mod store;

pub use errors::{describe, hosts_of};
pub use outbox::Outbox;
pub use routes::Routes;
pub use store::PostgresStore;
