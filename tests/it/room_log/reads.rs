//! Read cursors and unread counts: `joined` carries them, a `read` reaches every session of the
//! user on every node within a round trip (and converges after a Redis outage), read receipts,
//! `PUT …/read`, and `GET /api/me/rooms`.

use reqwest::Method;
use serde_json::json;

use super::{ask, call, next_of};
use crate::support::*;

#[actix_web::test]
async fn a_read_on_one_device_reaches_the_other_device_on_another_node_and_not_other_users() {
    let cluster = TestCluster::start(2).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut bob = a.ws("bob").await;
    bob.join("team").await;
    for i in 0..4 {
        bob.post("team", &format!("m{i}")).await;
    }
    let (mut phone, mut laptop, mut cy) = (a.ws("ann").await, b.ws("ann").await, b.ws("cy").await);
    let joined = phone.join("team").await;
    assert_eq!(
        (joined["read_seq"].as_i64(), joined["unread"].as_i64()),
        (Some(0), Some(4)),
        "{joined}"
    );
    laptop.join("team").await;
    cy.join("team").await;

    let reply = ask(&mut phone, json!({"type":"read","room":"team","seq":3})).await;
    assert_eq!(
        (
            reply["type"].as_str(),
            reply["seq"].as_i64(),
            reply["unread"].as_i64(),
            reply["user"].as_str()
        ),
        (Some("read"), Some(3), Some(1), Some("ann")),
        "{reply}"
    );
    let other = next_of(&mut laptop, "read").await;
    assert_eq!(
        (
            other["seq"].as_i64(),
            other["unread"].as_i64(),
            other.get("ref")
        ),
        (Some(3), Some(1), None)
    );
    // Backwards is a no-op that still answers with the cursor.
    let back = ask(&mut laptop, json!({"type":"read","room":"team","seq":1})).await;
    assert_eq!(
        (back["seq"].as_i64(), back["unread"].as_i64()),
        (Some(3), Some(1))
    );
    // Receipts are off: cy hears nothing of ann's reads; the next thing cy gets is bob's message.
    bob.post("team", "after").await;
    let next = cy.recv_type("message").await;
    assert_eq!(next["body"], "after");
    // A new device learns the cursor at join.
    let mut tablet = b.ws("ann").await;
    let joined = tablet.join("team").await;
    assert_eq!(
        (joined["read_seq"].as_i64(), joined["unread"].as_i64()),
        (Some(3), Some(2))
    );
    // PUT …/read from a backend moves it too, and the devices hear it.
    let (st, body) = call(
        a,
        Method::PUT,
        "/api/rooms/team/read",
        "ann",
        None,
        Some(json!({"seq":99})),
    )
    .await;
    assert_eq!(
        (st, body["read_seq"].as_i64(), body["unread"].as_i64()),
        (200, Some(5), Some(0)),
        "clamped to the head: {body}"
    );
    for ws in [&mut phone, &mut laptop, &mut tablet] {
        let r = next_of(ws, "read").await;
        assert_eq!(
            (r["seq"].as_i64(), r["unread"].as_i64()),
            (Some(5), Some(0))
        );
    }
    cluster.stop().await;
}

#[actix_web::test]
async fn with_redis_down_the_other_device_converges_once_it_returns() {
    let mut cluster = TestCluster::start(2).await;
    let (mut phone, mut laptop) = (
        cluster.nodes[0].ws("ann").await,
        cluster.nodes[1].ws("ann").await,
    );
    let mut bob = cluster.nodes[0].ws("bob").await;
    bob.join("down").await;
    for i in 0..3 {
        bob.post("down", &format!("m{i}")).await;
    }
    phone.join("down").await;
    laptop.join("down").await;
    cluster.redis.kill();
    wait_ready(&cluster.nodes[0], false).await;
    let reply = ask(&mut phone, json!({"type":"read","room":"down","seq":2})).await;
    assert_eq!(
        reply["seq"], 2,
        "the cursor moves in Postgres while Redis is down"
    );
    cluster.redis.restart().await;
    wait_ready(&cluster.nodes[1], true).await;
    // The laptop's node resyncs its rooms after the outage and re-reads its members' cursors.
    let r = next_of(&mut laptop, "read").await;
    assert_eq!(
        (r["seq"].as_i64(), r["unread"].as_i64()),
        (Some(2), Some(1)),
        "{r}"
    );
    cluster.stop().await;
}

