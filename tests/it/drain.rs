//! Graceful drain on the real binary with a real SIGTERM (PROTOCOL.md §6): readiness turns 503 and
//! new sockets are refused at once, every session gets a 1012 close (never a bare disconnect), the
//! process exits 0, and clients resume on another node with `since` without losing an acked
//! message; unacked sends retried with the same client_msg_id land exactly once. Run once on
//! Postgres alone and once in a cluster, where a member on the surviving node hears everything live
//! and the survivor drops the drained node and its users. SSE streams and waiting long-polls end
//! inside the drain too, with a signal their clients understand.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::processes::{RedisServer, spawn_node};
use crate::support::*;
use crate::support::{DEAD_AFTER_MS, HEARTBEAT_MS, prefix, rest_presence};

const DRAIN_ENV: [(&str, &str); 3] = [
    ("CHORUS__SHUTDOWN__DRAIN_MS", "1500"),
    ("CHORUS__LIMITS__MSGS_PER_SEC", "1000"),
    ("CHORUS__LIMITS__BURST", "1000"),
];

#[actix_web::test]
async fn sigterm_drains_with_1012_and_clients_resume_elsewhere_without_loss() {
    let db = fresh_db().await;
    let (child, addr) = spawn_node(&db, &DRAIN_ENV);
    let other = TestNode::start(&db, &[]).await;
    let last = drain_and_resume(child, addr, &other, None).await;
    assert!(last > 20);
    other.stop().await;
}

#[actix_web::test]
async fn in_a_cluster_a_drained_node_loses_nothing_and_its_peers_see_it_go() {
    let (db, redis, prefix) = (fresh_db().await, RedisServer::start().await, prefix());
    let (url, hb, dead) = (
        redis.url(),
        HEARTBEAT_MS.to_string(),
        DEAD_AFTER_MS.to_string(),
    );
    let mut env = DRAIN_ENV.to_vec();
    env.extend([
        ("CHORUS__REDIS__URL", url.as_str()),
        ("CHORUS__REDIS__PREFIX", prefix.as_str()),
        ("CHORUS__CLUSTER__HEARTBEAT_MS", hb.as_str()),
        ("CHORUS__CLUSTER__DEAD_AFTER_MS", dead.as_str()),
    ]);
    let (child, addr) = spawn_node(&db, &env);
    // The survivor would judge the drained node dead only after 30 s, longer than any wait here:
    // it must learn of the exit from the drained node's goodbye.
    let other = TestNode::start(
        &db,
        &[
            ("redis.url", url.as_str()),
            ("redis.prefix", prefix.as_str()),
            ("cluster.heartbeat_ms", hb.as_str()),
            ("cluster.dead_after_ms", "30000"),
        ],
    )
    .await;
    wait_ready(&other, true).await;
    eventually("both nodes see each other", || {
        other.metric("chorus_cluster_nodes") == 2.0
    })
    .await;
    // A member of the room on the surviving node, connected throughout.
    let mut watcher = other.ws("watcher").await;
    watcher.join("drain").await;

    let last = drain_and_resume(child, addr, &other, Some(&mut watcher)).await;
    // It heard every message live, the drained node's and the retried ones, once and in order.
    assert_eq!(
        recv_seqs(&mut watcher, last as usize).await,
        (1..=last).collect::<Vec<_>>()
    );
    other.stop().await;
}

