//! Webhooks (PROTOCOL §8): every node runs a dispatcher that sends the outbox's events to the
//! application's HTTP endpoints.
//!
//! ```text
//! room commit ─▶ store: chorus_log_append writes the entry AND its outbox rows (one commit)
//!                  └─ wake ─▶ Dispatcher (this node; other nodes find the work by polling)
//! Dispatcher, per endpoint: circuit capacity ─▶ Outbox::claim (lease (endpoint, room) queues)
//!     └─▶ one worker task per leased queue: events in seq order ─▶ send::post (signed) ─▶ settle
//!          2xx: delivered (row deleted) · failure: retry later with backoff, or after
//!          max_attempts the dead letters, and the queue goes on with its next event
//! ```
//!
//! Guarantees: at least once (a row leaves the outbox only after a 2xx or into the dead letters);
//! per (endpoint, room) in seq order (one worker per queue, sending one event at a time); posting
//! never waits for any of this (the append only writes rows). Bounded: at most
//! `webhook.concurrency` requests in flight per endpoint per node, so a slow endpoint holds at
//! most that many connections; an open circuit sends nothing but its probe.
//!
//! Lifecycle: [`Webhooks::start`] spawns the loop; [`Webhooks::stop`] (node shutdown) stops
//! claiming, and each worker gives its queue back after the request in flight.

pub mod circuit;
pub mod send;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::hmac;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Webhook, WebhookDispatch};
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::postgres::outbox::{EndpointStats, Lease, Outbox, Outcome};
use circuit::{Admit, Circuit};

/// Events a worker sends from one queue before it gives the queue back (rooms share the slots:
/// with more busy rooms than `webhook.concurrency`, each waits at most its turn).
const FAIR_SHARE: usize = 64;
/// Events a worker reads from its queue at a time.
const READ_AHEAD: usize = 32;
/// How often the backlog and dead-letter gauges are read from Postgres.
const GAUGE_EVERY: Duration = Duration::from_secs(5);
/// How often, in gauge readings, a node deletes queues idle for [`QUEUE_IDLE`] (every 10 min).
const PRUNE_EVERY: u32 = 120;
const QUEUE_IDLE: Duration = Duration::from_secs(24 * 3600);

/// One configured endpoint and this node's state for it.
struct Endpoint {
    config: Webhook,
    key: hmac::Key,
    circuit: Mutex<Circuit>,
    in_flight: AtomicUsize,
}

impl Endpoint {
    fn circuit(&self) -> std::sync::MutexGuard<'_, Circuit> {
        self.circuit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long a lease lasts: from one settle to the next, a worker makes a request and at
    /// most two database calls, each bounded by its own timeout.
    fn lease(&self, outbox: &Outbox) -> Duration {
        self.config.timeout + outbox.op_timeout() * 2
    }
}

struct Inner {
    endpoints: Vec<Arc<Endpoint>>,
    outbox: Outbox,
    sender: send::Sender,
    wake: Arc<Notify>,
    metrics: Metrics,
    settings: WebhookDispatch,
    stop: CancellationToken,
    /// Whether the last claim worked (errors are logged when this changes, not every poll).
    claiming: AtomicBool,
}

/// The node's webhook dispatcher and what the admin API asks of it; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

/// An endpoint as `GET /api/admin/webhooks` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EndpointStatus {
    pub name: String,
    /// Empty for an endpoint that is no longer configured but still has rows.
    pub url: String,
    pub configured: bool,
    pub events: Vec<String>,
    pub rooms: Vec<String>,
    /// This node's breaker: `closed`, `open` or `half_open`.
    pub circuit: &'static str,
    /// Requests in flight from this node.
    pub in_flight: usize,
    #[serde(flatten)]
    pub stats: EndpointStats,
}

impl Webhooks {
    /// Builds the dispatcher for `webhooks` and, when there are any, spawns its loop (on the
    /// current Tokio runtime).
    pub fn start(
        webhooks: &[Webhook],
        settings: &WebhookDispatch,
        outbox: Outbox,
        wake: Arc<Notify>,
        metrics: Metrics,
    ) -> Result<Webhooks, String> {
        let cooldown = settings.circuit_cooldown;
        let endpoints = webhooks
            .iter()
            .map(|w| {
                Arc::new(Endpoint {
                    config: w.clone(),
                    key: hmac::Key::new(hmac::HMAC_SHA256, w.secret.as_bytes()),
                    circuit: Mutex::new(Circuit::new(settings.circuit_failures, cooldown)),
                    in_flight: AtomicUsize::new(0),
                })
            })
            .collect();
        let inner = Arc::new(Inner {
            endpoints,
            outbox,
            sender: send::Sender::new(settings.concurrency)?,
            wake,
            metrics,
            settings: settings.clone(),
            stop: CancellationToken::new(),
            claiming: AtomicBool::new(true),
        });
        if !inner.endpoints.is_empty() {
            tokio::spawn(run(inner.clone()));
        }
        Ok(Webhooks { inner })
    }

    /// Stops claiming; workers give their queues back after their request in flight.
    pub fn stop(&self) {
        self.inner.stop.cancel();
    }

