//! The Redis bus, on fred: one connection for commands (pipelined publishes, presence hashes) and
//! one in pub/sub mode for subscriptions. Both connect and reconnect forever with exponential
//! backoff (100 ms up to 2 s, jittered), the first connection too, so a node started before Redis
//! connects by itself; a connection that stops answering for 3 s counts as broken. Each failure
//! cause is logged once, with the host (never the password).
//!
//! **Redis Cluster** ([`RedisBus::connect_cluster`]): the URLs are seed nodes and the rest of the
//! cluster is discovered (and rediscovered after a failover). Room channels and the users shards
//! go over sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`, one command per hash slot), so a room's
//! traffic touches only the shard that owns its channel; the node channel stays on classic
//! pub/sub, which the cluster forwards to every shard, so heartbeats reach every node whatever
//! shard it listens on. When a
//! shard's master dies, fred reconnects to the promoted replica; that reconnect is a
//! [`BusEvent::Connected`], so the bridge subscribes again and every room repairs from the store.
//!
//! Publishing never waits per message: payloads queue on a channel and one task sends whatever has
//! accumulated as a single pipeline, one round trip per batch (like the room's group commit).
//! While Redis is unreachable, publishes are dropped rather than buffered without bound, and the
//! bridge repairs from the store once it is back (see [`super::bus`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::prelude::*;
use fred::types::config::UnresponsiveConfig;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use super::bus::{Bus, BusError, BusEvent, COMMAND_TIMEOUT, EVENT_CAPACITY};

/// Payloads waiting to be published; past this the newest are dropped (and repaired).
const PUBLISH_CAPACITY: usize = 65_536;
/// Most payloads in one pipeline.
const PIPELINE_MAX: usize = 1024;
/// fred's notification channels (messages, reconnects, errors, ...) preallocate this many slots
/// each; a reader this far behind gets `Lagged` and the rooms repair. 65 536 cost ~70 MiB RSS.
const NOTIFY_CAPACITY: usize = 4096;

