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
    let run = || crate::processes::chorus_migrate(&target);
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
        .filter(|f| {
            let name = f.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with('V') && name.contains("__")
        })
        .count();
    assert_eq!(applied(&first), files, "every migration applied");
    let second = run();
    assert_eq!(applied(&second), 0, "nothing applied twice");
    // The SQL functions are in, under this release's version; a database holding a newer
    // version (a newer node migrated it) keeps its copy when an older node migrates.
    let (db, conn) = tokio_postgres::connect(&target, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = db
        .query_one("SELECT version, checksum FROM chorus_functions", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i32>(0),
        chorus::store::migrate::FUNCTIONS_VERSION
    );
    let ours: String = row.get(1);
    db.batch_execute("UPDATE chorus_functions SET version = version + 1, checksum = 'newer'")
        .await
        .unwrap();
    assert!(run().status.success());
    let kept: String = db
        .query_one("SELECT checksum FROM chorus_functions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        kept, "newer",
        "an older node never replaces newer functions"
    );
    db.batch_execute(&format!(
        "UPDATE chorus_functions SET version = {}, checksum = 'edited'",
        chorus::store::migrate::FUNCTIONS_VERSION
    ))
    .await
    .unwrap();
    assert!(run().status.success());
    let again: String = db
        .query_one("SELECT checksum FROM chorus_functions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        again, ours,
        "a changed file at the same version is applied again"
    );
    drop(db);
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
        let mut login = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.contains("/api/demo/login") {
                login = line.split_whitespace().last().map(str::to_owned);
            }
            if let Some(rest) = line.split("listening addr=").nth(1) {
                addr = rest.split_whitespace().next().map(str::to_owned);
            }
            if next_is_token {
                token = Some(line.trim().to_owned());
                next_is_token = false;
            }
            next_is_token |= line.contains("Demo token");
            if let (Some(a), Some(t), Some(l)) = (&addr, &token, &login) {
                tx.send((a.clone(), t.clone(), l.clone())).unwrap();
                addr = None;
            }
        }
    });
    let (addr, token, login) = rx
        .recv_timeout(DEADLINE)
        .expect("banner with address, token and the second user's login");
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
    // The second user, as the banner says.
    let bob: Value = http()
        .post(&login)
        .json(&json!({"name":"bob"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = http()
        .post(format!("http://{addr}/api/rooms/lobby/messages"))
        .bearer_auth(bob["token"].as_str().expect("a token for bob"))
        .json(&json!({"body":"hi demo"}))
        .send()
        .await
        .unwrap();
    let m: Value = res.json().await.unwrap();
    assert_eq!(
        (m["user"].as_str(), m["seq"].as_i64()),
        (Some("bob"), Some(2))
    );
    // `chorus token` cannot sign for it, and says where tokens come from instead.
    let out = chorus().args(["token", "--user", "bob"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/api/demo/login") && err.contains("CHORUS__AUTH__JWT_SECRET"),
        "{err}"
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

/// Runs `chorus ARGS` with `env`; returns (success, stdout + stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = chorus();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn configuration_mistakes_are_named_precisely() {
    // Every unknown key, with its full path.
    let (ok, text) = run(
        &["check-config"],
        &[("CHORUS__LIMITS__BURSTS", "1"), ("CHORUS__NOPE__X", "1")],
    );
    assert!(!ok && text.contains("limits.bursts, nope.x"), "{text}");
    // A --config-dir that does not exist.
    let (ok, text) = run(&["check-config", "--config-dir", "/nonexistent/conf"], &[]);
    assert!(!ok && text.contains("--config-dir"), "{text}");
    // A TOML syntax error: file, line and column.
    let dir = std::env::temp_dir().join(format!("chorus-badconf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("default.toml"), "[http]\nworkers = = 2\n").unwrap();
    let (ok, text) = run(
        &["check-config", "--config-dir", dir.to_str().unwrap()],
        &[],
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("default.toml") && text.contains("line 2, column 11"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // A log filter that does not parse.
    let (ok, text) = run(&["check-config"], &[("CHORUS__LOG__LEVEL", "chorus=loud")]);
    assert!(!ok && text.contains("log.level"), "{text}");
    // The one-underscore typo is pointed at the right name (and the settings still load).
    let (ok, text) = run(
        &["check-config"],
        &[("CHORUS_DATABASE_URL", "postgres://x/y")],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("did you mean CHORUS__DATABASE__URL"),
        "{text}"
    );
}

#[test]
fn token_accepts_only_known_roles_and_valid_room_patterns_and_version_names_the_build() {
    let secret = [("CHORUS__AUTH__JWT_SECRET", SECRET)];
    let (ok, text) = run(&["token", "--user", "u", "--role", "admin"], &secret);
    assert!(!ok && text.contains("--role `admin`"), "{text}");
    let (ok, text) = run(&["token", "--user", "u", "--rooms", "ok,bad room"], &secret);
    assert!(!ok && text.contains("`bad room`"), "{text}");
    let (ok, text) = run(&["token", "--user", "u", "--rooms", "a*b"], &secret);
    assert!(!ok && text.contains("`a*b`"), "{text}");
    let (ok, text) = run(
        &[
            "token", "--user", "u", "--role", "service", "--rooms", "team-*,*",
        ],
        &secret,
    );
    assert!(ok, "{text}");
    let (ok, text) = run(&["--version"], &[]);
    assert!(ok, "{text}");
    assert!(
        text.starts_with(&format!("chorus {} (", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
}

#[actix_web::test]
async fn operators_get_an_access_log_a_line_per_session_and_clean_json() {
    let db = fresh_db().await;
    let (mut child, addr, log) = crate::processes::spawn_node_logged(
        &db,
        &[
            ("CHORUS__LOG__FORMAT", "json"),
            ("CHORUS__LOG__LEVEL", "info"),
        ],
    );
    let t = token("operator");
    let res = http()
        .get(format!(
            "http://{addr}/api/rooms/ops/messages?access_token={t}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut ws = Ws::connect(addr.parse().unwrap(), &t).await;
    ws.join("ops").await;
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    ws.stream.close(Some(bye)).await.expect("close");
    let session = crate::processes::wait_for_line(&log, "for the session's end", |l| {
        l.contains("session ended")
    })
    .await;
    let v: Value = serde_json::from_str(&session).unwrap();
    assert_eq!(
        (
            v["user"].as_str(),
            v["code"].as_u64(),
            v["frames_in"].as_u64()
        ),
        (Some("operator"), Some(1000), Some(1)),
        "{session}"
    );
    assert!(
        v["frames_out"].as_u64().unwrap() >= 2 && v["ms"].is_u64(),
        "{session}"
    );
    sigterm(&child);
    exit_status(&mut child).await;
    let lines = log.lock().unwrap().clone();
    let access = lines
        .iter()
        .find(|l| l.contains("http request") && l.contains("/api/rooms/ops/messages"))
        .unwrap_or_else(|| panic!("no access log line:\n{}", lines.join("\n")));
    let v: Value = serde_json::from_str(access).unwrap();
    assert_eq!(
        (
            v["level"].as_str(),
            v["method"].as_str(),
            v["status"].as_u64(),
            v["user"].as_str()
        ),
        (Some("INFO"), Some("GET"), Some(200), Some("operator")),
        "{access}"
    );
    assert!(
        !access.contains("access_token") && !access.contains(&t),
        "{access}"
    );
    for line in &lines {
        assert!(
            !line.contains("log.file") && !line.contains(".cargo"),
            "{line}"
        );
        assert!(!line.contains('\u{1b}'), "no colours in a pipe: {line}");
    }
}

#[actix_web::test]
async fn a_second_ctrl_c_exits_at_once_and_an_empty_drain_ends_early() {
    let db = fresh_db().await;
    // A long drain and a client that never answers its close: only a second Ctrl-C ends it soon.
    let (mut child, addr) =
        crate::processes::spawn_node(&db, &[("CHORUS__SHUTDOWN__DRAIN_MS", "60000")]);
    let mut quiet = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    let handshake = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {}\r\n\r\n",
        token("quiet")
    );
    quiet.write_all(handshake.as_bytes()).await.unwrap();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    // Wait until the session exists (the node counts it), then interrupt twice.
    let metrics = format!("http://{addr}/metrics");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !http()
        .get(&metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("chorus_sessions 1")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    signal("-INT");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await; // the drain has begun
    signal("-INT");
    let status = exit_status(&mut child).await;
    assert_eq!(status.code(), Some(130), "{status}");

    // No session at all: the drain does not wait out its 60 s.
    let (mut child, _) =
        crate::processes::spawn_node(&db, &[("CHORUS__SHUTDOWN__DRAIN_MS", "60000")]);
    sigterm(&child);
    assert!(exit_status(&mut child).await.success());
    drop(quiet);
}