#[actix_web::test]
async fn with_read_receipts_on_the_room_hears_reads_and_deletes_lower_everyones_count() {
    let node = TestNode::start(&fresh_db().await, &[("room.read_receipts", "true")]).await;
    let (mut ann, mut bob) = (node.ws("ann").await, node.ws("bob").await);
    bob.join("rr").await;
    let seqs: Vec<i64> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(
                bob.post("rr", &format!("m{i}")).await["seq"]
                    .as_i64()
                    .unwrap(),
            );
        }
        v
    };
    let joined = ann.join("rr").await;
    assert_eq!(joined["unread"], 3);
    ask(&mut ann, json!({"type":"read","room":"rr","seq":seqs[0]})).await;
    let receipt = next_of(&mut bob, "read").await;
    assert_eq!(
        (receipt["user"].as_str(), receipt["seq"].as_i64()),
        (Some("ann"), Some(seqs[0]))
    );
    // Bob deletes an unread message: ann's count drops, for every way of asking.
    ask(
        &mut bob,
        json!({"type":"delete","room":"rr","target":seqs[2]}),
    )
    .await;
    let rooms = get_json(&node, "/api/me/rooms", "ann").await;
    assert_eq!(
        (
            rooms[0]["room"].as_str(),
            rooms[0]["unread"].as_i64(),
            rooms[0]["read_seq"].as_i64()
        ),
        (Some("rr"), Some(1), Some(seqs[0])),
        "{rooms}"
    );
    let mut again = node.ws("ann").await;
    assert_eq!(again.join("rr").await["unread"], 1);
    node.stop().await;
}

#[actix_web::test]
async fn my_rooms_lists_where_i_posted_or_read_most_recent_first() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    rest_post(&node, "r-old", "from the rest helper's user").await;
    let mut ann = node.ws("ann").await;
    for room in ["r1", "r2", "r3"] {
        ann.join(room).await;
        ann.post(room, "hi").await;
    }
    let mut bob = node.ws("bob").await;
    bob.join("r1").await;
    bob.post("r1", "newest").await;
    let rooms = get_json(&node, "/api/me/rooms", "ann").await;
    let names: Vec<&str> = rooms
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["r1", "r3", "r2"], "{rooms}");
    assert_eq!(
        (
            rooms[0]["unread"].as_i64(),
            rooms[0]["last_message"]["body"].as_str()
        ),
        (Some(1), Some("newest"))
    );
    assert_eq!(
        get_json(&node, "/api/me/rooms?limit=1", "ann")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Pages (PROTOCOL §10): `after` (empty for the first page) asks for one; `next` goes on.
    let first = get_json(&node, "/api/me/rooms?after=&limit=2", "ann").await;
    let page: Vec<&str> = first["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room"].as_str().unwrap())
        .collect();
    assert_eq!(page, ["r1", "r3"], "{first}");
    let next = first["next"].as_str().expect("a full page has a next");
    let second = get_json(&node, &format!("/api/me/rooms?after={next}&limit=2"), "ann").await;
    assert_eq!(
        second["rooms"].as_array().map(Vec::len),
        Some(1),
        "{second}"
    );
    assert_eq!(second["rooms"][0]["room"], "r2");
    assert!(
        second.get("next").is_none(),
        "the last page has no next: {second}"
    );
    let (st, v) = call(
        &node,
        Method::GET,
        "/api/me/rooms?after=not-a-cursor",
        "ann",
        None,
        None,
    )
    .await;
    assert_eq!(st, 400, "{v}");
    let (st, _) = call(&node, Method::GET, "/api/me/rooms", "nobody", None, None).await;
    assert_eq!(st, 200);
    let res = http().get(node.http("/api/me/rooms")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    node.stop().await;
}
