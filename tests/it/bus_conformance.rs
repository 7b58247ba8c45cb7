//! One conformance suite for the Bus seam (`src/bridge/bus.rs`), run against every backend: the
//! Redis bus on a private redis-server and on a private Redis Cluster, and the in-process loopback
//! bus.

use std::time::Duration;

use bytes::Bytes;
use chorus::bridge::{Bus, BusEvent, LoopbackHub, Names, RedisBus};
use chorus::ids::RoomId;
use tokio::sync::mpsc::Receiver;

use crate::processes::{RedisCluster, RedisServer};
use crate::support::DEADLINE;

async fn next(events: &mut Receiver<BusEvent>) -> BusEvent {
    tokio::time::timeout(DEADLINE, events.recv())
        .await
        .expect("timed out waiting for a bus event")
        .expect("bus event stream ended")
}

/// The next message (connection events skipped).
async fn next_message(events: &mut Receiver<BusEvent>) -> (String, Bytes) {
    loop {
        if let BusEvent::Message { channel, payload } = next(events).await {
            return (channel, payload);
        }
    }
}

/// Waits until the bus reports `up` (the event may come just before the state changes).
async fn wait_connected(bus: &dyn Bus, up: bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while bus.connected() != up {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bus never reported connected == {up}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn connected(bus: &dyn Bus) {
    wait_connected(bus, true).await;
}

/// The suite: `a` and `b` are two nodes' buses on one backend.
async fn conformance(a: &dyn Bus, b: &dyn Bus, names: &Names) {
    let room = |r: &str| RoomId::parse(r).expect("room id");
    let (x, y) = (
        names.room_channel(&room("x")),
        names.room_channel(&room("y")),
    );
    let (px, py) = (
        names.presence_key(&room("x")),
        names.presence_key(&room("y")),
    );
    let (pnone, pgone) = (
        names.presence_key(&room("none")),
        names.presence_key(&room("gone")),
    );
    let (node_a, node_b) = (names.alive_key("a"), names.alive_key("b"));
    connected(a).await;
    connected(b).await;
    let mut a_events = a.take_events().expect("events");
    let mut b_events = b.take_events().expect("events");
    assert!(a.take_events().is_none(), "the event stream is taken once");

    // Delivery to subscribers of the channel, once, in publish order; the publisher gets its own.
    b.subscribe(vec![x.clone(), y.clone()])
        .await
        .expect("subscribe");
    a.subscribe(vec![x.clone()]).await.expect("subscribe");
    a.subscribe(vec![x.clone()])
        .await
        .expect("subscribing twice is harmless");
    for i in 0..500 {
        a.publish(x.clone(), Bytes::from(format!("m{i}")));
    }
    a.publish(y.clone(), Bytes::from_static(b"only b"));
    for i in 0..500 {
        let (channel, payload) = next_message(&mut b_events).await;
        assert_eq!(
            (channel.as_str(), &payload[..]),
            (x.as_str(), format!("m{i}").as_bytes())
        );
    }
    assert_eq!(
        next_message(&mut b_events).await.1,
        Bytes::from_static(b"only b")
    );
    for i in 0..500 {
        let (_, payload) = next_message(&mut a_events).await;
        assert_eq!(
            &payload[..],
            format!("m{i}").as_bytes(),
            "own publish, once, in order"
        );
    }

    // Unsubscribed: nothing more on that channel; publish_now waits for the server.
    b.unsubscribe(vec![x.clone()]).await.expect("unsubscribe");
    a.publish_now(x.clone(), Bytes::from_static(b"after"))
        .await
        .expect("publish_now");
    a.publish_now(y.clone(), Bytes::from_static(b"marker"))
        .await
        .expect("publish_now");
    let (channel, payload) = next_message(&mut b_events).await;
    assert_eq!(
        (channel.as_str(), &payload[..]),
        (y.as_str(), &b"marker"[..]),
        "nothing after unsubscribe"
    );

    // The presence hash.
    a.hset(&px, "f1".into(), "v1".into()).await.expect("hset");
    b.hset(&px, "f2".into(), "v2".into()).await.expect("hset");
    let mut all = a.hgetall(&px).await.expect("hgetall");
    all.sort();
    assert_eq!(
        all,
        vec![("f1".into(), "v1".into()), ("f2".into(), "v2".into())]
    );
    b.hdel(&px, vec!["f1".into(), "nope".into()])
        .await
        .expect("hdel");
    b.hdel(&px, vec![]).await.expect("hdel of nothing");
    assert_eq!(
        b.hgetall(&px).await.expect("hgetall"),
        vec![("f2".into(), "v2".into())]
    );
    assert!(a.hgetall(&pnone).await.expect("hgetall").is_empty());

    // Keys by prefix (the admin API's active rooms): the hashes with fields, not the emptied ones.
    b.hset(&py, "f".into(), "v".into()).await.expect("hset");
    b.hset("t:other:z", "f".into(), "v".into())
        .await
        .expect("hset");
    b.hset(&pgone, "f".into(), "v".into()).await.expect("hset");
    b.hdel(&pgone, vec!["f".into()]).await.expect("hdel");
    let mut keys = a
        .keys(&names.presence_key_prefix(), 100)
        .await
        .expect("keys");
    keys.sort();
    let mut want = [px.clone(), py.clone()];
    want.sort();
    assert_eq!(keys, want);
    assert_eq!(
        a.keys(&names.presence_key_prefix(), 1)
            .await
            .expect("keys")
            .len(),
        1,
        "at most the limit"
    );
    assert!(a.keys("t:nothing:", 10).await.expect("keys").is_empty());

    // Expiring keys (a node's alive mark).
    a.set_expiring(&node_a, Duration::from_millis(300))
        .await
        .expect("set");
    assert_eq!(
        b.exist(vec![node_a.clone(), node_b.clone()])
            .await
            .expect("exist"),
        vec![true, false]
    );
    assert!(b.exist(vec![]).await.expect("exist of nothing").is_empty());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while b.exist(vec![node_a.clone()]).await.expect("exist") != vec![false] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    a.close().await;
    b.close().await;
}

#[actix_web::test]
async fn the_redis_bus_keeps_the_bus_guarantees() {
    let redis = RedisServer::start().await;
    let a = RedisBus::connect(&redis.url(), "").expect("bus");
    let b = RedisBus::connect(&redis.url(), "").expect("bus");
    conformance(&a, &b, &Names::new("t")).await;
}

#[actix_web::test]
async fn the_redis_cluster_bus_keeps_the_bus_guarantees() {
    let cluster = RedisCluster::start().await;
    let names = Names::sharded("t");
    let url = cluster.url();
    let seeds: Vec<&str> = url.split(',').collect();
    let a = RedisBus::connect_cluster(&seeds, "", names.sharded_prefixes()).expect("bus");
    let b = RedisBus::connect_cluster(&seeds[..1], "", names.sharded_prefixes()).expect("bus");
    assert_eq!(a.backend(), "redis-cluster");
    conformance(&a, &b, &names).await;
}

#[actix_web::test]
async fn the_loopback_bus_keeps_the_bus_guarantees() {
    let hub = LoopbackHub::new();
    conformance(&hub.bus(), &hub.bus(), &Names::new("t")).await;
}

#[actix_web::test]
async fn the_redis_bus_reports_an_outage_and_the_reconnect() {
    let mut redis = RedisServer::start().await;
    let bus = RedisBus::connect(&redis.url(), "").expect("bus");
    connected(&bus).await;
    let mut events = bus.take_events().expect("events");
    redis.kill();
    loop {
        if next(&mut events).await == BusEvent::Disconnected {
            break;
        }
    }
    wait_connected(&bus, false).await;
    assert!(
        bus.subscribe(vec!["t:x".into()]).await.is_err(),
        "fails fast while down"
    );
    redis.restart().await;
    loop {
        if next(&mut events).await == BusEvent::Connected {
            break;
        }
    }
    connected(&bus).await;
    bus.subscribe(vec!["t:x".into()])
        .await
        .expect("subscribe after reconnect");
    bus.close().await;
}

#[actix_web::test]
async fn the_loopback_bus_reports_an_outage_and_the_reconnect() {
    let hub = LoopbackHub::new();
    let (a, b) = (hub.bus(), hub.bus());
    let mut events = a.take_events().expect("events");
    assert_eq!(next(&mut events).await, BusEvent::Connected);
    a.subscribe(vec!["t:x".into()]).await.expect("subscribe");
    a.set_connected(false);
    assert_eq!(next(&mut events).await, BusEvent::Disconnected);
    assert!(a.subscribe(vec!["t:x".into()]).await.is_err());
    b.publish("t:x".into(), Bytes::from_static(b"lost"));
    a.set_connected(true);
    assert_eq!(
        next(&mut events).await,
        BusEvent::Connected,
        "nothing delivered while down"
    );
    a.subscribe(vec!["t:x".into()]).await.expect("subscribe");
    b.publish("t:x".into(), Bytes::from_static(b"found"));
    assert_eq!(
        next_message(&mut events).await.1,
        Bytes::from_static(b"found")
    );
}
