//! Joining (PROTOCOL §3 `join`, §7 read state): at the head, with a backfill, across epochs, ahead
//! of this node, during a store outage, past retention.

use super::*;

fn joined_frame(reply: &JoinReply) -> serde_json::Value {
    json(&reply.frames[0].frame)
}

#[test]
fn a_join_without_since_goes_live_at_the_head_with_its_read_state() {
    let mut sim = Sim::started(false, 5);
    let fx = sim.step(Input::Join(join_req("s1", "bob", None)));
    assert!(
        matches!(io(&fx)[..],
            [Effect::ReadForJoin { upto, backfill: None, user, .. }]
                if *upto == q(5) && user.as_deref() == Some("bob")
        ),
        "only the read state is read"
    );
    let (join, _) = read_for_join(&fx).unwrap();
    let fx = sim.done(Done::JoinRead {
        join,
        read: Some(read_state(2, 3, 5)),
        backfill: Ok(Vec::new()),
    });
    let reply = joined_to(&fx, "s1").remove(0);
    let joined = joined_frame(reply);
    assert_eq!(joined["last_seq"], 5);
    assert_eq!(joined["recovered"], false, "no `since`: nothing to recover");
    assert_eq!(
        (joined["read_seq"].as_i64(), joined["unread"].as_i64()),
        (Some(2), Some(3))
    );
    assert_eq!(types_to(&fx, "s1"), ["joined", "presence"]);
}

#[test]
fn a_join_with_since_gets_its_backfill_then_what_went_live_meanwhile() {
    let mut sim = Sim::started(false, 3);
    sim.member("s0", "ann");
    let fx = sim.step(Input::Join(join_req("s1", "bob", Some(1))));
    assert!(matches!(io(&fx)[..],
        [.., Effect::ReadForJoin { backfill: Some((a, b)), .. }] if *a == q(1) && *b == q(3)
    ));
    let (join, _) = read_for_join(&fx).unwrap();
    // Seq 4 commits while the backfill is read.
    let live = sim.commit(4, 1);
    assert!(seqs_to(&live, "s1").is_empty(), "held in the backlog");
    assert_eq!(seqs_to(&live, "s0"), vec![4]);
    let fx = sim.done(Done::JoinRead {
        join,
        read: Some(read_state(0, 0, 3)),
        backfill: Ok(vec![entry(2), entry(3)]),
    });
    assert_eq!(
        seqs_to(&fx, "s1"),
        vec![2, 3, 4],
        "backfill then backlog: no gap, no duplicate"
    );
    assert_eq!(joined_frame(joined_to(&fx, "s1")[0])["recovered"], true);
    assert_eq!(joined_to(&fx, "s1")[0].messages, 3);
}

#[test]
fn a_join_from_another_epoch_or_too_far_behind_joins_at_the_head_not_recovered() {
    let mut sim = Sim::started(false, 20);
    let mut other = join_req("s1", "bob", Some(19));
    other.epoch = Some(epoch("e0"));
    let behind = join_req("s2", "cat", Some(2)); // 18 behind, max_catchup is 5
    for (join, session) in [(other, "s1"), (behind, "s2")] {
        let fx = sim.step(Input::Join(join));
        assert!(matches!(
            io(&fx)[..],
            [.., Effect::ReadForJoin { backfill: None, .. }]
        ));
        let (id, _) = read_for_join(&fx).unwrap();
        let fx = sim.done(Done::JoinRead {
            join: id,
            read: None,
            backfill: Ok(Vec::new()),
        });
        let joined = joined_frame(joined_to(&fx, session)[0]);
        assert_eq!(
            (joined["recovered"].as_bool(), joined["last_seq"].as_i64()),
            (Some(false), Some(20))
        );
        assert!(
            joined.get("unread").is_none(),
            "an unknown count is left out, never guessed"
        );
    }
}

#[test]
fn a_join_during_a_store_outage_is_refused_and_leaves_no_member_behind() {
    let mut sim = Sim::new(false);
    sim.step(Input::Start);
    sim.done(Done::Attached {
        head: Err(StoreError::Unavailable("down".into())),
        presence: None,
    });
    let fx = sim.step(Input::Join(join_req("s1", "bob", None)));
    assert!(
        matches!(io(&fx)[..], [Effect::ReadHead(HeadWhy::Joins)]),
        "the head is read again"
    );
    assert!(sim.core.blocked());
    let fx = sim.done(Done::Head {
        why: HeadWhy::Joins,
        result: Err(StoreError::Unavailable("still down".into())),
    });
    assert_eq!(types_to(&fx, "s1"), ["error"]);
    assert_eq!(json(&frames_to(&fx, "s1")[0].frame)["code"], "unavailable");
    assert_eq!(dropped_to(&fx, "s1"), vec![DropReason::Refused]);
    assert_eq!(sim.core.members(), 0);
    assert!(sim.core.presence().is_empty());
    // The next join tries again, and this time the store answers.
    let fx = sim.step(Input::Join(join_req("s2", "cat", None)));
    assert!(matches!(io(&fx)[..], [Effect::ReadHead(HeadWhy::Joins)]));
    let fx = sim.done(Done::Head {
        why: HeadWhy::Joins,
        result: Ok(head("e1", 7)),
    });
    assert!(read_for_join(&fx).is_some_and(|(_, upto)| upto == q(7)));
}

