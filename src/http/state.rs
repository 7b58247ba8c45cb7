//! What every request handler of a node shares ([`Shared`]): built by the node, handed to actix-web
//! as app data. Sessions get their own, smaller [`SessionDeps`] from it.

use std::sync::Arc;
use std::time::Duration;

use governor::DefaultKeyedRateLimiter;

use crate::auth::Auth;
use crate::bridge::Cluster;
use crate::config::Settings;
use crate::edge::admission::Admission;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::room::Registry;
use crate::session::SessionDeps;
use crate::store::Store;

/// State every request handler of a node shares.
pub struct Shared {
    pub settings: Settings,
    pub node_id: String,
    pub store: Arc<dyn Store>,
    /// The bridge to the other nodes (`None` on a single node).
    pub cluster: Option<Cluster>,
    pub rooms: Registry,
    pub metrics: Metrics,
    pub auth: Auth,
    pub allowed_origins: Vec<String>,
    /// Standalone without a configured secret: `POST /api/demo/login` hands out tokens.
    pub demo_login: bool,
    /// SIGTERM's drain, as the HTTP streams follow it.
    pub drain: Arc<super::drain::Drain>,
    /// What the WebSocket sessions started here share (and the list of them).
    pub session: Arc<SessionDeps>,
    /// REST sends: the same token bucket as a WebSocket connection, per user on this node.
    pub rest_limiter: DefaultKeyedRateLimiter<crate::ids::UserId>,
    /// Per-user and per-IP socket limits.
    pub admission: Admission,
    /// What `/readyz` reports of the store (checked in the background).
    pub health: Arc<Health>,
    /// The webhook dispatcher and outbox (`None` without Postgres).
    pub webhooks: Option<crate::webhook::Webhooks>,
}

impl Shared {
    pub fn draining(&self) -> bool {
        self.drain.is_draining()
    }

    /// From now on `/readyz` answers 503, new sockets and streams are refused, and SSE streams
    /// and waiting long-polls end within `window`.
    pub fn start_draining(&self, window: Duration) {
        self.drain.start(window);
    }
}
