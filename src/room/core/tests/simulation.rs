//! A deterministic simulation of a cluster, the way FoundationDB and TigerBeetle test: several
//! nodes, each running the pure room core for several rooms, a store, a bus and clients, all
//! simulated in one thread and driven by a seeded scheduler that picks, at every step, what
//! happens next, adversarially:
//!
//! - store reads and appends finish in any order; an append fails before its commit, or commits
//!   and loses its answer (the client retries with the same `client_msg_id`); one kind of body
//!   is data the store refuses (a batch that holds it fails whole);
//! - bus envelopes arrive late, twice, or never, and different nodes' envelopes interleave in
//!   any order (one node's reach another in the order it published them, as over one Redis
//!   connection); Redis loses pub/sub messages only with the connection, so a loss is everything
//!   in flight to one node, followed by the resync its bridge does on reconnecting;
//! - nodes crash (everything in flight on them is gone) and come back under a new id, as pods do;
//!   the others hear `NodeDown` some steps later; clocks are skewed;
//! - clients post, retry what was not acked (or give it up), leave, and come back to any node
//!   with `since`;
//!   deliveries are now and then refused (a slow consumer, evicted and reconnecting).
//!
//! Checked after every step (PROTOCOL §3, §6, §7): each client gets entries `from + 1, + 2, …`,
//! never skipping, repeating or reordering, and only after its `joined`; every entry it gets is
//! the store's entry at that seq; a resume that can be continued says `recovered:true`; an ack
//! names the store's entry for that `client_msg_id`, and the same seq every time. At the end,
//! once everything in flight has finished (with no extra resync: gap repair, retries and the
//! resyncs that losses caused must be enough), every client has every entry of its room and every node's presence is exactly who is connected.
//!
//! Why our own scheduler and not `turmoil` (which simulates tokio's network): the room core is
//! pure, so the whole cluster is a loop over inputs and effects here. Every interleaving is
//! reachable, nothing depends on wall time, and a run is a few microseconds a step.
//!
//! `cargo test` runs 2000 seeds (a few seconds). More: `SIM_SEEDS=1000000 cargo test --release
//! --lib simulation -- --nocapture` (the nightly run). A failing seed is printed with the last
//! steps it took, and replays exactly: `SIM_SEED=<seed> cargo test --lib simulation`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::bridge::FromCluster;
use crate::bridge::envelope::{RoomEnvelope, RoomEvent};
use crate::domain::Change;
use crate::ids::NodeId;
use crate::room::delivery::Carries;
use crate::store::{Appended, RoomHead};

const NODES: usize = 3;
const ROOMS: [&str; 2] = ["alpha", "beta"];
const CLIENTS: u32 = 6;
const STEPS: usize = 250;

struct Sim;

impl Handles for Sim {
    /// The client, and which of its connections.
    type Member = (u32, u32);
    /// The client, and the `client_msg_id` of its post.
    type PostReply = (u32, String);
    type ReadReply = ();
}

/// The store: every room's log, and which entry each (user, client_msg_id) made.
#[derive(Default)]
struct Store {
    rooms: BTreeMap<String, StoreRoom>,
}

struct StoreRoom {
    epoch: Epoch,
    log: Vec<Arc<Message>>,
    keys: BTreeMap<(UserId, String), usize>,
}

impl Store {
    fn room(&mut self, room: &str) -> &mut StoreRoom {
        self.rooms
            .entry(room.to_owned())
            .or_insert_with(|| StoreRoom {
                epoch: Epoch::from("e1"),
                log: Vec::new(),
                keys: BTreeMap::new(),
            })
    }

    fn head(&mut self, room: &str) -> RoomHead {
        let r = self.room(room);
        RoomHead {
            epoch: r.epoch.clone(),
            last_seq: Seq::new(r.log.len() as i64),
        }
    }