#[test]
fn joins_that_waited_for_the_head_all_proceed_in_order_when_it_is_read() {
    let mut sim = Sim::new(false);
    sim.step(Input::Start);
    sim.done(Done::Attached {
        head: Err(StoreError::Unavailable("down".into())),
        presence: None,
    });
    sim.step(Input::Join(join_req("s1", "bob", None)));
    assert!(
        sim.step(Input::Join(join_req("s2", "cat", None)))
            .is_empty(),
        "kept"
    );
    let fx = sim.done(Done::Head {
        why: HeadWhy::Joins,
        result: Ok(head("e1", 2)),
    });
    let joins: Vec<u64> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::ReadForJoin { join, .. } => Some(*join),
            _ => None,
        })
        .collect();
    assert_eq!(joins.len(), 2);
    assert!(joins[0] < joins[1]);
}

#[test]
fn a_client_ahead_of_this_node_catches_up_from_the_store_then_recovers() {
    let mut sim = Sim::started(true, 3);
    sim.member("s0", "ann");
    let fx = sim.step(Input::Join(join_req("s1", "bob", Some(5))));
    assert!(matches!(io(&fx)[..], [Effect::CatchUp { delivered, .. }] if *delivered == q(3)));
    let fx = sim.done(Done::CaughtUp {
        result: Ok((head("e1", 5), vec![entry(4), entry(5)])),
    });
    assert_eq!(
        seqs_to(&fx, "s0"),
        vec![4, 5],
        "what this node missed reaches its members"
    );
    let (join, upto) = read_for_join(&fx).expect("then the join proceeds");
    assert_eq!(upto, q(5));
    let fx = sim.done(Done::JoinRead {
        join,
        read: None,
        backfill: Ok(Vec::new()),
    });
    let joined = joined_frame(joined_to(&fx, "s1")[0]);
    assert_eq!(
        (joined["recovered"].as_bool(), joined["last_seq"].as_i64()),
        (Some(true), Some(5))
    );
}

#[test]
fn a_catch_up_that_fails_refuses_the_join() {
    let mut sim = Sim::started(true, 3);
    sim.step(Input::Join(join_req("s1", "bob", Some(9))));
    let fx = sim.done(Done::CaughtUp {
        result: Err(StoreError::Unavailable("down".into())),
    });
    assert_eq!(dropped_to(&fx, "s1"), vec![DropReason::Refused]);
}

#[test]
fn a_backfill_past_retention_joins_with_recovered_false() {
    let mut sim = Sim::started(false, 4);
    let fx = sim.step(Input::Join(join_req("s1", "bob", Some(1))));
    let (join, _) = read_for_join(&fx).unwrap();
    let fx = sim.done(Done::JoinRead {
        join,
        read: None,
        backfill: Err(StoreError::Truncated),
    });
    let joined = joined_frame(joined_to(&fx, "s1")[0]);
    assert_eq!(
        joined["recovered"], false,
        "the client reloads through history"
    );
    assert!(seqs_to(&fx, "s1").is_empty());
}

#[test]
fn a_backfill_that_fails_refuses_the_join_and_takes_its_presence_back() {
    let mut sim = Sim::started(false, 4);
    sim.member("s0", "ann");
    let fx = sim.step(Input::Join(join_req("s1", "bob", Some(2))));
    assert_eq!(
        presence_diffs_to(&fx, "s0"),
        vec![(vec!["bob".into()], vec![])]
    );
    let (join, _) = read_for_join(&fx).unwrap();
    let fx = sim.done(Done::JoinRead {
        join,
        read: None,
        backfill: Err(StoreError::Unavailable("down".into())),
    });
    assert_eq!(dropped_to(&fx, "s1"), vec![DropReason::Refused]);
    assert_eq!(
        presence_diffs_to(&fx, "s0"),
        vec![(vec![], vec!["bob".into()])]
    );
    assert_eq!(sim.core.members(), 1);
}

#[test]
fn a_backfill_for_a_join_that_was_left_and_made_again_is_not_mistaken_for_the_new_one() {
    let mut sim = Sim::started(false, 4);
    let first = sim.step(Input::Join(join_req("s1", "bob", Some(2))));
    let (old, _) = read_for_join(&first).unwrap();
    sim.step(Input::Leave {
        session: SessionId::from("s1"),
        r#ref: None,
        reply: false,
    });
    let second = sim.step(Input::Join(join_req("s1", "bob", Some(3))));
    let (new, _) = read_for_join(&second).unwrap();
    let fx = sim.done(Done::JoinRead {
        join: old,
        read: None,
        backfill: Ok(vec![entry(3), entry(4)]),
    });
    assert!(
        fx.is_empty() || joined_to(&fx, "s1").is_empty(),
        "the old join's reads are dropped"
    );
    let fx = sim.done(Done::JoinRead {
        join: new,
        read: None,
        backfill: Ok(vec![entry(4)]),
    });
    assert_eq!(seqs_to(&fx, "s1"), vec![4]);
}

#[test]
fn a_hidden_listener_is_not_in_presence_and_reads_no_cursor() {
    let mut sim = Sim::started(false, 2);
    sim.member("s0", "ann");
    let mut listener = join_req("l1", "bob", None);
    listener.hidden = true;
    let fx = sim.step(Input::Join(listener));
    assert!(
        read_for_join(&fx).is_none(),
        "nothing to read: it goes live at once"
    );
    let reply = joined_to(&fx, "l1")[0];
    assert_eq!(reply.point.last_seq, q(2));
    assert_eq!(reply.point.read, None);
    assert!(presence_diffs_to(&fx, "s0").is_empty());
    assert_eq!(sim.core.presence().len(), 1);
}