#[actix_web::test]
async fn sigterm_ends_sse_streams_and_answers_waiting_long_polls_inside_the_drain() {
    let db = fresh_db().await;
    let mut env = DRAIN_ENV.to_vec();
    // One stream per user: a second poll of the same user gets 429 while the first waits.
    env.push(("CHORUS__LIMITS__MAX_CONNECTIONS_PER_USER", "1"));
    let (mut child, addr) = spawn_node(&db, &env);
    let url = |path: &str| format!("http://{addr}{path}");
    wait_for_readyz(&addr, 200).await; // else the poll below may be answered `unavailable`
    let sse = http()
        .get(url("/api/rooms/d/events"))
        .bearer_auth(token("sse"))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert_eq!(
        sse.headers()["connection"],
        "close",
        "the reconnect must be free to go elsewhere"
    );
    let mut sse = sse.bytes_stream();
    let mut text = String::new();
    while !text.contains("event: joined") {
        let chunk = tokio::time::timeout(DEADLINE, sse.next())
            .await
            .expect("joined");
        text.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
    }
    // A long-poll waiting for the room's first message (it would wait 60 s).
    let start_poll = || {
        tokio::spawn(
            http()
                .get(url("/api/rooms/d/poll?after=0&timeout=60"))
                .bearer_auth(token("poller"))
                .send(),
        )
    };
    let mut poll = start_poll();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let probe = http()
            .get(url("/api/rooms/d/poll?after=0&timeout=0"))
            .bearer_auth(token("poller"))
            .send()
            .await
            .unwrap();
        if probe.status() == 429 {
            break; // the first poll holds the user's slot: it is waiting
        }
        if poll.is_finished() {
            // It came while a probe held the slot (429): send it again.
            let first = (&mut poll).await.unwrap().unwrap();
            assert_eq!(first.status(), 429, "the long-poll returned at once");
            poll = start_poll();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the long-poll never started (last probe: {})",
            probe.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sigterm(&child);
    wait_for_503(&addr).await;

    // A new stream is refused; the open one ends with `event: draining`, then the stream ends.
    let late = http()
        .get(url("/api/rooms/d/events"))
        .bearer_auth(token("late"))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 503);
    loop {
        let chunk = tokio::time::timeout(DEADLINE, sse.next())
            .await
            .expect("the SSE stream ends inside the drain");
        match chunk {
            Some(c) => text.push_str(std::str::from_utf8(&c.unwrap()).unwrap()),
            None => break,
        }
    }
    let last = text.rsplit("\n\n").find(|b| !b.trim().is_empty()).unwrap();
    assert!(
        last.contains("event: draining") && last.contains("retry: ") && last.contains("1012"),
        "the stream's last event says why: {last:?}"
    );
    // The long-poll is answered (nothing yet), telling the client to open a new connection.
    let res = tokio::time::timeout(DEADLINE, poll)
        .await
        .expect("the long-poll is answered inside the drain")
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["connection"], "close");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({"messages": [], "last_seq": 0}));
    let status = exit_status(&mut child).await;
    assert!(status.success(), "exit status {status}");
}

/// Asks `/readyz` until it answers 503 (the signal is handled asynchronously), bounded.
async fn wait_for_503(addr: &str) {
    wait_for_readyz(addr, 503).await;
}

async fn wait_for_readyz(addr: &str, status: u16) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let ready = http()
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .unwrap();
        if ready.status() == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts readers and a pacing writer in room `drain` on the spawned node at `addr`, SIGTERMs it
