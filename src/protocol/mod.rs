//! The wire vocabulary of PROTOCOL.md §3–4 and §7: client frames in, server frames out, error codes and
//! close codes. Internal error text never goes on the wire; only these codes and fixed messages do.

pub mod client;
pub mod codes;
pub mod schema;
pub mod server;

pub use crate::domain::PresenceUser;
pub use client::{ClientFrame, FrameError, Request, decode};
pub use codes::{CloseCode, ErrorCode};
pub use server::ServerFrame;

/// Version announced in `hello`.
pub const PROTOCOL_VERSION: u32 = 2;
