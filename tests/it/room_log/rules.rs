//! Every rule and error of the room log, over WebSocket and REST, and every transport carrying
//! the entries: live, `since` backfill, SSE (`event:` = the type), long-poll and REST `after=`.

use reqwest::Method;
use serde_json::{Value, json};

use super::{ask, call, next_of};
use crate::support::*;

#[actix_web::test]
async fn edits_deletes_and_reactions_follow_their_rules_over_websocket() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let (mut ann, mut bob) = (node.ws("ann").await, node.ws("bob").await);
    ann.join("log").await;
    bob.join("log").await;
    let m1 = ann.post("log", "hello").await["seq"].as_i64().unwrap();
    assert_eq!(next_of(&mut bob, "message").await["seq"], m1);

    // Edit: the author only; the entry reaches every member with its own seq.
    let ack = ask(
        &mut ann,
        json!({"type":"edit","room":"log","target":m1,"body":"hello!","client_msg_id":"e1"}),
    )
    .await;
    assert_eq!(
        (
            ack["type"].as_str(),
            ack["seq"].as_i64(),
            ack["duplicate"].as_bool()
        ),
        (Some("ack"), Some(m1 + 1), Some(false))
    );
    let edit = next_of(&mut bob, "edit").await;
    assert_eq!(
        (
            edit["seq"].as_i64(),
            edit["target"].as_i64(),
            edit["body"].as_str(),
            edit["user"].as_str()
        ),
        (Some(m1 + 1), Some(m1), Some("hello!"), Some("ann"))
    );
    let again = ask(
        &mut ann,
        json!({"type":"edit","room":"log","target":m1,"body":"hello!","client_msg_id":"e1"}),
    )
    .await;
    assert_eq!(
        (again["seq"].as_i64(), again["duplicate"].as_bool()),
        (Some(m1 + 1), Some(true)),
        "idempotent by client_msg_id"
    );
    let e = ask(
        &mut bob,
        json!({"type":"edit","room":"log","target":m1,"body":"mine now"}),
    )
    .await;
    assert_eq!(e["code"], "forbidden", "{e}");
    let e = ask(
        &mut ann,
        json!({"type":"edit","room":"log","target":999,"body":"x"}),
    )
    .await;
    assert_eq!(e["code"], "not_found", "{e}");
    let e = ask(
        &mut ann,
        json!({"type":"edit","room":"log","target":m1 + 1,"body":"x"}),
    )
    .await;
    assert_eq!(
        e["code"], "not_found",
        "an edit entry is not a message: {e}"
    );

    // Reactions: one per (message, user, key).
    let add = json!({"type":"react","room":"log","target":m1,"key":"👍","op":"add"});
    let r1 = ask(&mut bob, add.clone()).await;
    assert_eq!(
        (r1["type"].as_str(), r1["duplicate"].as_bool()),
        (Some("ack"), Some(false))
    );
    let r2 = ask(&mut bob, add).await;
    assert_eq!(
        (r2["seq"].as_i64(), r2["duplicate"].as_bool()),
        (r1["seq"].as_i64(), Some(true)),
        "an add that holds commits nothing"
    );
    let react = next_of(&mut ann, "react").await;
    assert_eq!(
        (
            react["key"].as_str(),
            react["op"].as_str(),
            react["user"].as_str()
        ),
        (Some("👍"), Some("add"), Some("bob"))
    );
    let remove = json!({"type":"react","room":"log","target":m1,"key":"👍","op":"remove"});
    assert_eq!(ask(&mut bob, remove.clone()).await["duplicate"], false);
    assert_eq!(
        ask(&mut bob, remove).await["duplicate"],
        true,
        "a remove that holds nothing"
    );

    // Delete: not someone else's; then edits and reactions are gone.
    let e = ask(&mut bob, json!({"type":"delete","room":"log","target":m1})).await;
    assert_eq!(e["code"], "forbidden", "{e}");
    let del = ask(&mut ann, json!({"type":"delete","room":"log","target":m1})).await;
    assert_eq!(del["type"], "ack", "{del}");
    let d = next_of(&mut bob, "delete").await;
    assert_eq!(
        (d["target"].as_i64(), d["seq"].clone()),
        (Some(m1), del["seq"].clone())
    );
    let e = ask(
        &mut ann,
        json!({"type":"edit","room":"log","target":m1,"body":"back"}),
    )
    .await;
    assert_eq!(e["code"], "gone", "{e}");
    let e = ask(
        &mut bob,
        json!({"type":"react","room":"log","target":m1,"key":"x","op":"add"}),
    )
    .await;
    assert_eq!(e["code"], "gone", "{e}");
    let again = ask(&mut ann, json!({"type":"delete","room":"log","target":m1})).await;
    assert_eq!(
        (again["seq"].clone(), again["duplicate"].as_bool()),
        (del["seq"].clone(), Some(true)),
        "deleting twice holds"
    );

    // Not joined, and malformed.
    let mut cy = node.ws("cy").await;
    let e = ask(&mut cy, json!({"type":"delete","room":"log","target":m1})).await;
    assert_eq!(e["code"], "not_joined");
    let e = ask(
        &mut ann,
        json!({"type":"react","room":"log","target":m1,"key":"two words","op":"add"}),
    )
    .await;
    assert_eq!(e["code"], "bad_request");
    let head = node
        .node
        .shared
        .store
        .head(&chorus::ids::RoomId::parse("log").unwrap())
        .await
        .unwrap();
    assert_eq!(
        head.last_seq.get(),
        del["seq"].as_i64().unwrap(),
        "refusals and duplicates took no seq"
    );
    node.stop().await;
}