    pub fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }

    /// Every configured endpoint, and every endpoint name the outbox still has rows for.
    pub async fn status(&self) -> Result<Vec<EndpointStatus>, StoreError> {
        let mut stats = self.inner.outbox.stats().await?;
        let mut out: Vec<EndpointStatus> = self
            .inner
            .endpoints
            .iter()
            .map(|ep| {
                let id = ep.config.id();
                let found = stats.iter().position(|(name, _)| name == id);
                EndpointStatus {
                    name: id.to_owned(),
                    url: ep.config.url.clone(),
                    configured: true,
                    events: ep.config.events.clone(),
                    rooms: ep.config.rooms.clone(),
                    circuit: ep.circuit().state(),
                    in_flight: ep.in_flight.load(Ordering::Relaxed),
                    stats: found.map(|i| stats.remove(i).1).unwrap_or_default(),
                }
            })
            .collect();
        out.extend(stats.into_iter().map(|(name, stats)| EndpointStatus {
            name,
            url: String::new(),
            configured: false,
            events: Vec::new(),
            rooms: Vec::new(),
            circuit: "closed",
            in_flight: 0,
            stats,
        }));
        Ok(out)
    }
}

/// The claiming loop: fill every endpoint's free slots, then wait for a commit on this node, a
/// worker finishing, the poll interval (work from other nodes, retries coming due) or the stop.
async fn run(inner: Arc<Inner>) {
    let poll = inner.settings.poll;
    let mut gauges = tokio::time::interval(GAUGE_EVERY);
    let mut readings = 0u32;
    loop {
        for ep in &inner.endpoints {
            fill(&inner, ep).await;
        }
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = gauges.tick() => {
                refresh_gauges(&inner).await;
                readings = readings.wrapping_add(1);
                if readings.is_multiple_of(PRUNE_EVERY) {
                    let _ = inner.outbox.prune(QUEUE_IDLE).await;
                }
            }
        }
    }
}

async fn fill(inner: &Arc<Inner>, ep: &Arc<Endpoint>) {
    let free = inner
        .settings
        .concurrency
        .saturating_sub(ep.in_flight.load(Ordering::Acquire));
    let slots = ep.circuit().capacity(Instant::now(), free);
    if slots == 0 {
        return;
    }
    match inner
        .outbox
        .claim(ep.config.id(), slots, ep.lease(&inner.outbox))
        .await
    {
        Ok(leases) => {
            if !inner.claiming.swap(true, Ordering::Relaxed) {
                tracing::info!(endpoint = ep.config.id(), "webhook outbox reachable again");
            }
            for lease in leases {
                if lease.taken_over {
                    tracing::info!(endpoint = ep.config.id(), room = %lease.room,
                        "webhook queue taken over: its lease expired unreleased (the node holding it stopped or stalled); resending from its head");
                }
                ep.in_flight.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(work(inner.clone(), ep.clone(), lease));
            }
        }
        Err(e) => {
            if inner.claiming.swap(false, Ordering::Relaxed) {
                tracing::warn!(error = %e, "webhook outbox: cannot claim work (retrying)");
            }
        }
    }
}

async fn refresh_gauges(inner: &Inner) {
    if let Ok(stats) = inner.outbox.stats().await {
        let backlog = stats.iter().map(|(_, s)| s.backlog).sum();
        let dead = stats.iter().map(|(_, s)| s.dead).sum();
        inner.metrics.webhook_backlog.set(backlog);
        inner.metrics.webhook_dead.set(dead);
    }
}

/// One leased queue's worker.
async fn work(inner: Arc<Inner>, ep: Arc<Endpoint>, lease: Lease) {
    if let Err(e) = drive(&inner, &ep, &lease).await {
        // The lease expires by itself; another claim (any node) resends from the head.
        tracing::warn!(endpoint = ep.config.id(), room = %lease.room, error = %e,
            "webhook worker stopped");
    }
    ep.in_flight.fetch_sub(1, Ordering::AcqRel);
    inner.wake.notify_one();
}

