//! Exactness, randomized: three users with two devices each, spread over two nodes (real Redis),
//! post, edit, delete, react and read while devices drop and resume with `since`, and Redis is
//! down for a quarter of the run (entries then reach the other node by gap repair from Postgres,
//! and read cursors by the rooms' refresh after the outage). Every device
//! folds the entries it receives (checking they arrive gap-free); at the end each device's folded
//! view equals the folded history from Postgres, and each device's unread count (derived from its
//! view and its read cursor) equals a count computed by SQL, for every user.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::support::*;

const ROOM: &str = "exact";
const OPS: usize = 240;
const KEYS: [&str; 3] = ["👍", "party", "eyes"];

/// A message as a device folds it.
#[derive(Debug, Clone, PartialEq)]
struct Folded {
    user: String,
    body: String,
    deleted: bool,
    /// (key, user)
    reactions: BTreeSet<(String, String)>,
}

struct Device {
    user: &'static str,
    ws: Option<Ws>,
    /// Seq of the last entry of any type seen.
    cursor: i64,
    read_seq: i64,
    view: BTreeMap<i64, Folded>,
}

impl Device {
    fn apply(&mut self, v: &Value, seed: u64) {
        let t = v["type"].as_str().unwrap_or("");
        if t == "read" {
            if v["user"] == self.user {
                self.read_seq = self.read_seq.max(v["seq"].as_i64().unwrap());
            }
            return;
        }
        if t == "joined" {
            self.read_seq = self
                .read_seq
                .max(v["read_seq"].as_i64().expect("joined has read_seq"));
            return;
        }
        if !["message", "edit", "delete", "react"].contains(&t) {
            return;
        }
        let seq = v["seq"].as_i64().unwrap();
        assert_eq!(
            seq,
            self.cursor + 1,
            "seed {seed}: {} got {v} after {}",
            self.user,
            self.cursor
        );
        self.cursor = seq;
        let target = v["target"].as_i64().unwrap_or(0);
        match t {
            "message" => {
                let mut reactions = BTreeSet::new();
                for r in v["reactions"].as_array().into_iter().flatten() {
                    for u in r["users"].as_array().unwrap() {
                        reactions.insert((
                            r["key"].as_str().unwrap().to_owned(),
                            u.as_str().unwrap().to_owned(),
                        ));
                    }
                }
                self.view.insert(
                    seq,
                    Folded {
                        user: v["user"].as_str().unwrap().to_owned(),
                        body: v["body"].as_str().unwrap().to_owned(),
                        deleted: v["deleted"].as_bool().unwrap_or(false),
                        reactions,
                    },
                );
            }
            "edit" => {
                let m = self.view.get_mut(&target).expect("edit of a known message");
                if v["deleted"].as_bool().unwrap_or(false) {
                    (m.deleted, m.body) = (true, String::new());
                } else {
                    m.body = v["body"].as_str().unwrap().to_owned();
                }
            }
            "delete" => {
                let m = self
                    .view
                    .get_mut(&target)
                    .expect("delete of a known message");
                (m.deleted, m.body) = (true, String::new());
                m.reactions.clear();
            }
            _ => {
                let m = self
                    .view
                    .get_mut(&target)
                    .expect("react on a known message");
                let held = (
                    v["key"].as_str().unwrap().to_owned(),
                    v["user"].as_str().unwrap().to_owned(),
                );
                if v["op"] == "add" {
                    m.reactions.insert(held);
                } else {
                    m.reactions.remove(&held);
                }
            }
        }
    }

