//! Reliability under faults (PROTOCOL §2, §4, §6 v2): start-up in any order, one bad message fails
//! nobody else, a failed join leaves nothing behind, a resume is judged against the committed
//! head, a history that went backwards gets a new epoch, every long-lived connection counts
//! against the limits, the connection ends as soon as the closing handshake does, and nothing
//! secret reaches a log. Each test reproduces one fault an operator meets, against real Postgres,
//! a real redis-server and real nodes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::bad_input::{raw_socket, read_close, server_hangs_up, write_close};
use crate::processes::{RedisServer, free_port, spawn_logged, spawn_node_logged, wait_for_line};
use crate::support::*;
use crate::support::{cluster_node, prefix, writer_on_a_member_on_b};
use chorus::store::{NewMessage, StoreError};

/// Settings for a cluster node that does not wait for Redis.
fn cluster_keys<'a>(url: &'a str, prefix: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("redis.url", url),
        ("redis.prefix", prefix),
        ("cluster.heartbeat_ms", "200"),
        ("cluster.dead_after_ms", "1200"),
    ]
}

#[actix_web::test]
async fn a_node_started_before_redis_connects_by_itself_and_becomes_ready() {
    let db = fresh_db().await;
    let (port, prefix) = (free_port(), prefix());
    let url = format!("redis://127.0.0.1:{port}");
    let node = TestNode::start(&db, &cluster_keys(&url, &prefix)).await;
    assert_eq!(readyz(&node).await, 503, "not ready without Redis");
    let alive = http().get(node.http("/healthz")).send().await.unwrap();
    assert_eq!(alive.status(), 200, "alive all the same");

    let redis = RedisServer::start_on(port, None).await;
    wait_ready(&node, true).await;
    // And it is a working cluster member: a post on a second node reaches it.
    let other = cluster_node(&db, &redis, &prefix).await;
    writer_on_a_member_on_b(&other, &node, "late").await;
    other.stop().await;
    node.stop().await;
}

#[actix_web::test]
async fn redis_refusing_then_refusing_the_password_is_logged_with_host_and_cause_never_the_password()
 {
    let db = fresh_db().await;
    let port = free_port();
    let url = format!("redis://:wrong-pw-4711@127.0.0.1:{port}");
    let prefix = prefix();
    let mut env: Vec<(&str, &str)> = vec![
        ("CHORUS__REDIS__URL", &url),
        ("CHORUS__REDIS__PREFIX", &prefix),
        ("CHORUS__LOG__LEVEL", "info"),
    ];
    env.push(("CHORUS__CLUSTER__HEARTBEAT_MS", "200"));
    let (mut child, addr, log) = spawn_node_logged(&db, &env);
    let host = format!("127.0.0.1:{port}");
    wait_for_line(&log, "naming the host and `connection refused`", |l| {
        l.contains("redis unreachable") && l.contains(&host) && l.contains("connection refused")
    })
    .await;

    let _redis = RedisServer::start_on(port, Some("the-real-pw")).await;
    wait_for_line(&log, "naming the host and `authentication`", |l| {
        l.contains("redis unreachable") && l.contains(&host) && l.contains("authentication")
    })
    .await;
    let ready = http()
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "a wrong password is not ready");
    let _ = child.kill();
    let _ = child.wait();
    let lines = log.lock().unwrap().join("\n");
    assert!(
        !lines.contains("wrong-pw-4711"),
        "the password leaked:\n{lines}"
    );
}

#[actix_web::test]
async fn a_node_started_while_postgres_is_down_serves_unready_and_migrates_when_it_answers() {
    let db = empty_db().await;
    let proxy = FaultProxy::start(pg_addr()).await;
    proxy.cut();
    // Today's node exits here; it must start, alive but not ready.
    let node = TestNode::start(&via_proxy(&db, &proxy), &[]).await;
    assert_eq!(readyz(&node).await, 503);
    let alive = http().get(node.http("/healthz")).send().await.unwrap();
    assert_eq!(alive.status(), 200);
    let mut ws = node.ws("early").await;
    ws.send(json!({"type":"join","room":"r","ref":"j"})).await;
    let e = ws.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("unavailable"), Some("j"))
    );

    proxy.restore();
    wait_ready(&node, true).await;
    // The schema arrived with the node's own migrations: posting works.
    let m = rest_post(&node, "r", "first").await;
    assert_eq!(m["seq"], 1);
    ws.join("r").await;
    node.stop().await;
}

