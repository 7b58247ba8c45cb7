//! SSE and long-polling with the same cursor as WebSocket `since` (PROTOCOL.md §4), including a
//! client that switches transport mid-stream without loss or duplicates.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::*;
use chorus::http::asyncapi::Frames;

/// A minimal SSE reader: events as (event name, id, data); comments as ("comment", None, text).
struct Sse {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl Sse {
    async fn open(node: &TestNode, room: &str, query: &str, last_event_id: Option<i64>) -> Sse {
        let mut req = http()
            .get(node.http(&format!("/api/rooms/{room}/events{query}")))
            .bearer_auth(token("reader"));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        Sse {
            stream: res.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> (String, Option<i64>, String) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = ("message".to_owned(), None, String::new());
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        return ("comment".into(), None, c.trim().into());
                    }
                    match line.split_once(": ") {
                        Some(("event", v)) => event = v.into(),
                        Some(("id", v)) => id = v.parse().ok(),
                        Some(("data", v)) => data = v.into(),
                        _ => {}
                    }
                }
                // Every event the suite reads must match /api/asyncapi.json.
                let parsed: Value = serde_json::from_str(&data).expect("SSE data is JSON");
                conforms(Frames::Sse, &json!({"event": event, "data": parsed}));
                return (event, id, data);
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("timed out waiting for an SSE event")
                .expect("SSE stream ended")
                .expect("SSE read error");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next `n` message ids, skipping comments.
    async fn ids(&mut self, n: usize) -> Vec<i64> {
        let mut ids = Vec::new();
        while ids.len() < n {
            let (event, id, data) = self.next().await;
            if event == "message" {
                let m: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(Some(m["seq"].as_i64().unwrap()), id, "id: is the seq");
                ids.push(id.unwrap());
            }
        }
        ids
    }
}

#[actix_web::test]
async fn sse_streams_messages_with_seq_ids_and_resumes_from_last_event_id() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    for i in 1..=3 {
        rest_post(&node, "s", &format!("m{i}")).await;
    }
    let mut sse = Sse::open(&node, "s", "?after=1", None).await;
    let (event, _, data) = sse.next().await;
    assert_eq!(event, "joined");
    let joined: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        (joined["recovered"].as_bool(), joined["last_seq"].as_i64()),
        (Some(true), Some(3))
    );
    assert_eq!(sse.ids(2).await, vec![2, 3]);
    rest_post(&node, "s", "live").await;
    assert_eq!(sse.ids(1).await, vec![4]);
    drop(sse);

    rest_post(&node, "s", "while away").await;
    let mut sse = Sse::open(&node, "s", "", Some(4)).await;
    assert_eq!(sse.next().await.0, "joined");
    assert_eq!(sse.ids(1).await, vec![5]);
    node.stop().await;
}

#[actix_web::test]
async fn sse_sends_heartbeat_comments_and_checks_rights() {
    let node = TestNode::start(&fresh_db().await, &[("http.sse_heartbeat_ms", "100")]).await;
    let mut sse = Sse::open(&node, "hb", "", None).await;
    assert_eq!(sse.next().await.0, "joined");
    assert_eq!(
        sse.next().await,
        ("comment".to_owned(), None, "heartbeat".to_owned())
    );
    let res = http()
        .get(node.http("/api/rooms/hb/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let limited = token_for_rooms("l", &["mine"]);
    let res = http()
        .get(node.http("/api/rooms/hb/events"))
        .bearer_auth(limited)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    node.stop().await;
}

async fn poll(node: &TestNode, room: &str, query: &str) -> Value {
    let res = http()
        .get(node.http(&format!("/api/rooms/{room}/poll{query}")))
        .bearer_auth(token("poller"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[actix_web::test]
async fn long_poll_returns_at_once_waits_for_a_post_and_times_out_empty() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    rest_post(&node, "lp", "one").await;
    rest_post(&node, "lp", "two").await;
    let v = poll(&node, "lp", "?after=0&timeout=30").await;
    assert_eq!(
        (page_seqs(&v), v["last_seq"].as_i64()),
        (vec![1, 2], Some(2))
    );

    // Nothing after 2 yet: the poll waits until a post wakes it (no matter whether the post lands
    // before or after the poll joined the room).
    let waiting = {
        let url = node.http("/api/rooms/lp/poll?after=2&timeout=30");
        tokio::spawn(async move {
            http()
                .get(url)
                .bearer_auth(token("poller"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    rest_post(&node, "lp", "three").await;
    let v = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("poll woke")
        .unwrap();
    assert_eq!((page_seqs(&v), v["last_seq"].as_i64()), (vec![3], Some(3)));

    let started = Instant::now();
    let v = poll(&node, "lp", "?after=3&timeout=1").await;
    assert!(page_seqs(&v).is_empty());
    assert_eq!(v["last_seq"], 3);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "returned before its timeout"
    );
    node.stop().await;
}

#[actix_web::test]
async fn switching_ws_to_sse_to_long_poll_to_ws_loses_and_repeats_nothing() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut seen = Vec::new();
    let mut ws = node.ws("c").await;
    ws.join("sw").await;
    for i in 1..=3 {
        rest_post(&node, "sw", &format!("a{i}")).await;
    }
    seen.extend(recv_seqs(&mut ws, 3).await);
    drop(ws);
    rest_post(&node, "sw", "b1").await;
    let mut sse = Sse::open(&node, "sw", "", Some(*seen.last().unwrap())).await;
    rest_post(&node, "sw", "b2").await;
    seen.extend(sse.ids(2).await);
    drop(sse);
    rest_post(&node, "sw", "c1").await;
    let v = poll(&node, "sw", &format!("?after={}", seen.last().unwrap())).await;
    seen.extend(page_seqs(&v));
    rest_post(&node, "sw", "d1").await;
    let mut ws = node.ws("c").await;
    ws.send(json!({"type":"join","room":"sw","since":seen.last().unwrap()}))
        .await;
    assert_eq!(ws.recv().await["recovered"], true);
    seen.extend(recv_seqs(&mut ws, 1).await);
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());
    node.stop().await;
}

#[actix_web::test]
async fn http_listeners_do_not_appear_in_presence() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ws = node.ws("ann").await;
    ws.join("pr").await;
    let mut sse = Sse::open(&node, "pr", "", None).await;
    assert_eq!(sse.next().await.0, "joined");
    // The SSE reader is in the room (it receives messages) but not in its presence.
    rest_post(&node, "pr", "x").await;
    assert_eq!(sse.ids(1).await, vec![1]);
    let p = get_json(&node, "/api/rooms/pr/presence", "ann").await;
    assert_eq!(p["users"], json!([{"user":"ann","name":"Name ann"}]));
    node.stop().await;
}
