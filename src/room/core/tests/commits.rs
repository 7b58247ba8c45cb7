//! Group commit, acks before delivery, and the two faults of PROTOCOL §6.

use super::*;

#[test]
fn a_post_is_answered_after_its_commit_and_before_its_entry_is_delivered() {
    let mut sim = Sim::started(false, 0);
    sim.member("s1", "bob");
    let fx = sim.post(7, "hi");
    assert_eq!(appends(&fx).len(), 1, "sent to the store at once");
    assert!(answers(&fx).is_empty(), "no answer before the commit");
    assert!(
        seqs_to(&fx, "s1").is_empty(),
        "nothing delivered before the commit"
    );
    let batch = appends(&fx).remove(0);
    let fx = sim.done(Done::Appended {
        batch,
        result: Ok(appended("e1", 1, 1)),
    });
    assert_eq!(answers(&fx), vec![(7, Ok((1, false)))]);
    let answer = fx.iter().position(|e| matches!(e, Effect::Answer { .. }));
    let deliver = fx.iter().position(|e| matches!(e, Effect::Deliver { .. }));
    assert!(
        answer < deliver,
        "the poster hears of the commit before anyone sees the entry"
    );
    assert_eq!(seqs_to(&fx, "s1"), vec![1]);
}

#[test]
fn posts_that_arrive_during_a_commit_form_the_next_batch() {
    let mut sim = Sim::started(false, 0);
    let first = sim.post(1, "a");
    let batch = appends(&first).remove(0);
    let mut waiting = sim.post(2, "b");
    waiting.extend(sim.post(3, "c"));
    assert!(
        appends(&waiting).is_empty(),
        "one append in flight at a time"
    );
    let fx = sim.done(Done::Appended {
        batch,
        result: Ok(appended("e1", 1, 1)),
    });
    let next = appends(&fx);
    assert_eq!(next.len(), 1);
    let bodies: Vec<&str> = next[0].iter().map(|m| m.change.body()).collect();
    assert_eq!(
        bodies,
        ["b", "c"],
        "the two that waited, together, in order"
    );
}

#[test]
fn a_batch_holds_at_most_batch_max_posts() {
    let mut sim = Sim::started(false, 0);
    let first = sim.post(0, "first");
    for i in 1..=5 {
        sim.post(i, "x");
    }
    let batch = appends(&first).remove(0);
    let fx = sim.done(Done::Appended {
        batch,
        result: Ok(appended("e1", 1, 1)),
    });
    assert_eq!(appends(&fx)[0].len(), 3, "room.batch_max is 3 here");
}

#[test]
fn a_batch_refused_for_one_entrys_data_is_retried_one_by_one_and_only_that_one_fails() {
    let mut sim = Sim::started(false, 0);
    sim.member("s1", "bob");
    let first = sim.post(1, "ok");
    let batch = appends(&first).remove(0);
    sim.post(2, "bad");
    sim.post(3, "ok too");
    let fx = sim.done(Done::Appended {
        batch,
        result: Ok(appended("e1", 1, 1)),
    });
    let batch = appends(&fx).remove(0);
    assert_eq!(batch.len(), 2);
    let fx = sim.done(Done::Appended {
        batch,
        result: Err(StoreError::Invalid("22021".into())),
    });
    assert!(
        answers(&fx).is_empty(),
        "nobody is answered for the batch's failure"
    );
    let one = appends(&fx).remove(0);
    assert_eq!(one.len(), 1, "now one at a time");
    assert_eq!(one[0].change.body(), "bad");
    let fx = sim.done(Done::Appended {
        batch: one,
        result: Err(StoreError::Invalid("22021".into())),
    });
    assert!(matches!(
        answers(&fx)[..],
        [(2, Err(StoreError::Invalid(_)))]
    ));
    let two = appends(&fx).remove(0);
    assert_eq!(two[0].change.body(), "ok too");
    let fx = sim.done(Done::Appended {
        batch: two,
        result: Ok(appended("e1", 2, 1)),
    });
    assert_eq!(answers(&fx), vec![(3, Ok((2, false)))]);
    assert_eq!(seqs_to(&fx, "s1"), vec![2]);
}

#[test]
fn a_store_outage_answers_every_post_of_the_batch_and_delivers_nothing() {
    let mut sim = Sim::started(false, 0);
    sim.member("s1", "bob");
    let fx = sim.failed_post(1, "a");
    assert!(matches!(
        answers(&fx)[..],
        [(1, Err(StoreError::Unavailable(_)))]
    ));
    assert!(seqs_to(&fx, "s1").is_empty());
}

