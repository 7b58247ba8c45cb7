//! Builds and runs one Chorus node: store, cluster bridge, room registry, webhook dispatcher,
//! metrics, auth and the HTTP server.
//! Nothing is global, so several nodes fit in one test process.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use governor::{Quota, RateLimiter};

use crate::auth::Auth;
use crate::bridge::{Bridge, Bus, Cluster, Names, RedisBus};
use crate::config::Settings;
use crate::edge::admission::Admission;
use crate::health::Health;
use crate::http::Shared;
use crate::metrics::Metrics;
use crate::room::{Registry, RoomDeps};
use crate::session::reads::ReadRelay;
use crate::session::{SessionDeps, Sessions};
use crate::store::postgres::{Outbox, Routes};
use crate::store::{self, MemoryStore, Metered, PostgresStore, Store};
use crate::tls::server::Certificate;
use crate::webhook::Webhooks;

/// Parts a caller may supply instead of building them from the settings.
#[derive(Default)]
pub struct Parts {
    pub store: Option<Arc<dyn Store>>,
    pub bus: Option<Arc<dyn Bus>>,
}

/// A running node.
pub struct Node {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    /// Standalone mode without a configured secret: a ready token for user "demo".
    pub demo_token: Option<String>,
    server: ServerHandle,
    arbiters: Vec<Arbiter>,
    /// The store check behind `/readyz`; aborted when the node stops.
    watch: tokio::task::JoinHandle<()>,
    /// The history partitions' upkeep (Postgres only); aborted when the node stops.
    history: Option<tokio::task::JoinHandle<()>>,
    /// In-process HTTPS/WSS: the certificate in use (`http.tls_cert`).
    tls: Option<Certificate>,
}

impl Node {
    /// Starts a node inside the current actix System. Applies migrations first when Postgres is used.
    pub async fn start(settings: Settings) -> anyhow::Result<Node> {
        Node::start_with(settings, Parts::default()).await
    }

    /// Starts a node on parts given by the caller where set (tests: a shared in-memory store and a
    /// loopback bus make a cluster in one process), else on the configured ones. The steps, in
    /// order: the store (migrated, or migrating in the background), the webhook dispatcher, the
    /// store's health watch, identity, the cluster bridge, rooms and sessions, the HTTP server.
    pub async fn start_with(settings: Settings, parts: Parts) -> anyhow::Result<Node> {
        let metrics = Metrics::new();
        settings
            .validate_secret()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let stored = Stored::open(&settings, parts.store, &metrics).await?;
        let webhooks = match stored.outbox {
            Some((outbox, wake)) => Some(
                Webhooks::start(
                    &settings.webhooks,
                    &settings.webhook,
                    outbox,
                    wake,
                    metrics.clone(),
                )
                .map_err(|e| anyhow::anyhow!(e))?,
            ),
            None => None,
        };
        let health = Arc::new(Health::default());
        let watch = health
            .clone()
            .watch(stored.store.clone(), stored.host)
            .await;
        let (auth, demo_token) = identity(&settings);
        let threads = match settings.http.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
        let cluster = cluster(&settings, parts.bus, &metrics)?;
        let registry = Registry::new(
            RoomDeps {
                store: stored.store.clone(),
                metrics: metrics.clone(),
                settings: settings.room.clone(),
                cluster: cluster.clone(),
            },
            arbiters.iter().map(|a| a.handle()).collect(),
        );
        let sessions = Sessions::new(metrics.clone());
        let reads = ReadRelay::new(
            crate::ids::NodeId::from(settings.node.id.as_str()),
            sessions.clone(),
            registry.clone(),
            cluster.clone(),
            settings.room.read_receipts,
        );
        if let Some(cluster) = &cluster {
            let (cluster, rooms, users) = (cluster.clone(), registry.clone(), reads.clone());
            let (beat, dead_after) = (settings.cluster.heartbeat, settings.cluster.dead_after);
            Bridge::start_in_arbiter(&arbiters[0].handle(), move |_| {
                Bridge::new(cluster, Arc::new(rooms), Arc::new(users), beat, dead_after)
            });
        }
        let limits = &settings.limits;
        let quota = Quota::per_second(limits.msgs_per_sec).allow_burst(limits.burst);
        let session = Arc::new(SessionDeps {
            settings: settings.clone(),
            node_id: settings.node.id.clone(),
            rooms: registry.clone(),
            store: stored.store.clone(),
            metrics: metrics.clone(),
            sessions,
            reads,
        });
        let shared = Arc::new(Shared {
            node_id: settings.node.id.clone(),
            allowed_origins: settings.auth.allowed_origins.clone(),
            demo_login: demo_token.is_some(),
            store: stored.store,
            cluster,
            rooms: registry,
            metrics,
            auth,
            drain: Default::default(),
            session,
            rest_limiter: RateLimiter::keyed(quota),
            health,
            webhooks,
            admission: Admission::new(
                limits.max_connections_per_user,
                limits.max_connections_per_ip,
                settings.http.trusted_proxies.clone(),
            ),
            settings,
        });
        let (addr, server, tls) = serve(&shared, threads)?;
        Ok(Node {
            addr,
            shared,
            demo_token,
            server,
            arbiters,
            watch,
            history: stored.history,
            tls,
        })
    }

