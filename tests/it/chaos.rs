//! The chaos run: three nodes (two in this process, one real binary that gets SIGKILLed and
//! restarted), a private redis-server that is frozen, killed and restarted, and Postgres behind a
//! fault proxy that is cut and blackholed, all while writers post and readers read. The invariant
//! that must hold through everything: every acked message is stored once, and every reader sees
//! exactly 1..N in order (resuming with `since` wherever it reconnects), no gap, no duplicate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::processes::{RedisServer, spawn_node};
use crate::support::*;
use crate::support::{DEAD_AFTER_MS, HEARTBEAT_MS, cluster_node, prefix};

const ROOM: &str = "chaos";
const WRITERS: usize = 2;
const EACH: usize = 120;
/// One attempt of a send may take this long before the writer gives up on the connection.
const ATTEMPT: Duration = Duration::from_secs(4);

type Sock =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Where the nodes are now (the killed node comes back on another port).
type Nodes = Arc<Mutex<Vec<SocketAddr>>>;

async fn connect(addr: SocketAddr, user: &str) -> Option<Sock> {
    let url = format!("ws://{addr}/ws?access_token={}", token(user));
    let (ws, _) = tokio::time::timeout(ATTEMPT, tokio_tungstenite::connect_async(url))
        .await
        .ok()?
        .ok()?;
    Some(ws)
}