    /// One transaction: all of the batch or none of it.
    fn append(
        &mut self,
        room: &str,
        batch: &[NewMessage],
        ts: DateTime<Utc>,
    ) -> Result<AppendOutcome, StoreError> {
        if batch.iter().any(|m| m.change.body() == "poison") {
            return Err(StoreError::Invalid(
                "22021: the store cannot take this".into(),
            ));
        }
        let id = RoomId::parse(room).expect("valid");
        let r = self.room(room);
        let mut appended = Vec::new();
        for m in batch {
            let key = m.client_msg_id.clone().map(|c| (m.user.clone(), c));
            if let Some(&at) = key.as_ref().and_then(|k| r.keys.get(k)) {
                appended.push(Ok(Appended {
                    message: r.log[at].clone(),
                    duplicate: true,
                }));
                continue;
            }
            let seq = Seq::new(r.log.len() as i64 + 1);
            let mut entry = Message::new(
                id.clone(),
                seq,
                format!("{room}-{seq}"),
                m.user.clone(),
                m.change.body().into(),
            );
            entry.client_msg_id = m.client_msg_id.clone();
            entry.ts = ts;
            let entry = Arc::new(entry);
            if let Some(k) = key {
                r.keys.insert(k, r.log.len());
            }
            r.log.push(entry.clone());
            appended.push(Ok(Appended {
                message: entry,
                duplicate: false,
            }));
        }
        Ok(AppendOutcome {
            epoch: r.epoch.clone(),
            appended,
        })
    }

    fn range(&mut self, room: &str, after: Seq, upto: Seq) -> Result<Vec<Message>, StoreError> {
        let log = &self.room(room).log;
        let (a, b) = (
            after.get().max(0) as usize,
            (upto.get().max(0) as usize).min(log.len()),
        );
        let got: Vec<Message> = log[a.min(b)..b].iter().map(|m| (**m).clone()).collect();
        crate::store::check_range(got, after, upto)
    }
}

struct SimNode {
    id: NodeId,
    alive: bool,
    /// Bumped at every crash and restart: what an earlier incarnation started never comes back.
    life: u32,
    /// Each room's core with its incarnation (a room that idled out starts afresh on next use).
    rooms: BTreeMap<String, (u32, RoomCore<Sim>)>,
    room_lives: u32,
    skew_ms: i64,
}

/// Something in flight, to happen when the scheduler says.
enum Pending {
    Io {
        node: usize,
        life: u32,
        room: String,
        rlife: u32,
        effect: Effect<Sim>,
    },
    /// `order` is when it was published: one node's envelopes reach another in that order.
    Envelope {
        to: usize,
        life: u32,
        order: u64,
        env: RoomEnvelope,
    },
    NodeDown {
        to: usize,
        life: u32,
        dead: NodeId,
    },
    Resync {
        node: usize,
        life: u32,
    },
}

struct Timed {
    due: u64,
    node: usize,
    life: u32,
    room: String,
    rlife: u32,
    timer: Timer,
}

struct Client {
    user: UserId,
    room: String,
    /// This connection's session id, and its number.
    session: Option<SessionId>,
    conn: u32,
    /// The node it is connected to (joined or joining).
    node: Option<usize>,
    joining: bool,
    since: Option<i64>,
    /// Joined: the next seq it must get.
    next: Option<i64>,
    seen: Option<i64>,
    posts: u32,
    /// Not acked yet: `client_msg_id` → on the wire now.
    outstanding: BTreeMap<String, bool>,
    acked: BTreeMap<String, i64>,
}

struct World {
    rng: StdRng,
    seed: u64,
    now: u64,
    t0: Instant,
    wall0: DateTime<Utc>,
    store: Store,
    nodes: Vec<SimNode>,
    pending: Vec<Pending>,
    published: u64,
    timers: Vec<Timed>,
    clients: Vec<Client>,
    /// The presence hash: (room, node) → users.
    hash: BTreeMap<(String, NodeId), BTreeSet<UserId>>,
    log: VecDeque<String>,
    next_node_id: u32,
    connections: u32,
    /// Connections whose queue is full.
    choked: BTreeSet<(u32, u32)>,
    /// Connections the client left: what the room sent before it handled the leave is dropped.
    left: BTreeSet<(u32, u32)>,
}

type Check = Result<(), String>;

