//! Rooms: one actor per active room per node, which owns the room's local members, commits posts
//! in groups and fans out every committed entry in strict `seq` order.
//!
//! Where to look:
//! - [`core`]: **every decision a room makes**, as a pure state machine (inputs in, effects out,
//!   no actor, no I/O, no clock). Its tests (`core/tests/`) are the room's behaviour, sentence by
//!   sentence. Its parts: [`sequencer`] (ordering, gaps, rewinds), [`presence`] (who is here,
//!   across nodes), [`batcher`] (group commit, for appends and read cursors).
//! - [`actor`]: the Room actor, which feeds the core and carries out its effects (sessions, bus,
//!   timers, metrics; the store reads and appends are futures from `io.rs`).
//! - [`registry`]: starts a room on first use and finds it again; the bridge's way in.
//! - [`messages`]: what sessions and HTTP handlers send a room; [`delivery`]: what a room sends
//!   back (frames encoded once, with what they carry).
//!
//! ```text
//! Join/Post/Leave/MarkRead ─▶ actor ─Input─▶ core ─Effect─▶ actor ─┬▶ store (append, reads) ─Done─▶ core
//! bridge: FromCluster ───────▶ actor                                ├▶ Outbox of each member ─▶ session
//!                                                                   └▶ bus (publish, presence), timers
//! ```

pub mod actor;
pub mod batcher;
pub mod core;
pub mod delivery;
mod io;
pub mod messages;
pub mod presence;
pub mod registry;
mod running;
pub mod sequencer;

pub use actor::{Room, RoomDeps};
pub use delivery::{Carries, Delivery, DropReason, JoinPoint, JoinReply, ToSession};
pub use messages::{
    GetPresence, Join, Leave, MarkRead, Outbox, Post, PostReply, ReadReceipt, Typing, Undeliverable,
};
pub use registry::Registry;
