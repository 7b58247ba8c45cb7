//! Who may open a socket: per-user and per-IP connection limits (429 before the upgrade, the slot
//! freed when a socket closes), X-Forwarded-For believed only from trusted proxies, and a client
//! that sends its handshake too slowly (slowloris) is cut off.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::*;

/// Opens a WebSocket as `user`, optionally claiming to be forwarded for `xff`; the HTTP status of
/// a refusal, or `None` if the upgrade succeeded (the socket is returned to keep it open).
async fn open(node: &TestNode, user: &str, xff: Option<&str>) -> Result<Ws, u16> {
    let mut req = format!("ws://{}/ws", node.addr())
        .into_client_request()
        .expect("request");
    let headers = req.headers_mut();
    headers.insert(
        "authorization",
        format!("Bearer {}", token(user)).parse().expect("header"),
    );
    if let Some(xff) = xff {
        headers.insert("x-forwarded-for", xff.parse().expect("header"));
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((stream, _)) => Ok(Ws {
            stream,
            hello: serde_json::Value::Null,
        }),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("unexpected handshake failure: {e}"),
    }
}

#[actix_web::test]
async fn a_user_over_the_connection_limit_gets_429_until_a_socket_closes() {
    let node = TestNode::start(
        &fresh_db().await,
        &[("limits.max_connections_per_user", "2")],
    )
    .await;
    let first = open(&node, "u", None).await.expect("first");
    let _second = open(&node, "u", None).await.expect("second");
    assert_eq!(open(&node, "u", None).await.err(), Some(429));
    assert!(
        open(&node, "other", None).await.is_ok(),
        "other users unaffected"
    );
    drop(first);
    // The slot frees when the server notices the close; retry until it does (bounded).
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match open(&node, "u", None).await {
            Ok(_) => break,
            Err(429) => assert!(tokio::time::Instant::now() < deadline, "slot never freed"),
            Err(other) => panic!("unexpected {other}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.stop().await;
}

#[actix_web::test]
async fn the_per_ip_limit_counts_forwarded_clients_only_behind_trusted_proxies() {
    let db = fresh_db().await;
    // Untrusted peer: X-Forwarded-For is ignored, so every socket counts against 127.0.0.1.
    let node = TestNode::start(&db, &[("limits.max_connections_per_ip", "2")]).await;
    let _a = open(&node, "a", Some("198.51.100.1")).await.expect("a");
    let _b = open(&node, "b", Some("198.51.100.2")).await.expect("b");
    assert_eq!(
        open(&node, "c", Some("198.51.100.3")).await.err(),
        Some(429)
    );
    node.stop().await;

    // Loopback is the trusted load balancer: each forwarded client has its own budget.
    let node = TestNode::start(
        &db,
        &[
            ("limits.max_connections_per_ip", "2"),
            ("http.trusted_proxies", "127.0.0.0/8"),
        ],
    )
    .await;
    let _a1 = open(&node, "a", Some("198.51.100.1")).await.expect("a1");
    let _a2 = open(&node, "b", Some("198.51.100.1")).await.expect("a2");
    assert_eq!(
        open(&node, "c", Some("198.51.100.1")).await.err(),
        Some(429)
    );
    // A client-written left part does not help: the nearest untrusted hop counts.
    assert_eq!(
        open(&node, "d", Some("203.0.113.50, 198.51.100.1"))
            .await
            .err(),
        Some(429)
    );
    assert!(open(&node, "e", Some("198.51.100.2")).await.is_ok());
    node.stop().await;
}

#[actix_web::test]
async fn a_handshake_sent_too_slowly_is_cut_off() {
    let node = TestNode::start(&fresh_db().await, &[("http.handshake_timeout_ms", "1000")]).await;
    let mut tcp = TcpStream::connect(node.addr()).await.expect("connect");
    // Headers never finished.
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .expect("write");
    let mut reply = Vec::new();
    let read = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(read.is_ok(), "the server kept a slow handshake open");
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "unexpected reply: {reply}"
    );
    // Healthy clients are unaffected.
    let mut ws = node.ws("fine").await;
    ws.join("r").await;
    node.stop().await;
}