fn settings(node: &NodeId) -> Settings {
    Settings {
        max_catchup: 100_000,
        batch_max: 3,
        gap_repair: Duration::from_millis(50),
        idle_stop: Duration::from_secs(3600),
        node: Some(node.clone()),
    }
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let clients = (0..CLIENTS)
            .map(|i| Client {
                user: UserId::from(format!("u{}", i % 4)),
                room: ROOMS[(i as usize) % ROOMS.len()].to_owned(),
                session: None,
                conn: 0,
                node: None,
                joining: false,
                since: None,
                next: None,
                seen: None,
                posts: 0,
                outstanding: BTreeMap::new(),
                acked: BTreeMap::new(),
            })
            .collect();
        let mut w = World {
            seed,
            now: 0,
            t0: Instant::now(),
            wall0: crate::domain::now_ts(),
            store: Store::default(),
            nodes: Vec::new(),
            pending: Vec::new(),
            published: 0,
            timers: Vec::new(),
            clients,
            hash: BTreeMap::new(),
            log: VecDeque::new(),
            next_node_id: 0,
            connections: 0,
            choked: BTreeSet::new(),
            left: BTreeSet::new(),
            rng: StdRng::seed_from_u64(rng.random()),
        };
        for _ in 0..NODES {
            let skew = rng.random_range(-500..500);
            w.nodes.push(SimNode {
                id: NodeId::from("unborn"),
                alive: false,
                life: 0,
                rooms: BTreeMap::new(),
                room_lives: 0,
                skew_ms: skew,
            });
        }
        for n in 0..NODES {
            w.boot(n).expect("a room starts");
        }
        w
    }

    fn note(&mut self, what: String) {
        if self.log.len() == 400 {
            self.log.pop_front();
        }
        self.log.push_back(format!("t={} {what}", self.now));
    }

    fn fail(&self, what: String) -> String {
        let steps: Vec<&str> = self.log.iter().map(String::as_str).collect();
        format!(
            "seed {}: {what}\nreplay: SIM_SEED={} cargo test --lib simulation\nlast steps:\n  {}",
            self.seed,
            self.seed,
            steps.join("\n  ")
        )
    }

    fn clock(&self, node: usize) -> Now {
        let skew = self.nodes[node].skew_ms;
        Now {
            at: self.t0 + Duration::from_millis(self.now),
            wall: self.wall0 + chrono::Duration::milliseconds(self.now as i64 + skew),
        }
    }

    /// Starts node `n` under a new id, every room attaching.
    fn boot(&mut self, n: usize) -> Check {
        self.next_node_id += 1;
        let id = NodeId::from(format!("n{n}-{}", self.next_node_id));
        let node = &mut self.nodes[n];
        node.id = id.clone();
        node.alive = true;
        node.life += 1;
        node.rooms.clear();
        self.note(format!("boot node {n} as {id}"));
        for room in ROOMS {
            self.start_room(n, room)?;
        }
        Ok(())
    }

    /// Node `n` dies: everything it held is gone; its clients are cut off; the others hear of it
    /// later.
    fn crash(&mut self, n: usize) {
        let dead = self.nodes[n].id.clone();
        self.note(format!("crash node {n} ({dead})"));
        let node = &mut self.nodes[n];
        node.alive = false;
        node.life += 1;
        node.rooms.clear();
        for c in &mut self.clients {
            if c.node == Some(n) {
                disconnect(c);
            }
        }
        for to in 0..NODES {
            if to != n && self.nodes[to].alive {
                let life = self.nodes[to].life;
                self.pending.push(Pending::NodeDown {
                    to,
                    life,
                    dead: dead.clone(),
                });
            }
        }
    }

    /// A fresh core for `room` on node `n` (as the registry starts one on first use).
    fn start_room(&mut self, n: usize, room: &str) -> Check {
        let node = &mut self.nodes[n];
        node.room_lives += 1;
        let core = RoomCore::new(RoomId::parse(room).expect("valid"), settings(&node.id));
        node.rooms.insert(room.to_owned(), (node.room_lives, core));
        self.feed(n, room, None, Input::Start)
    }

    /// A session's input, for the room's running core, started first if it idled out.
    fn tell(&mut self, n: usize, room: &str, input: Input<Sim>) -> Check {
        if !self.nodes[n].rooms.contains_key(room) {
            self.start_room(n, room)?;
        }
        self.feed(n, room, None, input)
    }

    /// Feeds one input to a room of node `n` (the incarnation `life` of it, when given) and
    /// carries out its effects, and the inputs they give back at once (refused deliveries), as
    /// the actor does.
    fn feed(&mut self, n: usize, room: &str, life: Option<u32>, input: Input<Sim>) -> Check {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let now = self.clock(n);
            let Some((running, core)) = self.nodes[n].rooms.get_mut(room) else {
                return Ok(());
            };
            if life.is_some_and(|l| l != *running) {
                return Ok(());
            }
            let running = *running;
            let effects = core.step(now, input);
            for effect in effects {
                self.apply(n, room, running, effect, &mut queue)?;
            }
        }
        Ok(())
    }

    fn apply(
        &mut self,
        n: usize,
        room: &str,
        rlife: u32,
        effect: Effect<Sim>,
        feedback: &mut VecDeque<Input<Sim>>,
    ) -> Check {
        let life = self.nodes[n].life;
        match effect {
            io if io.is_io() => self.pending.push(Pending::Io {
                node: n,
                life,
                room: room.to_owned(),
                rlife,
                effect: io,
            }),
            Effect::Deliver {
                session,
                to,
                frames,
            } => {
                // Now and then a member is too slow: its queue is full, so it refuses this and
                // everything after it until the room evicts it; it reconnects later.
                if self.choked.contains(&to) || self.rng.random_bool(0.005) {
                    if self.choked.insert(to) {
                        self.note(format!("client {} connection {} is slow", to.0, to.1));
                    }
                    feedback.push_back(Input::Undeliverable {
                        session,
                        slow: true,
                    });
                    return Ok(());
                }
                for d in frames.frames() {
                    self.received(to, d)?;
                }
            }
            Effect::Send { to, message } => self.sent(to, message)?,
            Effect::Answer {
                to: (client, cid),
                outcome,
            } => self.answered(client, cid, outcome)?,
            Effect::AnswerRead { .. } | Effect::Count(_) => {}
            Effect::Publish { event, seq } => {
                let env = RoomEnvelope {
                    v: 1,
                    origin: self.nodes[n].id.clone(),
                    room: RoomId::parse(room).expect("valid"),
                    seq,
                    event,
                };
                self.broadcast(n, env);
            }
            Effect::Announce { here, gone, forget } => {
                let users =
                    |us: &[PresenceUser]| us.iter().map(|u| u.user.to_string()).collect::<Vec<_>>();
                let forgot: Vec<String> = forget.iter().map(|(n, u)| format!("{n}/{u}")).collect();
                self.note(format!(
                    "node {n} announces in {room}: here {:?}, gone {:?}, forgets {forgot:?}",
                    users(&here),
                    users(&gone)
                ));
                let me = self.nodes[n].id.clone();
                let mine = self.hash.entry((room.to_owned(), me)).or_default();
                mine.extend(here.iter().map(|u| u.user.clone()));
                for u in &gone {
                    mine.remove(&u.user);
                }
                for (node, user) in forget {
                    if let Some(users) = self.hash.get_mut(&(room.to_owned(), node)) {
                        users.remove(&user);
                    }
                }
                if !here.is_empty() || !gone.is_empty() {
                    let env = RoomEnvelope {
                        v: 1,
                        origin: self.nodes[n].id.clone(),
                        room: RoomId::parse(room).expect("valid"),
                        seq: None,
                        event: RoomEvent::Presence {
                            joins: here,
                            leaves: gone,
                        },
                    };
                    self.broadcast(n, env);
                }
            }
            Effect::Schedule { timer, after } => {
                let due = self.now + after.as_millis() as u64;
                self.timers.push(Timed {
                    due,
                    node: n,
                    life,
                    room: room.to_owned(),
                    rlife,
                    timer,
                });
            }
            Effect::Cancel(timer) => self.timers.retain(|t| {
                !(t.node == n
                    && t.life == life
                    && t.rlife == rlife
                    && t.room == room
                    && t.timer == timer)
            }),
            Effect::Stop => {
                self.nodes[n].rooms.remove(room);
            }
            _ => unreachable!("every effect is handled"),
        }
        Ok(())
    }

    fn broadcast(&mut self, from: usize, env: RoomEnvelope) {
        self.published += 1;
        for to in 0..NODES {
            if to != from && self.nodes[to].alive {
                let life = self.nodes[to].life;
                let order = self.published;
                self.pending.push(Pending::Envelope {
                    to,
                    life,
                    order,
                    env: env.clone(),
                });
            }
        }
    }

    /// Takes what finishes next when the schedule picked `i`: for an envelope, the oldest one
    /// still in flight from the same node to the same node (Redis pub/sub keeps one
    /// connection's order; envelopes from different nodes interleave freely).
    fn take(&mut self, i: usize) -> Pending {
        let i = match &self.pending[i] {
            Pending::Envelope { to, env, .. } => {
                let link = (*to, env.origin.clone());
                (0..self.pending.len())
                    .filter_map(|j| match &self.pending[j] {
                        Pending::Envelope { to, order, env, .. }
                            if (*to, env.origin.clone()) == link =>
                        {
                            Some((*order, j))
                        }
                        _ => None,
                    })
                    .min()
                    .map_or(i, |(_, j)| j)
            }
            _ => i,
        };
        self.pending.swap_remove(i)
    }

    /// Who the hash says is in `room`, without crashed nodes' entries (the bridge checks liveness).
    fn presence_of(&self, room: &str) -> Vec<(NodeId, PresenceUser)> {
        let alive: BTreeSet<&NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| &n.id)
            .collect();
        self.hash
            .iter()
            .filter(|((r, node), _)| r == room && alive.contains(node))
            .flat_map(|((_, node), users)| {
                users.iter().map(|u| {
                    (
                        node.clone(),
                        PresenceUser {
                            user: u.clone(),
                            name: None,
                        },
                    )
                })
            })
            .collect()
    }

    fn received(
        &mut self,
        (client, conn): (u32, u32),
        d: &crate::room::delivery::Delivery,
    ) -> Check {
        let Carries::Entry { seq, .. } = d.carries else {
            return Ok(());
        };
        if self.left.contains(&(client, conn)) {
            return Ok(());
        }
        let c = &self.clients[client as usize];
        if c.conn != conn || c.node.is_none() {
            return Err(self.fail(format!(
                "client {client} got {seq} on connection {conn}, which it closed"
            )));
        }
        let Some(next) = c.next else {
            return Err(self.fail(format!("client {client} got {seq} before its joined")));
        };
        if seq.get() != next {
            return Err(self.fail(format!(
                "client {client} got {seq}, expected {next}: a gap, repeat or reorder"
            )));
        }
        let room = c.room.clone();
        let stored = self
            .store
            .room(&room)
            .log
            .get(seq.get() as usize - 1)
            .map(|m| m.id.clone());
        let got: serde_json::Value = serde_json::from_str(&d.frame).expect("json");
        if stored.as_deref() != got["id"].as_str() {
            return Err(self.fail(format!(
                "client {client} got {got} at {seq}, the store has {stored:?}"
            )));
        }
        let c = &mut self.clients[client as usize];
        c.next = Some(next + 1);
        c.seen = Some(next);
        Ok(())
    }

    fn sent(&mut self, (client, conn): (u32, u32), message: ToSession) -> Check {
        let c = &self.clients[client as usize];
        if c.conn != conn || c.node.is_none() || self.left.contains(&(client, conn)) {
            return Ok(()); // for a connection the client has dropped (a leave, an eviction)
        }
        match message {
            ToSession::Joined(reply) => {
                let head = self
                    .store
                    .head(&self.clients[client as usize].room)
                    .last_seq
                    .get();
                let c = &self.clients[client as usize];
                if !c.joining {
                    return Err(
                        self.fail(format!("client {client} got a joined it did not ask for"))
                    );
                }
                let point = &reply.point;
                if point.last_seq.get() > head {
                    return Err(self.fail(format!(
                        "joined at {} past the store's head {head}",
                        point.last_seq
                    )));
                }
                if c.since.is_some() && !point.recovered {
                    return Err(self.fail(format!(
                        "client {client}'s resume after {:?} said recovered:false",
                        c.since
                    )));
                }
                let next = match (point.recovered, c.since) {
                    (true, Some(s)) => s + 1,
                    _ => point.last_seq.get() + 1,
                };
                let c = &mut self.clients[client as usize];
                c.joining = false;
                c.next = Some(next);
                for d in &reply.frames {
                    self.received((client, conn), d)?;
                }
            }
            ToSession::Dropped { why, .. } => {
                self.note(format!("client {client} dropped: {why:?}"));
                disconnect(&mut self.clients[client as usize]);
            }
            _ => {}
        }
        Ok(())
    }

    fn answered(
        &mut self,
        client: u32,
        cid: String,
        outcome: Result<Appended, StoreError>,
    ) -> Check {
        let c = &mut self.clients[client as usize];
        match outcome {
            Ok(a) => {
                let seq = a.message.seq.get();
                if a.message.client_msg_id.as_deref() != Some(cid.as_str()) {
                    return Err(self.fail(format!("{cid} acked with another entry's seq {seq}")));
                }
                if let Some(&before) = c.acked.get(&cid)
                    && before != seq
                {
                    return Err(self.fail(format!("{cid} acked as {before}, then as {seq}")));
                }
                c.acked.insert(cid.clone(), seq);
                c.outstanding.remove(&cid);
            }
            Err(StoreError::Invalid(_)) => {
                c.outstanding.remove(&cid); // refused for good (poison): it fails alone
            }
            Err(_) => {
                if let Some(flying) = c.outstanding.get_mut(&cid) {
                    *flying = false; // retried later, with the same id
                }
            }
        }
        Ok(())
    }

    /// Finishes `p` (`fail`: the operation fails, if it can).
    fn finish(&mut self, p: Pending, fail: bool) -> Check {
        match p {
            Pending::Io {
                node,
                life,
                room,
                rlife,
                effect,
            } => {
                if self.nodes[node].life != life {
                    return Ok(());
                }
                let ts = self.clock(node).wall;
                if matches!(effect, Effect::Attach | Effect::Resync { .. }) {
                    let hash: Vec<String> = self
                        .presence_of(&room)
                        .iter()
                        .map(|(n, u)| format!("{n}/{}", u.user))
                        .collect();
                    self.note(format!(
                        "node {node} reads {room}'s head and presence {hash:?}"
                    ));
                }
                let done = match effect {
                    Effect::Attach => Done::Attached {
                        head: if fail {
                            down::<_>()
                        } else {
                            Ok(self.store.head(&room))
                        },
                        presence: Some(self.presence_of(&room)),
                    },
                    Effect::ReadHead(why) => Done::Head {
                        why,
                        result: if fail {
                            down::<_>()
                        } else {
                            Ok(self.store.head(&room))
                        },
                    },
                    Effect::Append(batch) => {
                        let result = match (fail, self.rng.random_bool(0.5)) {
                            (true, true) => down::<_>(),
                            (true, false) => {
                                // Committed, but the answer was lost: the post is retried.
                                let _ = self.store.append(&room, &batch, ts);
                                self.note(format!(
                                    "node {node}'s append to {room} committed, its answer lost"
                                ));
                                down::<_>()
                            }
                            (false, _) => self.store.append(&room, &batch, ts),
                        };
                        let head = self.store.head(&room).last_seq;
                        self.note(format!(
                            "node {node}'s append of {} to {room}: {}, head {head}",
                            batch.len(),
                            if result.is_ok() { "ok" } else { "failed" }
                        ));
                        Done::Appended { batch, result }
                    }
                    Effect::Repair { after, upto } => Done::Repaired {
                        result: if fail {
                            down::<_>()
                        } else {
                            self.store.range(&room, after, upto)
                        },
                    },
                    Effect::CatchUp { delivered, max } => {
                        let head = self.store.head(&room);
                        let upto = head.last_seq.min(delivered + max);
                        let result = if fail {
                            down::<_>()
                        } else {
                            self.store
                                .range(&room, delivered, upto)
                                .map(|missed| (head, missed))
                        };
                        Done::CaughtUp { result }
                    }
                    Effect::ReadForJoin { join, backfill, .. } => Done::JoinRead {
                        join,
                        read: None,
                        backfill: match (fail, backfill) {
                            (true, _) => down::<_>(),
                            (false, Some((a, b))) => self.store.range(&room, a, b),
                            (false, None) => Ok(Vec::new()),
                        },
                    },
                    Effect::MarkRead(pairs) => Done::ReadsMarked {
                        result: Ok(pairs
                            .iter()
                            .map(|_| {
                                (
                                    ReadState {
                                        read_seq: Seq::ZERO,
                                        unread: 0,
                                        last_seq: Seq::ZERO,
                                    },
                                    false,
                                )
                            })
                            .collect()),
                    },
                    Effect::ResetEpoch { .. } => Done::EpochReset {
                        result: Ok(self.store.head(&room)),
                    },
                    Effect::Resync { floor } => Done::Resynced {
                        floor,
                        head: if fail {
                            down::<_>()
                        } else {
                            Ok(self.store.head(&room))
                        },
                        presence: Some(self.presence_of(&room)),
                    },
                    Effect::RefreshReads { .. } => Done::ReadsRefreshed { states: Vec::new() },
                    _ => unreachable!("only I/O is pending"),
                };
                self.feed(node, &room, Some(rlife), Input::Done(done))
            }
            Pending::Envelope { to, life, env, .. } => {
                if self.nodes[to].life != life {
                    return Ok(());
                }
                let room = env.room.to_string();
                self.feed(to, &room, None, Input::Cluster(FromCluster::Event(env)))
            }
            Pending::NodeDown { to, life, dead } => {
                if self.nodes[to].life != life {
                    return Ok(());
                }
                for room in ROOMS {
                    self.feed(
                        to,
                        room,
                        None,
                        Input::Cluster(FromCluster::NodeDown(dead.clone())),
                    )?;
                }
                Ok(())
            }
            Pending::Resync { node, life } => {
                if self.nodes[node].life != life {
                    return Ok(());
                }
                for room in ROOMS {
                    self.feed(node, room, None, Input::Cluster(FromCluster::Resync))?;
                }
                Ok(())
            }
        }
    }

    fn fire_next_timer(&mut self) -> Check {
        let Some(i) = (0..self.timers.len()).min_by_key(|&i| (self.timers[i].due, i)) else {
            return Ok(());
        };
        let t = self.timers.remove(i);
        self.now = self.now.max(t.due);
        if self.nodes[t.node].life != t.life {
            return Ok(());
        }
        self.feed(t.node, &t.room, Some(t.rlife), Input::Timer(t.timer))
    }

    fn alive(&self) -> Vec<usize> {
        (0..NODES).filter(|&n| self.nodes[n].alive).collect()
    }

    /// Client `i` connects to a live node and joins, resuming after what it saw.
    fn join(&mut self, i: u32) -> Check {
        let alive = self.alive();
        let c = &self.clients[i as usize];
        if c.node.is_some() || alive.is_empty() {
            return Ok(());
        }
        let n = alive[self.rng.random_range(0..alive.len())];
        self.connections += 1;
        let session = SessionId::from(format!("c{i}-{}", self.connections));
        let c = &mut self.clients[i as usize];
        c.node = Some(n);
        c.conn = self.connections;
        c.session = Some(session.clone());
        c.joining = true;
        c.since = c.seen;
        let req = JoinRequest {
            session,
            member: (i, self.connections),
            user: PresenceUser {
                user: c.user.clone(),
                name: None,
            },
            since: c.since.map(Seq::new),
            epoch: None,
            r#ref: None,
            hidden: false,
        };
        let room = c.room.clone();
        self.note(format!(
            "client {i} joins {room} on node {n} since {:?}",
            req.since
        ));
        self.tell(n, &room, Input::Join(req))
    }

    /// Client `i` posts a new entry, or sends again one that was not acked.
    fn post(&mut self, i: u32, again: bool) -> Check {
        let c = &mut self.clients[i as usize];
        let Some(n) = c.node.filter(|_| c.next.is_some()) else {
            return Ok(());
        };
        let cid = if again {
            match c.outstanding.iter().find(|(_, flying)| !**flying) {
                Some((cid, _)) => cid.clone(),
                None => return Ok(()),
            }
        } else {
            c.posts += 1;
            format!("c{i}-p{}", c.posts)
        };
        c.outstanding.insert(cid.clone(), true);
        let body = if !again && self.rng.random_bool(0.03) {
            "poison"
        } else {
            "hello"
        };
        let entry = NewMessage {
            client_msg_id: Some(cid.clone()),
            change: Change::Message { body: body.into() },
            ..NewMessage::message(c.user.clone(), "")
        };
        let room = c.room.clone();
        self.tell(
            n,
            &room,
            Input::Post {
                entry,
                reply: (i, cid),
            },
        )
    }

    /// One step, chosen by the seed.
    fn step(&mut self) -> Check {
        let roll = self.rng.random_range(0..100);
        match roll {
            0..45 if !self.pending.is_empty() => {
                let i = self.rng.random_range(0..self.pending.len());
                if let Pending::Envelope {
                    to,
                    life,
                    order,
                    env,
                } = &self.pending[i]
                {
                    let (to, life, order) = (*to, *life, *order);
                    if life != self.nodes[to].life {
                        self.pending.swap_remove(i); // for a node that crashed since
                        return Ok(());
                    }
                    let fate = self.rng.random_range(0..10);
                    if fate == 0 {
                        // Redis loses pub/sub messages only with the connection: the node's
                        // subscriber connection breaks, everything in flight to it is gone, and
                        // its bridge resyncs it a little later.
                        self.pending
                            .retain(|p| !matches!(p, Pending::Envelope { to: t, .. } if *t == to));
                        self.note(format!("node {to}'s bus connection broke"));
                        self.pending.push(Pending::Resync { node: to, life });
                        return Ok(());
                    }
                    if fate == 1 {
                        // Delivered twice (a republish): a copy stays in flight.
                        let copy = Pending::Envelope {
                            to,
                            life,
                            order,
                            env: env.clone(),
                        };
                        self.pending.push(copy);
                    }
                }
                let p = self.take(i);
                let fail = self.rng.random_bool(0.08);
                self.finish(p, fail)
            }
            45..55 => self.fire_next_timer(),
            55..75 => {
                let i = self.rng.random_range(0..CLIENTS);
                self.post(i, false)
            }
            75..79 => {
                let i = self.rng.random_range(0..CLIENTS);
                self.post(i, true)
            }
            79 => {
                // A user closes the tab: what was not acked is never sent again (some of it may
                // have committed all the same, and must still reach everyone).
                let i = self.rng.random_range(0..CLIENTS);
                self.clients[i as usize]
                    .outstanding
                    .retain(|_, flying| *flying);
                self.note(format!("client {i} gives up what was not acked"));
                Ok(())
            }
            80..92 => {
                let i = self.rng.random_range(0..CLIENTS);
                self.join(i)
            }
            92..95 => {
                let i = self.rng.random_range(0..CLIENTS);
                self.leave(i)
            }
            95..97 if self.alive().len() > 1 => {
                let alive = self.alive();
                let n = alive[self.rng.random_range(0..alive.len())];
                self.crash(n);
                Ok(())
            }
            97..100 => match (0..NODES).find(|&n| !self.nodes[n].alive) {
                Some(n) => self.boot(n),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn leave(&mut self, i: u32) -> Check {
        let c = &mut self.clients[i as usize];
        let (Some(n), Some(session)) = (c.node, c.session.clone()) else {
            return Ok(());
        };
        let room = c.room.clone();
        let conn = c.conn;
        disconnect(c);
        self.left.insert((i, conn));
        self.note(format!("client {i} leaves {room} on node {n}"));
        self.tell(
            n,
            &room,
            Input::Leave {
                session,
                r#ref: None,
                reply: false,
            },
        )
    }

    /// Everything in flight finishes, every client comes back and sends
    /// what was not acked; then everyone must have everything, and presence must be true.
    fn settle(&mut self) -> Check {
        self.note("settle".into());
        for round in 0..50 {
            for _ in 0..100_000 {
                if !self.pending.is_empty() {
                    let p = self.take(self.pending.len() - 1);
                    self.finish(p, false)?;
                } else if !self.timers.is_empty() {
                    self.fire_next_timer()?;
                } else {
                    break;
                }
            }
            let mut busy = false;
            for i in 0..CLIENTS {
                let c = &self.clients[i as usize];
                if c.node.is_none() {
                    busy = true;
                    self.join(i)?;
                } else if c.outstanding.values().any(|flying| !flying) {
                    busy = true;
                    self.post(i, true)?;
                }
            }
            if !busy && self.pending.is_empty() && self.timers.is_empty() && round > 0 {
                break;
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            let head = self
                .store
                .rooms
                .get(&c.room)
                .map_or(0, |r| r.log.len() as i64);
            if c.next != Some(head + 1) {
                return Err(self.fail(format!(
                    "client {i} ended at {:?} of {head} in {} (node {:?}, joining {}, since {:?})",
                    c.next, c.room, c.node, c.joining, c.since
                )));
            }
            if !c.outstanding.is_empty() {
                return Err(self.fail(format!("client {i}'s {:?} never acked", c.outstanding)));
            }
        }
        for n in self.alive() {
            for room in ROOMS {
                let want: BTreeSet<String> = self
                    .clients
                    .iter()
                    .filter(|c| c.room == room && c.node.is_some_and(|m| self.nodes[m].alive))
                    .map(|c| c.user.to_string())
                    .collect();
                let Some((_, core)) = self.nodes[n].rooms.get(room) else {
                    continue; // idled out: this node shows nothing of the room
                };
                let got: BTreeSet<String> = core
                    .presence()
                    .into_iter()
                    .map(|u| u.user.to_string())
                    .collect();
                if got != want {
                    return Err(self.fail(format!(
                        "node {n} shows {got:?} in {room}, {want:?} are there"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn disconnect(c: &mut Client) {
    c.node = None;
    c.session = None;
    c.joining = false;
    c.next = None;
    for flying in c.outstanding.values_mut() {
        *flying = false;
    }
}

fn run(seed: u64) -> Check {
    let mut w = World::new(seed);
    for _ in 0..STEPS {
        w.step()?;
    }
    w.settle()
}

#[test]
fn a_simulated_cluster_keeps_every_guarantee_under_any_schedule() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = env("SIM_SEED") {
        return run(seed).unwrap_or_else(|e| panic!("{e}"));
    }
    let seeds = env("SIM_SEEDS").unwrap_or(2000);
    let first = env("SIM_FIRST").unwrap_or(0);
    for seed in first..first + seeds {
        if let Err(e) = run(seed) {
            panic!("{e}");
        }
    }
}

#[test]
fn a_seed_replays_exactly() {
    let trace = |seed| {
        let mut w = World::new(seed);
        for _ in 0..STEPS {
            w.step().expect("the run holds");
        }
        (
            w.log.clone(),
            w.store
                .rooms
                .values()
                .map(|r| r.log.len())
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(trace(7), trace(7));
    assert_ne!(trace(7), trace(8), "different seeds take different paths");
}

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable("the store did not answer".into()))
}