/// The next JSON frame, or `None` when the connection ends or nothing comes within `wait`.
async fn next(ws: &mut Sock, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(WsMessage::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(WsMessage::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => {
                return None;
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Joins `ROOM` (with `since` when resuming); `None` unless the answer is `joined`.
async fn join(ws: &mut Sock, since: Option<(i64, &str)>) -> Option<Value> {
    let mut frame = json!({"type":"join","room":ROOM,"ref":"j"});
    if let Some((since, epoch)) = since {
        frame["since"] = since.into();
        frame["epoch"] = epoch.into();
    }
    ws.send(WsMessage::text(frame.to_string())).await.ok()?;
    loop {
        let v = next(ws, ATTEMPT).await?;
        match v["type"].as_str() {
            Some("joined") => return Some(v),
            Some("error") => return None,
            _ => {}
        }
    }
}

/// A writer: posts `EACH` messages one after the other, each retried with the same
/// `client_msg_id` (reconnecting to the next node when needed) until it is acked.
async fn writer(w: usize, nodes: Nodes, acked: Arc<Mutex<HashMap<String, i64>>>) {
    let mut pick = w;
    let mut ws: Option<Sock> = None;
    for i in 0..EACH {
        let id = format!("w{w}-{i}");
        loop {
            if ws.is_none() {
                let addr = nodes.lock().unwrap()[pick % 3];
                pick += 1;
                ws = match connect(addr, &format!("writer{w}")).await {
                    Some(mut s) => join(&mut s, None).await.map(|_| s),
                    None => None,
                };
                if ws.is_none() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
            let s = ws.as_mut().expect("connected");
            let frame = json!({"type":"send","room":ROOM,"body":id,"client_msg_id":id,"ref":id});
            if s.send(WsMessage::text(frame.to_string())).await.is_err() {
                ws = None;
                continue;
            }
            let answer = loop {
                match next(s, ATTEMPT).await {
                    None => break None,
                    Some(v) if v["ref"] == id.as_str() => break Some(v),
                    Some(_) => {} // messages, presence: a writer only counts its acks
                }
            };
            match answer {
                Some(v) if v["type"] == "ack" => {
                    let seq = v["seq"].as_i64().expect("ack seq");
                    acked.lock().unwrap().insert(id.clone(), seq);
                    break;
                }
                Some(v) => {
                    let code = v["code"].as_str().unwrap_or("");
                    assert!(
                        matches!(code, "unavailable" | "rate_limited" | "not_joined"),
                        "writer {w}: unexpected answer {v}"
                    );
                    if code == "not_joined" {
                        ws = None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None => ws = None,
            }
        }
    }
}

/// A reader: reads `ROOM` until it has seen `target` (once known), reconnecting with `since` to
/// whichever node answers. Fails on any gap, duplicate, reset or unrecovered resume.
async fn reader(
    r: usize,
    nodes: Nodes,
    mut target: watch::Receiver<Option<i64>>,
    seen: Arc<Mutex<Vec<i64>>>,
) {
    let mut pick = r;
    let mut cursor: Option<(i64, String)> = None;
    loop {
        let addr = nodes.lock().unwrap()[pick % 3];
        pick += 1;
        let Some(mut ws) = connect(addr, &format!("reader{r}")).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let since = cursor.as_ref().map(|(s, e)| (*s, e.as_str()));
        let Some(joined) = join(&mut ws, since).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let epoch = joined["epoch"].as_str().expect("epoch").to_owned();
        match &cursor {
            Some((since, old)) => {
                assert_eq!(old, &epoch, "reader {r}: the epoch changed");
                assert_eq!(
                    joined["recovered"], true,
                    "reader {r}: resume at {since} not recovered: {joined}"
                );
            }
            None => cursor = Some((joined["last_seq"].as_i64().expect("last_seq"), epoch)),
        }
        loop {
            if let (Some(t), Some((at, _))) = (*target.borrow(), &cursor)
                && *at >= t
            {
                return;
            }
            // Only a closed connection makes a reader reconnect: a node that stops delivering
            // to a connected reader must show here, not be papered over by a resume.
            let frame = tokio::select! {
                f = next(&mut ws, Duration::from_secs(120)) => f,
                _ = target.changed() => continue,
            };
            let Some(v) = frame else {
                break;
            };
            match v["type"].as_str() {
                Some("message") => {
                    let seq = v["seq"].as_i64().expect("seq");
                    let (at, _) = cursor.as_mut().expect("joined");
                    assert_eq!(seq, *at + 1, "reader {r}: after {at} came {seq}");
                    *at = seq;
                    seen.lock().unwrap().push(seq);
                }
                Some("reset") => panic!("reader {r}: unexpected reset {v}"),
                _ => {}
            }
        }
    }
}

fn c_env<'a>(
    redis: &'a str,
    prefix: &'a str,
    hb: &'a str,
    dead: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CHORUS__REDIS__URL", redis),
        ("CHORUS__REDIS__PREFIX", prefix),
        ("CHORUS__CLUSTER__HEARTBEAT_MS", hb),
        ("CHORUS__CLUSTER__DEAD_AFTER_MS", dead),
        ("CHORUS__DATABASE__TIMEOUT_MS", "2000"),
        // `spawn_node` reads the address from the `listening` line.
        ("CHORUS__LOG__LEVEL", "error,chorus::node=info"),
        ("CHORUS__LIMITS__MSGS_PER_SEC", "10000"),
        ("CHORUS__LIMITS__BURST", "10000"),
        ("CHORUS__SHUTDOWN__DRAIN_MS", "500"),
    ]
}

#[actix_web::test]
async fn acked_equals_stored_equals_delivered_through_redis_postgres_and_node_faults() {
    let db = fresh_db().await;
    let proxy = FaultProxy::start(pg_addr()).await;
    let via = via_proxy(&db, &proxy);
    let mut redis = RedisServer::start().await;
    let prefix = prefix();
    let a = cluster_node(&via, &redis, &prefix).await;
    let b = cluster_node(&via, &redis, &prefix).await;
    let (hb, dead) = (HEARTBEAT_MS.to_string(), DEAD_AFTER_MS.to_string());
    let redis_url = redis.url();
    let env = c_env(&redis_url, &prefix, &hb, &dead);
    let (mut c, c_addr) = spawn_node(&via, &env);
    let nodes: Nodes = Arc::new(Mutex::new(vec![
        a.addr(),
        b.addr(),
        c_addr.parse().expect("addr"),
    ]));

    let acked: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let (target_tx, target_rx) = watch::channel(None);
    let mut readers = Vec::new();
    let mut seen = Vec::new();
    for r in 0..3 {
        let s: Arc<Mutex<Vec<i64>>> = Arc::default();
        seen.push(s.clone());
        readers.push(actix_web::rt::spawn(reader(
            r,
            nodes.clone(),
            target_rx.clone(),
            s,
        )));
    }
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| actix_web::rt::spawn(writer(w, nodes.clone(), acked.clone())))
        .collect();

    // Each fault starts once the writers made some progress, so every fault meets live traffic.
    let progress = |n: usize| {
        let acked = acked.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while acked.lock().unwrap().len() < n {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "writers stuck before {n} acks"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let step = WRITERS * EACH / 6;
    progress(step).await;
    redis.signal("-STOP"); // frozen: connections open, nothing answered
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.signal("-CONT");

    progress(2 * step).await;
    redis.kill(); // gone, then back empty
    tokio::time::sleep(Duration::from_millis(1000)).await;
    redis.restart().await;

    progress(3 * step).await;
    proxy.cut(); // Postgres refused and every connection reset
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.restore();

    progress(4 * step).await;
    proxy.stall(); // Postgres blackholed
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.restore();

    progress(5 * step).await;
    let _ = c.kill(); // SIGKILL: no drain, no goodbye
    let _ = c.wait();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (c2, c2_addr) = spawn_node(&via, &env);
    c = c2;
    nodes.lock().unwrap()[2] = c2_addr.parse().expect("addr");

    for w in writers {
        w.await.expect("writer");
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(
        acked.len(),
        WRITERS * EACH,
        "every post was acked in the end"
    );

    // Stored: exactly the acked messages, once each, at the acked seqs, numbered 1..N.
    let rows = db_client(&db)
        .await
        .query(
            "SELECT seq, client_msg_id FROM messages WHERE room = $1 ORDER BY seq",
            &[&ROOM],
        )
        .await
        .expect("read back");
    let stored: HashMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<_, String>(1), r.get::<_, i64>(0)))
        .collect();
    let n = rows.len() as i64;
    assert_eq!(stored, acked, "acked = stored, at the same seqs");
    let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "gap-free");

    // Delivered: every reader reaches N (each frame was checked to be the next seq).
    target_tx.send(Some(n)).expect("readers listen");
    for (r, task) in readers.into_iter().enumerate() {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap_or_else(|_| panic!("reader {r} never reached {n}"))
            .expect("reader");
    }
    for (r, s) in seen.iter().enumerate() {
        let s = s.lock().unwrap();
        let first = *s.first().expect("read something");
        assert_eq!(
            *s,
            (first..=n).collect::<Vec<_>>(),
            "reader {r}: in order, once each"
        );
    }
    let _ = c.kill();
    let _ = c.wait();
    a.stop().await;
    b.stop().await;
}