#[actix_web::test]
async fn moderators_and_services_may_delete_any_message_and_rest_follows_the_same_rules() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ann = node.ws("ann").await;
    ann.join("rest").await;
    let seqs: Vec<i64> = {
        let mut v = Vec::new();
        for b in ["one", "two", "three"] {
            v.push(ann.post("rest", b).await["seq"].as_i64().unwrap());
        }
        v
    };
    let path = |s: i64| format!("/api/rooms/rest/messages/{s}");
    let (st, e) = call(
        &node,
        Method::PATCH,
        &path(seqs[0]),
        "bob",
        None,
        Some(json!({"body":"x"})),
    )
    .await;
    assert_eq!((st, e["error"]["code"].as_str()), (403, Some("forbidden")));
    let (st, edit) = call(
        &node,
        Method::PATCH,
        &path(seqs[0]),
        "ann",
        None,
        Some(json!({"body":"ONE","client_msg_id":"p1"})),
    )
    .await;
    assert_eq!(
        (
            st,
            edit["type"].as_str(),
            edit["target"].as_i64(),
            edit["duplicate"].as_bool()
        ),
        (200, Some("edit"), Some(seqs[0]), Some(false)),
        "{edit}"
    );
    let (st, dup) = call(
        &node,
        Method::PATCH,
        &path(seqs[0]),
        "ann",
        None,
        Some(json!({"body":"ONE","client_msg_id":"p1"})),
    )
    .await;
    assert_eq!(
        (st, dup["seq"].clone(), dup["duplicate"].as_bool()),
        (200, edit["seq"].clone(), Some(true))
    );
    let (st, e) = call(
        &node,
        Method::PATCH,
        &path(999),
        "ann",
        None,
        Some(json!({"body":"x"})),
    )
    .await;
    assert_eq!((st, e["error"]["code"].as_str()), (404, Some("not_found")));
    let (st, _) = call(
        &node,
        Method::PATCH,
        &path(seqs[0]),
        "ann",
        None,
        Some(json!({"body":""})),
    )
    .await;
    assert_eq!(st, 400);

    let (st, _) = call(&node, Method::DELETE, &path(seqs[1]), "bob", None, None).await;
    assert_eq!(st, 403);
    let (st, d) = call(
        &node,
        Method::DELETE,
        &path(seqs[1]),
        "mod",
        Some("moderator"),
        None,
    )
    .await;
    assert_eq!((st, d["type"].as_str()), (200, Some("delete")), "{d}");
    let (st, d) = call(
        &node,
        Method::DELETE,
        &path(seqs[2]),
        "backend",
        Some("service"),
        None,
    )
    .await;
    assert_eq!((st, d["type"].as_str()), (200, Some("delete")), "{d}");
    let (st, e) = call(
        &node,
        Method::PATCH,
        &path(seqs[1]),
        "ann",
        None,
        Some(json!({"body":"x"})),
    )
    .await;
    assert_eq!((st, e["error"]["code"].as_str()), (410, Some("gone")));

    let react = |key: &str| format!("/api/rooms/rest/messages/{}/reactions/{key}", seqs[0]);
    let (st, r) = call(&node, Method::PUT, &react("party"), "bob", None, None).await;
    assert_eq!(
        (
            st,
            r["type"].as_str(),
            r["op"].as_str(),
            r["duplicate"].as_bool()
        ),
        (200, Some("react"), Some("add"), Some(false))
    );
    let (_, r2) = call(&node, Method::PUT, &react("party"), "bob", None, None).await;
    assert_eq!(
        (r2["seq"].clone(), r2["duplicate"].as_bool()),
        (r["seq"].clone(), Some(true))
    );
    let (st, _) = call(&node, Method::PUT, &react("%20"), "bob", None, None).await;
    assert_eq!(st, 400, "a key with a space");
    let (st, _) = call(
        &node,
        Method::PUT,
        &format!("/api/rooms/rest/messages/{}/reactions/x", seqs[1]),
        "bob",
        None,
        None,
    )
    .await;
    assert_eq!(st, 410);

    // Folded history: current bodies, deletions, reactions.
    let history = get_json(&node, "/api/rooms/rest/messages?before=100", "ann").await;
    let msgs = history["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "messages only: {history}");
    assert_eq!(
        (msgs[0]["body"].as_str(), msgs[0]["edited_ts"].is_string()),
        (Some("ONE"), true)
    );
    assert_eq!(
        msgs[0]["reactions"],
        json!([{"key":"party","count":1,"users":["bob"]}])
    );
    assert_eq!(
        (msgs[1]["deleted"].as_bool(), msgs[1]["body"].as_str()),
        (Some(true), Some(""))
    );
    // The WebSocket client saw all of it live, in seq order.
    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        let v = ann.recv().await;
        if let Some(k) = v["type"]
            .as_str()
            .filter(|k| ["edit", "delete", "react"].contains(k))
        {
            kinds.push(k.to_owned());
        }
    }
    assert_eq!(kinds, ["edit", "delete", "delete", "react"]);
    node.stop().await;
}