    /// Sends `frame` and applies everything until the reply with its ref.
    async fn ask(&mut self, mut frame: Value, seed: u64) -> Value {
        let r#ref = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        frame["ref"] = json!(r#ref);
        let ws = self.ws.as_mut().expect("connected");
        ws.send(frame).await;
        loop {
            let v = self.ws.as_mut().unwrap().recv().await;
            self.apply(&v, seed);
            if v["ref"] == r#ref.as_str() {
                return v;
            }
        }
    }

    async fn connect(&mut self, node: &TestNode, seed: u64) {
        self.ws = Some(node.ws(self.user).await);
        let joined = self
            .ask(json!({"type":"join","room":ROOM,"since":self.cursor}), seed)
            .await;
        assert_eq!(joined["recovered"], true, "seed {seed}: {joined}");
    }

    fn unread(&self) -> i64 {
        self.view
            .range(self.read_seq + 1..)
            .filter(|(_, m)| m.user != self.user && !m.deleted)
            .count() as i64
    }
}

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

#[actix_web::test]
async fn every_devices_folded_view_and_unread_count_equal_postgres() {
    let seed = std::env::var("CHORUS_EXACT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0 | 1);
    eprintln!("room log exactness seed {seed} (rerun with CHORUS_EXACT_SEED={seed})");
    let mut rng = Rng(seed);
    let mut cluster = TestCluster::start(2).await;
    let mut devices: Vec<Device> = ["ann", "ann", "bob", "bob", "cy", "cy"]
        .into_iter()
        .map(|user| Device {
            user,
            ws: None,
            cursor: 0,
            read_seq: 0,
            view: BTreeMap::new(),
        })
        .collect();
    for (i, d) in devices.iter_mut().enumerate() {
        d.connect(&cluster.nodes[i % 2], seed).await;
    }
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for op in 0..OPS {
        if op == OPS / 2 {
            cluster.redis.kill();
        } else if op == OPS * 3 / 4 {
            cluster.redis.restart().await;
        }
        let i = rng.next(devices.len());
        let d = &mut devices[i];
        if d.ws.is_none() {
            d.connect(&cluster.nodes[rng.next(2)], seed).await;
            continue;
        }
        let messages: Vec<i64> = d.view.keys().copied().collect();
        let pick = |rng: &mut Rng| {
            messages
                .get(rng.next(messages.len().max(1)))
                .copied()
                .unwrap_or(1)
        };
        let roll = rng.next(100);
        let frame = if roll < 40 || messages.is_empty() {
            json!({"type":"send","room":ROOM,"body":format!("{} says {op}", d.user),"client_msg_id":format!("c{op}")})
        } else if roll < 53 {
            // Mostly their own messages, sometimes someone else's (forbidden) or a deleted one (gone).
            let own: Vec<i64> = d
                .view
                .iter()
                .filter(|(_, m)| m.user == d.user)
                .map(|(s, _)| *s)
                .collect();
            let target = if own.is_empty() || rng.next(5) == 0 {
                pick(&mut rng)
            } else {
                own[rng.next(own.len())]
            };
            if roll < 47 {
                json!({"type":"edit","room":ROOM,"target":target,"body":format!("edited {op}")})
            } else {
                json!({"type":"delete","room":ROOM,"target":target})
            }
        } else if roll < 78 {
            let op_name = if rng.next(3) == 0 { "remove" } else { "add" };
            json!({"type":"react","room":ROOM,"target":pick(&mut rng),"key":KEYS[rng.next(3)],"op":op_name})
        } else if roll < 93 {
            // At or a little behind what it has seen, never below 0 (a negative seq is refused).
            json!({"type":"read","room":ROOM,"seq":(d.cursor - rng.next(3) as i64).max(0)})
        } else {
            d.ws = None; // dropped; it resumes with `since` on a random node later
            *outcomes.entry("dropped".into()).or_default() += 1;
            continue;
        };
        let reply = d.ask(frame.clone(), seed).await;
        let outcome = match reply["type"].as_str() {
            Some("ack") if reply["duplicate"] == true => "duplicate".to_owned(),
            Some("error") => reply["code"].as_str().unwrap().to_owned(),
            Some(t) => format!("{}:{t}", frame["type"].as_str().unwrap()),
            None => panic!("seed {seed}: no reply type: {reply}"),
        };
        assert!(
            !["internal", "unavailable", "bad_request", "rate_limited"].contains(&outcome.as_str()),
            "seed {seed}: {frame} → {reply}"
        );
        *outcomes.entry(outcome).or_default() += 1;
    }
    eprintln!("outcomes: {outcomes:?}");
    for want in [
        "send:ack",
        "edit:ack",
        "delete:ack",
        "react:ack",
        "read:read",
    ] {
        assert!(
            outcomes.contains_key(want),
            "seed {seed}: no {want} in {outcomes:?}"
        );
    }

    // Everyone back, then wait until every device has every entry and its user's latest cursor.
    let pg = db_client(&cluster.db).await;
    for d in devices.iter_mut().filter(|d| d.ws.is_none()) {
        d.connect(&cluster.nodes[0], seed).await;
    }
    let head: i64 = pg
        .query_one("SELECT last_seq FROM rooms WHERE id = $1", &[&ROOM])
        .await
        .unwrap()
        .get(0);
    for d in &mut devices {
        let sql_read: i64 = pg
            .query_one(
                "SELECT coalesce((SELECT read_seq FROM read_cursors WHERE room = $1 AND user_id = $2), 0)",
                &[&ROOM, &d.user],
            )
            .await
            .unwrap()
            .get(0);
        while d.cursor < head || d.read_seq < sql_read {
            let v = d.ws.as_mut().unwrap().recv().await;
            d.apply(&v, seed);
        }
        assert_eq!(d.read_seq, sql_read, "seed {seed}: {}'s cursor", d.user);
    }

    // The folded history from Postgres (through the API: REST ?before=, which pages by 200).
    let mut folded: BTreeMap<i64, Folded> = BTreeMap::new();
    let mut before = head + 1;
    loop {
        let page = get_json(
            &cluster.nodes[1],
            &format!("/api/rooms/{ROOM}/messages?before={before}&limit=200"),
            "ann",
        )
        .await;
        let msgs = page["messages"].as_array().unwrap().clone();
        if msgs.is_empty() {
            break;
        }
        before = msgs[0]["seq"].as_i64().unwrap();
        for m in msgs {
            let mut reactions = BTreeSet::new();
            for r in m["reactions"].as_array().into_iter().flatten() {
                let users = r["users"].as_array().unwrap();
                assert_eq!(
                    r["count"].as_u64().unwrap() as usize,
                    users.len(),
                    "under 20 users each"
                );
                for u in users {
                    reactions.insert((
                        r["key"].as_str().unwrap().to_owned(),
                        u.as_str().unwrap().to_owned(),
                    ));
                }
            }
            folded.insert(
                m["seq"].as_i64().unwrap(),
                Folded {
                    user: m["user"].as_str().unwrap().to_owned(),
                    body: m["body"].as_str().unwrap().to_owned(),
                    deleted: m["deleted"].as_bool().unwrap_or(false),
                    reactions,
                },
            );
        }
    }
    for (i, d) in devices.iter().enumerate() {
        assert_eq!(
            d.view, folded,
            "seed {seed}: device {i} ({}) differs from Postgres",
            d.user
        );
        let sql_unread: i64 = pg
            .query_one(
                "SELECT count(*) FROM messages m WHERE m.room = $1 AND m.kind = 'message' \
                 AND m.user_id <> $2 AND m.deleted_seq IS NULL AND m.seq > \
                 coalesce((SELECT read_seq FROM read_cursors WHERE room = $1 AND user_id = $2), 0)",
                &[&ROOM, &d.user],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            d.unread(),
            sql_unread,
            "seed {seed}: device {i} ({}) unread",
            d.user
        );
        let mine = get_json(&cluster.nodes[i % 2], "/api/me/rooms", d.user).await;
        assert_eq!(
            mine[0]["unread"].as_i64(),
            Some(sql_unread),
            "seed {seed}: /api/me/rooms for {}",
            d.user
        );
    }
    cluster.stop().await;
}