pub struct RedisBus {
    /// With Redis Cluster: what the channels that use sharded pub/sub start with.
    sharded: Option<Vec<String>>,
    commands: Client,
    subscriber: Client,
    publish_tx: mpsc::Sender<(String, Bytes)>,
    events: Mutex<Option<mpsc::Receiver<BusEvent>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl RedisBus {
    /// Starts connecting to one Redis (in the background: a node starts even while Redis is down).
    /// `ca_file`: with `rediss://`, the PEM of the CA that signed the server's certificate (empty:
    /// the system's roots). The host name is always verified.
    pub fn connect(url: &str, ca_file: &str) -> Result<RedisBus, BusError> {
        let config = Config::from_url(url).map_err(unavailable)?;
        RedisBus::start(config, url, ca_file, None)
    }

    /// Starts connecting to a Redis Cluster through its seed nodes `urls` (one is enough; the
    /// others are discovered). Channels that start with one of `sharded_prefixes` (rooms', users
    /// shards') use sharded pub/sub; the others classic pub/sub, which reaches every shard.
    pub fn connect_cluster(
        urls: &[&str],
        ca_file: &str,
        sharded_prefixes: Vec<String>,
    ) -> Result<RedisBus, BusError> {
        let first = urls
            .first()
            .ok_or_else(|| BusError::Unavailable("no redis url".into()))?;
        let mut config = Config::from_url_clustered(first).map_err(unavailable)?;
        if let ServerConfig::Clustered { hosts, .. } = &mut config.server {
            for url in &urls[1..] {
                let other = Config::from_url_clustered(url).map_err(unavailable)?;
                hosts.extend(other.server.hosts());
            }
        }
        RedisBus::start(config, first, ca_file, Some(sharded_prefixes))
    }

    fn start(
        mut config: Config,
        url: &str,
        ca_file: &str,
        sharded: Option<Vec<String>>,
    ) -> Result<RedisBus, BusError> {
        if url.starts_with("rediss://") {
            let ca = Some(std::path::Path::new(ca_file)).filter(|_| !ca_file.is_empty());
            let tls = crate::tls::client_config(crate::tls::Verify::Full, ca)
                .map_err(BusError::Unavailable)?;
            config.tls = Some(fred::types::config::TlsConfig::from(tls));
        }
        // fred gives up after a failed *first* connection unless told otherwise: a node started
        // before Redis (or with a wrong password) would never connect. Start-up order must never
        // matter (PROTOCOL §6), so the first connection follows the same reconnect policy.
        config.fail_fast = false;
        let host = config
            .server
            .hosts()
            .iter()
            .map(|s| format!("{}:{}", s.host, s.port))
            .collect::<Vec<_>>()
            .join(",");
        let mut builder = Builder::from_config(config);
        builder
            .with_performance_config(|p| {
                p.broadcast_channel_capacity = NOTIFY_CAPACITY;
                p.default_command_timeout = COMMAND_TIMEOUT;
            })
            .with_connection_config(|c| {
                c.connection_timeout = COMMAND_TIMEOUT;
                c.internal_command_timeout = COMMAND_TIMEOUT;
                c.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(Duration::from_secs(3)),
                    interval: Duration::from_millis(500),
                };
                c.tcp = TcpConfig {
                    nodelay: Some(true),
                    ..Default::default()
                };
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2000, 2));
        let commands = builder.build().map_err(unavailable)?;
        let subscriber = builder.build().map_err(unavailable)?;
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_CAPACITY);
        let tasks = vec![
            forward_events(&commands, &subscriber, events_tx.clone(), host),
            tokio::spawn(publisher(
                commands.clone(),
                sharded.clone(),
                publish_rx,
                events_tx,
            )),
        ];
        // The connection tasks run until `quit`; their handles are not needed.
        drop(commands.connect());
        drop(subscriber.connect());
        Ok(RedisBus {
            sharded,
            commands,
            subscriber,
            publish_tx,
            events: Mutex::new(Some(events_rx)),
            tasks: Mutex::new(tasks),
            closed: AtomicBool::new(false),
        })
    }

    fn is_sharded(&self, channel: &str) -> bool {
        is_sharded(self.sharded.as_deref(), channel)
    }

    /// Splits `channels` into classic ones and sharded ones grouped by hash slot (one
    /// `SSUBSCRIBE` may only name channels of one slot).
    fn split(&self, channels: Vec<String>) -> (Vec<String>, Vec<Vec<String>>) {
        let (sharded, classic): (Vec<String>, Vec<String>) =
            channels.into_iter().partition(|c| self.is_sharded(c));
        let mut slots: std::collections::BTreeMap<u16, Vec<String>> = Default::default();
        for c in sharded {
            slots
                .entry(fred::util::redis_keyslot(c.as_bytes()))
                .or_default()
                .push(c);
        }
        (classic, slots.into_values().collect())
    }

    fn ready(&self, client: &Client) -> Result<(), BusError> {
        if client.is_connected() {
            Ok(())
        } else {
            Err(BusError::Unavailable("redis is not connected".into()))
        }
    }
}

/// The cause of a Redis connection failure in an operator's words, then fred's detail (which
/// never holds the password).
pub fn describe(e: &Error) -> String {
    let detail = e.details().to_owned();
    let lower = detail.to_lowercase();
    let cause = match e.kind() {
        ErrorKind::Auth => "authentication",
        ErrorKind::Tls => "TLS",
        ErrorKind::Timeout => "timeout",
        _ if lower.contains("wrongpass") || lower.contains("noauth") || lower.contains("auth") => {
            "authentication"
        }
        _ if lower.contains("refused") => "connection refused",
        _ if lower.contains("lookup") || lower.contains("resolve") || lower.contains("dns") => {
            "DNS"
        }
        _ if lower.contains("tls") || lower.contains("certificate") => "TLS",
        _ if lower.contains("timed out") || lower.contains("timeout") => "timeout",
        ErrorKind::IO => "network",
        _ => "error",
    };
    format!("{cause}: {detail}")
}

