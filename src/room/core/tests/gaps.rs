//! Entries from other nodes take the same ordering as local commits; gaps are repaired from the
//! store and nobody is disconnected for one (PROTOCOL §3's delivery guarantee).

use super::*;

#[test]
fn an_entry_from_another_node_waits_for_the_ones_before_it() {
    let mut sim = Sim::started(true, 0);
    sim.member("s1", "bob");
    let fx = sim.remote(&[2, 3]);
    assert!(seqs_to(&fx, "s1").is_empty(), "2 and 3 wait for 1");
    assert!(scheduled(&fx, Timer::Repair));
    let fx = sim.remote(&[1]);
    assert_eq!(seqs_to(&fx, "s1"), vec![1, 2, 3]);
    assert!(
        cancelled(&fx, Timer::Repair),
        "the gap closed before the repair was due"
    );
}

#[test]
fn a_gap_nobody_fills_is_read_from_the_store_when_the_repair_timer_fires() {
    let mut sim = Sim::started(true, 0);
    sim.member("s1", "bob");
    sim.remote(&[3]);
    sim.advance(100);
    let fx = sim.step(Input::Timer(Timer::Repair));
    assert_eq!(repairs(&fx), vec![(0, 3)], "every gap in one read");
    let fx = sim.done(Done::Repaired {
        result: Ok(vec![entry(1), entry(2), entry(3)]),
    });
    assert_eq!(
        seqs_to(&fx, "s1"),
        vec![1, 2, 3],
        "3 was held, 1 and 2 repaired"
    );
    assert!(fx.contains_count(Count::GapsRepaired(2)));
}

#[test]
fn a_repair_that_fails_is_tried_again_later_and_nobody_is_disconnected() {
    let mut sim = Sim::started(true, 0);
    sim.member("s1", "bob");
    sim.remote(&[2]);
    sim.step(Input::Timer(Timer::Repair));
    let fx = sim.done(Done::Repaired {
        result: Err(StoreError::Unavailable("down".into())),
    });
    assert!(scheduled(&fx, Timer::Repair));
    assert!(dropped_to(&fx, "s1").is_empty());
}

#[test]
fn duplicate_envelopes_deliver_nothing_twice() {
    let mut sim = Sim::started(true, 0);
    sim.member("s1", "bob");
    let mut fx = sim.remote(&[1, 2]);
    fx.extend(sim.remote(&[1, 2]));
    fx.extend(sim.remote(&[2, 3]));
    assert_eq!(seqs_to(&fx, "s1"), vec![1, 2, 3]);
}

#[test]
fn a_head_notice_ahead_of_delivery_is_repaired_up_to_it() {
    let mut sim = Sim::started(true, 4);
    sim.member("s1", "bob");
    let fx = sim.envelope(Some(7), RoomEvent::Head);
    assert!(scheduled(&fx, Timer::Repair));
    let fx = sim.step(Input::Timer(Timer::Repair));
    assert_eq!(repairs(&fx), vec![(4, 7)]);
}

#[test]
fn local_commits_and_remote_entries_interleave_in_seq_order() {
    let mut sim = Sim::started(true, 0);
    sim.member("s1", "bob");
    let mut fx = sim.post(1, "mine");
    let batch = appends(&fx).remove(0);
    // 2, committed on another node, arrives before this node's own commit of 1 comes back.
    fx.extend(sim.remote(&[2]));
    assert!(seqs_to(&fx, "s1").is_empty());
    fx.extend(sim.done(Done::Appended {
        batch,
        result: Ok(appended("e1", 1, 1)),
    }));
    fx.extend(sim.remote(&[3]));
    assert_eq!(seqs_to(&fx, "s1"), vec![1, 2, 3]);
}

#[test]
fn a_batch_is_published_to_the_other_nodes_in_one_envelope_with_its_last_seq() {
    let mut sim = Sim::started(true, 0);
    let fx = sim.commit(1, 4); // 1 alone, then 2, 3, 4 together
    let published = published(&fx);
    assert_eq!(published.len(), 2);
    assert!(matches!(
        published[1],
        (Some(s), RoomEvent::Messages { messages }) if s == q(4) && messages.len() == 3
    ));
}

#[test]
fn a_single_node_publishes_nothing() {
    let mut sim = Sim::started(false, 0);
    assert!(published(&sim.commit(1, 2)).is_empty());
}

/// Effects that carry a count.
trait Counts {
    fn contains_count(&self, c: Count) -> bool;
}

impl Counts for Fx {
    fn contains_count(&self, c: Count) -> bool {
        self.iter()
            .any(|e| matches!(e, Effect::Count(x) if *x == c))
    }
}
