//! Nodes on a private Redis Cluster (3 masters, a replica each): room channels and users shards on
//! sharded pub/sub (checked on the shards themselves), order, presence and read cursors across
//! nodes, and a shard's master killed
//! under load: the replica takes over, nothing acked is lost, and every member gets 1..N.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::processes::RedisCluster;
use crate::support::*;

/// A node on `redis`: the two-seed URL (cluster implied) or, with `explicit`, one seed and
/// `redis.cluster = true`.
async fn node_on(db: &str, redis: &RedisCluster, prefix: &str, explicit: bool) -> TestNode {
    if explicit {
        let seed = RedisAt(redis.servers[0].url());
        cluster_node_with(db, &seed, prefix, &[("redis.cluster", "true")]).await
    } else {
        cluster_node(db, redis, prefix).await
    }
}

/// Subscriber counts of `channel` on `port`: (sharded, classic).
fn subscribers(port: u16, channel: &str) -> (i64, i64) {
    let count = |args: &[&str]| -> i64 {
        let out = RedisCluster::cli(port, args);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.first(), Some(&channel), "{args:?}: {out}");
        lines[1].trim().parse().expect("a count")
    };
    (
        count(&["pubsub", "shardnumsub", channel]),
        count(&["pubsub", "numsub", channel]),
    )
}