#[test]
fn a_failed_append_is_followed_by_a_head_read_that_finds_what_committed_unseen() {
    // The append committed and its answer was lost, and nobody sends it again: without the
    // head read its entry would reach nobody until the room's next message.
    let mut sim = Sim::started(true, 0);
    sim.member("s1", "bob");
    let fx = sim.failed_post(1, "a");
    assert!(head_reads(&fx) == [q(0)]);
    // The store is still down: read again later, and the room does not idle out meanwhile.
    let fx = sim.done(Done::Head {
        why: HeadWhy::CatchUp { floor: q(0) },
        result: Err(StoreError::Unavailable("down".into())),
    });
    assert!(scheduled(&fx, Timer::Recheck));
    let fx = sim.step(Input::Timer(Timer::Recheck));
    assert!(head_reads(&fx) == [q(0)]);
    let fx = sim.done(Done::Head {
        why: HeadWhy::CatchUp { floor: q(0) },
        result: Ok(head("e1", 1)),
    });
    assert!(
        matches!(published(&fx)[..], [(Some(s), RoomEvent::Head)] if s == q(1)),
        "the other nodes missed it too"
    );
    assert!(scheduled(&fx, Timer::Repair));
    sim.advance(100);
    let fx = sim.step(Input::Timer(Timer::Repair));
    assert_eq!(repairs(&fx), vec![(0, 1)]);
    let fx = sim.done(Done::Repaired {
        result: Ok(vec![entry(1)]),
    });
    assert_eq!(seqs_to(&fx, "s1"), vec![1]);
}

#[test]
fn a_retry_of_a_commit_whose_answer_was_lost_delivers_and_publishes_it() {
    let mut sim = Sim::started(true, 0);
    sim.member("s1", "bob");
    sim.failed_post(9, "lost answer");
    // The client sends it again before the head read is back: the store knows the id.
    let fx = sim.post(9, "lost answer");
    let batch = appends(&fx).remove(0);
    let mut outcome = appended("e1", 1, 1);
    if let Ok(a) = &mut outcome.appended[0] {
        a.duplicate = true;
    }
    let fx = sim.done(Done::Appended {
        batch,
        result: Ok(outcome),
    });
    assert_eq!(answers(&fx), vec![(9, Ok((1, true)))]);
    assert_eq!(seqs_to(&fx, "s1"), vec![1], "delivered here once");
    assert!(
        matches!(&published(&fx)[..], [(Some(s), RoomEvent::Messages { messages })] if *s == q(1) && messages.len() == 1),
        "and to the other nodes"
    );
}

#[test]
fn a_duplicate_is_answered_with_the_original_and_not_delivered_again() {
    let mut sim = Sim::started(false, 0);
    sim.member("s1", "bob");
    sim.commit(1, 1);
    let fx = sim.post(9, "again");
    let batch = appends(&fx).remove(0);
    let mut outcome = appended("e1", 1, 1);
    if let Ok(a) = &mut outcome.appended[0] {
        a.duplicate = true;
    }
    let fx = sim.done(Done::Appended {
        batch,
        result: Ok(outcome),
    });
    assert_eq!(answers(&fx), vec![(9, Ok((1, true)))]);
    assert!(seqs_to(&fx, "s1").is_empty());
}

#[test]
fn a_refused_entry_takes_no_seq_and_is_answered_with_its_reason() {
    let mut sim = Sim::started(false, 0);
    sim.member("s1", "bob");
    let fx = sim.step(Input::Post {
        entry: edit(5),
        reply: 4,
    });
    sim.post(5, "fine");
    let batch = appends(&fx).remove(0);
    let outcome = AppendOutcome {
        epoch: epoch("e1"),
        appended: vec![refused(Refusal::NotFound)],
    };
    let fx = sim.done(Done::Appended {
        batch,
        result: Ok(outcome),
    });
    assert!(matches!(
        answers(&fx)[..],
        [(4, Err(StoreError::Refused(Refusal::NotFound)))]
    ));
    let next = appends(&fx).remove(0);
    let fx = sim.done(Done::Appended {
        batch: next,
        result: Ok(appended("e1", 1, 1)),
    });
    assert_eq!(
        seqs_to(&fx, "s1"),
        vec![1],
        "the next entry is seq 1: none was taken"
    );
}