    /// Re-reads `http.tls_cert`/`http.tls_key` (SIGHUP): new connections get the new certificate,
    /// open ones keep theirs. `None` when the node serves plain HTTP.
    pub fn reload_tls(&self) -> Option<Result<(), String>> {
        let tls = self.tls.as_ref()?;
        Some(tls.reload().map(|leaf| {
            self.shared.metrics.tls_certificate(leaf.not_after);
            leaf.log(
                "SIGHUP: TLS certificate reloaded",
                self.shared.settings.http.tls_warn_days,
            );
        }))
    }

    /// Graceful drain (PROTOCOL.md §6): readiness turns 503 and new sockets are refused at once, then
    /// every session is closed with 1012, spread evenly over `drain_ms`, and the node waits for
    /// them to end: a client that answers its close ends at once, one that does not is hung up
    /// after `conn::LINGER`. SSE streams and waiting long-polls end at random moments of the
    /// window (`http::drain`). The drain ends as soon as no session or stream is left.
    pub async fn drain(&self, drain: Duration) {
        let start = tokio::time::Instant::now();
        self.shared.start_draining(drain);
        let sessions = self.shared.session.sessions.all();
        tracing::info!(
            sessions = sessions.len(),
            drain_ms = drain.as_millis() as u64,
            "draining"
        );
        let gap = drain / (sessions.len().max(1) as u32);
        let last = sessions.len().saturating_sub(1);
        for (i, addr) in sessions.into_iter().enumerate() {
            addr.close(crate::protocol::CloseCode::Draining);
            if i < last {
                tokio::time::sleep(gap).await;
            }
        }
        let deadline = (tokio::time::Instant::now() + crate::edge::conn::LINGER).max(start + drain)
            + Duration::from_secs(1);
        let open = || !self.shared.session.sessions.is_empty() || self.shared.drain.streams() > 0;
        while open() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the HTTP server, leaves the cluster (a goodbye, so the others drop this node's
    /// presence at once) and stops the room threads.
    pub async fn stop(self) {
        self.watch.abort();
        if let Some(history) = &self.history {
            history.abort();
        }
        if let Some(webhooks) = &self.shared.webhooks {
            webhooks.stop();
        }
        self.server.stop(true).await;
        if let Some(cluster) = &self.shared.cluster {
            cluster.shutdown().await;
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

/// The store a node runs on, and what comes with it.
struct Stored {
    store: Arc<dyn Store>,
    /// What logs and `/readyz` name it by (`host:port`, or `memory`).
    host: String,
    /// The webhook outbox and the signal that an append wrote to it (Postgres only).
    outbox: Option<(Outbox, Arc<tokio::sync::Notify>)>,
    /// The history partitions' upkeep (Postgres only).
    history: Option<tokio::task::JoinHandle<()>>,
}

impl Stored {
    /// The given store, the in-memory one (no `database.url`), or Postgres: migrated now, or,
    /// when it is unreachable, in the background (PROTOCOL §6: start-up order never matters;
    /// the node is not ready until it is).
    async fn open(
        settings: &Settings,
        given: Option<Arc<dyn Store>>,
        metrics: &Metrics,
    ) -> anyhow::Result<Stored> {
        let memory = |store: Arc<dyn Store>| Stored {
            store,
            host: "memory".into(),
            outbox: None,
            history: None,
        };
        if let Some(store) = given {
            return Ok(memory(store));
        }
        if settings.database.url.is_empty() {
            return Ok(memory(Arc::new(Metered::new(
                MemoryStore::new(),
                metrics.clone(),
            ))));
        }
        let url = settings.database.url.clone();
        let wake = Arc::new(tokio::sync::Notify::new());
        let pg = PostgresStore::new(&settings.database)
            .context("building Postgres pools")?
            .with_webhooks(Routes::new(&settings.webhooks), wake.clone());
        let timeout = settings.database.timeout;
        if !matches!(
            tokio::time::timeout(timeout, store::migrate::run(&url)).await,
            Ok(Ok(_))
        ) {
            let gate = pg.schema_gate();
            gate.store(false, Ordering::Release);
            actix_web::rt::spawn(store::migrate::until_applied(url.clone(), gate, timeout));
        }
        Ok(Stored {
            host: store::postgres::hosts_of(&url),
            outbox: Some((pg.outbox(), wake)),
            history: Some(actix_web::rt::spawn(
                pg.keep_history(settings.room.retention_days),
            )),
            store: Arc::new(Metered::new(pg, metrics.clone())),
        })
    }
}

/// The token verifier, and in standalone mode without a secret a random one and a ready demo
/// token for user "demo".
fn identity(settings: &Settings) -> (Auth, Option<String>) {
    if !settings.auth.jwt_secret.is_empty() {
        let auth = Auth::new(settings.auth.jwt_secret.as_bytes(), &settings.auth);
        return (auth, None);
    }
    let secret = format!("{}{}", crate::ids::random_id(), crate::ids::random_id());
    let auth = Auth::new(secret.as_bytes(), &settings.auth);
    let day = Duration::from_secs(24 * 3600);
    let token = auth.issue("demo", Some("Demo"), day, None, None);
    (auth, Some(token))
}

/// The bridge to the other nodes: the given bus, Redis (a cluster of it, or one server), or
/// none for a single node.
fn cluster(
    settings: &Settings,
    given: Option<Arc<dyn Bus>>,
    metrics: &Metrics,
) -> anyhow::Result<Option<Cluster>> {
    let redis = &settings.redis;
    let names = if redis.clustered() {
        Names::sharded(&redis.prefix)
    } else {
        Names::new(&redis.prefix)
    };
    let bus: Arc<dyn Bus> = match given {
        Some(bus) => bus,
        None if redis.clustered() => Arc::new(
            RedisBus::connect_cluster(&redis.urls(), &redis.ca_file, names.sharded_prefixes())
                .context("connecting to the Redis Cluster in redis.url")?,
        ),
        None if !redis.url.is_empty() => Arc::new(
            RedisBus::connect(&redis.url, &redis.ca_file).context("connecting to redis.url")?,
        ),
        None => return Ok(None),
    };
    let dead_after = settings.cluster.dead_after;
    Ok(Some(Cluster::new(
        &settings.node.id,
        names,
        bus,
        metrics.clone(),
        dead_after,
    )))
}

/// Binds `http.bind` and runs the HTTP server (HTTPS with `http.tls_cert`): the address it got,
/// its handle and the certificate in use.
fn serve(
    shared: &Arc<Shared>,
    threads: usize,
) -> anyhow::Result<(SocketAddr, ServerHandle, Option<Certificate>)> {
    let http = &shared.settings.http;
    let tls = match http.tls_cert.is_empty() {
        true => None,
        false => Some(
            Certificate::open(&http.tls_cert, &http.tls_key)
                .map_err(|e| anyhow::anyhow!("http.tls_cert: {e}"))?,
        ),
    };
    if let Some(cert) = &tls {
        let leaf = cert.leaf();
        shared.metrics.tls_certificate(leaf.not_after);
        leaf.log("serving TLS", http.tls_warn_days);
    }
    let listener =
        TcpListener::bind(http.bind).with_context(|| format!("binding http.bind {}", http.bind))?;
    let addr = listener.local_addr()?;
    let data = web::Data::from(shared.clone());
    let origins = shared.allowed_origins.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .configure(|cfg| crate::http::routes(cfg, &origins))
    })
    .workers(threads)
    .client_request_timeout(http.handshake_timeout)
    .client_disconnect_timeout(crate::edge::conn::LINGER)
    // Frames are small and must leave at once: with Nagle on, a frame written while the
    // previous one is unacknowledged waits for the peer's delayed ACK (40 ms on Linux).
    .tcp_nodelay(true)
    .on_connect(crate::edge::conn::on_connect(
        shared.settings.session.write_timeout,
    ))
    .disable_signals()
    .shutdown_timeout(5);
    let server = match &tls {
        Some(cert) => server.listen_rustls_0_23(
            listener,
            cert.server_config().map_err(|e| anyhow::anyhow!(e))?,
        )?,
        None => server.listen(listener)?,
    }
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    // JSON lines carry `node` already (telemetry.rs); the text line names it in the message.
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(addr = %addr, store = shared.store.backend(), scheme,
        "listening addr={addr} node={}", shared.node_id);
    Ok((addr, handle, tls))
}