#[actix_web::test]
async fn every_cursor_transport_carries_every_entry_type_in_its_current_state() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut ann = node.ws("ann").await;
    ann.join("tx").await;
    let m1 = ann.post("tx", "a").await["seq"].as_i64().unwrap();
    let m2 = ann.post("tx", "b").await["seq"].as_i64().unwrap();
    ask(
        &mut ann,
        json!({"type":"edit","room":"tx","target":m1,"body":"a2"}),
    )
    .await;
    ask(
        &mut ann,
        json!({"type":"react","room":"tx","target":m1,"key":"k","op":"add"}),
    )
    .await;
    ask(&mut ann, json!({"type":"delete","room":"tx","target":m2})).await;
    let want = ["message", "message", "edit", "react", "delete"];

    // REST after=, and long-poll.
    let after = get_json(&node, "/api/rooms/tx/messages?after=0", "ann").await;
    let types = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["type"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(types(&after["messages"]), want);
    let first = &after["messages"][0];
    assert_eq!(
        (
            first["body"].as_str(),
            first["reactions"][0]["count"].as_i64()
        ),
        (Some("a2"), Some(1)),
        "current state: {first}"
    );
    assert_eq!(
        (
            after["messages"][1]["deleted"].as_bool(),
            after["messages"][1]["body"].as_str()
        ),
        (Some(true), Some(""))
    );
    let poll = get_json(&node, "/api/rooms/tx/poll?after=2&timeout=1", "ann").await;
    assert_eq!(types(&poll["messages"]), &want[2..]);

    // Backfill on a new connection.
    let mut again = node.ws("ann").await;
    again
        .send(json!({"type":"join","room":"tx","since":0}))
        .await;
    let mut got = Vec::new();
    while got.len() < 5 {
        let v = again.recv().await;
        if let Some(t) = v["type"].as_str().filter(|t| want.contains(t)) {
            got.push((t.to_owned(), v["seq"].as_i64().unwrap()));
        }
    }
    assert_eq!(got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(), want);
    assert_eq!(
        got.iter().map(|g| g.1).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );

    // SSE: `event:` is the entry type, `id:` the seq.
    let res = http()
        .get(node.http("/api/rooms/tx/events?after=0"))
        .bearer_auth(token("ann"))
        .send()
        .await
        .unwrap();
    let mut stream = res.bytes_stream();
    let mut text = String::new();
    use futures_util::StreamExt;
    while text.matches("\nid: ").count() + usize::from(text.starts_with("id: ")) < 5 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .expect("SSE in time")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    for (seq, kind) in want.iter().enumerate() {
        assert!(
            text.contains(&format!("id: {}\nevent: {kind}\n", seq + 1)),
            "{text}"
        );
    }
    node.stop().await;
}
