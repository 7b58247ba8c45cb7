//! The happy path and the crash: every acked entry reaches its endpoints, signed, in room order,
//! checked against the log; a node SIGKILLed mid-dispatch loses nothing.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::json;

use super::receiver::{Mode, Receiver, SECRET as HOOK_SECRET};
use super::*;
use crate::processes::{RedisServer, lines_with, sigkill, spawn_node_args, spawn_node_args_logged};
use crate::room_log::call;

/// Posts `n` messages to each room, alternating over `nodes`, rooms concurrently.
async fn post_all(nodes: &[&TestNode], rooms: &[&str], n: usize) {
    for i in 0..n {
        let node = nodes[i % nodes.len()];
        join_all(
            rooms
                .iter()
                .map(|room| async move { rest_post(node, room, &format!("{room} #{i}")).await }),
        )
        .await;
    }
}

#[actix_web::test]
async fn every_acked_entry_reaches_its_endpoints_signed_and_in_room_order() {
    let all = Receiver::start(Mode::Ok).await;
    let msgs = Receiver::start(Mode::Ok).await;
    let (db, redis, prefix) = (fresh_db().await, RedisServer::start().await, prefix());
    let hooks = vec![
        hook("all", &all.url(), ALL, &["wh-*"]),
        hook("messages", &msgs.url(), &["message"], &["wh-a"]),
    ];
    let cluster = [("redis.url", redis.url()), ("redis.prefix", prefix.clone())];
    let extra: Vec<(&str, &str)> = cluster.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = hook_node(&db, hooks.clone(), &extra).await;
    let b = hook_node(&db, hooks, &extra).await;
    wait_ready(&a, true).await;
    wait_ready(&b, true).await;

    post_all(&[&a, &b], &["wh-a", "wh-b", "wh-c", "elsewhere"], 25).await;
    // The other entry types, on both nodes; a refused one (not found) takes no seq and no row.
    let edit = json!({"body": "edited"});
    let (s, _) = call(
        &a,
        Method::PATCH,
        "/api/rooms/wh-a/messages/1",
        "poster",
        None,
        Some(edit),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &b,
        Method::PUT,
        "/api/rooms/wh-a/messages/3/reactions/%F0%9F%91%8D",
        "poster",
        None,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &b,
        Method::DELETE,
        "/api/rooms/wh-b/messages/2",
        "poster",
        None,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &a,
        Method::PATCH,
        "/api/rooms/wh-c/messages/999",
        "poster",
        None,
        Some(json!({"body": "x"})),
    )
    .await;
    assert_eq!(s, 404);

    let log = log_of(&db, "wh-").await;
    assert_eq!(log["wh-a"].len(), 27, "25 messages, an edit and a reaction");
    eventually("every entry reached the first endpoint", || {
        covers(&all.accepted(), &log, ALL)
    })
    .await;
    let only_a: BTreeMap<_, _> = log
        .iter()
        .filter(|(r, _)| *r == "wh-a")
        .map(|(r, e)| (r.clone(), e.clone()))
        .collect();
    eventually("every message of wh-a reached the second endpoint", || {
        covers(&msgs.accepted(), &only_a, &["message"])
    })
    .await;
    let repeats = check_delivery(&all.accepted(), &log, ALL)
        + check_delivery(&msgs.accepted(), &only_a, &["message"]);
    assert_eq!(repeats, 0, "nothing failed, so nothing was sent twice");
    assert!(
        all.got().iter().all(|g| g.room.starts_with("wh-")),
        "no room outside the patterns"
    );
    // The metrics count the requests; the outbox empties as it delivers.
    let delivered = all.accepted().len() + msgs.accepted().len();
    eventually(
        "chorus_webhook_deliveries_total{result=ok} counts them",
        || {
            let ok: f64 = [&a, &b]
                .iter()
                .map(|n| n.metric("chorus_webhook_deliveries_total{result=\"ok\"}"))
                .sum();
            ok as usize == delivered
        },
    )
    .await;
    assert_eq!(count(&db, "webhook_outbox").await, 0);
    // Retention: the queues, idle now, are pruned (here with no idle time to wait out).
    assert_eq!(
        count(&db, "webhook_queues").await,
        4,
        "3 rooms + 1 room for the second endpoint"
    );
    let outbox = a.node.shared.webhooks.as_ref().expect("webhooks").outbox();
    let pruned = outbox.prune(Duration::ZERO).await.expect("prune");
    assert_eq!(pruned, 4);
    assert_eq!(count(&db, "webhook_queues").await, 0);
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn a_node_killed_mid_dispatch_loses_nothing_and_repeats_only_with_the_same_id() {
    // Slow enough that the kill lands while requests are in flight.
    let rx = Receiver::start(Mode::Slow(Duration::from_millis(150))).await;
    let db = fresh_db().await;
    let dir = config_dir(&format!(
        "[webhook]\npoll_ms = 200\n\n[[webhooks]]\nname = \"rx\"\nurl = \"{}\"\nsecret = \"{HOOK_SECRET}\"\ntimeout_ms = 1000\n",
        rx.url()
    ));
    let dir_arg = dir.path().to_str().expect("utf-8 path").to_owned();
    let (child, addr) = spawn_node_args(
        &db,
        &[
            ("CHORUS__DATABASE__TIMEOUT_MS", "1000"),
            ("CHORUS__LIMITS__MSGS_PER_SEC", "10000"),
            ("CHORUS__LIMITS__BURST", "10000"),
        ],
        &["--config-dir", &dir_arg],
    );
    // Killed when the test ends, also when it fails half way.
    let mut child = KillOnDrop(child);
    let rooms = ["k-a", "k-b", "k-c"];
    // Posting goes on while the node dies: whatever it committed (acked or not) is in the log,
    // and every entry of the log must arrive.
    let posting = actix_web::rt::spawn(async move {
        let mut acked = 0;
        for i in 0..40 {
            let addr = &addr;
            let done = join_all(rooms.iter().map(|room| async move {
                let res = http()
                    .post(format!("http://{addr}/api/rooms/{room}/messages"))
                    .bearer_auth(token("poster"))
                    .json(&json!({"body": format!("{room} {i}")}))
                    .send()
                    .await;
                res.is_ok_and(|r| r.status() == 201)
            }))
            .await;
            acked += done.iter().filter(|ok| **ok).count();
        }
        acked
    });
    // Killed while a request is in flight (held 150 ms by the receiver): its queue's lease is
    // never released, so the survivor has to take it over.
    eventually("the first node delivered some and is sending more", || {
        rx.accepted().len() >= 10 && rx.in_flight() > 0
    })
    .await;
    // Answered before the kill (the one in flight is recorded when its 150 ms are up, which
    // can be before the kill has reaped the process).
    let at_kill = rx.got().len();
    sigkill(&mut child.0);
    let acked = posting.await.expect("posting task");
    assert!(acked > 0, "posts were acked before the kill");

    // Another node takes over once the dead node's leases (1 s + 2 × 1 s) expire, and says so.
    let (survivor, _, survivor_log) = spawn_node_args_logged(
        &db,
        &[("CHORUS__DATABASE__TIMEOUT_MS", "1000")],
        &["--config-dir", &dir_arg],
    );
    let survivor = KillOnDrop(survivor);
    let log = log_of(&db, "k-").await;
    let committed = log.values().map(Vec::len).sum::<usize>();
    assert!(committed >= acked, "every acked post is in the log");
    // The kill came while a request was in flight (the receiver answers after 150 ms), so its
    // queue's lease was never released: the survivor must take it over once it expires. Wait
    // for that before judging delivery: the other queues' entries may all arrive earlier (the
    // survivor claims them at once), and the taken-over queue's are resent from its head.
    eventually("the survivor takes over the dead node's lease", || {
        !lines_with(&survivor_log, &["webhook queue taken over", "rx"]).is_empty()
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !covers(&rx.accepted(), &log, ALL) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the survivor delivered everything"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let repeats = check_delivery(&rx.accepted(), &log, ALL);
    println!(
        "killed after {at_kill} requests ({acked} acked, {committed} committed); {repeats} repeated (same ids)"
    );
    let taken = lines_with(&survivor_log, &["webhook queue taken over", "rx"]);
    assert!(
        !taken.is_empty(),
        "the takeover of the dead node's leases is logged"
    );
    assert!(
        taken.iter().all(|l| rooms.iter().any(|r| l.contains(r))),
        "each line names its room: {taken:?}"
    );
    drop(survivor);
}
