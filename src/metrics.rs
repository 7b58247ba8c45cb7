//! Per-node Prometheus registry with the names of PROTOCOL.md §5 (several nodes fit in one test
//! process because nothing is global). No user, room or session ids are ever label values.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Cheap to clone: every field is a handle to a shared metric.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    /// `chorus_tls_cert_expiry_seconds`, registered once the node serves TLS (absent otherwise,
    /// so an alarm on it never fires on a plain-HTTP node), and the served certificate's
    /// `notAfter` (Unix seconds) it is computed from at every scrape.
    tls_expiry: Arc<std::sync::OnceLock<IntGauge>>,
    tls_not_after: Arc<std::sync::atomic::AtomicI64>,
    pub sessions: IntGauge,
    pub rooms_active: IntGauge,
    /// Log entries committed by this node, by `type` (message, edit, delete, react).
    pub messages_posted: IntCounterVec,
    pub messages_delivered: IntCounter,
    pub delivery_seconds: Histogram,
    /// Deliveries slower than [`SLOW_DELIVERY_S`]: CloudWatch's agent drops histograms, and "more
    /// than 1 % slow" is the p99 alarm in a form it can evaluate.
    pub delivery_slow: IntCounter,
    pub store_seconds: HistogramVec,
    /// Store operations slower than [`SLOW_STORE_S`], by op (the same reason).
    pub store_slow: IntCounterVec,
    /// Store operations that failed (clients got `unavailable` or `internal`), by op.
    pub store_errors: IntCounterVec,
    /// HTTP responses by status class (`2xx` … `5xx`); WebSocket upgrades count as `1xx`.
    pub http_responses: IntCounterVec,
    pub bridge_connected: IntGauge,
    pub bridge_published: IntCounter,
    pub bridge_received: IntCounter,
    pub gaps_repaired: IntCounter,
    pub cluster_nodes: IntGauge,
    pub session_closes: IntCounterVec,
    pub rate_limited: IntCounter,
    pub slow_consumers: IntCounter,
    pub backfill_messages: IntCounter,
    /// Webhook requests by `result`: `ok`, `retry` (failed, tried again later), `dead` (failed
    /// its last attempt: now in the dead-letter queue).
    pub webhook_deliveries: IntCounterVec,
    /// Events waiting in the outbox, every endpoint of the cluster (each node reports the same
    /// figure, read from Postgres).
    pub webhook_backlog: IntGauge,
    /// Endpoints whose circuit breaker is open (or half-open) on this node.
    pub webhook_circuit_open: IntGauge,
    /// Dead letters waiting (the cluster's, like the backlog).
    pub webhook_dead: IntGauge,
    pub webhook_seconds: Histogram,
}

