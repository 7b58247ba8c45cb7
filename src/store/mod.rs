//! The Store seam: durable, ordered room logs. [`seam`] defines it (the trait, its guarantees,
//! its errors); Postgres is the truth in production ([`postgres`]), and the in-memory backend
//! ([`memory`]) is the standalone default and makes unit tests fast. Both pass one conformance
//! suite (`tests/it/store_conformance.rs`). [`metered`] wraps either with metrics, [`migrate`]
//! applies the schema.

pub mod memory;
pub mod metered;
pub mod migrate;
pub mod postgres;
pub mod seam;
pub mod search;

pub use crate::domain::{
    Change, Kind, Message, NewMessage, ReactOp, Reaction, Refusal, format_ts, now_ts,
};
pub use memory::MemoryStore;
pub use metered::Metered;
pub use postgres::PostgresStore;
pub use seam::{
    AppendOutcome, Appended, MyRoom, ReadState, RoomHead, RoomsCursor, Store, StoreError,
    check_range,
};
pub use search::{Hit, RoomScope, SearchCursor, SearchQuery};
