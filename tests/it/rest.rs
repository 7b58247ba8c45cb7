//! REST send and history, health, readiness and metrics (PROTOCOL.md §4–5), and what happens when
//! Postgres becomes unreachable (through a fault proxy).

use serde_json::{Value, json};

use crate::support::*;

fn post(node: &TestNode, room: &str, user: &str) -> reqwest::RequestBuilder {
    http()
        .post(node.http(&format!("/api/rooms/{room}/messages")))
        .bearer_auth(token(user))
}

async fn error_code(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let v: Value = res.json().await.expect("error body is JSON");
    (
        status,
        v["error"]["code"].as_str().expect("error.code").to_owned(),
    )
}

#[actix_web::test]
async fn rest_send_returns_201_and_reaches_websocket_members() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ws = node.ws("reader").await;
    ws.join("api").await;
    let res = post(&node, "api", "writer")
        .json(&json!({"body":"from rest"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let m: Value = res.json().await.unwrap();
    assert_eq!(
        (m["seq"].as_i64(), m["user"].as_str(), m["body"].as_str()),
        (Some(1), Some("writer"), Some("from rest"))
    );
    let live = ws.recv_type("message").await;
    assert_eq!(live["id"], m["id"]);
    node.stop().await;
}

#[actix_web::test]
async fn a_repeated_idempotency_key_returns_200_and_the_original() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let first = post(&node, "i", "u")
        .header("Idempotency-Key", "k1")
        .json(&json!({"body":"a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = post(&node, "i", "u")
        .header("Idempotency-Key", "k1")
        .json(&json!({"body":"a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    // The same key in the body works the same way; another user's same key is a new message.
    let body_key = post(&node, "i", "u")
        .json(&json!({"body":"a","client_msg_id":"k1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(body_key.status(), 200);
    let other = post(&node, "i", "v")
        .json(&json!({"body":"a","client_msg_id":"k1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 201);
    node.stop().await;
}

#[actix_web::test]
async fn rest_send_rejects_bad_requests_with_clear_codes() {
    let node = TestNode::start(&fresh_db().await, &[("limits.max_body_bytes", "16")]).await;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (post(&node, "r", "u").body("{nope"), 400, "bad_request"),
        (
            post(&node, "r", "u").json(&json!(["body"])),
            400,
            "bad_request",
        ),
        (
            post(&node, "r", "u").json(&json!({"text":"x"})),
            400,
            "bad_request",
        ),
        (
            post(&node, "r", "u").json(&json!({"body":7})),
            400,
            "invalid_body",
        ),
        (
            post(&node, "r", "u").json(&json!({"body":""})),
            400,
            "invalid_body",
        ),
        (
            post(&node, "r", "u").json(&json!({"body":"  \n\t"})),
            400,
            "invalid_body",
        ),
        (
            post(&node, "bad%20room", "u").json(&json!({"body":"x"})),
            400,
            "invalid_room",
        ),
        (
            post(&node, "r", "u").json(&json!({"body":"x".repeat(17)})),
            413,
            "body_too_large",
        ),
        (
            post(&node, "r", "u").body("x".repeat(100_000)),
            413,
            "body_too_large",
        ),
        (
            http()
                .post(node.http("/api/rooms/r/messages"))
                .json(&json!({"body":"x"})),
            401,
            "unauthorized",
        ),
        (
            http()
                .post(node.http("/api/rooms/r/messages"))
                .bearer_auth("junk")
                .json(&json!({"body":"x"})),
            401,
            "unauthorized",
        ),
    ];
    for (i, (req, status, code)) in cases.into_iter().enumerate() {
        assert_eq!(
            error_code(req.send().await.unwrap()).await,
            (status, code.to_owned()),
            "case {i}"
        );
    }
    let limited = token_for_rooms("l", &["mine"]);
    let res = http()
        .post(node.http("/api/rooms/other/messages"))
        .bearer_auth(limited)
        .json(&json!({"body":"x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (403, "forbidden".to_owned()));
    // None of the refused requests stored anything.
    let ok: Value = post(&node, "r", "u")
        .json(&json!({"body":"ok"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["seq"], 1);
    node.stop().await;
}

#[actix_web::test]
async fn rest_send_is_rate_limited_with_retry_after() {
    let node = TestNode::start(
        &fresh_db().await,
        &[("limits.msgs_per_sec", "1"), ("limits.burst", "3")],
    )
    .await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let res = post(&node, "rl", "u")
            .json(&json!({"body":"x"}))
            .send()
            .await
            .unwrap();
        if res.status() == 429 {
            retry_after = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
        }
        statuses.push(res.status().as_u16());
    }
    assert_eq!(&statuses[..3], &[201, 201, 201]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
    node.stop().await;
}

#[actix_web::test]
async fn rest_history_pages_with_after_and_before() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    for i in 1..=30 {
        post(&node, "hist", "u")
            .json(&json!({"body":format!("m{i}")}))
            .send()
            .await
            .unwrap();
    }
    let get = |q: &str| {
        http()
            .get(node.http(&format!("/api/rooms/hist/messages{q}")))
            .bearer_auth(token("u"))
            .send()
    };
    let seqs = page_seqs;
    let page: Value = get("?after=5&limit=3").await.unwrap().json().await.unwrap();
    assert_eq!(seqs(&page), vec![6, 7, 8]);
    assert_eq!(
        (page["room"].as_str(), page["last_seq"].as_i64()),
        (Some("hist"), Some(30))
    );
    assert!(page["epoch"].as_str().is_some_and(|e| !e.is_empty()));
    let page: Value = get("?before=5").await.unwrap().json().await.unwrap();
    assert_eq!(seqs(&page), vec![1, 2, 3, 4]);
    let page: Value = get("?limit=2").await.unwrap().json().await.unwrap();
    assert_eq!(seqs(&page), vec![29, 30]);
    assert_eq!(get("?after=x").await.unwrap().status(), 400);
    // Both: the oldest page of the window between them (a window can be empty).
    let page: Value = get("?after=10&before=20&limit=3")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seqs(&page), vec![11, 12, 13]);
    let page: Value = get("?after=10&before=13")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seqs(&page), vec![11, 12]);
    let page: Value = get("?after=10&before=11")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seqs(&page), Vec::<i64>::new());
    assert_eq!(get("?after=-1").await.unwrap().status(), 400);
    node.stop().await;
}

#[actix_web::test]
async fn health_readiness_and_metrics_are_served() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    assert_eq!(
        http()
            .get(node.http("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http()
            .get(node.http("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let mut ws = node.ws("m").await;
    ws.join("m").await;
    ws.post("m", "count me").await;
    let missing = http().get(node.http("/api/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let text = http()
        .get(node.http("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "chorus_sessions 1",
        "chorus_rooms_active 1",
        "chorus_messages_posted_total{type=\"message\"} 1",
        "chorus_messages_posted_total{type=\"edit\"} 0",
        "chorus_messages_delivered_total 1",
        "chorus_message_delivery_seconds_count 1",
        "chorus_store_seconds_count{op=\"append\"} 1",
        "chorus_session_closes_total",
        "chorus_rate_limited_total 0",
        "chorus_slow_consumers_total 0",
        "chorus_backfill_messages_total 0",
        "chorus_bridge_connected 0",
        "chorus_gaps_repaired_total 0",
        "chorus_message_delivery_slow_total 0",
        "chorus_store_slow_total{op=\"append\"} 0",
        "chorus_store_errors_total{op=\"append\"} 0",
        // /healthz and /readyz; the 404 above; the WebSocket upgrade.
        "chorus_http_responses_total{class=\"2xx\"} 2",
        "chorus_http_responses_total{class=\"4xx\"} 1",
        "chorus_http_responses_total{class=\"1xx\"} 1",
        "chorus_http_responses_total{class=\"5xx\"} 0",
        "process_resident_memory_bytes",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "missing `{name}` in /metrics"
        );
    }
    node.stop().await;
}

#[actix_web::test]
async fn postgres_unreachable_means_unavailable_never_an_ack_and_a_retry_lands_once() {
    let db = fresh_db().await;
    let proxy = FaultProxy::start(pg_addr()).await;
    let node = TestNode::start(&via_proxy(&db, &proxy), &[("database.timeout_ms", "1000")]).await;
    let mut ws = node.ws("u").await;
    ws.join("down").await;
    proxy.cut();
    ws.send(
        json!({"type":"send","room":"down","body":"important","client_msg_id":"c-1","ref":"s1"}),
    )
    .await;
    let e = ws.recv().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["ref"].as_str()),
        (Some("error"), Some("unavailable"), Some("s1")),
        "{e}"
    );
    wait_ready(&node, false).await;
    let res = post(&node, "down", "u")
        .json(&json!({"body":"x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, (503, "unavailable".to_owned()));
    // Counted for the alarms: the failed appends and pings, and the 503s.
    assert!(node.metric("chorus_store_errors_total{op=\"append\"}") >= 2.0);
    assert!(node.metric("chorus_store_errors_total{op=\"ping\"}") >= 1.0);
    assert!(node.metric("chorus_http_responses_total{class=\"5xx\"}") >= 2.0);

    proxy.restore();
    ws.send(
        json!({"type":"send","room":"down","body":"important","client_msg_id":"c-1","ref":"s2"}),
    )
    .await;
    let ack = ws.recv_type("ack").await;
    assert_eq!(
        (ack["seq"].as_i64(), ack["duplicate"].as_bool()),
        (Some(1), Some(false))
    );
    assert_eq!(recv_seqs(&mut ws, 1).await, vec![1]);
    ws.send(json!({"type":"send","room":"down","body":"important","client_msg_id":"c-1"}))
        .await;
    assert_eq!(ws.recv_type("ack").await["duplicate"], true);
    wait_ready(&node, true).await;
    node.stop().await;
}

#[actix_web::test]
async fn the_api_document_is_served_and_a_wrong_method_is_405_with_allow() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let res = http()
        .get(node.http("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    assert!(doc["paths"]["/api/rooms/{room}/messages"]["post"].is_object());

    let res = http()
        .delete(node.http("/api/rooms/lobby/messages"))
        .bearer_auth(token("u"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    let allow = res
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(allow.as_deref(), Some("GET, POST"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    let res = http()
        .get(node.http("/api/rooms/lobby/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    node.stop().await;
}
