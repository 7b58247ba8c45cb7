//! The admin API's room side: the cluster's active rooms with member counts, and disconnecting a
//! user from a room on every node (4003).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::*;
use crate::room_log::call;

#[actix_web::test]
async fn admins_see_the_clusters_rooms_and_disconnect_a_user_from_one_on_every_node() {
    let c = TestCluster::start(2).await;
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let mut alice_a = a.ws("alice").await;
    let mut alice_b = b.ws("alice").await;
    let mut bob = a.ws("bob").await;
    let mut carol = b.ws("carol").await;
    for ws in [&mut alice_a, &mut alice_b, &mut bob] {
        ws.join("adm-r").await;
    }
    carol.join("adm-other").await;

    let (s, _) = call(a, Method::GET, "/api/admin/rooms", "alice", None, None).await;
    assert_eq!(s, 403, "the admin API is for service tokens");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let rooms = loop {
        let (s, v) = admin(a, Method::GET, "/api/admin/rooms", None).await;
        assert_eq!(s, 200, "{v}");
        let want = json!([
            {"room": "adm-r", "members": 2, "nodes": 2},
            {"room": "adm-other", "members": 1, "nodes": 1},
        ]);
        if v["rooms"] == want {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "active rooms never matched: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (_, limited) = admin(a, Method::GET, "/api/admin/rooms?limit=1", None).await;
    assert_eq!(
        limited["rooms"].as_array().map(Vec::len),
        Some(1),
        "{rooms}"
    );

    let path = "/api/admin/rooms/adm-r/disconnect";
    let (s, _) = admin(a, Method::POST, path, Some(json!({}))).await;
    assert_eq!(s, 400, "the body names the user");
    let too_long = Some(json!({"user": "u".repeat(129)}));
    let (s, v) = admin(a, Method::POST, path, too_long).await;
    assert_eq!(s, 400, "no token can carry a 129-character user: {v}");
    let kick_bob = Some(json!({"user": "bob"}));
    let (s, _) = call(a, Method::POST, path, "alice", None, kick_bob.clone()).await;
    assert_eq!(s, 403, "only a service token disconnects");
    let bad_room = "/api/admin/rooms/no%20spaces/disconnect";
    let (s, _) = admin(a, Method::POST, bad_room, kick_bob).await;
    assert_eq!(s, 400, "a room id that cannot exist");
    let (s, v) = admin(a, Method::POST, path, Some(json!({"user": "alice"}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["closed_here"], 1, "{v}");
    assert_eq!(alice_a.closed().await, 4003);
    assert_eq!(
        alice_b.closed().await,
        4003,
        "the other node closed hers too"
    );
    // Bob, in the same room, and Carol, elsewhere, carry on.
    let ack: Value = bob.post("adm-r", "still here").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let ack: Value = carol.post("adm-other", "me too").await;
    assert_eq!(ack["type"], "ack", "{ack}");

    // A node without Postgres webhooks configured lists none.
    let (s, v) = admin(a, Method::GET, "/api/admin/webhooks", None).await;
    assert_eq!((s, v), (200, json!({"endpoints": []})));
}