/// A delivery (commit → socket) slower than this counts in `chorus_message_delivery_slow_total`.
pub const SLOW_DELIVERY_S: f64 = 0.25;
/// A store operation slower than this counts in `chorus_store_slow_total`.
pub const SLOW_STORE_S: f64 = 0.5;
/// The store operations, so every `op` series exists from the start.
pub const STORE_OPS: &[&str] = &[
    "head",
    "append",
    "after",
    "before",
    "range",
    "reset_epoch",
    "mark_read",
    "read_state",
    "my_rooms",
    "search",
    "ping",
];

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Metrics {
    /// One committed log entry of `kind` ("message", "edit", "delete", "react").
    pub fn posted(&self, kind: &str) {
        self.messages_posted.with_label_values(&[kind]).inc();
    }

    pub fn new() -> Metrics {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let delivery_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "chorus_message_delivery_seconds",
                "Time from commit to the frame being written to the socket",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        registry
            .register(Box::new(delivery_seconds.clone()))
            .expect("unique metric");
        let store_seconds = HistogramVec::new(
            HistogramOpts::new("chorus_store_seconds", "Store operation latency")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["op"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_seconds.clone()))
            .expect("unique metric");
        let session_closes = IntCounterVec::new(
            Opts::new(
                "chorus_session_closes_total",
                "Sessions closed by the server, by close code",
            ),
            &["code"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(session_closes.clone()))
            .expect("unique metric");
        // Every close code exists from the start at 0, so alarms and dashboards see a series.
        for code in crate::protocol::CloseCode::ALL {
            session_closes.with_label_values(&[code.label()]);
        }
        let counter_vec = |name: &str, help: &str, label: &str, values: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            for v in values {
                c.with_label_values(&[v]);
            }
            c
        };
        let messages_posted = counter_vec(
            "chorus_messages_posted_total",
            "Log entries committed by this node, by type",
            "type",
            &["message", "edit", "delete", "react"],
        );
        let webhook_deliveries = counter_vec(
            "chorus_webhook_deliveries_total",
            "Webhook requests by result (ok, retry, dead)",
            "result",
            &["ok", "retry", "dead"],
        );
        let webhook_seconds = Histogram::with_opts(
            HistogramOpts::new("chorus_webhook_seconds", "Webhook request latency")
                .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        registry
            .register(Box::new(webhook_seconds.clone()))
            .expect("unique metric");
        let store_slow = counter_vec(
            "chorus_store_slow_total",
            "Store operations slower than 500 ms",
            "op",
            STORE_OPS,
        );
        let store_errors = counter_vec(
            "chorus_store_errors_total",
            "Store operations that failed",
            "op",
            STORE_OPS,
        );
        let http_responses = counter_vec(
            "chorus_http_responses_total",
            "HTTP responses by status class",
            "class",
            &["1xx", "2xx", "3xx", "4xx", "5xx"],
        );
        // `chorus_build_info{version,commit} 1`: which build every node runs (PROTOCOL §5, v2).
        let build = IntGaugeVec::new(
            Opts::new("chorus_build_info", "The running build: 1, labelled"),
            &["version", "commit"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(build.clone()))
            .expect("unique metric");
        build
            .with_label_values(&[crate::VERSION, crate::COMMIT])
            .set(1);
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = registry.register(Box::new(pc));
        }
        Metrics {
            sessions: gauge("chorus_sessions", "Open WebSocket sessions"),
            rooms_active: gauge("chorus_rooms_active", "Room actors running on this node"),
            messages_posted,
            messages_delivered: counter(
                "chorus_messages_delivered_total",
                "Message frames written to sockets",
            ),
            delivery_seconds,
            delivery_slow: counter(
                "chorus_message_delivery_slow_total",
                "Deliveries slower than 250 ms from commit to socket",
            ),
            store_seconds,
            store_slow,
            store_errors,
            http_responses,
            bridge_connected: gauge(
                "chorus_bridge_connected",
                "1 while the Redis bridge is connected",
            ),
            bridge_published: counter(
                "chorus_bridge_published_total",
                "Envelopes published to Redis",
            ),
            bridge_received: counter(
                "chorus_bridge_received_total",
                "Envelopes received from Redis",
            ),
            gaps_repaired: counter(
                "chorus_gaps_repaired_total",
                "Messages fetched from the store to fill a gap",
            ),
            cluster_nodes: gauge("chorus_cluster_nodes", "Live nodes seen via heartbeats"),
            session_closes,
            rate_limited: counter(
                "chorus_rate_limited_total",
                "Frames or requests refused by rate limits",
            ),
            slow_consumers: counter(
                "chorus_slow_consumers_total",
                "Sessions closed as slow consumers",
            ),
            backfill_messages: counter(
                "chorus_backfill_messages_total",
                "Messages replayed to joins with `since`",
            ),
            webhook_deliveries,
            webhook_backlog: gauge(
                "chorus_webhook_backlog",
                "Webhook events waiting in the outbox (cluster-wide)",
            ),
            webhook_circuit_open: gauge(
                "chorus_webhook_circuit_open",
                "Webhook endpoints whose circuit is open on this node",
            ),
            webhook_dead: gauge(
                "chorus_webhook_dead_letters",
                "Webhook events in the dead-letter queue (cluster-wide)",
            ),
            webhook_seconds,
            registry: Arc::new(registry),
            tls_expiry: Default::default(),
            tls_not_after: Default::default(),
        }
    }

    /// The served certificate expires at `not_after` (Unix seconds): from now on the metrics show
    /// `chorus_tls_cert_expiry_seconds`.
    pub fn tls_certificate(&self, not_after: i64) {
        self.tls_not_after
            .store(not_after, std::sync::atomic::Ordering::Relaxed);
        self.tls_expiry.get_or_init(|| {
            let g = IntGauge::new(
                "chorus_tls_cert_expiry_seconds",
                "Seconds until the served TLS certificate expires (negative: expired)",
            )
            .expect("valid metric");
            let _ = self.registry.register(Box::new(g.clone()));
            g
        });
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        if let Some(g) = self.tls_expiry.get() {
            let not_after = self
                .tls_not_after
                .load(std::sync::atomic::Ordering::Relaxed);
            g.set(not_after - chrono::Utc::now().timestamp());
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_expiry_is_shown_only_when_serving_tls_and_counts_down() {
        let m = Metrics::new();
        assert!(
            !m.render().contains("chorus_tls_cert_expiry_seconds"),
            "a plain-HTTP node has no expiry (an alarm on it must not fire)"
        );
        let in_a_day = chrono::Utc::now().timestamp() + 86_400;
        m.tls_certificate(in_a_day);
        let line = m
            .render()
            .lines()
            .find(|l| l.starts_with("chorus_tls_cert_expiry_seconds "))
            .map(str::to_owned)
            .expect("shown once serving TLS");
        let left: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((86_300..=86_400).contains(&left), "{line}");
        m.tls_certificate(in_a_day - 2 * 86_400); // one that has expired since it was loaded
        assert!(m.render().contains("chorus_tls_cert_expiry_seconds -"));
    }
}
