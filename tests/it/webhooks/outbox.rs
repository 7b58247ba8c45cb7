//! The outbox's bookkeeping under concurrency, step by step on real Postgres: a queue's count of
//! pending events stays exact while an append commits in the middle of a worker's check.

use std::time::Duration;

use chorus::ids::Seq;
use chorus::store::PostgresStore;
use chorus::store::postgres::outbox::Outcome;

use super::*;

/// Appends one message to `room` with the outbox pair ("ep", message), in `client`'s transaction.
async fn append(client: &impl tokio_postgres::GenericClient, room: &str, body: &str) {
    client
        .execute(
            "SELECT * FROM chorus_log_append($1, 'epoch', ARRAY[gen_random_uuid()::text], \
             ARRAY['ann'], ARRAY[NULL::text], ARRAY[$2::text], now(), ARRAY[NULL::text], \
             ARRAY['message'], ARRAY[NULL::bigint], ARRAY[NULL::text], ARRAY[NULL::text], \
             ARRAY[false], ARRAY['ep'], ARRAY['message'])",
            &[&room, &body],
        )
        .await
        .expect("append");
}

async fn pending(client: &tokio_postgres::Client) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT (SELECT pending FROM webhook_queues WHERE endpoint = 'ep' AND room = 'q'), \
                    (SELECT count(*) FROM webhook_outbox WHERE endpoint = 'ep' AND room = 'q')",
            &[],
        )
        .await
        .expect("pending");
    (row.get(0), row.get(1))
}

#[actix_web::test]
async fn a_commit_during_a_workers_empty_check_keeps_the_queue_count_exact() {
    let db = fresh_db().await;
    let outbox = PostgresStore::new(&settings(&db, &[]).database)
        .expect("pools")
        .outbox();
    let plain = db_client(&db).await;
    append(&plain, "q", "one").await;
    let lease = outbox
        .claim("ep", 1, Duration::from_secs(30))
        .await
        .expect("claim")
        .pop()
        .expect("the queue is due");
    let events = outbox.events(&lease, 10).await.expect("events");
    assert_eq!(events.len(), 1);
    let left = outbox
        .settle(
            &lease,
            &[Seq::new(1)],
            Outcome::Delivered,
            0,
            "",
            Duration::from_secs(30),
        )
        .await
        .expect("settle");
    assert_eq!(left, Some(0));

    // A second append is in its transaction: its row written, the queue counted and locked.
    let mut other = db_client(&db).await;
    let tx = other.transaction().await.expect("begin");
    append(&tx, "q", "two").await;
    // The worker looks for more: it sees nothing committed, and checks the queue's count, which
    // waits for the append's lock.
    let check = {
        let (outbox, lease) = (outbox.clone(), lease.clone());
        actix_web::rt::spawn(async move { outbox.events(&lease, 10).await })
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let waiting: i64 = plain
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the check waits for the append's lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.commit().await.expect("commit");
    assert!(check.await.expect("task").expect("events").is_empty());
    assert_eq!(
        pending(&plain).await,
        (1, 1),
        "the committed event is counted: it will be claimed and sent"
    );
}
