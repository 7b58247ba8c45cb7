//! The cluster as a room sees it: resets made elsewhere, dead nodes, resync after an outage.

use super::*;

#[test]
fn a_reset_made_on_another_node_is_adopted_and_members_reload() {
    let mut sim = Sim::started(true, 6);
    sim.member("s1", "bob");
    let fx = sim.envelope(Some(2), RoomEvent::Reset { epoch: epoch("e2") });
    assert_eq!(types_to(&fx, "s1"), ["reset"]);
    let carries = &frames_to(&fx, "s1")[0].carries;
    assert_eq!(
        *carries,
        Carries::Reset {
            epoch: epoch("e2"),
            last_seq: q(2)
        },
        "listeners need not parse"
    );
    let fx = sim.remote(&[3]);
    assert_eq!(
        seqs_to(&fx, "s1"),
        vec![3],
        "live delivery goes on after the reset's base"
    );
    let again = sim.envelope(Some(2), RoomEvent::Reset { epoch: epoch("e2") });
    assert!(
        types_to(&again, "s1").is_empty(),
        "the same reset twice is one reset"
    );
}

#[test]
fn a_dead_nodes_users_leave_the_room() {
    let mut sim = Sim::started(true, 0);
    sim.member("s1", "bob");
    sim.envelope(
        None,
        RoomEvent::Presence {
            joins: vec![user("zed")],
            leaves: vec![],
        },
    );
    assert_eq!(sim.core.presence().len(), 2);
    let fx = sim.step(Input::Cluster(FromCluster::NodeDown(NodeId::from("n2"))));
    assert_eq!(
        presence_diffs_to(&fx, "s1"),
        vec![(vec![], vec!["zed".into()])]
    );
}

#[test]
fn a_dead_node_may_have_committed_without_publishing_so_the_head_is_read() {
    let mut sim = Sim::started(true, 3);
    sim.member("s1", "bob");
    let fx = sim.step(Input::Cluster(FromCluster::NodeDown(NodeId::from("n2"))));
    assert!(head_reads(&fx) == [q(3)]);
    let fx = sim.done(Done::Head {
        why: HeadWhy::CatchUp { floor: q(3) },
        result: Ok(head("e1", 4)),
    });
    assert!(
        scheduled(&fx, Timer::Repair),
        "4 was committed and never published"
    );
}

#[test]
fn a_resync_whose_head_read_fails_reads_it_again() {
    let mut sim = Sim::started(true, 4);
    sim.member("s1", "bob");
    sim.step(Input::Cluster(FromCluster::Resync));
    let fx = sim.done(Done::Resynced {
        floor: q(4),
        head: Err(StoreError::Unavailable("down".into())),
        presence: Some(vec![]),
    });
    assert!(scheduled(&fx, Timer::Recheck));
    let fx = sim.step(Input::Timer(Timer::Recheck));
    assert!(head_reads(&fx) == [q(4)]);
}

#[test]
fn a_resync_tells_the_others_this_rooms_head_repairs_and_reads_cursors_again() {
    let mut sim = Sim::started(true, 4);
    sim.member("s1", "bob");
    sim.member("s2", "bob");
    let fx = sim.step(Input::Cluster(FromCluster::Resync));
    assert!(matches!(io(&fx)[..], [Effect::Resync { floor }] if *floor == q(4)));
    let fx = sim.done(Done::Resynced {
        floor: q(4),
        head: Ok(head("e1", 6)),
        presence: Some(vec![(NodeId::from("n2"), user("zed"))]),
    });
    assert!(matches!(published(&fx)[..], [(Some(s), RoomEvent::Head)] if s == q(4)));
    assert!(scheduled(&fx, Timer::Repair), "6 is ahead of 4");
    assert!(
        fx.iter().any(|e| matches!(
            e,
            Effect::RefreshReads { users, upto } if users.len() == 1 && *upto == q(4)
        )),
        "bob once, however many sessions"
    );
    assert_eq!(
        presence_diffs_to(&fx, "s1"),
        vec![(vec!["zed".into()], vec![])]
    );
    let fx = sim.done(Done::ReadsRefreshed {
        states: vec![("bob".into(), read_state(3, 1, 4))],
    });
    assert_eq!(types_to(&fx, "s1"), ["read"]);
    assert_eq!(types_to(&fx, "s2"), ["read"]);
}

#[test]
fn a_catch_up_request_reads_the_head_only_when_someone_listens() {
    let mut sim = Sim::started(true, 4);
    assert!(sim.step(Input::Cluster(FromCluster::CatchUp)).is_empty());
    sim.member("s1", "bob");
    let fx = sim.step(Input::Cluster(FromCluster::CatchUp));
    assert!(head_reads(&fx) == [q(4)]);
    let fx = sim.done(Done::Head {
        why: HeadWhy::CatchUp { floor: q(4) },
        result: Ok(head("e1", 5)),
    });
    assert!(scheduled(&fx, Timer::Repair));
}

#[test]
fn an_entry_from_another_node_is_timed_from_its_commit_timestamp() {
    let mut sim = Sim::started(true, 0);
    sim.member("s1", "bob");
    sim.advance(5_000);
    let committed = sim.now().wall - chrono::Duration::milliseconds(250);
    let messages = vec![Arc::new(entry_at(1, "zed", committed))];
    let fx = sim.envelope(Some(1), RoomEvent::Messages { messages });
    let at = frames_to(&fx, "s1")[0].committed.expect("a live entry");
    assert_eq!(sim.now().at - at, Duration::from_millis(250));
}
