//! Every bad input of PROTOCOL.md §2–3 gets its documented reaction: an `error` frame with the
//! connection kept open, a close code, or an HTTP status before the upgrade.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::Data;

use crate::support::*;

/// Sends `text` and expects an `error` with `code`; then proves the connection still works.
async fn expect_error(ws: &mut Ws, text: &str, code: &str) {
    ws.send_raw(WsMessage::text(text)).await;
    let e = ws.recv().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some(code)),
        "for {text}: {e}"
    );
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    ws.send(json!({"type":"ping","ref":"alive"})).await;
    assert_eq!(
        ws.recv().await,
        json!({"type":"pong","ref":"alive"}),
        "connection open after {text}"
    );
}

#[actix_web::test]
async fn malformed_frames_get_error_replies_and_the_connection_stays_open() {
    let node = TestNode::start(&fresh_db().await, &[("limits.max_body_bytes", "32")]).await;
    let mut ws = node.ws("ann").await;
    expect_error(&mut ws, "{not json", "bad_request").await;
    expect_error(&mut ws, "[1,2,3]", "bad_request").await;
    expect_error(&mut ws, r#"{"type":"dance","ref":"x"}"#, "bad_request").await;
    expect_error(&mut ws, r#"{"room":"a"}"#, "bad_request").await;
    expect_error(&mut ws, r#"{"type":"join"}"#, "bad_request").await;
    expect_error(
        &mut ws,
        r#"{"type":"join","room":"no spaces"}"#,
        "invalid_room",
    )
    .await;
    expect_error(
        &mut ws,
        &format!(r#"{{"type":"join","room":"{}"}}"#, "r".repeat(300)),
        "invalid_room",
    )
    .await;
    expect_error(
        &mut ws,
        r#"{"type":"send","room":"a","body":"x"}"#,
        "not_joined",
    )
    .await;
    expect_error(&mut ws, r#"{"type":"leave","room":"a"}"#, "not_joined").await;
    expect_error(&mut ws, r#"{"type":"typing","room":"a"}"#, "not_joined").await;
    ws.join("a").await;
    expect_error(&mut ws, r#"{"type":"join","room":"a"}"#, "bad_request").await;
    expect_error(&mut ws, r#"{"type":"send","room":"a"}"#, "bad_request").await;
    expect_error(
        &mut ws,
        r#"{"type":"send","room":"a","body":{"html":1}}"#,
        "invalid_body",
    )
    .await;
    expect_error(
        &mut ws,
        r#"{"type":"send","room":"a","body":""}"#,
        "invalid_body",
    )
    .await;
    expect_error(
        &mut ws,
        r#"{"type":"send","room":"a","body":" \n\t "}"#,
        "invalid_body",
    )
    .await;
    let big = json!({"type":"send","room":"a","body":"x".repeat(33)}).to_string();
    expect_error(&mut ws, &big, "body_too_large").await;
    // The error echoes the ref so clients can match it.
    ws.send(json!({"type":"send","room":"a","body":5,"ref":"mine"}))
        .await;
    assert_eq!(ws.recv().await["ref"], "mine");
    // Nothing above was stored.
    assert_eq!(ws.post("a", "ok").await["seq"], 1);
    node.stop().await;
}

#[actix_web::test]
async fn fragmented_text_messages_are_reassembled() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ws = node.ws("ann").await;
    ws.send_frame(br#"{"type":"pi"#, Data::Text, false).await;
    ws.send_frame(br#"ng","re"#, Data::Continue, false).await;
    ws.send_frame(br#"f":"frag"}"#, Data::Continue, true).await;
    assert_eq!(ws.recv().await, json!({"type":"pong","ref":"frag"}));
    node.stop().await;
}

#[actix_web::test]
async fn an_oversized_frame_closes_with_1009() {
    let node = TestNode::start(
        &fresh_db().await,
        &[
            ("limits.max_frame_bytes", "1024"),
            ("limits.max_body_bytes", "512"),
        ],
    )
    .await;
    let mut ws = node.ws("ann").await;
    ws.send_raw(WsMessage::text("x".repeat(2000))).await;
    assert_eq!(ws.closed().await, 1009);
    eventually("close counted", || {
        node.metric("chorus_session_closes_total{code=\"1009\"}") == 1.0
    })
    .await;
    node.stop().await;
}

#[actix_web::test]
async fn an_oversized_fragmented_message_closes_with_1009() {
    let node = TestNode::start(
        &fresh_db().await,
        &[
            ("limits.max_frame_bytes", "1024"),
            ("limits.max_body_bytes", "512"),
        ],
    )
    .await;
    let mut ws = node.ws("ann").await;
    let chunk = vec![b'x'; 600];
    ws.send_frame(&chunk, Data::Text, false).await;
    ws.send_frame(&chunk, Data::Continue, false).await;
    assert_eq!(ws.closed().await, 1009);
    node.stop().await;
}

#[actix_web::test]
async fn binary_frames_close_with_1008() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ws = node.ws("ann").await;
    ws.send_raw(WsMessage::binary(vec![1u8, 2, 3])).await;
    assert_eq!(ws.closed().await, 1008);
    node.stop().await;
}

#[actix_web::test]
async fn invalid_utf8_closes_with_1007() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ws = node.ws("ann").await;
    ws.send_frame(
        b"{\"type\":\"ping\",\"ref\":\"\xff\xfe\"}",
        Data::Text,
        true,
    )
    .await;
    assert_eq!(ws.closed().await, 1007);
    // Also when the bad bytes arrive split across fragments.
    let mut ws = node.ws("ann").await;
    ws.send_frame(b"{\"a\":\"\xe2", Data::Text, false).await;
    ws.send_frame(b"\x28\xa1\"}", Data::Continue, true).await;
    assert_eq!(ws.closed().await, 1007);
    node.stop().await;
}

async fn upgrade_status(
    node: &TestNode,
    auth: Option<&str>,
    query: &str,
    origin: Option<&str>,
) -> u16 {
    let mut req = format!("ws://{}/ws{query}", node.addr())
        .into_client_request()
        .unwrap();
    if let Some(a) = auth {
        req.headers_mut()
            .insert("authorization", a.parse().unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("unexpected handshake error {e}"),
    }
}

#[actix_web::test]
async fn bad_tokens_get_401_before_the_upgrade() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    assert_eq!(upgrade_status(&node, None, "", None).await, 401, "missing");
    assert_eq!(
        upgrade_status(&node, Some("Bearer garbage"), "", None).await,
        401,
        "garbage"
    );
    let other = chorus::auth::Auth::new(b"a-different-secret-000", &settings("", &[]).auth);
    let wrong = other.issue("u", None, Duration::from_secs(60), None, None);
    assert_eq!(
        upgrade_status(&node, Some(&format!("Bearer {wrong}")), "", None).await,
        401,
        "wrong secret"
    );
    let expired = expired_token();
    assert_eq!(
        upgrade_status(&node, Some(&format!("Bearer {expired}")), "", None).await,
        401,
        "expired"
    );
    // {"alg":"none"} with a valid-looking body and no signature.
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ.";
    assert_eq!(
        upgrade_status(&node, Some(&format!("Bearer {none}")), "", None).await,
        401,
        "alg none"
    );
    // The browser form: ?access_token=
    assert_eq!(
        upgrade_status(&node, None, &format!("?access_token={}", token("u")), None).await,
        101
    );
    node.stop().await;
}

fn expired_token() -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let claims = json!({"sub":"u","exp": chorus::auth::now_secs() - 3600});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[actix_web::test]
async fn disallowed_origins_get_403_before_the_upgrade() {
    let node = TestNode::start(
        &fresh_db().await,
        &[("auth.allowed_origins", "https://chat.example")],
    )
    .await;
    let auth = format!("Bearer {}", token("u"));
    assert_eq!(
        upgrade_status(&node, Some(&auth), "", Some("https://evil.example")).await,
        403
    );
    assert_eq!(
        upgrade_status(&node, Some(&auth), "", Some("https://chat.example")).await,
        101
    );
    node.stop().await;
}

#[actix_web::test]
async fn forbidden_rooms_are_refused_per_request() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let t = token_for_rooms("u", &["team-*"]);
    let mut ws = Ws::connect(node.addr(), &t).await;
    expect_error(&mut ws, r#"{"type":"join","room":"secret"}"#, "forbidden").await;
    expect_error(
        &mut ws,
        r#"{"type":"history","room":"secret"}"#,
        "forbidden",
    )
    .await;
    ws.join("team-1").await;
    // A service token reaches any room.
    let svc = auth().issue(
        "svc",
        None,
        Duration::from_secs(60),
        Some(vec![]),
        Some("service"),
    );
    let mut s = Ws::connect(node.addr(), &svc).await;
    s.join("secret").await;
    node.stop().await;
}

#[actix_web::test]
async fn a_token_that_expires_while_connected_closes_with_4001() {
    let node = TestNode::start(&fresh_db().await, &[("auth.leeway_s", "0")]).await;
    let t = auth().issue("u", None, Duration::from_secs(1), None, None);
    let mut ws = Ws::connect(node.addr(), &t).await;
    assert_eq!(ws.closed().await, 4001);
    node.stop().await;
}

#[actix_web::test]
async fn a_silent_client_is_closed_with_4008() {
    let node = TestNode::start(
        &fresh_db().await,
        &[
            ("session.heartbeat_ms", "100"),
            ("session.timeout_ms", "400"),
        ],
    )
    .await;
    let mut ws = node.ws("quiet").await;
    // Not reading means not answering pings: wait for the server's own record of the close.
    eventually("heartbeat close", || {
        node.metric("chorus_session_closes_total{code=\"4008\"}") == 1.0
    })
    .await;
    assert_eq!(ws.closed().await, 4008);
    node.stop().await;
}

#[actix_web::test]
async fn a_chatty_client_is_rate_limited_and_a_flood_is_closed_with_4029() {
    let node = TestNode::start(
        &fresh_db().await,
        &[("limits.msgs_per_sec", "1"), ("limits.burst", "5")],
    )
    .await;
    let mut ws = node.ws("fast").await;
    ws.join("rl").await;
    for _ in 0..6 {
        ws.send(json!({"type":"typing","room":"rl"})).await;
    }
    let e = ws.recv().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("rate_limited")),
        "{e}"
    );
    assert!(
        e["retry_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0 && ms <= 1000),
        "{e}"
    );
    assert!(node.metric("chorus_rate_limited_total") >= 1.0);
    // Far beyond the limit: closed.
    for _ in 0..40 {
        ws.stream
            .feed(WsMessage::text(r#"{"type":"typing","room":"rl"}"#))
            .await
            .ok();
    }
    futures_util::SinkExt::flush(&mut ws.stream).await.ok();
    assert_eq!(ws.closed().await, 4029);
    node.stop().await;
}

/// A fresh upgraded socket for user `raw`, spoken to byte by byte (a client library may refuse to
/// send an invalid frame, or hide the server's answer and the TCP close behind its own).
pub async fn raw_socket(node: &TestNode) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(node.addr())
        .await
        .expect("tcp");
    let handshake = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {}\r\n\r\n",
        token("raw")
    );
    tcp.write_all(handshake.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.expect("response head"));
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// Writes a masked close frame with `code`.
pub async fn write_close(tcp: &mut tokio::net::TcpStream, code: u16) {
    use tokio::io::AsyncWriteExt;
    // FIN + opcode 8, mask bit + length 2, mask key, masked code.
    let mask = [1u8, 2, 3, 4];
    let [hi, lo] = code.to_be_bytes();
    tcp.write_all(&[0x88, 0x82, 1, 2, 3, 4, hi ^ mask[0], lo ^ mask[1]])
        .await
        .expect("write close");
}

/// Reads frames until the server's close frame and returns its code.
pub async fn read_close(tcp: &mut tokio::net::TcpStream) -> u16 {
    use tokio::io::AsyncReadExt;
    let read = async {
        loop {
            let opcode = tcp.read_u8().await.expect("frame") & 0x0f;
            let len = match tcp.read_u8().await.expect("length") & 0x7f {
                126 => tcp.read_u16().await.expect("length") as usize,
                127 => tcp.read_u64().await.expect("length") as usize,
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            tcp.read_exact(&mut payload).await.expect("payload");
            if opcode == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("a close frame")
}

/// Closes a fresh socket with `code` and returns the code in the server's close frame.
async fn raw_close(node: &TestNode, code: u16) -> u16 {
    let mut tcp = raw_socket(node).await;
    write_close(&mut tcp, code).await;
    read_close(&mut tcp).await
}

/// After its Close, the server must close the TCP connection itself (RFC 6455 §7.1.1) rather
/// than wait for the client: `what` is the step that ends the connection. Waits half of actix's
/// linger; a server that waited for the client would close only when the whole linger ran out.
pub async fn server_hangs_up(tcp: &mut tokio::net::TcpStream, what: &str) {
    use tokio::io::AsyncReadExt;
    let mut rest = [0u8; 64];
    let read = tokio::time::timeout(chorus::edge::conn::LINGER / 2, tcp.read(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("after {what} the server kept the connection open"));
    assert_eq!(read.expect("a clean end, not a reset"), 0, "after {what}");
}

#[actix_web::test]
async fn the_server_closes_the_tcp_connection_once_the_websocket_is_over() {
    use tokio::io::AsyncWriteExt;
    let node = TestNode::start(&fresh_db().await, &[]).await;

    // The client starts the closing handshake.
    let mut tcp = raw_socket(&node).await;
    write_close(&mut tcp, 1000).await;
    assert_eq!(read_close(&mut tcp).await, 1000);
    server_hangs_up(&mut tcp, "the client's close").await;

    // The server fails the connection (a ping over 125 bytes).
    let mut tcp = raw_socket(&node).await;
    let mut ping = vec![0x89, 0x80 | 126, 0, 200, 0, 0, 0, 0];
    ping.extend_from_slice(&[0u8; 200]);
    tcp.write_all(&ping).await.expect("write ping");
    assert_eq!(read_close(&mut tcp).await, 1002);
    server_hangs_up(&mut tcp, "a protocol error").await;
    node.stop().await;
}

/// Sends `frame` on a fresh socket and returns the close code the server answers with.
async fn close_code_for(node: &TestNode, frame: WsMessage) -> u16 {
    let mut ws = node.ws("attacker").await;
    ws.send_raw(frame).await;
    ws.closed().await
}

#[actix_web::test]
async fn a_barrage_of_bad_input_gets_its_reactions_while_a_calm_pair_misses_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut reader = node.ws("reader").await;
    reader.join("calm").await;
    let mut writer = node.ws("writer").await;
    writer.join("calm").await;
    let mut posted = 0;
    let mut calm_post = async |writer: &mut Ws| {
        posted += 1;
        assert_eq!(writer.post("calm", "still here").await["seq"], posted);
    };

    // Error replies on one connection that stays open.
    let mut attacker = node.ws("attacker").await;
    let deep = format!(
        r#"{{"type":"ping","x":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    for (input, code) in [
        ("\u{0}\u{1}garbage", "bad_request"),
        ("[]", "bad_request"),
        ("42", "bad_request"),
        (deep.as_str(), "bad_request"),
        (
            r#"{"type":"history","room":"calm","limit":1e400}"#,
            "bad_request",
        ),
        (
            r#"{"type":"join","room":"b","since":123456789012345678901234567890}"#,
            "bad_request",
        ),
        (r#"{"type":"leave","room":"never"}"#, "not_joined"),
    ] {
        expect_error(&mut attacker, input, code).await;
        calm_post(&mut writer).await;
    }
    // Unknown fields are ignored (forward compatible): the frame is served.
    attacker
        .send_raw(WsMessage::text(
            r#"{"type":"ping","ref":"u","extra":{"a":[1]}}"#,
        ))
        .await;
    assert_eq!(attacker.recv().await, json!({"type":"pong","ref":"u"}));
    attacker.join("twice").await;
    expect_error(
        &mut attacker,
        r#"{"type":"join","room":"twice"}"#,
        "bad_request",
    )
    .await;

    // Protocol violations close with 1002: a control frame over 125 bytes, close codes a peer
    // must not send (actix-http's codec enforces RFC 6455 §7.4). A valid application close code
    // is answered in kind.
    assert_eq!(
        close_code_for(&node, WsMessage::Ping(vec![7u8; 200].into())).await,
        1002
    );
    calm_post(&mut writer).await;
    for bad in [999u16, 1005, 1006, 2000, 5000] {
        assert_eq!(raw_close(&node, bad).await, 1002, "close code {bad}");
        calm_post(&mut writer).await;
    }
    assert_eq!(raw_close(&node, 4000).await, 4000, "a valid code is echoed");

    // Header bytes that are not text: a plain 401, no crash.
    let mut tcp = tokio::net::TcpStream::connect(node.addr())
        .await
        .expect("tcp");
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Authorization: Bearer \xff\xfe\x00\x80\r\nOrigin: \xc3\x28\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = [0u8; 12];
    tokio::time::timeout(DEADLINE, tcp.read_exact(&mut head))
        .await
        .expect("an answer")
        .expect("read");
    let status = String::from_utf8_lossy(&head);
    assert!(
        status == "HTTP/1.1 401" || status == "HTTP/1.1 400",
        "got {status}"
    );
    calm_post(&mut writer).await;

    // The calm pair: every message exactly once, in order.
    let n = posted;
    assert_eq!(
        recv_seqs(&mut reader, n as usize).await,
        (1..=n).collect::<Vec<i64>>()
    );
    node.stop().await;
}

#[actix_web::test]
async fn a_request_head_over_max_header_bytes_gets_431_with_a_clear_error() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let get = |extra: Option<(&'static str, String)>, path: String| {
        let mut req = http().get(node.http(&path)).bearer_auth(token("big"));
        if let Some((name, value)) = extra {
            req = req.header(name, value);
        }
        req.send()
    };
    let history = "/api/rooms/h/messages".to_owned();
    // Under the default 16 KiB: served.
    let fine = get(Some(("x-trace", "a".repeat(12_000))), history.clone())
        .await
        .unwrap();
    assert_eq!(fine.status(), 200);
    // A 20 KB header, or a 20 KB URL: refused with the limit named, as a load balancer would.
    for res in [
        get(Some(("x-trace", "a".repeat(20_000))), history.clone())
            .await
            .unwrap(),
        get(None, format!("{history}?pad={}", "b".repeat(20_000)))
            .await
            .unwrap(),
    ] {
        assert_eq!(res.status(), 431);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_request");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("limits.max_header_bytes") && message.contains("16384"),
            "{message}"
        );
    }
    // The same request on a node with a larger limit is served.
    let roomy = TestNode::start(&fresh_db().await, &[("limits.max_header_bytes", "32768")]).await;
    let res = http()
        .get(roomy.http(&history))
        .bearer_auth(token("big"))
        .header("x-trace", "a".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    roomy.stop().await;
    node.stop().await;
}
