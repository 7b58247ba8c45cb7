//! Every row of PROTOCOL.md §3's frame tables, on one real node.

use serde_json::json;

use crate::support::*;

#[actix_web::test]
async fn hello_is_the_first_frame_and_names_node_session_user() {
    let node = TestNode::start(&fresh_db().await, &[("session.heartbeat_ms", "7000")]).await;
    let ws = node.ws("ann").await;
    let h = &ws.hello;
    assert_eq!(h["protocol"], 2);
    assert_eq!(h["user"], "ann");
    assert_eq!(h["node"], node.node.shared.node_id.as_str());
    assert!(h["session"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(h["heartbeat_ms"], 7000);
    node.stop().await;
}

#[actix_web::test]
async fn send_is_acked_after_commit_and_every_member_gets_it_in_order() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ann = node.ws("ann").await;
    let mut bob = node.ws("bob").await;
    let joined = ann.join("general").await;
    assert_eq!(joined["ref"], "j");
    assert_eq!(joined["last_seq"], 0);
    assert!(joined["epoch"].as_str().is_some_and(|e| !e.is_empty()));
    bob.join("general").await;

    ann.send(
        json!({"type":"send","room":"general","body":"hi bob","client_msg_id":"m1","ref":"r1"}),
    )
    .await;
    // The ack comes first, then the sender's own copy (presence noise may precede both).
    let ack = ann.recv_type("ack").await;
    assert_eq!(ack["ref"], "r1");
    assert_eq!(
        (ack["room"].as_str(), ack["seq"].as_i64()),
        (Some("general"), Some(1))
    );
    assert_eq!(ack["client_msg_id"], "m1");
    assert_eq!(ack["duplicate"], false);
    let own = ann.recv().await;
    assert_eq!(own["type"], "message");
    assert_eq!(own["id"], ack["id"]);

    let m = bob.recv_type("message").await;
    assert_eq!(m["seq"], 1);
    assert_eq!(m["user"], "ann");
    assert_eq!(m["name"], "Name ann");
    assert_eq!(m["body"], "hi bob");
    assert_eq!(m["client_msg_id"], "m1");
    let ts = m["ts"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.len() == 24,
        "RFC 3339 with ms: {ts}"
    );

    for i in 2..=20 {
        ann.post("general", &format!("n{i}")).await;
    }
    assert_eq!(recv_seqs(&mut bob, 19).await, (2..=20).collect::<Vec<_>>());
    node.stop().await;
}

#[actix_web::test]
async fn repeated_client_msg_id_returns_the_original_and_creates_nothing() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ann = node.ws("ann").await;
    ann.join("r").await;
    ann.send(json!({"type":"send","room":"r","body":"once","client_msg_id":"same"}))
        .await;
    let first = ann.recv_type("ack").await;
    assert_eq!(ann.recv_type("message").await["seq"], 1);
    ann.send(json!({"type":"send","room":"r","body":"once","client_msg_id":"same","ref":"again"}))
        .await;
    let second = ann.recv_type("ack").await;
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["ref"], "again");
    assert_eq!(
        (second["seq"].clone(), second["id"].clone()),
        (first["seq"].clone(), first["id"].clone())
    );
    // Nothing new was stored or broadcast: the next message is seq 2.
    assert_eq!(ann.post("r", "next").await["seq"], 2);
    node.stop().await;
}

#[actix_web::test]
async fn leave_replies_left_and_stops_delivery() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ann = node.ws("ann").await;
    let mut bob = node.ws("bob").await;
    ann.join("r").await;
    bob.join("r").await;
    bob.send(json!({"type":"leave","room":"r","ref":"bye"}))
        .await;
    let left = bob.recv_type("left").await;
    assert_eq!(
        (left["ref"].as_str(), left["room"].as_str()),
        (Some("bye"), Some("r"))
    );
    ann.post("r", "after leave").await;
    // bob is not a member any more: a send is refused, and no message frame arrived before it.
    bob.send(json!({"type":"send","room":"r","body":"x","ref":"nj"}))
        .await;
    let e = bob.recv().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["ref"].as_str()),
        (Some("error"), Some("not_joined"), Some("nj"))
    );
    node.stop().await;
}

