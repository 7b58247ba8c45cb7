//! A mixed-version rolling upgrade (issue 28, item 7), the order k8s/README.md gives: two nodes
//! of the previous release on one Postgres and Redis, serving clients that speak the previous
//! protocol; this release's `chorus migrate` first, while they run; then each node in turn
//! drained (SIGTERM) and replaced by one of this release, under load. Nothing acked is lost or
//! stored twice, no seq is reissued, the readers (reconnecting with `since` after each 1012) see
//! every entry once and in order — including entries posted on a new node while they sit on an
//! old one, so the two versions share the bus.
//!
//! It needs the previous release's binary: `tests/upgrade/run` builds it once (cached in
//! `target/previous/`) and runs this test; `.ci/run` runs that lane.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::processes::{RedisServer, chorus_migrate, spawn_node_logged, spawn_previous};
use crate::support::*;

const ROOM: &str = "upgrade";

/// The nodes' addresses as the load balancer knows them: a client picks the first live one.
type Nodes = Arc<Mutex<Vec<String>>>;

fn pick(nodes: &Nodes, skip: usize) -> String {
    let nodes = nodes.lock().unwrap();
    nodes[skip % nodes.len()].clone()
}

/// Sends `w-0`, `w-1`, … one at a time, each until acked (the same id after a reconnect), moving
/// to another node whenever its socket closes. Returns every id's acked seq.
async fn writer(
    nodes: Nodes,
    stop: Arc<AtomicBool>,
    acked_count: Arc<AtomicUsize>,
) -> BTreeMap<String, i64> {
    let mut acked = BTreeMap::new();
    let mut attempt = 0;
    'connect: loop {
        attempt += 1;
        let addr = pick(&nodes, attempt);
        let Some(mut ws) =
            connect_and_join(&addr, "writer", json!({"type": "join", "room": ROOM})).await
        else {
            continue;
        };
        loop {
            if stop.load(Ordering::SeqCst) {
                return acked;
            }
            let id = format!("w-{}", acked.len());
            let send = json!({"type": "send", "room": ROOM, "body": id, "client_msg_id": id});
            if ws.send(WsMessage::text(send.to_string())).await.is_err() {
                continue 'connect;
            }
            loop {
                match tokio::time::timeout(DEADLINE, ws.next()).await {
                    Ok(Some(Ok(WsMessage::Text(t)))) => {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        match v["type"].as_str() {
                            Some("ack") if v["client_msg_id"] == id.as_str() => {
                                acked.insert(id, v["seq"].as_i64().unwrap());
                                acked_count.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            // `unavailable` while a node drains: send it again, elsewhere.
                            Some("error") if v["ref"] == id.as_str() => continue 'connect,
                            _ => {}
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => continue 'connect, // closed (1012), or silent: reconnect
                }
            }
        }
    }
}

/// Joins on node `first`, follows the room, and on every close rejoins another node with
/// `since` = the last seq it saw, until it has seen `want` (set at the end). Every seq it was
/// given, in order.
async fn reader(
    user: &'static str,
    nodes: Nodes,
    first: usize,
    want: Arc<AtomicUsize>,
) -> Vec<i64> {
    let mut seen: Vec<i64> = Vec::new();
    let mut attempt = first;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    // Whether it has seen all it will be asked for; it fails past the deadline.
    let enough = |seen: &Vec<i64>, on: &str| {
        let want_now = want.load(Ordering::SeqCst);
        assert!(
            tokio::time::Instant::now() < deadline,
            "{user} saw {} of {want_now} entries, the last {:?}, on {on}",
            seen.len(),
            seen.last()
        );
        want_now > 0 && seen.len() >= want_now
    };
    loop {
        if enough(&seen, "no node yet") {
            return seen;
        }
        let addr = pick(&nodes, attempt);
        attempt += 1;
        // From the start of the room (however late this first join lands), then from the last
        // seq seen.
        let join =
            json!({"type": "join", "room": ROOM, "since": seen.last().copied().unwrap_or(0)});
        let Some(mut ws) = connect_and_join(&addr, user, join).await else {
            continue;
        };
        loop {
            if enough(&seen, &addr) {
                return seen;
            }
            match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
                Ok(Some(Ok(WsMessage::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    match v["type"].as_str() {
                        Some("message") => {
                            let seq = v["seq"].as_i64().unwrap();
                            let expected = seen.last().map_or(seq, |l| l + 1);
                            assert_eq!(
                                seq,
                                expected,
                                "{user}: a gap or repeat on {addr} (since {:?}): {v}",
                                seen.last()
                            );
                            seen.push(seq);
                        }
                        Some("reset") | Some("error") => panic!("{user} on {addr}: {v}"),
                        Some("joined") => {
                            assert_eq!(
                                v["recovered"], true,
                                "{user}: a resume across versions is recovered: {v}"
                            );
                        }
                        _ => {}
                    }
                }
                Ok(Some(Ok(_))) => {}
                Err(_) => {} // quiet for a second: look at `want` again
                _ => break,  // closed: rejoin elsewhere
            }
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A socket to `addr` as `user` that has sent `join`; `None` (after a client's reconnect pause)
/// when the node is not there (drained, or not started yet).
async fn connect_and_join(addr: &str, user: &str, join: Value) -> Option<Socket> {
    let url = format!("ws://{addr}/ws?access_token={}", token(user));
    match tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((mut ws, _))) => {
            ws.send(WsMessage::text(join.to_string())).await.ok()?;
            Some(ws)
        }
        _ => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

async fn wait_acked(count: &AtomicUsize, at_least: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::SeqCst) < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writer stalled at {} acks",
            count.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
#[ignore = "needs the previous release: tests/upgrade/run builds it and runs this"]
async fn a_rolling_upgrade_from_the_previous_release_under_load_loses_nothing_and_old_clients_keep_working()
 {
    let db = empty_db().await;
    let redis = RedisServer::start().await;
    let (url, prefix) = (redis.url(), prefix());
    let env: Vec<(&str, &str)> = vec![
        ("CHORUS__REDIS__URL", url.as_str()),
        ("CHORUS__REDIS__PREFIX", prefix.as_str()),
        ("CHORUS__CLUSTER__HEARTBEAT_MS", "200"),
        ("CHORUS__CLUSTER__DEAD_AFTER_MS", "1200"),
        ("CHORUS__SHUTDOWN__DRAIN_MS", "1000"),
        ("CHORUS__LIMITS__MSGS_PER_SEC", "1000"),
        ("CHORUS__LIMITS__BURST", "1000"),
    ];
    // The previous release's cluster (it migrates the empty database to its own schema).
    let (a_old, a_addr, _) = spawn_previous(&db, &env);
    let (b_old, b_addr, _) = spawn_previous(&db, &env);
    let nodes: Nodes = Arc::new(Mutex::new(vec![a_addr.clone(), b_addr.clone()]));
    let (stop, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let want = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = [("reader-a", 0), ("reader-b", 1)]
        .into_iter()
        .map(|(user, first)| tokio::spawn(reader(user, nodes.clone(), first, want.clone())))
        .collect();
    let writing = tokio::spawn(writer(nodes.clone(), stop.clone(), acked.clone()));
    wait_acked(&acked, 20).await;
    eprintln!("upgrade: 20 acked on the previous release; migrating");

    // This release's migrations first, while the old nodes serve.
    let out = chorus_migrate(&db);
    assert!(
        out.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("upgrade: migrated");
    let before = acked.load(Ordering::SeqCst);
    wait_acked(&acked, before + 20).await;

    // Node by node: drain the old one, start this release in its place.
    let mut children = Vec::new();
    for (i, mut old) in [a_old, b_old].into_iter().enumerate() {
        eprintln!("upgrade: draining old node {i}");
        sigterm(&old);
        let status = exit_status(&mut old).await;
        assert!(
            status.success(),
            "the previous release drains and exits 0: {status}"
        );
        let (new, addr, _) = spawn_node_logged(&db, &env);
        eprintln!("upgrade: node {i} is this release at {addr}");
        nodes.lock().unwrap()[i] = addr;
        children.push(new);
        let now = acked.load(Ordering::SeqCst);
        wait_acked(&acked, now + 20).await;
    }
    stop.store(true, Ordering::SeqCst);
    eprintln!("upgrade: stopping the writer");
    let acked = writing.await.unwrap();
    let last = acked.len();
    want.store(last, Ordering::SeqCst);
    for (i, r) in readers.into_iter().enumerate() {
        let seen = r.await.unwrap();
        assert_eq!(
            seen,
            (1..=last as i64).collect::<Vec<_>>(),
            "reader {i}: every entry once, in order"
        );
    }

    // The store: every acked id once, at its acked seq, and seqs 1..=n.
    let client = db_client(&db).await;
    let rows = client
        .query(
            "SELECT seq, client_msg_id, body FROM messages WHERE room = $1 ORDER BY seq",
            &[&ROOM],
        )
        .await
        .unwrap();
    let stored: Vec<(i64, Option<String>, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        stored.len(),
        last,
        "nothing stored but the acked ids, and each once"
    );
    for (seq, id, body) in &stored {
        let id = id.as_deref().expect("every entry has its client_msg_id");
        assert_eq!(acked.get(id), Some(seq), "{id}");
        assert_eq!(
            body, id,
            "seq {seq} stored as it was sent, by either version"
        );
    }
    println!("upgrade: {last} acked and delivered across the rollout, none lost or repeated");
    for mut c in children {
        sigterm(&c);
        let _ = exit_status(&mut c).await;
    }
}
