//! Join with `since`: exactly the missed messages, then live, with no gap or duplicate at the seam;
//! `recovered:false` when the gap cannot be filled.

use serde_json::json;

use crate::support::*;

#[actix_web::test]
async fn join_with_since_gets_exactly_the_missed_messages_then_live() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    for i in 1..=10 {
        rest_post(&node, "b", &format!("m{i}")).await;
    }
    let mut bob = node.ws("bob").await;
    bob.send(json!({"type":"join","room":"b","since":4,"ref":"back"}))
        .await;
    let joined = bob.recv().await;
    assert_eq!(joined["type"], "joined");
    assert_eq!(
        (joined["recovered"].as_bool(), joined["last_seq"].as_i64()),
        (Some(true), Some(10))
    );
    assert_eq!(bob.recv().await["type"], "presence");
    assert_eq!(recv_seqs(&mut bob, 6).await, (5..=10).collect::<Vec<_>>());
    rest_post(&node, "b", "live").await;
    assert_eq!(recv_seqs(&mut bob, 1).await, vec![11]);
    assert!(node.metric("chorus_backfill_messages_total") >= 6.0);
    node.stop().await;
}

#[actix_web::test]
async fn backfill_and_live_meet_without_gap_or_duplicate_under_concurrent_posting() {
    let node = TestNode::start(
        &fresh_db().await,
        &[
            ("limits.msgs_per_sec", "100000"),
            ("limits.burst", "100000"),
        ],
    )
    .await;
    const N: i64 = 400;
    let mut writer = node.ws("writer").await;
    writer.join("seam").await;
    // Joiners start at different points while the writer keeps posting.
    let mut joiners: Vec<(i64, i64, Ws)> = Vec::new(); // (join after ack, since, socket)
    let plan = [(40, 0), (120, 100), (200, 10), (300, 299)];
    for i in 1..=N {
        writer
            .send(json!({"type":"send","room":"seam","body":format!("m{i}")}))
            .await;
    }
    let mut acked = 0;
    while acked < N {
        let v = writer.recv().await;
        if v["type"] == "ack" {
            acked += 1;
            if let Some(&(_, since)) = plan.iter().find(|(at, _)| *at == acked) {
                let mut ws = node.ws(&format!("j{acked}")).await;
                ws.send(json!({"type":"join","room":"seam","since":since}))
                    .await;
                joiners.push((acked, since, ws));
            }
        }
    }
    for (at, since, mut ws) in joiners {
        let joined = ws.recv_type("joined").await;
        assert_eq!(joined["recovered"], true, "joiner at {at}");
        let seqs = recv_seqs(&mut ws, (N - since) as usize).await;
        assert_eq!(
            seqs,
            ((since + 1)..=N).collect::<Vec<_>>(),
            "joiner at ack {at} since {since}"
        );
    }
    node.stop().await;
}

#[actix_web::test]
async fn a_different_epoch_or_a_gap_past_max_catchup_is_not_recovered() {
    let node = TestNode::start(&fresh_db().await, &[("room.max_catchup", "5")]).await;
    for i in 1..=10 {
        rest_post(&node, "e", &format!("m{i}")).await;
    }
    let mut head = 10;
    for (since, epoch, why) in [
        (8, Some("not-the-epoch"), "epoch mismatch"),
        (2, None, "past max_catchup"),
        (99, None, "since ahead of head"),
    ] {
        let mut ws = node.ws("c").await;
        ws.send(json!({"type":"join","room":"e","since":since,"epoch":epoch}))
            .await;
        let joined = ws.recv().await;
        assert_eq!(
            (joined["recovered"].as_bool(), joined["last_seq"].as_i64()),
            (Some(false), Some(head)),
            "{why}"
        );
        assert_eq!(ws.recv().await["type"], "presence");
        // Live from the head on, without the old messages.
        rest_post(&node, "e", why).await;
        head += 1;
        assert_eq!(recv_seqs(&mut ws, 1).await, vec![head], "{why}");
    }
    // The right epoch within the window recovers.
    let mut ws = node.ws("c").await;
    ws.send(json!({"type":"join","room":"e","since":1})).await;
    let joined = ws.recv().await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    let head = joined["last_seq"].as_i64().unwrap();
    let mut ws = node.ws("d").await;
    ws.send(json!({"type":"join","room":"e","since":head - 2,"epoch":epoch}))
        .await;
    assert_eq!(ws.recv().await["recovered"], true);
    node.stop().await;
}

#[actix_web::test]
async fn a_client_reconnecting_to_another_node_gets_exactly_what_it_missed() {
    let db = fresh_db().await;
    let a = TestNode::start(&db, &[]).await;
    let mut ann = a.ws("ann").await;
    let joined = ann.join("x").await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    for i in 1..=3 {
        assert_eq!(ann.post("x", &format!("m{i}")).await["seq"], i);
    }
    drop(ann);
    for i in 4..=7 {
        rest_post(&a, "x", &format!("m{i}")).await;
    }
    // Node A goes away; the client comes back on node B (same database) with its cursor.
    a.stop().await;
    let b = TestNode::start(&db, &[]).await;
    let mut ann = b.ws("ann").await;
    ann.send(json!({"type":"join","room":"x","since":3,"epoch":epoch}))
        .await;
    let joined = ann.recv().await;
    assert_eq!(
        (joined["recovered"].as_bool(), joined["epoch"].as_str()),
        (Some(true), Some(epoch.as_str()))
    );
    assert_eq!(recv_seqs(&mut ann, 4).await, vec![4, 5, 6, 7]);
    b.stop().await;
}
