//! While a read holds the room, everything else is kept in order and handled after it.

use super::*;

#[test]
fn nothing_is_handled_before_the_first_head_read() {
    let mut sim = Sim::new(false);
    sim.step(Input::Start);
    assert!(sim.core.blocked());
    assert!(
        sim.step(Input::Join(join_req("s1", "bob", None)))
            .is_empty()
    );
    assert!(
        sim.post(1, "early").is_empty(),
        "no append before the head is known"
    );
    let fx = sim.done(Done::Attached {
        head: Ok(head("e1", 3)),
        presence: None,
    });
    assert!(
        read_for_join(&fx).is_some_and(|(_, upto)| upto == q(3)),
        "the join, first"
    );
    assert_eq!(appends(&fx).len(), 1, "then the post");
}

#[test]
fn inputs_kept_during_a_block_are_handled_in_the_order_they_came() {
    let mut sim = Sim::started(false, 10);
    sim.member("s1", "bob");
    // A rewind: the room blocks on a new epoch.
    let fx = sim.post(1, "x");
    let batch = appends(&fx).remove(0);
    sim.done(Done::Appended {
        batch,
        result: Ok(appended("e1", 2, 1)),
    });
    assert!(sim.core.blocked());
    let kept_leave = sim.step(Input::Leave {
        session: SessionId::from("s1"),
        r#ref: None,
        reply: true,
    });
    assert!(kept_leave.is_empty());
    let fx = sim.done(Done::EpochReset {
        result: Ok(head("e2", 2)),
    });
    // The reset and the entry reach s1 first, then its `left`.
    assert_eq!(types_to(&fx, "s1"), ["reset", "message", "left"]);
}

#[test]
fn a_refused_delivery_is_handled_even_while_blocked() {
    let mut sim = Sim::started(false, 10);
    sim.member("s1", "bob");
    let fx = sim.post(1, "x");
    let batch = appends(&fx).remove(0);
    sim.done(Done::Appended {
        batch,
        result: Ok(appended("e1", 2, 1)),
    });
    let fx = sim.step(Input::Undeliverable {
        session: SessionId::from("s1"),
        slow: true,
    });
    assert_eq!(dropped_to(&fx, "s1"), vec![DropReason::Slow]);
}

#[test]
fn a_join_kept_behind_its_own_catch_ups_reset_is_judged_under_the_new_epoch() {
    let mut sim = Sim::started(true, 8);
    let mut join = join_req("s1", "bob", Some(9));
    join.epoch = Some(epoch("e1"));
    sim.step(Input::Join(join));
    // The store's head is below what the room knew: its history went back.
    let fx = sim.done(Done::CaughtUp {
        result: Ok((head("e1", 5), Vec::new())),
    });
    assert!(matches!(io(&fx)[..], [Effect::ResetEpoch { .. }]));
    let fx = sim.done(Done::EpochReset {
        result: Ok(head("e2", 5)),
    });
    let (join, upto) = read_for_join(&fx).expect("the join goes on after the reset");
    assert_eq!(upto, q(5));
    let fx = sim.done(Done::JoinRead {
        join,
        read: None,
        backfill: Ok(Vec::new()),
    });
    let joined = json(&joined_to(&fx, "s1")[0].frames[0].frame);
    assert_eq!(joined["epoch"], "e2");
    assert_eq!(
        joined["recovered"], false,
        "its `since` was read under the old epoch"
    );
}
