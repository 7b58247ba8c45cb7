//! The one integration-test crate (compiled once): real nodes on port 0 against real Postgres,
//! a private redis-server per cluster test, real WebSocket and HTTP clients. See `support` and
//! `processes` for the harness.

mod admission;
mod backfill;
mod bad_input;
mod bus_conformance;
mod chaos;
mod cli;
mod cluster;
mod demo;
mod drain;
mod echo;
mod faults;
mod history;
mod processes;
mod rest;
mod room_log;
mod rooms;
mod search;
mod slow_consumer;
mod store_conformance;
mod support;
mod tls;
mod transports;
mod upgrade;
mod webhooks;
mod ws_protocol;