async fn drive(inner: &Inner, ep: &Endpoint, lease: &Lease) -> Result<(), StoreError> {
    let mut attempts = lease.attempts;
    let mut sent = 0;
    // Delivered but not yet settled: settled in one statement per read-ahead (or sooner, to renew
    // the lease). A node that dies first resends them: at least once, same ids.
    let mut delivered = Unsettled::new(ep.lease(&inner.outbox));
    loop {
        let events = inner.outbox.events(lease, READ_AHEAD).await?;
        if events.is_empty() {
            delivered.settle(inner, lease).await?;
            inner.outbox.release(lease).await?;
            return Ok(());
        }
        for event in events {
            if inner.stop.is_cancelled() || sent >= FAIR_SHARE {
                return give_back(inner, lease, &mut delivered).await;
            }
            let Some(entry) = event.entry else {
                if !delivered.settle(inner, lease).await? {
                    return Ok(());
                }
                let error = "the entry is not in the log";
                let renew = ep.lease(&inner.outbox);
                let left = inner
                    .outbox
                    .settle(lease, &[event.seq], Outcome::Dead, attempts, error, renew)
                    .await?;
                inner
                    .metrics
                    .webhook_deliveries
                    .with_label_values(&["dead"])
                    .inc();
                if left.is_none() {
                    return Ok(());
                }
                attempts = 0;
                continue;
            };
            if ep.circuit().admit(Instant::now()) == Admit::No {
                return give_back(inner, lease, &mut delivered).await;
            }
            let body = send::body(&entry);
            let signature = send::signature(&ep.key, crate::auth::now_secs(), &body);
            let started = Instant::now();
            let timeout = ep.config.timeout;
            let result = inner
                .sender
                .post(&ep.config.url, timeout, &entry.id, signature, body)
                .await;
            inner
                .metrics
                .webhook_seconds
                .observe(started.elapsed().as_secs_f64());
            let change = ep.circuit().record(result.is_ok(), Instant::now());
            match change {
                Some(circuit::Change::Opened) => tracing::warn!(
                    endpoint = ep.config.id(),
                    failures = inner.settings.circuit_failures,
                    cooldown_ms = inner.settings.circuit_cooldown.as_millis() as u64,
                    "webhook circuit opened: the endpoint keeps failing; only a probe goes until it answers"
                ),
                Some(circuit::Change::Closed) => {
                    tracing::info!(
                        endpoint = ep.config.id(),
                        "webhook circuit closed: the endpoint answers again"
                    )
                }
                None => {}
            }
            publish_circuits(inner);
            let error = match result {
                Ok(()) => {
                    inner
                        .metrics
                        .webhook_deliveries
                        .with_label_values(&["ok"])
                        .inc();
                    delivered.push(event.seq);
                    attempts = 0;
                    sent += 1;
                    if delivered.due() && !delivered.settle(inner, lease).await? {
                        return Ok(());
                    }
                    continue;
                }
                Err(error) => error,
            };
            // Once per failed request, never with the body (the endpoint's answer is in `error`).
            tracing::warn!(endpoint = ep.config.id(), room = %lease.room, seq = %event.seq, attempt = attempts + 1, error,
                "webhook request failed");
            // A failure: first settle what went before it, so the queue's head is this event.
            if !delivered.settle(inner, lease).await? {
                return Ok(());
            }
            attempts += 1;
            let outcome = if attempts as u32 >= ep.config.max_attempts {
                Outcome::Dead
            } else {
                let d = &inner.settings;
                Outcome::Retry(circuit::retry_delay(
                    attempts as u32,
                    d.retry_min,
                    d.retry_max,
                    rand::random::<f64>(),
                ))
            };
            let label = if outcome == Outcome::Dead {
                "dead"
            } else {
                "retry"
            };
            inner
                .metrics
                .webhook_deliveries
                .with_label_values(&[label])
                .inc();
            let renew = ep.lease(&inner.outbox);
            let left = inner
                .outbox
                .settle(lease, &[event.seq], outcome, attempts, &error, renew)
                .await?;
            if outcome != Outcome::Dead || left.is_none() {
                // Retry: the queue waits for its delay (`settle` released it). None: the lease
                // was lost (this node stalled past it); whoever holds it now carries on.
                return Ok(());
            }
            tracing::warn!(endpoint = ep.config.id(), room = %lease.room, seq = %event.seq,
                attempts, error, "webhook event dead-lettered");
            attempts = 0;
        }
        if !delivered.settle(inner, lease).await? {
            return Ok(());
        }
    }
}

/// Settles what was delivered and gives the queue back.
async fn give_back(
    inner: &Inner,
    lease: &Lease,
    delivered: &mut Unsettled,
) -> Result<(), StoreError> {
    if delivered.settle(inner, lease).await? {
        inner.outbox.release(lease).await?;
    }
    Ok(())
}

/// Events a worker delivered and has not yet recorded, and when it last renewed its lease.
struct Unsettled {
    seqs: Vec<crate::ids::Seq>,
    renewed: Instant,
    lease: Duration,
}

impl Unsettled {
    fn new(lease: Duration) -> Unsettled {
        Unsettled {
            seqs: Vec::new(),
            renewed: Instant::now(),
            lease,
        }
    }

    fn push(&mut self, seq: crate::ids::Seq) {
        self.seqs.push(seq);
    }

    /// Past a third of the lease: settle now, which renews it.
    fn due(&self) -> bool {
        self.renewed.elapsed() > self.lease / 3
    }

    /// Records the delivered events (renewing the lease). False when the lease was lost.
    async fn settle(&mut self, inner: &Inner, lease: &Lease) -> Result<bool, StoreError> {
        if self.seqs.is_empty() {
            return Ok(true);
        }
        let left = inner
            .outbox
            .settle(lease, &self.seqs, Outcome::Delivered, 0, "", self.lease)
            .await?;
        self.seqs.clear();
        self.renewed = Instant::now();
        Ok(left.is_some())
    }
}

fn publish_circuits(inner: &Inner) {
    let open = inner
        .endpoints
        .iter()
        .filter(|ep| !ep.circuit().is_closed())
        .count();
    inner.metrics.webhook_circuit_open.set(open as i64);
}
