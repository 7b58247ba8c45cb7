//! Rooms under faults: a join refused while Postgres is down leaves nothing behind, a resume is
//! judged against the committed head, and a history that went backwards gets a new epoch.

use std::time::Duration;

use serde_json::json;

use crate::processes::RedisServer;
use crate::support::*;
use crate::support::{cluster_node, prefix};

#[actix_web::test]
async fn a_join_refused_while_postgres_is_down_leaves_no_membership_and_works_after_recovery() {
    let db = fresh_db().await;
    let proxy = FaultProxy::start(pg_addr()).await;
    let node = TestNode::start(&via_proxy(&db, &proxy), &[("database.timeout_ms", "1000")]).await;
    let mut ws = node.ws("u").await;
    let mut other = node.ws("v").await;
    proxy.cut();
    ws.send(json!({"type":"join","room":"wedge","ref":"j1"}))
        .await;
    let e = ws.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("unavailable"), Some("j1"))
    );
    // Refused means not joined.
    ws.send(json!({"type":"send","room":"wedge","body":"x","ref":"s0"}))
        .await;
    let e = ws.recv_type("error").await;
    assert_eq!(e["code"], "not_joined", "{e}");

    proxy.restore();
    // The other connection's first join after recovery, and this one's again: both work.
    other.join("wedge").await;
    let joined = ws.join("wedge").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(ws.post("wedge", "after").await["seq"], 1);
    assert_eq!(recv_seqs(&mut other, 1).await, vec![1]);
    ws.send(json!({"type":"leave","room":"wedge","ref":"l"}))
        .await;
    assert_eq!(ws.recv_type("left").await["ref"], "l");

    // A join that arrives while the head read hangs waits for it, and is served when it answers.
    proxy.stall();
    let mut third = node.ws("w").await;
    third
        .send(json!({"type":"join","room":"waiting","ref":"j3"}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // let the join reach the stalled read
    proxy.restore();
    assert_eq!(third.recv_type("joined").await["ref"], "j3");
    node.stop().await;
}

#[actix_web::test]
async fn resuming_on_a_node_that_is_behind_is_recovered_without_duplicates() {
    let (db, redis, prefix) = (fresh_db().await, RedisServer::start().await, prefix());
    let a = cluster_node(&db, &redis, &prefix).await;
    let b = cluster_node(&db, &redis, &prefix).await;
    let mut on_b = b.ws("bystander").await;
    on_b.join("behind").await; // B's room is live, and will fall behind
    let mut writer = a.ws("writer").await;
    writer.join("behind").await;

    redis.signal("-STOP");
    for i in 1..=5 {
        writer.post("behind", &format!("m{i}")).await;
    }
    // A client that saw 1-5 on A resumes on B at once, before B could hear of them.
    let mut resumed = b.ws("writer").await;
    resumed
        .send(json!({"type":"join","room":"behind","since":5,"ref":"r"}))
        .await;
    let joined = resumed.recv_type("joined").await;
    assert_eq!(
        (joined["recovered"].as_bool(), joined["last_seq"].as_i64()),
        (Some(true), Some(5)),
        "{joined}"
    );
    redis.signal("-CONT");
    writer.post("behind", "m6").await;
    // The next message frame is 6: nothing of 1-5 again.
    assert_eq!(recv_seqs(&mut resumed, 1).await, vec![6]);
    assert_eq!(recv_seqs(&mut on_b, 6).await, vec![1, 2, 3, 4, 5, 6]);
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn a_history_that_went_backwards_gets_a_new_epoch_and_live_members_a_reset() {
    let db = fresh_db().await;
    let node = TestNode::start(&db, &[]).await;
    let mut member = node.ws("member").await;
    let joined = member.join("rw").await;
    let old_epoch = joined["epoch"].as_str().unwrap().to_owned();
    for i in 1..=15 {
        rest_post(&node, "rw", &format!("m{i}")).await;
    }
    let want: Vec<i64> = (1..=15).collect();
    assert_eq!(recv_seqs(&mut member, 15).await, want);
    let mut sse = http()
        .get(node.http("/api/rooms/rw/events"))
        .bearer_auth(token("sse"))
        .send()
        .await
        .unwrap();

    // A restore from an older backup: the history ends at 10 again, under the same epoch.
    db_client(&db)
        .await
        .batch_execute(
            "DELETE FROM messages WHERE room = 'rw' AND seq > 10; \
             UPDATE rooms SET last_seq = 10 WHERE id = 'rw';",
        )
        .await
        .unwrap();
    let m = rest_post(&node, "rw", "after the restore").await;
    assert_eq!(m["seq"], 11, "the store numbers on from what it has");

    let reset = member.recv_type("reset").await;
    let new_epoch = reset["epoch"].as_str().unwrap().to_owned();
    assert_ne!(
        new_epoch, old_epoch,
        "a new epoch: seq 11 is not the old 11"
    );
    assert_eq!(
        (reset["room"].as_str(), reset["last_seq"].as_i64()),
        (Some("rw"), Some(10))
    );
    let live = member.recv_type("message").await;
    assert_eq!(
        (live["seq"].as_i64(), live["body"].as_str()),
        (Some(11), Some("after the restore"))
    );
    // An SSE reader hears of it too.
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !text.contains("event: reset") {
        let chunk = tokio::time::timeout_at(deadline, sse.chunk())
            .await
            .expect("an SSE reset event in time")
            .unwrap()
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains(&new_epoch), "{text}");
    let stored: String = db_client(&db)
        .await
        .query_one("SELECT epoch FROM rooms WHERE id = 'rw'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, new_epoch);

    // A client that saw the old 11-15 resumes under the old epoch: not recovered.
    let mut old = node.ws("old").await;
    old.send(json!({"type":"join","room":"rw","since":12,"epoch":old_epoch}))
        .await;
    let j = old.recv_type("joined").await;
    assert_eq!(
        (j["recovered"].as_bool(), j["epoch"].as_str()),
        (Some(false), Some(new_epoch.as_str()))
    );
    node.stop().await;
}
