//! Who is in a room, across the cluster, as a plain state machine: this node's sessions (visible or
//! hidden), and per other node the users it announced. A user is present while any node has a
//! visible session of theirs, and counts once however many sockets they have. No actor, no I/O,
//! and ordered maps, so the same inputs give the same outputs in the same order (the simulation
//! replays a seed exactly):
//! every input returns a [`Change`] that says what the room's members must be told (a
//! `presence_diff`) and what the other nodes must be told (the shared hash and its announcements).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::domain::PresenceUser;
use crate::ids::SessionId;
use crate::ids::{NodeId, UserId};

/// A room's presence state (see the module doc).
#[derive(Default)]
pub struct Presence {
    /// This node's sessions: the user, and whether the session is shown (SSE and long-poll
    /// listeners are not).
    local: BTreeMap<SessionId, (PresenceUser, bool)>,
    /// Visible sessions per user on this node.
    sockets: BTreeMap<UserId, usize>,
    /// Users announced by other nodes, by node.
    remote: BTreeMap<NodeId, BTreeMap<UserId, PresenceUser>>,
}

/// What one input changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// For the members: users new to the whole cluster, and users gone from all of it.
    pub joins: Vec<PresenceUser>,
    pub leaves: Vec<PresenceUser>,
    /// For the other nodes: users whose first visible socket here joined, or whose last one left.
    pub here: Vec<PresenceUser>,
    pub gone: Vec<PresenceUser>,
    /// Entries (node, user) of the shared hash to drop without an announcement: a dead node's, or
    /// this node's own stale ones.
    pub forget: Vec<(NodeId, UserId)>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        *self == Change::default()
    }

    /// A user that left and came back within one input is neither.
    fn net(mut self) -> Change {
        fn cancel(a: &mut Vec<PresenceUser>, b: &mut Vec<PresenceUser>) {
            let both: HashSet<UserId> = a
                .iter()
                .filter(|u| b.iter().any(|v| v.user == u.user))
                .map(|u| u.user.clone())
                .collect();
            a.retain(|u| !both.contains(&u.user));
            b.retain(|u| !both.contains(&u.user));
        }
        cancel(&mut self.joins, &mut self.leaves);
        cancel(&mut self.here, &mut self.gone);
        self
    }
}

impl Presence {
    pub fn new() -> Presence {
        Presence::default()
    }

    /// Whether `user` has a visible session on this node.
    pub fn is_local(&self, user: &str) -> bool {
        self.sockets.contains_key(user)
    }

    /// Whether `user` is present on any node.
    pub fn has(&self, user: &str) -> bool {
        self.is_local(user) || self.remote.values().any(|users| users.contains_key(user))
    }

    /// A session joined (or joined again, replacing its previous membership).
    pub fn join(&mut self, session: SessionId, user: PresenceUser, hidden: bool) -> Change {
        let mut change = self.leave(&session);
        if !hidden {
            let n = self.sockets.entry(user.user.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                if !self.remote_has(&user.user) {
                    change.joins.push(user.clone());
                }
                change.here.push(user.clone());
            }
        }
        self.local.insert(session, (user, hidden));
        change.net()
    }

    /// A session left (or was evicted).
    pub fn leave(&mut self, session: &SessionId) -> Change {
        let mut change = Change::default();
        let Some((user, hidden)) = self.local.remove(session) else {
            return change;
        };
        if hidden {
            return change;
        }
        if let Some(n) = self.sockets.get_mut(&user.user) {
            *n -= 1;
            if *n == 0 {
                self.sockets.remove(&user.user);
                if !self.remote_has(&user.user) {
                    change.leaves.push(user.clone());
                }
                change.gone.push(user);
            }
        }
        change
    }

    /// Another node's announcement: users whose first socket there joined, or last one left.
    pub fn remote(
        &mut self,
        node: &NodeId,
        joins: Vec<PresenceUser>,
        leaves: Vec<PresenceUser>,
    ) -> Change {
        let mut change = Change::default();
        for u in joins {
            let was = self.has(&u.user);
            let users = self.remote.entry(node.to_owned()).or_default();
            users.insert(u.user.clone(), u.clone());
            if !was {
                change.joins.push(u);
            }
        }
        for u in leaves {
            let removed = self
                .remote
                .get_mut(node)
                .and_then(|users| users.remove(&u.user))
                .is_some();
            if removed && !self.has(&u.user) {
                change.leaves.push(u);
            }
        }
        if self.remote.get(node).is_some_and(|u| u.is_empty()) {
            self.remote.remove(node);
        }
        change.net()
    }