/// Turns fred's notifications into [`BusEvent`]s, in the order they happen, and logs each change
/// of the connection's state once (with the host and the cause).
fn forward_events(
    commands: &Client,
    subscriber: &Client,
    tx: mpsc::Sender<BusEvent>,
    host: String,
) -> JoinHandle<()> {
    let mut messages = subscriber.message_rx();
    let mut sub_up = subscriber.reconnect_rx();
    let mut cmd_up = commands.reconnect_rx();
    let mut sub_err = subscriber.error_rx();
    let mut cmd_err = commands.error_rx();
    tokio::spawn(async move {
        // The cause last logged; `None` while connected.
        let mut failing: Option<String> = None;
        let log_error = |e: &Error, failing: &mut Option<String>| {
            let cause = describe(e);
            if failing.as_deref() != Some(cause.as_str()) {
                tracing::warn!(host = %host, cause = %cause,
                    "redis unreachable: not ready; messages still commit and reach local members, \
                     the rooms repair from the store; reconnecting (backoff up to 2 s)");
                *failing = Some(cause);
            }
        };
        loop {
            let event = tokio::select! {
                m = messages.recv() => match m {
                    Ok(m) => {
                        let payload = match m.value {
                            Value::Bytes(b) => b,
                            Value::String(s) => s.into_inner(),
                            _ => continue,
                        };
                        BusEvent::Message { channel: m.channel.to_string(), payload }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => BusEvent::Lagged,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                r = sub_up.recv() => match r {
                    Err(broadcast::error::RecvError::Closed) => break,
                    _ => BusEvent::Connected,
                },
                r = cmd_up.recv() => match r {
                    Err(broadcast::error::RecvError::Closed) => break,
                    _ => BusEvent::Connected,
                },
                r = sub_err.recv() => match r {
                    Err(broadcast::error::RecvError::Closed) => break,
                    Ok((e, _)) => { log_error(&e, &mut failing); BusEvent::Disconnected }
                    Err(_) => BusEvent::Disconnected,
                },
                r = cmd_err.recv() => match r {
                    Err(broadcast::error::RecvError::Closed) => break,
                    Ok((e, _)) => { log_error(&e, &mut failing); BusEvent::Disconnected }
                    Err(_) => BusEvent::Disconnected,
                },
            };
            if matches!(event, BusEvent::Connected) && failing.take().is_some() {
                tracing::info!(host = %host, "redis reachable again");
            }
            if tx.send(event).await.is_err() {
                break;
            }
        }
    })
}

fn is_sharded(prefixes: Option<&[String]>, channel: &str) -> bool {
    prefixes.is_some_and(|ps| ps.iter().any(|p| channel.starts_with(p.as_str())))
}

/// Sends queued publishes, everything that has accumulated as one pipeline (in a cluster, fred
/// sends each command to the shard that owns its channel).
async fn publisher(
    client: Client,
    sharded: Option<Vec<String>>,
    mut rx: mpsc::Receiver<(String, Bytes)>,
    events: mpsc::Sender<BusEvent>,
) {
    let mut batch = Vec::with_capacity(PIPELINE_MAX);
    while rx.recv_many(&mut batch, PIPELINE_MAX).await > 0 {
        if !client.is_connected() {
            // Dropped: the reconnect makes every room resync, which covers these.
            batch.clear();
            continue;
        }
        let pipeline = client.pipeline();
        for (channel, payload) in batch.drain(..) {
            let _: Result<(), _> = if is_sharded(sharded.as_deref(), &channel) {
                pipeline.spublish(channel, payload).await
            } else {
                pipeline.publish(channel, payload).await
            };
        }
        if pipeline.all::<Value>().await.is_err() {
            // The others may have missed these: have the bridge announce room heads.
            let _ = events.try_send(BusEvent::Lagged);
        }
    }
}

#[async_trait]
impl Bus for RedisBus {
    fn backend(&self) -> &'static str {
        if self.sharded.is_some() {
            "redis-cluster"
        } else {
            "redis"
        }
    }

    fn take_events(&self) -> Option<mpsc::Receiver<BusEvent>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn connected(&self) -> bool {
        !self.closed.load(Ordering::SeqCst)
            && self.commands.is_connected()
            && self.subscriber.is_connected()
    }

    async fn subscribe(&self, channels: Vec<String>) -> Result<(), BusError> {
        self.ready(&self.subscriber)?;
        let (classic, slots) = self.split(channels);
        if !classic.is_empty() {
            self.subscriber
                .subscribe(classic)
                .await
                .map_err(unavailable)?;
        }
        // One SSUBSCRIBE per slot, all at once (a renewal after a failover names every room).
        let groups = slots
            .into_iter()
            .map(|group| self.subscriber.ssubscribe(group));
        futures_util::future::try_join_all(groups)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn unsubscribe(&self, channels: Vec<String>) -> Result<(), BusError> {
        self.ready(&self.subscriber)?;
        let (classic, slots) = self.split(channels);
        if !classic.is_empty() {
            self.subscriber
                .unsubscribe(classic)
                .await
                .map_err(unavailable)?;
        }
        let groups = slots
            .into_iter()
            .map(|group| self.subscriber.sunsubscribe(group));
        futures_util::future::try_join_all(groups)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn publish(&self, channel: String, payload: Bytes) {
        if self.publish_tx.try_send((channel, payload)).is_err() {
            tracing::warn!("redis publish queue full: dropping (the rooms will repair)");
        }
    }

    async fn publish_now(&self, channel: String, payload: Bytes) -> Result<(), BusError> {
        self.ready(&self.commands)?;
        if self.is_sharded(&channel) {
            self.commands.spublish::<(), _, _>(channel, payload).await
        } else {
            self.commands.publish::<(), _, _>(channel, payload).await
        }
        .map_err(unavailable)
    }

    async fn hset(&self, key: &str, field: String, value: String) -> Result<(), BusError> {
        self.ready(&self.commands)?;
        self.commands
            .hset::<(), _, _>(key, (field, value))
            .await
            .map_err(unavailable)
    }

    async fn hdel(&self, key: &str, fields: Vec<String>) -> Result<(), BusError> {
        self.ready(&self.commands)?;
        if fields.is_empty() {
            return Ok(());
        }
        self.commands
            .hdel::<(), _, _>(key, fields)
            .await
            .map_err(unavailable)
    }

    async fn hgetall(&self, key: &str) -> Result<Vec<(String, String)>, BusError> {
        self.ready(&self.commands)?;
        let map: std::collections::HashMap<String, String> =
            self.commands.hgetall(key).await.map_err(unavailable)?;
        Ok(map.into_iter().collect())
    }

    async fn set_expiring(&self, key: &str, ttl: Duration) -> Result<(), BusError> {
        self.ready(&self.commands)?;
        let ms = ttl.as_millis().max(1) as i64;
        self.commands
            .set::<(), _, _>(key, "1", Some(Expiration::PX(ms)), None, false)
            .await
            .map_err(unavailable)
    }

    async fn exist(&self, keys: Vec<String>) -> Result<Vec<bool>, BusError> {
        self.ready(&self.commands)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = self.commands.mget(keys).await.map_err(unavailable)?;
        Ok(values.into_iter().map(|v| v.is_some()).collect())
    }

    async fn keys(&self, prefix: &str, limit: usize) -> Result<Vec<String>, BusError> {
        use futures_util::StreamExt;
        self.ready(&self.commands)?;
        // MATCH is a glob: the prefix's own glob characters are escaped.
        let mut pattern = String::with_capacity(prefix.len() + 1);
        for c in prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        let scan = if self.sharded.is_some() {
            // Every master's share of the key space.
            self.commands
                .scan_cluster_buffered(pattern, Some(1000), None)
                .boxed()
        } else {
            self.commands
                .scan_buffered(pattern, Some(1000), None)
                .boxed()
        };
        let scan = scan
            .take(limit)
            .map(|k| k.map(|k| k.as_str_lossy().into_owned()))
            .collect::<Vec<_>>();
        let keys = tokio::time::timeout(COMMAND_TIMEOUT * 5, scan)
            .await
            .map_err(|_| BusError::Unavailable("key scan timed out".into()))?;
        keys.into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)
    }

    async fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, async {
            let _ = self.subscriber.quit().await;
            let _ = self.commands.quit().await;
        })
        .await;
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}
