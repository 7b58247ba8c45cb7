//! Reliability under faults (PROTOCOL §2, §4, §6 v2): start-up in any order, one bad message fails
//! nobody else, a failed join leaves nothing behind, a resume is judged against the committed
//! head, a history that went backwards gets a new epoch, every long-lived connection counts
//! against the limits, the connection ends as soon as the closing handshake does, and nothing
//! secret reaches a log. Each test reproduces one fault an operator meets, against real Postgres,
//! a real redis-server and real nodes.

mod connections;
mod data;
mod failover;
mod rooms;
mod startup;

/// Settings for a cluster node that does not wait for Redis.
pub fn cluster_keys<'a>(url: &'a str, prefix: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("redis.url", url),
        ("redis.prefix", prefix),
        ("cluster.heartbeat_ms", "200"),
        ("cluster.dead_after_ms", "1200"),
    ]
}
