//! The one integration-test crate (compiled once): real nodes on port 0 against real Postgres,
//! real WebSocket and HTTP clients. See `support` for the harness.

mod backfill;
mod bad_input;
mod cli;
mod demo;
mod drain;
mod rest;
mod rooms;
mod slow_consumer;
mod store_conformance;
mod support;
mod transports;
mod ws_protocol;
