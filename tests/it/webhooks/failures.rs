//! Receivers that fail: down for a while (the circuit opens, posting goes on, everything arrives
//! in order once it is back), refusing some events forever (dead letters, the room goes on, replay
//! delivers them), and slow (bounded concurrency).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use super::receiver::{Mode, Receiver};
use super::*;
use crate::processes::{lines_with, spawn_node_args_logged};
use crate::room_log::call;

const ROOMS: [&str; 3] = ["down-a", "down-b", "down-c"];

#[actix_web::test]
async fn a_receiver_down_opens_the_circuit_posting_goes_on_and_all_arrives_in_order_after() {
    let rx = Receiver::start(Mode::Ok).await;
    let proxy = FaultProxy::start(rx.addr).await;
    proxy.cut();
    let url = format!("http://{}/hook", proxy.addr);
    let db = fresh_db().await;
    let node = hook_node(&db, vec![hook("flaky", &url, ALL, &["down-*"])], &[]).await;

    // Posting while the endpoint is down: every post is acked, and its outbox row is in the
    // same commit (counted right after the acks, before anything could be delivered).
    let mut slowest = Duration::ZERO;
    for i in 0..10 {
        for room in ROOMS {
            let started = Instant::now();
            rest_post(&node, room, &format!("{room} {i}")).await;
            slowest = slowest.max(started.elapsed());
        }
    }
    assert_eq!(
        count(&db, "webhook_outbox").await,
        30,
        "one row per acked entry"
    );
    let (s, _) = call(
        &node,
        Method::DELETE,
        "/api/rooms/down-a/messages/99",
        "poster",
        None,
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(
        count(&db, "webhook_outbox").await,
        30,
        "a refused entry has no row"
    );

    let open = "chorus_webhook_circuit_open";
    eventually("the circuit opened", || node.metric(open) == 1.0).await;
    // While open, one probe per cool-down (1 s): count the failed requests over two probes.
    let retries = |n: &TestNode| n.metric("chorus_webhook_deliveries_total{result=\"retry\"}");
    let (r0, t0) = (retries(&node), Instant::now());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while retries(&node) < r0 + 2.0 {
        assert!(tokio::time::Instant::now() < deadline, "the circuit probes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "two failed requests with the circuit open took {:?}: probes come once per cool-down",
        t0.elapsed()
    );
    // Posting is not slowed by the open circuit.
    let started = Instant::now();
    rest_post(&node, "down-a", "while open").await;
    let while_open = started.elapsed();
    println!("post while down: slowest {slowest:?}; while open: {while_open:?}");

    proxy.restore();
    let log = log_of(&db, "down-").await;
    eventually("everything arrived once the receiver is back", || {
        covers(&rx.accepted(), &log, ALL)
    })
    .await;
    check_delivery(&rx.accepted(), &log, ALL);
    eventually("the circuit closed", || node.metric(open) == 0.0).await;
    node.stop().await;
}

#[actix_web::test]
async fn events_refused_forever_are_dead_lettered_the_room_goes_on_and_replay_delivers_them() {
    let rx = Receiver::start(Mode::FailBodies("poison".into())).await;
    // And one that answers 500 to everything, forever.
    let broken = Receiver::start(Mode::Fail(500)).await;
    let db = fresh_db().await;
    let mut endpoint = hook("picky", &rx.url(), &["message"], &["dlq"]);
    endpoint.max_attempts = 3;
    let mut hopeless = hook("broken", &broken.url(), &["message"], &["dlq"]);
    hopeless.max_attempts = 2;
    // A breaker that stays closed: this test is about the attempts of each event.
    let node = hook_node(
        &db,
        vec![endpoint, hopeless],
        &[("webhook.circuit_failures", "100")],
    )
    .await;
    for body in ["first", "poison pill", "third", "fourth"] {
        rest_post(&node, "dlq", body).await;
    }
    let bodies = |rx: &Receiver| -> Vec<String> {
        rx.accepted()
            .iter()
            .map(|g| g.entry["body"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    eventually("the room's later events flow past the dead one", || {
        bodies(&rx).len() == 3
    })
    .await;
    assert_eq!(bodies(&rx), ["first", "third", "fourth"]);
    let attempts = rx.got().iter().filter(|g| !g.accepted).count();
    assert_eq!(attempts, 3, "max_attempts requests, then the dead letters");
    // The broken endpoint: each of the room's events tried twice, then dead, one after another.
    eventually("every event to the broken endpoint is dead", || {
        broken.got().len() == 8
    })
    .await;
    let seqs: Vec<i64> = broken.got().iter().map(|g| g.seq).collect();
    assert_eq!(
        seqs,
        [1, 1, 2, 2, 3, 3, 4, 4],
        "in room order, the next after the dead one"
    );
    eventually("the dead counter says 1 + 4", || {
        node.metric("chorus_webhook_deliveries_total{result=\"dead\"}") == 5.0
    })
    .await;
    assert_eq!(
        node.metric("chorus_webhook_deliveries_total{result=\"retry\"}"),
        2.0 + 4.0
    );

    // The admin API: service tokens only; the dead letter is listed with its error.
    let (s, _) = call(
        &node,
        Method::GET,
        "/api/admin/webhooks/dead",
        "ops",
        None,
        None,
    )
    .await;
    assert_eq!(s, 403, "a user token may not read the admin API");
    let (s, dead) = admin(
        &node,
        Method::GET,
        "/api/admin/webhooks/dead?limit=10",
        None,
    )
    .await;
    assert_eq!(s, 200, "{dead}");
    let letters: Vec<&Value> = dead["dead"]
        .as_array()
        .expect("dead letters")
        .iter()
        .filter(|d| d["endpoint"] == "picky")
        .collect();
    assert_eq!(letters.len(), 1, "{dead}");
    assert_eq!(letters[0]["seq"], 2);
    assert_eq!(letters[0]["attempts"], 3);
    assert_eq!(letters[0]["error"], "answered 500");
    let (_, status) = admin(&node, Method::GET, "/api/admin/webhooks", None).await;
    assert_eq!(status["endpoints"][0]["name"], "picky", "{status}");
    assert_eq!(status["endpoints"][0]["dead"], 1, "{status}");
    assert_eq!(status["endpoints"][0]["circuit"], "closed", "{status}");
    assert_eq!(status["endpoints"][1]["dead"], 4, "{status}");
    eventually("the dead-letter gauge shows them", || {
        node.metric("chorus_webhook_dead_letters") == 5.0
    })
    .await;

    // Fixed receiver, replay: delivered, and the dead letters are empty.
    rx.set_mode(Mode::Ok);
    let id = letters[0]["id"].as_i64().expect("id");
    let (s, replayed) = admin(
        &node,
        Method::POST,
        &format!("/api/admin/webhooks/dead/{id}/replay"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{replayed}");
    let (s, _) = admin(
        &node,
        Method::POST,
        &format!("/api/admin/webhooks/dead/{id}/replay"),
        None,
    )
    .await;
    assert_eq!(s, 404, "replayed once");
    let (s, err) = admin(
        &node,
        Method::POST,
        "/api/admin/webhooks/dead/abc/replay",
        None,
    )
    .await;
    assert_eq!(
        (s, &err["error"]["code"]),
        (400, &Value::from("bad_request")),
        "{err}"
    );
    eventually("the replayed event arrived", || bodies(&rx).len() == 4).await;
    assert_eq!(bodies(&rx)[3], "poison pill");
    assert_eq!(
        count(&db, "webhook_dead").await,
        4,
        "the broken endpoint's are left"
    );
    node.stop().await;
}

#[actix_web::test]
async fn a_slow_receiver_gets_at_most_the_configured_requests_at_once_and_everything_after() {
    let rx = Receiver::start(Mode::Slow(Duration::from_millis(300))).await;
    let db = fresh_db().await;
    let mut endpoint = hook("slow", &rx.url(), &["message"], &["slow-*"]);
    endpoint.timeout = std::time::Duration::from_secs(1);
    let node = hook_node(
        &db,
        vec![endpoint],
        &[
            ("webhook.concurrency", "2"),
            ("webhook.circuit_failures", "1000"),
        ],
    )
    .await;
    // Slow but within the timeout: eight rooms wait, two requests at a time.
    for i in 0..8 {
        rest_post(&node, &format!("slow-{i}"), "slow").await;
    }
    let log = log_of(&db, "slow-").await;
    eventually("everything arrived, slowly", || {
        covers(&rx.accepted(), &log, &["message"])
    })
    .await;
    assert_eq!(
        rx.max_in_flight(),
        2,
        "webhook.concurrency requests at once, no more, no less"
    );

    // Slower than the timeout: every request is given up after 1 s and retried; the node never
    // has more than 2 in flight (the receiver, which cannot tell a client gone, still counts the
    // abandoned ones), then everything arrives once it is quick again.
    rx.set_mode(Mode::Slow(Duration::from_secs(3)));
    for i in 0..8 {
        rest_post(&node, &format!("slow-{i}"), "timed out").await;
    }
    let retried = |n: &TestNode| n.metric("chorus_webhook_deliveries_total{result=\"retry\"}");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while retried(&node) < 6.0 {
        let (_, status) = admin(&node, Method::GET, "/api/admin/webhooks", None).await;
        let in_flight = status["endpoints"][0]["in_flight"]
            .as_u64()
            .expect("in_flight");
        assert!(
            in_flight <= 2,
            "the node has {in_flight} requests in flight: {status}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests time out and are retried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rx.set_mode(Mode::Ok);
    let log = log_of(&db, "slow-").await;
    eventually("everything arrived once the receiver is quick", || {
        covers(&rx.accepted(), &log, &["message"])
    })
    .await;
    node.stop().await;
}

#[actix_web::test]
async fn webhook_failures_and_the_circuit_are_logged_once_each_without_bodies() {
    let rx = Receiver::start(Mode::Ok).await;
    let proxy = FaultProxy::start(rx.addr).await;
    proxy.cut();
    let db = fresh_db().await;
    let dir = config_dir(&format!(
        "[webhook]\npoll_ms = 200\nretry_min_ms = 100\nretry_max_ms = 400\ncircuit_failures = 2\ncircuit_cooldown_ms = 300\n\n[[webhooks]]\nname = \"logged\"\nurl = \"http://{}/hook\"\nsecret = \"{}\"\ntimeout_ms = 1000\n",
        proxy.addr,
        super::receiver::SECRET
    ));
    let dir_arg = dir.path().to_str().expect("utf-8 path").to_owned();
    let (child, addr, log) = spawn_node_args_logged(&db, &[], &["--config-dir", &dir_arg]);
    let _child = KillOnDrop(child);
    const BODY: &str = "a body that must never be logged";
    for _ in 0..3 {
        let res = http()
            .post(format!("http://{addr}/api/rooms/log-a/messages"))
            .bearer_auth(token("poster"))
            .json(&serde_json::json!({ "body": BODY }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    let logged = |parts: &'static [&'static str]| {
        let log = log.clone();
        move || !lines_with(&log, parts).is_empty()
    };
    eventually(
        "a failed request is logged with endpoint, room, seq, attempt and cause",
        logged(&[
            "webhook request failed",
            "logged",
            "log-a",
            "seq=1",
            "attempt=1",
            "error=",
        ]),
    )
    .await;
    eventually(
        "the circuit's opening is logged",
        logged(&["webhook circuit opened", "logged"]),
    )
    .await;
    proxy.restore();
    eventually(
        "the circuit's closing is logged",
        logged(&["webhook circuit closed", "logged"]),
    )
    .await;
    eventually("everything arrives", || rx.accepted().len() >= 3).await;
    // Opened once (failed probes while open add nothing), and no line carries a body.
    assert_eq!(lines_with(&log, &["webhook circuit opened"]).len(), 1);
    let failed = lines_with(&log, &["webhook request failed"]);
    assert!(failed.len() >= 2, "{failed:?}");
    assert!(lines_with(&log, &[BODY]).is_empty(), "a body was logged");
}
