//! Bad data and secrets: one message the store refuses fails alone, a NUL is refused at the
//! boundary, a token not valid yet is refused, and no body or token reaches the log.

use std::time::Duration;

use serde_json::{Value, json};

use crate::processes::spawn_node_logged;
use crate::support::*;
use chorus::store::{NewMessage, StoreError};

#[actix_web::test]
async fn a_nul_character_is_refused_at_the_boundary_with_invalid_body() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ws = node.ws("nul").await;
    ws.join("n").await;
    ws.send(json!({"type":"send","room":"n","body":"a\u{0}b","ref":"1"}))
        .await;
    let e = ws.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("invalid_body"), Some("1"))
    );
    ws.send(json!({"type":"send","room":"n","body":"ok","client_msg_id":"c\u{0}","ref":"2"}))
        .await;
    let e = ws.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("invalid_body"), Some("2"))
    );
    let res = http()
        .post(node.http("/api/rooms/n/messages"))
        .bearer_auth(token("nul"))
        .json(&json!({"body": "x\u{0}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_body");
    // A token whose name the store could not take is refused like any bad token.
    let t = auth().issue("u", Some("Nul\u{0}"), Duration::from_secs(60), None, None);
    let res = http()
        .get(node.http("/api/rooms/n/messages"))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // The connection is still fine, and nothing was stored.
    assert_eq!(ws.post("n", "fine").await["seq"], 1);
    node.stop().await;
}

#[actix_web::test]
async fn a_message_the_store_refuses_fails_alone_and_every_other_post_of_its_batch_commits() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut member = node.ws("member").await;
    member.join("batch").await;
    let rooms = node.node.shared.rooms.clone();
    let room = chorus::ids::RoomId::parse("batch").unwrap();
    let post = |user: String, body: String| {
        let (rooms, room) = (rooms.clone(), room.clone());
        async move {
            rooms
                .post(&room, NewMessage::message(user.into(), body))
                .await
        }
    };
    const ROUNDS: usize = 30;
    const HONEST: usize = 10;
    let mut committed = 0;
    for round in 0..ROUNDS {
        // Posted straight to the room, past the boundary's check, as a bug elsewhere would: all
        // at once, so they share group commits with the bad one.
        let honest =
            (0..HONEST).map(|u| post(format!("user{u}"), format!("round {round} from {u}")));
        let bad = post("mallory".into(), format!("round {round} \u{0}"));
        let (bad, honest) = tokio::join!(bad, futures_util::future::join_all(honest));
        for (u, res) in honest.into_iter().enumerate() {
            assert!(res.is_ok(), "round {round}: user{u}'s post failed: {res:?}");
            committed += 1;
        }
        assert!(
            matches!(bad, Err(StoreError::Invalid(_))),
            "the bad post itself fails as invalid: {bad:?}"
        );
    }
    let want: Vec<i64> = (1..=committed).collect();
    assert_eq!(recv_seqs(&mut member, committed as usize).await, want);
    node.stop().await;
}

#[actix_web::test]
async fn a_token_not_valid_yet_is_refused() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let now = chorus::auth::now_secs();
    let claims = chorus::auth::Claims {
        nbf: Some(now + 600),
        ..chorus::auth::Claims::new("early", now + 3600)
    };
    let t = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let res = http()
        .get(node.http("/api/rooms/x/messages"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let ws =
        tokio_tungstenite::connect_async(format!("ws://{}/ws?access_token={t}", node.addr())).await;
    assert!(ws.is_err(), "the upgrade is refused too");
    node.stop().await;
}

#[actix_web::test]
async fn message_bodies_and_tokens_never_reach_the_log_even_at_trace() {
    let db = fresh_db().await;
    let (mut child, addr, log) = spawn_node_logged(&db, &[("RUST_LOG", "trace")]);
    let body = format!("secret-body-{}", uuid::Uuid::new_v4().simple());
    let t = token("logged");
    let res = http()
        .post(format!("http://{addr}/api/rooms/log/messages"))
        .bearer_auth(&t)
        .json(&json!({"body": body}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let mut ws = Ws::connect(addr.parse().unwrap(), &t).await;
    ws.join("log").await;
    ws.post("log", &format!("{body}-ws")).await;
    let history = http()
        .get(format!(
            "http://{addr}/api/rooms/log/messages?access_token={t}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(history.status(), 200);
    ws.stream.close(None).await.expect("close");
    sigterm(&child);
    exit_status(&mut child).await;
    let lines = log.lock().unwrap().join("\n");
    assert!(
        lines.contains("TRACE") || lines.contains("DEBUG"),
        "the node did log below info:\n{lines}"
    );
    assert!(!lines.contains(&body), "a message body reached the log");
    assert!(!lines.contains(&t), "a token reached the log");
}