    /// A node died or left: its users are gone (unless present elsewhere), and its entries are
    /// dropped from the shared hash.
    pub fn node_down(&mut self, node: &NodeId) -> Change {
        let mut change = Change::default();
        let Some(users) = self.remote.remove(node) else {
            return change;
        };
        for (id, user) in users {
            change.forget.push((node.to_owned(), id));
            if !self.has(&user.user) {
                change.leaves.push(user);
            }
        }
        change.leaves.sort_by(|a, b| a.user.cmp(&b.user));
        change
    }

    /// Replaces what is known of other nodes with the shared hash's `entries` (node, user);
    /// `me` is this node: its entries for users no longer here are stale and forgotten.
    pub fn snapshot(&mut self, me: &NodeId, entries: Vec<(NodeId, PresenceUser)>) -> Change {
        let before = self.users();
        let mut remote: BTreeMap<NodeId, BTreeMap<UserId, PresenceUser>> = BTreeMap::new();
        let mut change = Change::default();
        for (node, user) in entries {
            if node == *me {
                if !self.is_local(&user.user) {
                    change.forget.push((node, user.user));
                }
            } else {
                remote
                    .entry(node)
                    .or_default()
                    .insert(user.user.clone(), user);
            }
        }
        self.remote = remote;
        // Every user here is announced again: the hash may have lost them (a Redis restart), and
        // a node that missed the first announcement learns them now.
        change.here = self.local_users();
        let after = self.users();
        let was: HashSet<&str> = before.iter().map(|u| u.user.as_str()).collect();
        let is: HashSet<&str> = after.iter().map(|u| u.user.as_str()).collect();
        change.joins = after
            .iter()
            .filter(|u| !was.contains(u.user.as_str()))
            .cloned()
            .collect();
        change.leaves = before
            .iter()
            .filter(|u| !is.contains(u.user.as_str()))
            .cloned()
            .collect();
        change
    }

    /// Everyone present across the cluster, each user once, sorted by id.
    pub fn users(&self) -> Vec<PresenceUser> {
        let mut seen: HashMap<&str, &PresenceUser> = HashMap::new();
        let local = self.local.values().filter(|(_, hidden)| !hidden);
        for u in local
            .map(|(u, _)| u)
            .chain(self.remote.values().flat_map(|u| u.values()))
        {
            seen.entry(u.user.as_str()).or_insert(u);
        }
        let mut users: Vec<PresenceUser> = seen.into_values().cloned().collect();
        users.sort_by(|a, b| a.user.cmp(&b.user));
        users
    }

    /// Users with a visible session on this node, each once.
    pub fn local_users(&self) -> Vec<PresenceUser> {
        let mut seen = HashSet::new();
        let mut users: Vec<PresenceUser> = self
            .local
            .values()
            .filter(|(u, hidden)| !hidden && seen.insert(u.user.as_str()))
            .map(|(u, _)| u.clone())
            .collect();
        users.sort_by(|a, b| a.user.cmp(&b.user));
        users
    }

