//! The node's edge, below both the HTTP routes and the sessions they start: what each client
//! connection holds while it lives. [`admission`]: the per-user and per-IP socket slots;
//! [`conn`]: the TCP socket under a request (TCP_USER_TIMEOUT, ending a WebSocket's connection).

pub mod admission;
pub mod conn;