#[actix_web::test]
async fn readyz_answers_at_once_while_postgres_is_blackholed() {
    let db = fresh_db().await;
    let proxy = FaultProxy::start(pg_addr()).await;
    let node = TestNode::start(&via_proxy(&db, &proxy), &[("database.timeout_ms", "10000")]).await;
    wait_ready(&node, true).await;
    proxy.stall();
    // Each probe answers from the last background check, never after the 10 s store timeout.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let asked = Instant::now();
        let status = readyz(&node).await;
        let took = asked.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "readyz took {took:?} while Postgres was blackholed"
        );
        if status == 503 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never noticed the blackhole"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.restore();
    wait_ready(&node, true).await;
    node.stop().await;
}

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
                .post(
                    &room,
                    NewMessage {
                        user: user.into(),
                        name: None,
                        body,
                        client_msg_id: None,
                    },
                )
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
async fn sse_and_long_polls_count_against_the_connection_limits_and_are_freed_when_the_client_leaves()
 {
    let node = TestNode::start(
        &fresh_db().await,
        &[
            ("limits.max_connections_per_user", "2"),
            ("limits.max_connections_per_ip", "100"),
        ],
    )
    .await;
    let sse = |user: &str| {
        http()
            .get(node.http("/api/rooms/lim/events"))
            .bearer_auth(token(user))
            .send()
    };
    let first = sse("s").await.unwrap();
    let second = sse("s").await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = sse("s").await.unwrap();
    assert_eq!(third.status(), 429, "a third stream of the same user");
    let ws = tokio_tungstenite::connect_async(format!(
        "ws://{}/ws?access_token={}",
        node.addr(),
        token("s")
    ))
    .await;
    assert!(ws.is_err(), "WebSocket shares the same limit");
    drop(first);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while sse("s").await.unwrap().status() != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(second);

    // Long-polls: two wait (for 30 s); a third is refused; one client hangs up and its slot is
    // free again long before its timeout.
    let hold = || async {
        let mut tcp = tokio::net::TcpStream::connect(node.addr()).await.unwrap();
        let req = format!(
            "GET /api/rooms/lim/poll?after=0&timeout=30 HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {}\r\n\r\n",
            token("p")
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        tcp
    };
    let poll_now = || async {
        http()
            .get(node.http("/api/rooms/lim/poll?timeout=0"))
            .bearer_auth(token("p"))
            .send()
            .await
            .unwrap()
            .status()
    };
    let p1 = hold().await;
    let _p2 = hold().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while poll_now().await != 429 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waiting long-polls are not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(p1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while poll_now().await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an abandoned long-poll kept its slot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.stop().await;
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

#[actix_web::test]
async fn after_a_server_initiated_close_the_connection_ends_as_soon_as_the_client_answers() {
    let node = TestNode::start(&fresh_db().await, &[]).await;
    let mut tcp = raw_socket(&node).await;
    node.node.drain(Duration::from_millis(10)).await;
    assert_eq!(read_close(&mut tcp).await, 1012);
    write_close(&mut tcp, 1000).await;
    server_hangs_up(&mut tcp, "the client answered the server's close").await;
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

/// The start of `chorus serve` with Postgres unreachable is logged with the host and the cause.
#[actix_web::test]
async fn a_database_unreachable_at_start_is_logged_with_host_and_cause() {
    let port = free_port();
    let url = format!("postgres://postgres:pg-secret-99@127.0.0.1:{port}/nowhere");
    let (mut child, log) = spawn_logged(&url, &[("CHORUS__LOG__LEVEL", "info")]);
    let host = format!("127.0.0.1:{port}");
    wait_for_line(&log, "about the database with host and cause", |l| {
        l.contains("database unreachable") && l.contains(&host) && l.contains("connection refused")
    })
    .await;
    // Still alive (it keeps trying), never printing the password.
    assert!(child.try_wait().unwrap().is_none(), "the node exited");
    let _ = child.kill();
    let _ = child.wait();
    let lines = log.lock().unwrap().join("\n");
    assert!(
        !lines.contains("pg-secret-99"),
        "the password leaked:\n{lines}"
    );
}
