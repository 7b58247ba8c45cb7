//! Writer failover (PROTOCOL §6 and §12): two nodes on a libpq multi-host URL with
//! `target_session_attrs=read-write`, a primary and its synchronous streaming standby (made here
//! with `initdb`, `pg_basebackup -R` and `pg_ctl` on free ports, run as the `postgres` user), the
//! primary SIGKILLed while writers post, the standby promoted. Every acked message is in the
//! promoted database with the seq it was acked with, nothing is stored twice, sends in the gap are
//! answered `unavailable` and succeed when retried with the same key, and both nodes serve again
//! without a restart.

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
            &format!("port = {}\nsynchronous_standby_names = ''\n", r.standby),
        );
        r.ctl(&["-D", &s, "-l", &format!("{s}.log"), "-w", "start"]);
        r
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
    let client = connect(pair.primary, "postgres").await;
    client
        .batch_execute("CREATE DATABASE chorus")
        .await
        .unwrap();
    drop(client);
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
