//! Writer failover (PROTOCOL §6 and §12): two nodes on a libpq multi-host URL with
//! `target_session_attrs=read-write`, a primary and its synchronous streaming standby (made here
//! with `initdb`, `pg_basebackup -R` and `pg_ctl` on free ports, run as the `postgres` user), the
//! primary SIGKILLed while writers post, the standby promoted. Every acked message is in the
//! promoted database with the seq it was acked with, nothing is stored twice, sends in the gap are
//! answered `unavailable` and succeed when retried with the same key, and both nodes serve again
//! without a restart. And a read replica that applies 4 s late: history pages, long-polls and
//! joins with `since` still answer with everything the writer acked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::processes::free_port;
use crate::support::*;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A primary and a synchronous standby in a temp dir of their own, stopped and removed on drop.
struct Replicated {
    dir: PathBuf,
    primary: u16,
    standby: u16,
}

/// Runs a Postgres tool as `postgres` (the server refuses to run as root), failing loudly.
fn pg(tool: &str, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--", &format!("{BIN}/{tool}")])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} (Postgres 15 at {BIN}, runuser): {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Replicated {
    fn start() -> Replicated {
        Replicated::start_with("")
    }

    /// As [`Replicated::start`], with `standby_conf` added to the standby's configuration.
    fn start_with(standby_conf: &str) -> Replicated {
        let dir = std::env::temp_dir().join(format!(
            "chorus-failover-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let chown = Command::new("chown")
            .args(["postgres:postgres", dir.to_str().unwrap()])
            .status()
            .expect("chown");
        assert!(chown.success(), "chown of {dir:?} to postgres");
        let r = Replicated {
            dir,
            primary: free_port(),
            standby: free_port(),
        };
        let (p, s) = (r.data("primary"), r.data("standby"));
        pg(
            "initdb",
            &["-D", &p, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             synchronous_standby_names = '*'\nfsync = off\n",
            r.primary,
            r.dir.display()
        );
        append(&Path::new(&p).join("postgresql.conf"), &conf);
        r.ctl(&["-D", &p, "-l", &format!("{p}.log"), "-w", "start"]);
        let port = r.primary.to_string();
        pg(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &s,
                "-R",
                "-X",
                "stream",
            ],
        );
        // Its own port, and no synchronous standby of its own once promoted (the copied
        // configuration would make every commit wait for one that does not exist).
        append(
            &Path::new(&s).join("postgresql.auto.conf"),
            &format!(
                "port = {}\nsynchronous_standby_names = ''\n{standby_conf}",
                r.standby
            ),
        );
        r.ctl(&["-D", &s, "-l", &format!("{s}.log"), "-w", "start"]);
        r
    }

    /// Creates database `name` on the primary (the standby replays it).
    async fn create_database(&self, name: &str) {
        let client = connect(self.primary, "postgres").await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    }

    fn data(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn ctl(&self, args: &[&str]) {
        pg("pg_ctl", args);
    }

    /// The writer URL every node gets: both hosts, only a read-write one will do.
    fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{db}?target_session_attrs=read-write",
            self.primary, self.standby
        )
    }

    /// SIGKILL of the primary's postmaster: no shutdown, no last WAL sent.
    fn kill_primary(&self) {
        let pid = std::fs::read_to_string(Path::new(&self.data("primary")).join("postmaster.pid"))
            .expect("postmaster.pid");
        let pid = pid.lines().next().unwrap().trim().to_owned();
        let killed = Command::new("kill").args(["-9", &pid]).status().unwrap();
        assert!(killed.success());
    }

    fn promote_standby(&self) {
        self.ctl(&["-D", &self.data("standby"), "-w", "promote"]);
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        for name in ["primary", "standby"] {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--", &format!("{BIN}/pg_ctl")])
                .args(["-D", &self.data(name), "-m", "immediate", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A connection to database `db` of the test's server on `port`.
async fn connect(port: u16, db: &str) -> tokio_postgres::Client {
    let url = format!("postgres://postgres@127.0.0.1:{port}/{db}");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    actix_web::rt::spawn(conn);
    client
}

/// Posts `key` to `room` until it is acked (the same key every time), counting the `unavailable`
/// answers on the way. Returns the acked seq.
async fn post_until_acked(node: &TestNode, room: &str, key: &str, gaps: &mut u32) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let res = http()
            .post(node.http(&format!("/api/rooms/{room}/messages")))
            .bearer_auth(token("writer"))
            .header("idempotency-key", key)
            .json(&json!({ "body": key }))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match res {
            Ok(r) if r.status() == 201 || r.status() == 200 => {
                let v: Value = r.json().await.unwrap();
                return v["seq"].as_i64().unwrap();
            }
            Ok(r) => {
                let status = r.status();
                let v: Value = r.json().await.unwrap_or_default();
                assert_eq!(
                    (status.as_u16(), v["error"]["code"].as_str()),
                    (503, Some("unavailable")),
                    "a send in the gap is refused as unavailable, nothing else"
                );
                *gaps += 1;
            }
            Err(e) => panic!("the node did not answer: {e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} was never acked after the failover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // a client's retry pause
    }
}

#[actix_web::test]
async fn a_writer_failover_to_a_synchronous_standby_loses_no_acked_message_and_needs_no_restart() {
    let pair = Replicated::start();
    pair.create_database("chorus").await;
    let url = pair.url("chorus");
    let keys = [("database.timeout_ms", "1000")];
    let a = TestNode::start(&url, &keys).await;
    let b = TestNode::start(&url, &keys).await;
    wait_ready(&a, true).await;

    let (mut acked, mut gaps) = (BTreeMap::new(), 0u32);
    for i in 0..20 {
        let node = if i % 2 == 0 { &a } else { &b };
        let key = format!("k-{i}");
        let seq = post_until_acked(node, "fo", &key, &mut gaps).await;
        acked.insert(key, seq);
    }
    assert_eq!(gaps, 0, "no gap before the failover");
    pair.kill_primary();
    // Sends while no writer answers are refused, and readiness says so.
    let mut refused_before_promote = 0;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while refused_before_promote == 0 {
        let res = http()
            .post(a.http("/api/rooms/fo/messages"))
            .bearer_auth(token("writer"))
            .header("idempotency-key", "k-20")
            .json(&json!({ "body": "k-20" }))
            .send()
            .await
            .unwrap();
        assert_ne!(res.status(), 201, "acked with no writer");
        if res.status() == 503 {
            refused_before_promote += 1;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sends were not refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // a client's retry pause
    }
    wait_ready(&a, false).await;
    pair.promote_standby();
    for i in 20..40 {
        let node = if i % 2 == 0 { &a } else { &b };
        let key = format!("k-{i}");
        let seq = post_until_acked(node, "fo", &key, &mut gaps).await;
        acked.insert(key, seq);
    }
    wait_ready(&a, true).await;
    wait_ready(&b, true).await;
    println!(
        "failover: {refused_before_promote} refused before the promotion, {gaps} retried after"
    );

    // The promoted database holds every acked key once, at the seq it was acked with, and the
    // room's seqs run 1..=n with nothing reissued.
    let client = connect(pair.standby, "chorus").await;
    let rows = client
        .query(
            "SELECT seq, body FROM messages WHERE room = 'fo' ORDER BY seq",
            &[],
        )
        .await
        .unwrap();
    let stored: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let seqs: Vec<i64> = stored.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "no gap, no reissued seq"
    );
    let by_key: BTreeMap<&str, i64> = stored.iter().map(|(s, b)| (b.as_str(), *s)).collect();
    assert_eq!(by_key.len(), stored.len(), "nothing stored twice");
    for (key, seq) in &acked {
        assert_eq!(by_key.get(key.as_str()), Some(seq), "{key} acked as {seq}");
    }
    a.stop().await;
    b.stop().await;
}

/// Rows of `room` the server on `port` has applied (`None` while it cannot answer, e.g. a
/// replica that has not replayed the database's creation yet).
async fn applied_rows(port: u16, db: &str, room: &str) -> Option<i64> {
    let url = format!("postgres://postgres@127.0.0.1:{port}/{db}");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .ok()?;
    actix_web::rt::spawn(conn);
    let row = client
        .query_one("SELECT count(*) FROM messages WHERE room = $1", &[&room])
        .await
        .ok()?;
    Some(row.get(0))
}

#[actix_web::test]
async fn a_read_replica_that_lags_never_answers_with_less_than_the_writer_acked() {
    // The standby applies every commit 4 s after it is flushed (a synchronous standby confirms
    // the flush, so the writer's commits do not wait for the delay).
    let pair = Replicated::start_with("recovery_min_apply_delay = '4s'\n");
    pair.create_database("chorus").await;
    let writer = format!("postgres://postgres@127.0.0.1:{}/chorus", pair.primary);
    let reader = format!("postgres://postgres@127.0.0.1:{}/chorus", pair.standby);
    let node = TestNode::start(&writer, &[("database.read_url", &reader)]).await;
    wait_ready(&node, true).await;
    // The replica must have the schema before it can answer at all: wait (with a deadline) until
    // it has replayed the migrations.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while applied_rows(pair.standby, "chorus", "lag").await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standby never replayed the schema"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // polling the replica's state
    }

    let mut gaps = 0;
    for i in 1..=5 {
        let seq = post_until_acked(&node, "lag", &format!("m-{i}"), &mut gaps).await;
        assert_eq!(seq, i, "acked in order");
    }
    let lagging = |what: &str| {
        let what = what.to_owned();
        let port = pair.standby;
        async move {
            let rows = applied_rows(port, "chorus", "lag").await.unwrap_or(0);
            assert!(
                rows < 5,
                "the replica caught up ({rows} rows) before {what}: the test proves nothing"
            );
        }
    };
    lagging("the reads").await;

    let get = |path: &str| {
        let url = node.http(path);
        async move {
            let res = http()
                .get(url)
                .bearer_auth(token("reader"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    // History after a cursor, the newest page, a page before a cursor, a long-poll: all from the
    // writer's point of view, although the replica has none of it yet.
    let after = get("/api/rooms/lag/messages?after=0").await;
    assert_eq!(page_seqs(&after), vec![1, 2, 3, 4, 5], "?after=0: {after}");
    assert_eq!(after["last_seq"], 5);
    let newest = get("/api/rooms/lag/messages").await;
    assert_eq!(
        page_seqs(&newest),
        vec![1, 2, 3, 4, 5],
        "newest page: {newest}"
    );
    let before = get("/api/rooms/lag/messages?before=5&limit=2").await;
    assert_eq!(page_seqs(&before), vec![3, 4], "?before=5: {before}");
    let poll = get("/api/rooms/lag/poll?after=2&timeout=0").await;
    assert_eq!(page_seqs(&poll), vec![3, 4, 5], "long-poll after 2: {poll}");
    // A join with `since` (its backfill reads a range, which falls back the same way).
    let mut ws = Ws::connect(node.addr(), &token("reader")).await;
    ws.send(json!({"type": "join", "room": "lag", "since": 1}))
        .await;
    let joined = ws.recv_type("joined").await;
    assert_eq!(joined["last_seq"], 5);
    for want in 2..=5 {
        let m = ws.recv_type("message").await;
        assert_eq!(m["seq"], want, "backfill in order, none missing");
    }
    lagging("the end of the reads").await;
    node.stop().await;
}
