//! The real `chorus` binary: `check-config`, `token`, `migrate`, and the standalone `serve` that a
//! newcomer runs first (prints a working token, serves, exits 0 on SIGTERM).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::support::*;

fn chorus() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chorus"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

#[test]
fn check_config_prints_masked_settings_or_names_the_bad_key() {
    let out = chorus()
        .args([
            "check-config",
            "--set",
            "auth.jwt_secret=super-secret-value-123",
        ])
        .env("CHORUS__DATABASE__URL", "postgres://app:hunter2@db/chorus")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("[limits]") && text.contains("max_frame_bytes = 65536"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2") && !text.contains("super-secret-value-123"),
        "{text}"
    );

    let out = chorus()
        .arg("check-config")
        .env("CHORUS__LIMITS__BURST", "many")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("offending key: limits.burst"), "{err}");
}

#[test]
fn token_prints_a_jwt_the_node_accepts() {
    let out = chorus()
        .args([
            "token", "--user", "alice", "--name", "Alice", "--ttl", "2h", "--rooms", "a,team-*",
        ])
        .env("CHORUS__AUTH__JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let id = auth()
        .verify(token.trim())
        .expect("the printed token verifies");
    assert_eq!(
        (id.user.as_str(), id.name.as_deref()),
        ("alice", Some("Alice"))
    );
    assert_eq!(id.rooms, Some(vec!["a".to_owned(), "team-*".to_owned()]));
    let left = id.expires_in().as_secs();
    assert!((7000..=7200).contains(&left), "{left}");
    // Without a secret it refuses rather than sign with nothing.
    assert!(
        !chorus()
            .args(["token", "--user", "x"])
            .output()
            .unwrap()
            .status
            .success()
    );
}

#[actix_web::test]
async fn migrate_applies_the_schema_once_without_the_signing_secret() {
    // An empty database (not from the template).
    let url = fresh_db().await;
    let (base, db) = url.rsplit_once('/').unwrap();
    let empty = format!("{db}_empty");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {empty}"))
        .await
        .unwrap();
    let target = format!("{base}/{empty}");
    // A migration job holds the database URL, not the signing secret.
    let run = || {
        chorus()
            .arg("migrate")
            .env("CHORUS__DATABASE__URL", &target)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let applied = |out: &std::process::Output| -> usize {
        let text = String::from_utf8_lossy(&out.stdout);
        let n = text.split("migrations applied: ").nth(1).expect("a count");
        n.trim().parse().expect("a number")
    };
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(applied(&first), files, "every migration applied");
    let second = run();
    assert_eq!(applied(&second), 0, "nothing applied twice");
}

#[actix_web::test]
async fn standalone_serve_prints_a_working_token_and_exits_0_on_sigterm() {
    let mut child = chorus()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read the banner on a thread; hand back the address and the token.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut addr, mut token, mut next_is_token) = (None, None, false);
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.split("listening addr=").nth(1) {
                addr = rest.split_whitespace().next().map(str::to_owned);
            }
            if next_is_token {
                token = Some(line.trim().to_owned());
                next_is_token = false;
            }
            next_is_token |= line.contains("Demo token");
            if let (Some(a), Some(t)) = (&addr, &token) {
                tx.send((a.clone(), t.clone())).unwrap();
                addr = None;
            }
        }
    });
    let (addr, token) = rx
        .recv_timeout(DEADLINE)
        .expect("banner with address and token");
    let res = http()
        .post(format!("http://{addr}/api/rooms/lobby/messages"))
        .bearer_auth(&token)
        .json(&json!({"body":"hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let m: Value = res.json().await.unwrap();
    assert_eq!(
        (m["user"].as_str(), m["seq"].as_i64()),
        (Some("demo"), Some(1))
    );

    sigterm(&child);
    let status = exit_status(&mut child).await;
    assert!(status.success(), "exit status {status}");
}

#[test]
fn serve_refuses_a_cluster_without_a_shared_database() {
    let out = chorus()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("CHORUS__REDIS__URL", "redis://127.0.0.1:6379")
        .env("CHORUS__AUTH__JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("redis.url") && err.contains("database.url"),
        "{err}"
    );
}

#[test]
fn json_logs_carry_the_node_id_on_every_line() {
    let mut child = chorus()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("CHORUS__LOG__FORMAT", "json")
        .env("CHORUS__NODE__ID", "node-\"7\"")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = 0;
    for line in lines.by_ref().map_while(Result::ok) {
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["node"], "node-\"7\"", "{line}");
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        seen += 1;
        if v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening addr="))
        {
            assert_eq!(line.matches("\"node\":").count(), 1, "one node key: {line}");
            break;
        }
    }
    assert!(seen >= 2, "the node logged its start");
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}