    fn remote_has(&self, user: &str) -> bool {
        self.remote.values().any(|users| users.contains_key(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn user(id: &str) -> PresenceUser {
        PresenceUser {
            user: UserId::from(id),
            name: None,
        }
    }

    fn ids(users: &[PresenceUser]) -> Vec<&str> {
        users.iter().map(|u| u.user.as_str()).collect()
    }

    fn sid(s: &str) -> SessionId {
        SessionId::from(s)
    }

    fn node(s: &str) -> NodeId {
        NodeId::from(s)
    }

    #[test]
    fn a_user_counts_once_however_many_sockets_and_leaves_with_the_last() {
        let mut p = Presence::new();
        let c = p.join(sid("s1"), user("ann"), false);
        assert_eq!((ids(&c.joins), ids(&c.here)), (vec!["ann"], vec!["ann"]));
        assert!(p.join(sid("s2"), user("ann"), false).is_empty());
        assert!(p.leave(&sid("s1")).is_empty());
        let c = p.leave(&sid("s2"));
        assert_eq!((ids(&c.leaves), ids(&c.gone)), (vec!["ann"], vec!["ann"]));
        assert!(p.users().is_empty());
    }

    #[test]
    fn hidden_sessions_are_not_shown_or_announced() {
        let mut p = Presence::new();
        assert!(p.join(sid("sse"), user("ann"), true).is_empty());
        assert!(p.users().is_empty());
        assert!(p.leave(&sid("sse")).is_empty());
    }

    #[test]
    fn joining_again_on_the_same_session_changes_nothing() {
        let mut p = Presence::new();
        p.join(sid("s1"), user("ann"), false);
        assert!(p.join(sid("s1"), user("ann"), false).is_empty());
        assert_eq!(ids(&p.users()), vec!["ann"]);
    }

    #[test]
    fn a_user_present_on_another_node_is_not_announced_to_members_again() {
        let mut p = Presence::new();
        let c = p.remote(&node("n2"), vec![user("ann")], vec![]);
        assert_eq!(ids(&c.joins), vec!["ann"]);
        let c = p.join(sid("s1"), user("ann"), false);
        assert!(c.joins.is_empty());
        assert_eq!(
            ids(&c.here),
            vec!["ann"],
            "the other nodes still hear of it"
        );
        let c = p.remote(&node("n2"), vec![], vec![user("ann")]);
        assert!(c.leaves.is_empty(), "still here");
    }

    #[test]
    fn a_dead_node_takes_its_users_and_their_hash_entries_with_it() {
        let mut p = Presence::new();
        p.remote(&node("n2"), vec![user("ann"), user("bob")], vec![]);
        p.join(sid("s1"), user("bob"), false);
        let c = p.node_down(&node("n2"));
        assert_eq!(ids(&c.leaves), vec!["ann"]);
        let mut forget = c.forget.clone();
        forget.sort();
        assert_eq!(
            forget,
            vec![("n2".into(), "ann".into()), ("n2".into(), "bob".into())]
        );
        assert!(p.node_down(&node("n2")).is_empty());
    }

    #[test]
    fn a_snapshot_replaces_other_nodes_forgets_stale_own_entries_and_reannounces_local_users() {
        let mut p = Presence::new();
        p.join(sid("s1"), user("ann"), false);
        p.remote(&node("n2"), vec![user("bob")], vec![]);
        let c = p.snapshot(
            &node("me"),
            vec![("me".into(), user("old")), ("n3".into(), user("cat"))],
        );
        assert_eq!(ids(&c.joins), vec!["cat"]);
        assert_eq!(ids(&c.leaves), vec!["bob"]);
        assert_eq!(c.forget, vec![("me".into(), "old".into())]);
        assert_eq!(
            ids(&c.here),
            vec!["ann"],
            "announced again (the hash may have lost her)"
        );
        assert_eq!(ids(&p.users()), vec!["ann", "cat"]);
    }

    /// One step of a three-node cluster, as the property test below drives it.
    #[derive(Debug, Clone)]
    enum Step {
        /// A visible (or hidden) session `s` of user `u` joins on node `n`.
        Join {
            n: usize,
            s: u8,
            u: u8,
            hidden: bool,
        },
        /// Session `s` on node `n` leaves (if it is there).
        Leave { n: usize, s: u8 },
        /// Node `n` dies: its sessions vanish, the others declare it down, it restarts empty.
        Die { n: usize },
        /// Node `n` misses the next announcement it should hear.
        Lose { n: usize },
        /// Node `n` resyncs from the shared hash (as after a reconnect or a loss).
        Resync { n: usize },
    }

    const NODES: usize = 3;

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..NODES, 0u8..6, 0u8..4, any::<bool>())
                .prop_map(|(n, s, u, hidden)| Step::Join { n, s, u, hidden }),
            3 => (0..NODES, 0u8..6).prop_map(|(n, s)| Step::Leave { n, s }),
            1 => (0..NODES).prop_map(|n| Step::Die { n }),
            1 => (0..NODES).prop_map(|n| Step::Lose { n }),
            1 => (0..NODES).prop_map(|n| Step::Resync { n }),
        ]
    }

    /// A node of the simulated cluster: its room's presence, and what its members were told.
    struct Node {
        presence: Presence,
        seen: BTreeSet<UserId>,
        /// Sessions present on this node: session → (user, hidden).
        sessions: HashMap<u8, (u8, bool)>,
        deaf: bool,
    }

    /// Node `n`'s name in its `g`th life (a restarted node is a new node).
    fn name(n: usize, g: &[u32; NODES]) -> NodeId {
        NodeId::from(format!("n{n}g{}", g[n]))
    }