#[test]
fn every_member_gets_the_same_bytes() {
    let mut sim = Sim::started(false, 0);
    sim.member("s1", "bob");
    sim.member("s2", "cat");
    let fx = sim.commit(1, 1);
    let a = &frames_to(&fx, "s1")[0].frame;
    let b = &frames_to(&fx, "s2")[0].frame;
    assert_eq!(a.as_ptr(), b.as_ptr(), "encoded once, shared");
}

#[test]
fn a_commit_below_what_was_known_committed_takes_a_new_epoch_before_any_ack() {
    let mut sim = Sim::started(false, 10);
    sim.member("s1", "bob");
    let fx = sim.post(1, "after a restore");
    let batch = appends(&fx).remove(0);
    // The store hands out 4: its history went backwards (a restore from backup).
    let fx = sim.done(Done::Appended {
        batch,
        result: Ok(appended("e1", 4, 1)),
    });
    assert!(
        answers(&fx).is_empty(),
        "nothing acked under a history that went back"
    );
    assert!(matches!(io(&fx)[..], [Effect::ResetEpoch { old }] if *old == epoch("e1")));
    assert!(sim.core.blocked());
    let fx = sim.done(Done::EpochReset {
        result: Ok(head("e2", 4)),
    });
    assert_eq!(types_to(&fx, "s1"), ["reset", "message"]);
    let reset = json(&frames_to(&fx, "s1")[0].frame);
    assert_eq!(
        (reset["epoch"].as_str(), reset["last_seq"].as_i64()),
        (Some("e2"), Some(3))
    );
    assert_eq!(answers(&fx), vec![(1, Ok((4, false)))]);
    assert_eq!(
        sim.core.head().map(|(e, s)| (e.clone(), s)),
        Some((epoch("e2"), q(4)))
    );
}

#[test]
fn a_commit_under_another_epoch_is_acked_only_after_the_head_says_which_holds() {
    let mut sim = Sim::started(true, 0);
    sim.member("s1", "bob");
    let fx = sim.post(1, "a");
    let batch = appends(&fx).remove(0);
    let fx = sim.done(Done::Appended {
        batch,
        result: Ok(appended("e9", 1, 1)),
    });
    assert!(matches!(io(&fx)[..], [Effect::ReadHead(HeadWhy::Confirm)]));
    // Meanwhile another post arrives: it waits for the confirmation.
    assert!(sim.post(2, "b").is_empty());
    let fx = sim.done(Done::Head {
        why: HeadWhy::Confirm,
        result: Ok(head("e9", 1)),
    });
    assert_eq!(
        types_to(&fx, "s1"),
        ["reset", "message"],
        "a reset made elsewhere is adopted"
    );
    assert_eq!(answers(&fx), vec![(1, Ok((1, false)))]);
    assert_eq!(appends(&fx).len(), 1, "then the waiting post goes out");
}

#[test]
fn an_epoch_reset_the_store_cannot_take_is_retried_and_holds_the_room_until_it_succeeds() {
    let mut sim = Sim::started(false, 10);
    let fx = sim.post(1, "x");
    let batch = appends(&fx).remove(0);
    sim.done(Done::Appended {
        batch,
        result: Ok(appended("e1", 2, 1)),
    });
    let fx = sim.done(Done::EpochReset {
        result: Err(StoreError::Unavailable("down".into())),
    });
    assert!(scheduled(&fx, Timer::ResetRetry));
    assert!(sim.post(2, "y").is_empty(), "posts wait behind the reset");
    let fx = sim.step(Input::Timer(Timer::ResetRetry));
    assert!(matches!(io(&fx)[..], [Effect::ResetEpoch { .. }]));
    let fx = sim.done(Done::EpochReset {
        result: Ok(head("e2", 2)),
    });
    assert_eq!(answers(&fx), vec![(1, Ok((2, false)))]);
    assert_eq!(appends(&fx).len(), 1, "the waiting post goes out after");
}

#[test]
fn a_reset_is_published_to_the_other_nodes_with_its_base() {
    let mut sim = Sim::started(true, 10);
    let fx = sim.post(1, "x");
    let batch = appends(&fx).remove(0);
    sim.done(Done::Appended {
        batch,
        result: Ok(appended("e1", 3, 1)),
    });
    let fx = sim.done(Done::EpochReset {
        result: Ok(head("e2", 3)),
    });
    let published = published(&fx);
    assert!(matches!(
        published[0],
        (Some(s), RoomEvent::Reset { epoch: e }) if s == q(2) && *e == epoch("e2")
    ));
    assert!(matches!(published[1].1, RoomEvent::Messages { .. }));
}
