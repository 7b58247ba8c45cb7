//! The test-only echo endpoint that the Autobahn run (tests/autobahn/run) exercises: off unless
//! `http.echo_endpoint` is set, echoes text and binary, and keeps the chat sessions' limits.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

#[actix_web::test]
async fn the_echo_endpoint_is_off_by_default() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let res = tokio_tungstenite::connect_async(format!("ws://{}/echo", node.addr())).await;
    match res {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("expected 404, got {:?}", other.map(|_| "an upgrade")),
    }
    node.stop().await;
}

#[actix_web::test]
async fn the_echo_endpoint_echoes_text_and_binary_within_the_frame_limit() {
    let node = TestNode::start(
        &fresh_db().await,
        &[
            ("http.echo_endpoint", "true"),
            ("limits.max_frame_bytes", "1024"),
            ("limits.max_body_bytes", "512"),
        ],
    )
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/echo", node.addr()))
        .await
        .expect("upgrade");
    for msg in [
        WsMessage::text("héllo"),
        WsMessage::binary(vec![0u8, 255, 7]),
    ] {
        ws.send(msg.clone()).await.expect("send");
        let back = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("echo in time")
            .expect("open")
            .expect("frame");
        assert_eq!(back, msg);
    }
    ws.send(WsMessage::text("x".repeat(2000)))
        .await
        .expect("send");
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("close in time")
            .expect("open")
            .expect("frame");
        if let WsMessage::Close(Some(frame)) = msg {
            assert_eq!(u16::from(frame.code), 1009);
            break;
        }
    }
    // Chat sessions still refuse binary (1008).
    let mut chat = node.ws("u").await;
    chat.send_raw(WsMessage::binary(vec![1u8])).await;
    assert_eq!(chat.closed().await, 1008);
    node.stop().await;
}
