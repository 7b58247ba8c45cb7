//! Webhooks and the admin API (PROTOCOL §8), against real HTTP receivers started by the tests,
//! real Postgres and several nodes: delivery checked against the log, a dead receiver and its
//! circuit, dead letters and replay, a node killed mid-dispatch, a slow receiver, the admin API.

mod admin;
mod delivery;
mod failures;
mod outbox;
pub mod receiver;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use chorus::config::{Settings, Webhook};

use crate::processes::sigkill;
use crate::support::*;
use receiver::Got;

pub const ALL: &[&str] = &["message", "edit", "delete", "react"];

/// An endpoint for a receiver at `url`, with the receiver's secret.
pub fn hook(name: &str, url: &str, events: &[&str], rooms: &[&str]) -> Webhook {
    Webhook {
        name: name.into(),
        url: url.into(),
        secret: receiver::SECRET.into(),
        events: events.iter().map(|e| e.to_string()).collect(),
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        timeout: std::time::Duration::from_secs(2),
        max_attempts: 50,
    }
}

/// Dispatcher settings that make the tests quick: retries from 100 ms to 1 s, a circuit that
/// opens after 3 failures for 1 s, a poll every 200 ms.
pub const FAST: &[(&str, &str)] = &[
    ("webhook.retry_min_ms", "100"),
    ("webhook.retry_max_ms", "1000"),
    ("webhook.circuit_failures", "3"),
    ("webhook.circuit_cooldown_ms", "1000"),
    ("webhook.poll_ms", "200"),
    ("limits.msgs_per_sec", "10000"),
    ("limits.burst", "10000"),
];

/// Settings for a node with `hooks`, the fast dispatcher, and `extra` keys.
pub fn hook_settings(db: &str, extra: &[(&str, &str)], hooks: Vec<Webhook>) -> Settings {
    let mut keys: Vec<(&str, &str)> = FAST.to_vec();
    keys.extend_from_slice(extra);
    let mut s = settings(db, &keys);
    s.webhooks = hooks;
    s.validate().expect("webhook settings are valid");
    s
}

/// A node on `db` (alone) with `hooks`.
pub async fn hook_node(db: &str, hooks: Vec<Webhook>, extra: &[(&str, &str)]) -> TestNode {
    TestNode::start_with(hook_settings(db, extra, hooks)).await
}

/// The log as Postgres has it, for the rooms whose ids start with `prefix`: room → (seq, id, type).
pub async fn log_of(db: &str, prefix: &str) -> BTreeMap<String, Vec<(i64, String, String)>> {
    let client = db_client(db).await;
    let rows = client
        .query(
            "SELECT room, seq, id, kind FROM messages WHERE starts_with(room, $1) \
             ORDER BY room, seq",
            &[&prefix],
        )
        .await
        .expect("read the log");
    let mut log: BTreeMap<String, Vec<(i64, String, String)>> = BTreeMap::new();
    for r in rows {
        log.entry(r.get(0))
            .or_default()
            .push((r.get(1), r.get(2), r.get(3)));
    }
    log
}

/// An admin API call with a `role=service` token: status and JSON body.
pub async fn admin(
    node: &TestNode,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    crate::room_log::call(node, method, path, "ops", Some("service"), body).await
}

/// Rows in a table of the webhook schema.
pub async fn count(db: &str, table: &str) -> i64 {
    db_client(db)
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

/// Whether `accepted` covers every entry of `log` whose type is in `kinds`.
pub fn covers(
    accepted: &[Got],
    log: &BTreeMap<String, Vec<(i64, String, String)>>,
    kinds: &[&str],
) -> bool {
    let ids: std::collections::HashSet<&str> = accepted.iter().map(|g| g.id.as_str()).collect();
    log.values()
        .flatten()
        .filter(|(_, _, k)| kinds.contains(&k.as_str()))
        .all(|(_, id, _)| ids.contains(id.as_str()))
}

/// The delivery promise, checked on what a receiver accepted against the log:
/// - exactly the log's entries of `kinds` arrived (no other, none missing), each signed;
/// - the event id is the entry's id, and one (room, seq) never comes with two ids;
/// - per room, in arrival order, nothing skips ahead: an event arrives only after every earlier
///   one of its room (a repeat of something already delivered is allowed: at least once).
///
/// Returns how many requests were repeats.
pub fn check_delivery(
    accepted: &[Got],
    log: &BTreeMap<String, Vec<(i64, String, String)>>,
    kinds: &[&str],
) -> usize {
    let mut expected: HashMap<(String, i64), (String, String)> = HashMap::new();
    for (room, entries) in log {
        for (seq, id, kind) in entries {
            if kinds.contains(&kind.as_str()) {
                expected.insert((room.clone(), *seq), (id.clone(), kind.clone()));
            }
        }
    }
    let mut seen: HashMap<(String, i64), String> = HashMap::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut repeats = 0;
    for g in accepted {
        assert!(g.signed, "a request without a valid signature: {g:?}");
        assert_eq!(g.event_id, g.id, "Chorus-Event-Id is the body's id");
        let key = (g.room.clone(), g.seq);
        let (id, kind) = expected.get(&key).unwrap_or_else(|| {
            panic!("an event the log does not have (or of a type not asked for): {g:?}")
        });
        assert_eq!(&g.id, id, "the event id is the entry id");
        assert_eq!(&g.kind, kind);
        assert_eq!(g.entry["seq"], g.seq, "the entry is the event's");
        if let Some(before) = seen.insert(key.clone(), g.id.clone()) {
            assert_eq!(before, g.id, "one (room, seq), two ids");
            repeats += 1;
        }
        // Order: the next event of the room is the one after the highest delivered so far,
        // or a repeat of one already delivered.
        let high = last.entry(g.room.clone()).or_insert(0);
        let next_expected = expected
            .keys()
            .filter(|(r, s)| *r == g.room && *s > *high)
            .map(|(_, s)| *s)
            .min();
        if g.seq > *high {
            assert_eq!(
                Some(g.seq),
                next_expected,
                "room {} skipped ahead: {} arrived after {}",
                g.room,
                g.seq,
                high
            );
            *high = g.seq;
        }
    }
    assert_eq!(
        seen.len(),
        expected.len(),
        "every entry of the log arrived ({} of {})",
        seen.len(),
        expected.len()
    );
    repeats
}

/// Runs `chorus serve` with `hooks` in a config folder of its own (the only way to give the
/// binary `[[webhooks]]`).
pub fn config_dir(hooks: &str) -> tempdir::Dir {
    let dir = tempdir::Dir::new("chorus-webhooks");
    let mut f = std::fs::File::create(dir.path().join("default.toml")).expect("config file");
    f.write_all(hooks.as_bytes()).expect("write config");
    dir
}

/// A node process that dies with the test.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        sigkill(&mut self.0);
    }
}

mod tempdir {
    /// A folder under the system's temp dir, removed on drop.
    pub struct Dir(std::path::PathBuf);

    impl Dir {
        pub fn new(name: &str) -> Dir {
            let path =
                std::env::temp_dir().join(format!("{name}-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir(path)
        }

        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