    proptest! {
        /// Any sequence of joins, leaves, node deaths, lost announcements and resyncs: every
        /// node's presence, and what its members were told through diffs, is the true set of
        /// users with a visible session on a live node, once nothing is lost or a resync ran.
        #[test]
        fn any_sequence_converges_to_the_true_set(steps in proptest::collection::vec(step(), 0..60)) {
            let mut nodes: Vec<Node> = (0..NODES)
                .map(|_| Node {
                    presence: Presence::new(),
                    seen: BTreeSet::new(),
                    sessions: HashMap::new(),
                    deaf: false,
                })
                .collect();
            // The shared hash: (node, user) entries, as the bridge applies here/gone/forget.
            let mut hash: BTreeSet<(NodeId, UserId)> = BTreeSet::new();
            let mut stale = [false; NODES];
            let mut gens = [0u32; NODES];
            fn tell(node: &mut Node, c: &Change) {
                for u in &c.joins {
                    node.seen.insert(u.user.clone());
                }
                for u in &c.leaves {
                    node.seen.remove(&u.user);
                }
            }
            fn publish(
                nodes: &mut [Node],
                stale: &mut [bool; NODES],
                hash: &mut BTreeSet<(NodeId, UserId)>,
                gens: &[u32; NODES],
                from: usize,
                c: Change,
            ) {
                tell(&mut nodes[from], &c);
                for u in &c.here {
                    hash.insert((name(from, gens), u.user.clone()));
                }
                for u in &c.gone {
                    hash.remove(&(name(from, gens), u.user.clone()));
                }
                for e in &c.forget {
                    hash.remove(e);
                }
                if c.here.is_empty() && c.gone.is_empty() {
                    return;
                }
                for (i, node) in nodes.iter_mut().enumerate() {
                    if i == from {
                        continue;
                    }
                    if node.deaf {
                        node.deaf = false;
                        stale[i] = true;
                        continue;
                    }
                    let rc = node.presence.remote(&name(from, gens), c.here.clone(), c.gone.clone());
                    tell(node, &rc);
                }
            }
            fn resync(
                nodes: &mut [Node],
                stale: &mut [bool; NODES],
                hash: &mut BTreeSet<(NodeId, UserId)>,
                gens: &[u32; NODES],
                n: usize,
            ) {
                // Cluster::presence leaves out (and deletes) the entries of dead nodes.
                let live: Vec<NodeId> = (0..NODES).map(|i| name(i, gens)).collect();
                hash.retain(|(node, _)| live.contains(node));
                let entries = hash
                    .iter()
                    .map(|(node, u)| (node.clone(), user(u)))
                    .collect();
                let c = nodes[n].presence.snapshot(&name(n, gens), entries);
                stale[n] = false;
                publish(nodes, stale, hash, gens, n, c);
            }
            for step in steps {
                match step {
                    Step::Join { n, s, u, hidden } => {
                        nodes[n].sessions.insert(s, (u, hidden));
                        let sid = SessionId::from(format!("s{s}"));
                        let c = nodes[n].presence.join(sid, user(&format!("u{u}")), hidden);
                        publish(&mut nodes, &mut stale, &mut hash, &gens, n, c);
                    }
                    Step::Leave { n, s } => {
                        nodes[n].sessions.remove(&s);
                        let c = nodes[n].presence.leave(&SessionId::from(format!("s{s}")));
                        publish(&mut nodes, &mut stale, &mut hash, &gens, n, c);
                    }
                    Step::Die { n } => {
                        nodes[n] = Node {
                            presence: Presence::new(),
                            seen: BTreeSet::new(),
                            sessions: HashMap::new(),
                            deaf: false,
                        };
                        stale[n] = false;
                        let dead = name(n, &gens);
                        gens[n] += 1;
                        for i in (0..NODES).filter(|&i| i != n) {
                            let c = nodes[i].presence.node_down(&dead);
                            for e in &c.forget {
                                hash.remove(e);
                            }
                            tell(&mut nodes[i], &c);
                        }
                        // The restarted node's room reads the hash as it starts (`attach`).
                        resync(&mut nodes, &mut stale, &mut hash, &gens, n);
                    }
                    Step::Lose { n } => nodes[n].deaf = true,
                    Step::Resync { n } => {
                        resync(&mut nodes, &mut stale, &mut hash, &gens, n);
                    }
                }
                let truth: BTreeSet<UserId> = nodes
                    .iter()
                    .flat_map(|node| node.sessions.values())
                    .filter(|(_, hidden)| !hidden)
                    .map(|(u, _)| UserId::from(format!("u{u}")))
                    .collect();
                for (i, node) in nodes.iter().enumerate() {
                    if stale[i] {
                        continue; // missed an announcement: right again after its next resync
                    }
                    let has: BTreeSet<UserId> =
                        node.presence.users().into_iter().map(|u| u.user).collect();
                    prop_assert_eq!(&has, &truth, "node {} presence", i);
                    prop_assert_eq!(&node.seen, &truth, "node {} members' view", i);
                }
            }
        }
    }
}