#[actix_web::test]
async fn on_a_redis_cluster_rooms_travel_on_their_own_shard_in_order_with_presence() {
    let redis = RedisCluster::start().await;
    let (db, prefix) = (fresh_db().await, prefix());
    let a = node_on(&db, &redis, &prefix, false).await;
    let b = node_on(&db, &redis, &prefix, true).await;

    // Rooms spread over the shards.
    let rooms: Vec<String> = (0..6).map(|i| format!("shard-room-{i}")).collect();
    let channel = |room: &str| format!("{prefix}:room:{{{room}}}");
    let mut masters: Vec<u16> = rooms
        .iter()
        .map(|r| redis.master_of(&channel(r)).expect("master"))
        .collect();
    masters.sort();
    masters.dedup();
    assert!(masters.len() >= 2, "the rooms all hash to one shard");

    let mut writer = a.ws("ann").await;
    let mut member = b.ws("bob").await;
    for room in &rooms {
        writer.join(room).await;
        member.join(room).await;
    }
    // Each room's channel is a sharded subscription of both nodes on the master that owns it,
    // and no classic subscription anywhere; its presence hash lives on the same shard.
    for room in &rooms {
        let master = redis.master_of(&channel(room)).expect("master");
        assert_eq!(subscribers(master, &channel(room)), (2, 0), "room {room}");
        assert_eq!(
            redis.master_of(&format!("{prefix}:presence:{{{room}}}")),
            Some(master)
        );
    }
    let mut present = rest_presence(&a, &rooms[0]).await;
    present.sort();
    assert_eq!(present, ["ann", "bob"], "bob (on node b) is present on a");

    const N: i64 = 40;
    for room in &rooms {
        for i in 1..=N {
            assert_eq!(writer.post(room, &format!("m{i}")).await["seq"], i);
        }
    }
    // Bob gets every room's messages in order, each once (rooms interleave on the socket).
    let mut got: std::collections::HashMap<String, Vec<i64>> = Default::default();
    while got.values().map(Vec::len).sum::<usize>() < rooms.len() * N as usize {
        let v = member.recv().await;
        if v["type"] == "message" {
            let room = v["room"].as_str().expect("room").to_owned();
            got.entry(room)
                .or_default()
                .push(v["seq"].as_i64().expect("seq"));
        }
    }
    for room in &rooms {
        assert_eq!(got[room], one_to(N), "room {room}");
    }

    // Read cursors cross nodes on bob's users shard, never on classic pub/sub.
    let mut phone = a.ws("bob").await;
    phone.join(&rooms[0]).await;
    let read = json!({"type":"read","room":rooms[0],"seq":N});
    let reply = crate::room_log::ask(&mut member, read).await;
    assert_eq!(reply["type"], "read", "{reply}");
    let other = crate::room_log::next_of(&mut phone, "read").await;
    assert_eq!(
        (other["seq"].as_i64(), other["unread"].as_i64()),
        (Some(N), Some(0))
    );
    let shard = (0..16)
        .map(|k| format!("{prefix}:users:{{u{k}}}"))
        .find(|c| {
            let master = redis.master_of(c).expect("master");
            subscribers(master, c) == (2, 0)
        });
    assert!(shard.is_some(), "no users shard with both nodes subscribed");
    let any = redis.servers[0].port;
    let classic = RedisCluster::cli(any, &["pubsub", "numsub", &format!("{prefix}:users")]);
    assert!(
        classic.ends_with("0\n"),
        "a classic users channel: {classic}"
    );
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn a_shard_master_killed_under_load_fails_over_and_nothing_acked_is_lost() {
    let mut redis = RedisCluster::start().await;
    let (db, prefix) = (fresh_db().await, prefix());
    let nodes = [
        node_on(&db, &redis, &prefix, false).await,
        node_on(&db, &redis, &prefix, true).await,
    ];
    let room = "hot";
    let channel = format!("{prefix}:room:{{{room}}}");
    let mut readers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let mut ws = node.ws(&format!("reader{i}")).await;
        ws.join(room).await;
        readers.push(ws);
    }

    // Both nodes post in turn (REST: a 201 is the ack); the room's master dies after 30 messages. Posting goes on
    // through the failover and 30 more after the cluster is whole again.
    let mut acked: Vec<(i64, String)> = Vec::new();
    let mut killed = None;
    let mut after_failover = 0;
    let started = Instant::now();
    while after_failover < 30 {
        let n = acked.len();
        let body = format!("m{n}");
        let ack = rest_post(&nodes[n % 2], room, &body).await;
        acked.push((ack["seq"].as_i64().expect("acked with a seq"), body));
        if n == 30 {
            killed = Some(redis.kill_master_of(&channel));
        } else if let Some(dead) = killed
            && (after_failover > 0 || redis.master_of(&channel).is_some_and(|port| port != dead))
        {
            after_failover += 1;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no failover within 90 s; killed {killed:?}, {} acked; cluster nodes:\n{}",
            acked.len(),
            redis.nodes()
        );
    }
    let dead = killed.expect("a master was killed");
    redis.wait_healthy(Some(&channel)).await;
    let new_master = redis.master_of(&channel).expect("a new master");
    assert_ne!(new_master, dead, "the replica took over");

    // Every acked message holds its seq; seqs are 1..N with no gap.
    let n = acked.len() as i64;
    let acked_seqs: Vec<i64> = acked.iter().map(|(s, _)| *s).collect();
    assert_eq!(acked_seqs, one_to(n), "acks in order, gap-free");
    for (i, reader) in readers.iter_mut().enumerate() {
        let mut got = Vec::new();
        while got.len() < n as usize {
            let v = reader.recv().await;
            if v["type"] == "message" {
                let seq = v["seq"].as_i64().expect("seq");
                assert_eq!(v["body"], acked[seq as usize - 1].1, "reader {i} seq {seq}");
                got.push(seq);
            }
        }
        assert_eq!(
            got,
            one_to(n),
            "reader {i}: every acked message once, in order"
        );
    }

    // Repaired: both nodes ready again and subscribed on the new master; live delivery across
    // nodes works without the store's help.
    for node in &nodes {
        wait_ready(node, true).await;
    }
    let deadline = Instant::now() + DEADLINE;
    while subscribers(new_master, &channel).0 < 2 {
        assert!(
            Instant::now() < deadline,
            "nodes did not resubscribe on the new master"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = rest_post(&nodes[0], room, "after").await["seq"]
        .as_i64()
        .expect("seq");
    assert_eq!(last, n + 1);
    assert_eq!(seqs(&mut readers[1], 1).await, [n + 1]);
    for node in nodes {
        node.stop().await;
    }
}
