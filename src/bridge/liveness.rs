//! Which nodes are alive (PROTOCOL.md §6): a node is alive while its heartbeats arrive; one unseen
//! for `cluster.dead_after_ms` is dead. A node that is only *mentioned* (its entries found in a
//! presence hash, or an envelope from it) gets the same deadline from the moment it was mentioned, so
//! entries left behind by a node that died before this one started are cleaned up too.
//!
//! Pure bookkeeping with explicit clocks, so the rules are unit-tested without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::ids::NodeId;

pub struct Liveness {
    dead_after: Duration,
    /// Node → (last heartbeat or mention, whether a heartbeat was ever seen).
    nodes: HashMap<NodeId, (Instant, bool)>,
}

impl Liveness {
    pub fn new(dead_after: Duration) -> Liveness {
        Liveness {
            dead_after,
            nodes: HashMap::new(),
        }
    }

    /// A heartbeat from `node`. True when the node is new (or back from the dead).
    pub fn heartbeat(&mut self, node: &NodeId, now: Instant) -> bool {
        match self.nodes.get_mut(node) {
            Some((seen, beating)) => {
                let new = !*beating;
                (*seen, *beating) = (now, true);
                new
            }
            None => {
                self.nodes.insert(node.clone(), (now, true));
                true
            }
        }
    }

    /// `node` has entries somewhere: start its clock if it has none.
    pub fn mention(&mut self, node: &NodeId, now: Instant) {
        self.nodes.entry(node.clone()).or_insert((now, false));
    }

    /// The node said goodbye.
    pub fn forget(&mut self, node: &NodeId) -> bool {
        self.nodes.remove(node).is_some()
    }

    /// Removes and returns the nodes unseen for `dead_after`.
    pub fn expire(&mut self, now: Instant) -> Vec<NodeId> {
        let dead: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, (seen, _))| now.saturating_duration_since(*seen) >= self.dead_after)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &dead {
            self.nodes.remove(n);
        }
        dead
    }

    /// After this node's own outage nobody could be heard: give everyone a fresh deadline rather
    /// than declare the whole cluster dead.
    pub fn grace(&mut self, now: Instant) {
        for (seen, _) in self.nodes.values_mut() {
            *seen = now;
        }
    }

    /// Whether heartbeats from `node` arrive.
    pub fn is_beating(&self, node: &NodeId) -> bool {
        self.nodes.get(node).is_some_and(|(_, b)| *b)
    }

    /// Nodes whose heartbeats arrive (this node not included).
    pub fn beating(&self) -> usize {
        self.nodes.values().filter(|(_, b)| *b).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEAD: Duration = Duration::from_millis(6000);

    fn n(id: &str) -> NodeId {
        NodeId::from(id)
    }

    #[test]
    fn a_node_dies_only_after_dead_after_without_heartbeats() {
        let t0 = Instant::now();
        let mut l = Liveness::new(DEAD);
        assert!(l.heartbeat(&n("a"), t0));
        assert!(!l.heartbeat(&n("a"), t0 + Duration::from_millis(2000)));
        assert!(l.expire(t0 + Duration::from_millis(7999)).is_empty());
        assert_eq!(l.beating(), 1);
        assert_eq!(l.expire(t0 + Duration::from_millis(8000)), vec!["a"]);
        assert_eq!(l.beating(), 0);
        assert!(
            l.heartbeat(&n("a"), t0 + Duration::from_millis(9000)),
            "back from the dead"
        );
    }

    #[test]
    fn a_mentioned_node_that_never_beats_expires_but_is_not_counted() {
        let t0 = Instant::now();
        let mut l = Liveness::new(DEAD);
        l.mention(&n("ghost"), t0);
        l.mention(&n("ghost"), t0 + Duration::from_millis(5000)); // a mention does not extend the clock
        assert_eq!(l.beating(), 0);
        assert_eq!(l.expire(t0 + DEAD), vec!["ghost"]);
        l.mention(&n("b"), t0);
        assert!(
            l.heartbeat(&n("b"), t0 + Duration::from_millis(1)),
            "first heartbeat is news"
        );
        assert_eq!(l.beating(), 1);
    }

    #[test]
    fn grace_restarts_every_clock_and_forget_removes_at_once() {
        let t0 = Instant::now();
        let mut l = Liveness::new(DEAD);
        l.heartbeat(&n("a"), t0);
        l.heartbeat(&n("b"), t0);
        l.grace(t0 + Duration::from_millis(5000));
        assert!(l.expire(t0 + Duration::from_millis(10000)).is_empty());
        assert!(l.forget(&n("a")));
        assert!(!l.forget(&n("a")));
        assert_eq!(l.beating(), 1);
    }
}