#[actix_web::test]
async fn history_pages_backwards_in_ascending_order() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ann = node.ws("ann").await;
    ann.join("h").await;
    for i in 1..=12 {
        ann.post("h", &format!("m{i}")).await;
    }
    ann.send(json!({"type":"history","room":"h","limit":5,"ref":"p1"}))
        .await;
    let page = ann.recv_type("history").await;
    assert_eq!(page["ref"], "p1");
    let seqs = page_seqs(&page);
    assert_eq!(seqs, vec![8, 9, 10, 11, 12]);
    ann.send(json!({"type":"history","room":"h","before":8,"limit":5}))
        .await;
    let page = ann.recv_type("history").await;
    let seqs = page_seqs(&page);
    assert_eq!(seqs, vec![3, 4, 5, 6, 7]);
    node.stop().await;
}

#[actix_web::test]
async fn presence_snapshot_then_diffs_and_a_user_with_two_sockets_counts_once() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ann = node.ws("ann").await;
    ann.send(json!({"type":"join","room":"p"})).await;
    assert_eq!(ann.recv().await["type"], "joined");
    let p = ann.recv().await;
    assert_eq!(p["type"], "presence");
    assert_eq!(p["users"], json!([{"user":"ann","name":"Name ann"}]));

    let mut bob1 = node.ws("bob").await;
    bob1.join("p").await;
    let d = ann.recv().await;
    assert_eq!(
        (d["type"].as_str(), d["joins"][0]["user"].as_str()),
        (Some("presence_diff"), Some("bob"))
    );
    let mut bob2 = node.ws("bob").await;
    bob2.send(json!({"type":"join","room":"p"})).await;
    bob2.recv_type("joined").await;
    let snap = bob2.recv().await;
    assert_eq!(snap["users"].as_array().unwrap().len(), 2, "{snap}");

    // bob's first socket goes: no leave (his second socket is still there). The session sends its
    // Leave before the gauge drops, so a post made after that is ordered after any presence change.
    drop(bob1);
    eventually("bob's first session gone", || {
        node.metric("chorus_sessions ") == 2.0
    })
    .await;
    ann.send(json!({"type":"send","room":"p","body":"marker"}))
        .await;
    loop {
        let v = ann.recv().await;
        assert_ne!(v["type"], "presence_diff", "bob still has a socket: {v}");
        if v["type"] == "message" {
            break;
        }
    }
    drop(bob2);
    let d = ann.recv().await;
    assert_eq!(
        (d["type"].as_str(), d["leaves"][0]["user"].as_str()),
        (Some("presence_diff"), Some("bob"))
    );
    let users = http()
        .get(node.http("/api/rooms/p/presence"))
        .bearer_auth(token("ann"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(users["users"], json!([{"user":"ann","name":"Name ann"}]));
    node.stop().await;
}

#[actix_web::test]
async fn typing_reaches_other_users_but_not_the_typist() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ann = node.ws("ann").await;
    let mut bob = node.ws("bob").await;
    ann.join("t").await;
    bob.join("t").await;
    ann.recv_type("presence_diff").await;
    ann.send(json!({"type":"typing","room":"t"})).await;
    let t = bob.recv().await;
    assert_eq!(
        (t["type"].as_str(), t["user"].as_str(), t["room"].as_str()),
        (Some("typing"), Some("ann"), Some("t"))
    );
    // ann's next frame is the pong, not her own typing notice.
    ann.send(json!({"type":"ping","ref":"p"})).await;
    assert_eq!(ann.recv().await, json!({"type":"pong","ref":"p"}));
    node.stop().await;
}

#[actix_web::test]
async fn typing_is_not_stored() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ann = node.ws("ann").await;
    ann.join("t").await;
    ann.send(json!({"type":"typing","room":"t"})).await;
    assert_eq!(ann.post("t", "real").await["seq"], 1);
    node.stop().await;
}

#[actix_web::test]
async fn ping_gets_pong_with_ref() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ann = node.ws("ann").await;
    ann.send(json!({"type":"ping","ref":"abc"})).await;
    assert_eq!(ann.recv().await, json!({"type":"pong","ref":"abc"}));
    node.stop().await;
}

#[actix_web::test]
async fn a_dead_socket_leaves_its_rooms() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ann = node.ws("ann").await;
    ann.join("d").await;
    let bob = {
        let mut b = node.ws("bob").await;
        b.join("d").await;
        b
    };
    ann.recv_type("presence_diff").await;
    drop(bob);
    let d = ann.recv_type("presence_diff").await;
    assert_eq!(d["leaves"][0]["user"], "bob");
    eventually("session gauge back to 1", || {
        node.metric("chorus_sessions ") == 1.0
    })
    .await;
    node.stop().await;
}
