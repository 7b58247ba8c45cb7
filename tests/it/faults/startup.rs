//! Start-up in any order: a node whose Redis or Postgres is down, refusing, or blackholed starts,
//! serves `/readyz` at once, says why in its log (host and cause, never a password), and becomes
//! ready by itself when the dependency answers.

use std::time::{Duration, Instant};

use serde_json::json;

use super::cluster_keys;
use crate::processes::{RedisServer, free_port, spawn_logged, spawn_node_logged, wait_for_line};
use crate::support::*;
use crate::support::{cluster_node, prefix, writer_on_a_member_on_b};

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
