//! Test harness: real Postgres (a fresh database per test, cloned from a migrated template of this
//! run; the run drops its own databases when it exits and never touches another run's), real
//! nodes on port 0, real WebSocket and HTTP clients, a TCP fault proxy, and helpers that wait on
//! events with deadlines instead of sleeping. One file per concern: [`db`] (databases of this run),
//! [`node`] (in-process nodes, tokens, HTTP helpers), [`ws`] (the WebSocket client), [`fault`]
//! (the TCP fault proxy), [`cluster`] (several nodes: on a loopback bus in-process, or on Redis).
//!
//! Postgres must be reachable at `TEST_DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/test);
//! when it is not, tests fail with a message that says how to start it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chorus::auth::Auth;
use chorus::config::Settings;
use chorus::node::Node;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, OnceCell};
use tokio_postgres::NoTls;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Message as WsMessage, client::IntoClientRequest};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod cluster;
mod db;
mod fault;
mod node;
mod ws;

pub use cluster::*;
pub use db::*;
pub use fault::*;
pub use node::*;
pub use ws::*;

pub const SECRET: &str = "integration-test-secret-0123456789";
/// Every wait in the tests is bounded by this.
pub const DEADLINE: Duration = Duration::from_secs(10);
