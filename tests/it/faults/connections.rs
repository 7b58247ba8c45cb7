//! Connections: SSE streams and long-polls count against the limits and free their slot when
//! the client leaves; after a server-initiated close the TCP connection ends as soon as the client
//! answers.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::bad_input::{raw_socket, read_close, server_hangs_up, write_close};
use crate::support::*;

#[actix_web::test]
async fn sse_and_long_polls_count_against_the_connection_limits_and_are_freed_when_the_client_leaves()
 {
    let node = TestNode::start(
        &fresh_db().await,
        &[
            ("limits.max_connections_per_user", "2"),
            ("limits.max_connections_per_ip", "100"),
        ],
    )
    .await;
    let sse = |user: &str| {
        http()
            .get(node.http("/api/rooms/lim/events"))
            .bearer_auth(token(user))
            .send()
    };
    let first = sse("s").await.unwrap();
    let second = sse("s").await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = sse("s").await.unwrap();
    assert_eq!(third.status(), 429, "a third stream of the same user");
    let ws = tokio_tungstenite::connect_async(format!(
        "ws://{}/ws?access_token={}",
        node.addr(),
        token("s")
    ))
    .await;
    assert!(ws.is_err(), "WebSocket shares the same limit");
    drop(first);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while sse("s").await.unwrap().status() != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(second);

    // Long-polls: two wait (for 30 s); a third is refused; one client hangs up and its slot is
    // free again long before its timeout.
    let hold = || async {
        let mut tcp = tokio::net::TcpStream::connect(node.addr()).await.unwrap();
        let req = format!(
            "GET /api/rooms/lim/poll?after=0&timeout=30 HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {}\r\n\r\n",
            token("p")
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        tcp
    };
    let poll_now = || async {
        http()
            .get(node.http("/api/rooms/lim/poll?timeout=0"))
            .bearer_auth(token("p"))
            .send()
            .await
            .unwrap()
            .status()
    };
    let p1 = hold().await;
    let _p2 = hold().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while poll_now().await != 429 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waiting long-polls are not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(p1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while poll_now().await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an abandoned long-poll kept its slot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.stop().await;
}

#[actix_web::test]
async fn after_a_server_initiated_close_the_connection_ends_as_soon_as_the_client_answers() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut tcp = raw_socket(&node).await;
    node.node.drain(Duration::from_millis(10)).await;
    assert_eq!(read_close(&mut tcp).await, 1012);
    write_close(&mut tcp, 1000).await;
    server_hangs_up(&mut tcp, "the client answered the server's close").await;
    node.stop().await;
}
