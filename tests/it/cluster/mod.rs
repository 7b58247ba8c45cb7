//! The cluster: several real nodes on one Postgres, on a private `redis-server`, a private Redis
//! Cluster (`sharded`) or (`loopback`) on the in-process bus, with real WebSocket clients. The harness is `support::cluster`.

mod loopback;
mod ordering;
mod outages;
mod presence;
mod sharded;
