//! HTTP surface (PROTOCOL.md §3–4): WebSocket upgrade, REST, SSE, long-poll, health, metrics and
//! the admin API. [`routes`] lists them all; [`ApiError`] is the JSON error shape; [`Shared`] is
//! what every handler shares.

pub mod admin;
pub mod admission;
pub mod asyncapi;
pub mod demo;
pub mod drain;
mod error;
pub mod health;
pub mod listener;
pub mod openapi;
pub mod rest;
pub mod room_log;
mod routes;
pub mod search;
mod state;
pub mod stream;
pub mod ws;

pub use error::{ApiError, authenticate};
pub use routes::routes;
pub use state::Shared;
