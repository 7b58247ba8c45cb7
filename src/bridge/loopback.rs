//! The in-process bus: several nodes in one process share a [`LoopbackHub`]. For standalone tests of
//! the cluster logic without Redis; it keeps the [`Bus`](super::Bus) guarantees and can be cut
//! ([`LoopbackBus::set_connected`]) to rehearse a Redis outage.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::bus::{Bus, BusError, BusEvent, EVENT_CAPACITY};

#[derive(Default)]
struct HubState {
    /// Bus id → (its subscribed channels, its event sender).
    buses: HashMap<usize, (HashSet<String>, mpsc::Sender<BusEvent>)>,
    hashes: HashMap<String, HashMap<String, String>>,
    /// Key → when it expires.
    expiring: HashMap<String, Instant>,
}

/// What several loopback buses share: subscriptions and hashes.
#[derive(Clone, Default)]
pub struct LoopbackHub {
    state: Arc<Mutex<HubState>>,
    next: Arc<AtomicUsize>,
}

impl LoopbackHub {
    pub fn new() -> LoopbackHub {
        LoopbackHub::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new bus on this hub (one per node), connected.
    pub fn bus(&self) -> LoopbackBus {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
        let _ = tx.try_send(BusEvent::Connected);
        self.lock().buses.insert(id, (HashSet::new(), tx));
        LoopbackBus {
            hub: self.clone(),
            id,
            events: Mutex::new(Some(rx)),
            up: AtomicBool::new(true),
        }
    }
}

pub struct LoopbackBus {
    hub: LoopbackHub,
    id: usize,
    events: Mutex<Option<mpsc::Receiver<BusEvent>>>,
    up: AtomicBool,
}

impl LoopbackBus {
    /// Simulates losing (false) or regaining (true) the transport, with the events a real one sends.
    /// While down, this bus neither publishes nor receives, and its subscriptions are forgotten.
    pub fn set_connected(&self, up: bool) {
        if self.up.swap(up, Ordering::SeqCst) == up {
            return;
        }
        let mut state = self.hub.lock();
        if let Some((channels, tx)) = state.buses.get_mut(&self.id) {
            if !up {
                channels.clear();
            }
            let _ = tx.try_send(if up {
                BusEvent::Connected
            } else {
                BusEvent::Disconnected
            });
        }
    }

    fn check(&self) -> Result<(), BusError> {
        if self.up.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(BusError::Unavailable("loopback bus is cut".into()))
        }
    }
}

#[async_trait]
impl Bus for LoopbackBus {
    fn backend(&self) -> &'static str {
        "loopback"
    }

    fn take_events(&self) -> Option<mpsc::Receiver<BusEvent>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn connected(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    async fn subscribe(&self, channels: Vec<String>) -> Result<(), BusError> {
        self.check()?;
        if let Some((subs, _)) = self.hub.lock().buses.get_mut(&self.id) {
            subs.extend(channels);
        }
        Ok(())
    }

    async fn unsubscribe(&self, channels: Vec<String>) -> Result<(), BusError> {
        self.check()?;
        if let Some((subs, _)) = self.hub.lock().buses.get_mut(&self.id) {
            for c in &channels {
                subs.remove(c);
            }
        }
        Ok(())
    }

    fn publish(&self, channel: String, payload: Bytes) {
        if self.check().is_err() {
            return;
        }
        let state = self.hub.lock();
        for (subs, tx) in state.buses.values() {
            if subs.contains(&channel) {
                let event = BusEvent::Message {
                    channel: channel.clone(),
                    payload: payload.clone(),
                };
                if tx.try_send(event).is_err() {
                    let _ = tx.try_send(BusEvent::Lagged);
                }
            }
        }
    }

    async fn publish_now(&self, channel: String, payload: Bytes) -> Result<(), BusError> {
        self.check()?;
        self.publish(channel, payload);
        Ok(())
    }

    async fn hset(&self, key: &str, field: String, value: String) -> Result<(), BusError> {
        self.check()?;
        let mut state = self.hub.lock();
        state
            .hashes
            .entry(key.to_owned())
            .or_default()
            .insert(field, value);
        Ok(())
    }

    async fn hdel(&self, key: &str, fields: Vec<String>) -> Result<(), BusError> {
        self.check()?;
        if let Some(h) = self.hub.lock().hashes.get_mut(key) {
            for f in &fields {
                h.remove(f);
            }
        }
        Ok(())
    }

    async fn hgetall(&self, key: &str) -> Result<Vec<(String, String)>, BusError> {
        self.check()?;
        Ok(self
            .hub
            .lock()
            .hashes
            .get(key)
            .map(|h| h.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    async fn set_expiring(&self, key: &str, ttl: Duration) -> Result<(), BusError> {
        self.check()?;
        let mut state = self.hub.lock();
        state.expiring.insert(key.to_owned(), Instant::now() + ttl);
        Ok(())
    }

    async fn exist(&self, keys: Vec<String>) -> Result<Vec<bool>, BusError> {
        self.check()?;
        let state = self.hub.lock();
        let now = Instant::now();
        Ok(keys
            .iter()
            .map(|k| state.expiring.get(k).is_some_and(|at| *at > now))
            .collect())
    }

    async fn keys(&self, prefix: &str, limit: usize) -> Result<Vec<String>, BusError> {
        self.check()?;
        let state = self.hub.lock();
        let now = Instant::now();
        let hashes = state
            .hashes
            .iter()
            .filter(|(k, h)| k.starts_with(prefix) && !h.is_empty())
            .map(|(k, _)| k.clone());
        let plain = state
            .expiring
            .iter()
            .filter(|(k, at)| k.starts_with(prefix) && **at > now)
            .map(|(k, _)| k.clone());
        Ok(hashes.chain(plain).take(limit).collect())
    }

    async fn close(&self) {
        self.hub.lock().buses.remove(&self.id);
    }
}