/// and checks the drain, then resumes everyone on `other` and checks nothing acked was lost and
/// nothing was stored twice. With `watcher` (a member on `other`, in a cluster) it also checks that
/// `other` drops the drained node and its users once it exits. Returns the last seq.
async fn drain_and_resume(
    mut child: std::process::Child,
    addr: String,
    other: &TestNode,
    watcher: Option<&mut Ws>,
) -> i64 {
    // Three readers and one writer on the draining node.
    let mut readers = Vec::new();
    for i in 0..3 {
        let mut ws = Ws::connect(addr.parse().unwrap(), &token(&format!("r{i}"))).await;
        ws.join("drain").await;
        readers.push(ws);
    }
    let mut writer = Ws::connect(addr.parse().unwrap(), &token("w")).await;
    writer.join("drain").await;

    // The writer keeps sending (ids w-0, w-1, ...) until its socket closes; acks are recorded.
    let (mut wtx, mut wrx) = writer.stream.split();
    let sender = tokio::spawn(async move {
        let mut sent = 0u64;
        loop {
            let f = json!({"type":"send","room":"drain","body":"x","client_msg_id":format!("w-{sent}")});
            if wtx.send(WsMessage::text(f.to_string())).await.is_err() {
                return sent;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(5)).await; // pacing a client, not synchronising
        }
    });
    let acker = tokio::spawn(async move {
        let mut acked = BTreeSet::new();
        let mut close = None;
        while let Some(Ok(msg)) = wrx.next().await {
            match msg {
                WsMessage::Text(t) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "ack" {
                        acked.insert(v["client_msg_id"].as_str().unwrap().to_owned());
                    }
                }
                WsMessage::Close(c) => close = c.map(|c| u16::from(c.code)),
                _ => {}
            }
        }
        (acked, close)
    });

    // Wait for traffic, then SIGTERM.
    let mut seen: Vec<Vec<i64>> = vec![Vec::new(); readers.len()];
    seen[0].extend(recv_seqs(&mut readers[0], 20).await);
    sigterm(&child);

    // Not ready as soon as the signal is handled, and from then on no new sockets.
    wait_for_503(&addr).await;
    let refused =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?access_token={}", token("late")))
            .await;
    assert!(refused.is_err(), "a new socket was accepted while draining");

    // Every session ends with a 1012 close frame.
    for (i, ws) in readers.iter_mut().enumerate() {
        loop {
            let msg = tokio::time::timeout(DEADLINE, ws.stream.next())
                .await
                .expect("close within the drain");
            match msg {
                Some(Ok(WsMessage::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "message" {
                        seen[i].push(v["seq"].as_i64().unwrap());
                    }
                }
                Some(Ok(WsMessage::Close(Some(c)))) => {
                    assert_eq!(u16::from(c.code), 1012, "reader {i}");
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("reader {i} ended without a close frame (1006): {other:?}"),
            }
        }
    }
    let sent = sender.await.unwrap();
    let (acked, close) = acker.await.unwrap();
    assert_eq!(close, Some(1012), "writer");
    let status = exit_status(&mut child).await;
    assert!(status.success(), "exit status {status}");
    if watcher.is_some() {
        // Its goodbye, not a timeout, and none of its users linger in presence.
        eventually("the survivor drops the drained node", || {
            other.metric("chorus_cluster_nodes") == 1.0
        })
        .await;
        assert_eq!(rest_presence(other, "drain").await, vec!["watcher"]);
    }

    // The writer retries everything it did not see acked, with the same ids, on the other node.
    // (A retry that did commit on the old node comes back as a duplicate: an ack and no message.)
    async fn ack(ws: &mut Ws) -> Value {
        loop {
            let v = ws.recv().await;
            match v["type"].as_str() {
                Some("ack") => return v,
                Some("message") => {}
                _ => panic!("unexpected {v}"),
            }
        }
    }
    let mut writer = other.ws("w").await;
    writer.join("drain").await;
    for n in 0..sent {
        let id = format!("w-{n}");
        if !acked.contains(&id) {
            writer
                .send(json!({"type":"send","room":"drain","body":"x","client_msg_id":id}))
                .await;
            ack(&mut writer).await;
        }
    }
    writer
        .send(json!({"type":"send","room":"drain","body":"x","client_msg_id":"final"}))
        .await;
    let last = ack(&mut writer).await["seq"].as_i64().unwrap();
    assert_eq!(
        last as u64,
        sent + 1,
        "every sent id stored exactly once, and nothing else"
    );

    // Readers resume on the other node from their last seq and end with exactly 1..=last.
    for (i, got) in seen.iter_mut().enumerate() {
        let mut ws = other.ws(&format!("r{i}")).await;
        ws.send(json!({"type":"join","room":"drain","since":got.last().copied().unwrap_or(0)}))
            .await;
        assert_eq!(ws.recv().await["recovered"], true);
        let missing = (last - got.last().copied().unwrap_or(0)) as usize;
        got.extend(recv_seqs(&mut ws, missing).await);
        assert_eq!(*got, (1..=last).collect::<Vec<_>>(), "reader {i}");
    }
    last
}
