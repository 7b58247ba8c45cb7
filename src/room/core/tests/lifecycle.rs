//! A room's life: it stops when idle, refuses what reaches it after, and tells its members where
//! their streams ended if it goes away under them.

use super::*;

#[test]
fn an_idle_room_stops_after_idle_stop_and_anything_in_flight_keeps_it() {
    let mut sim = Sim::new(false);
    sim.step(Input::Start);
    let fx = sim.done(Done::Attached {
        head: Ok(head("e1", 0)),
        presence: None,
    });
    assert!(scheduled(&fx, Timer::Idle));
    let fx = sim.post(1, "x");
    assert!(
        cancelled(&fx, Timer::Idle),
        "a post in flight keeps the room"
    );
    let batch = appends(&fx).remove(0);
    let fx = sim.done(Done::Appended {
        batch,
        result: Ok(appended("e1", 1, 1)),
    });
    assert!(scheduled(&fx, Timer::Idle));
    let fx = sim.step(Input::Timer(Timer::Idle));
    assert!(matches!(io(&fx)[..], [Effect::Stop]));
}

#[test]
fn a_member_keeps_the_room_running() {
    let mut sim = Sim::started(false, 0);
    sim.member("s1", "bob");
    assert!(
        !sim.step(Input::Timer(Timer::Idle))
            .iter()
            .any(|e| matches!(e, Effect::Stop))
    );
}

#[test]
fn a_stopped_room_refuses_what_still_reaches_it_so_the_sender_retries_on_a_new_one() {
    let mut sim = Sim::started(false, 0);
    sim.step(Input::Timer(Timer::Idle));
    let fx = sim.post(3, "late");
    assert!(matches!(
        answers(&fx)[..],
        [(3, Err(StoreError::Unavailable(_)))]
    ));
    let fx = sim.step(Input::Join(join_req("s1", "bob", None)));
    assert_eq!(dropped_to(&fx, "s1"), vec![DropReason::Refused]);
}

#[test]
fn an_abandoned_room_tells_each_member_where_its_stream_ended() {
    let mut sim = Sim::started(false, 0);
    sim.member("s1", "bob");
    sim.commit(1, 2);
    // s2's backfill is still being read: it has seen nothing yet.
    sim.step(Input::Join(join_req("s2", "cat", Some(0))));
    let mut lost = sim.core.abandon();
    lost.sort_by_key(|(m, _)| *m);
    let why: Vec<_> = lost
        .into_iter()
        .map(|(m, msg)| match msg {
            ToSession::Dropped { why, .. } => (m, why),
            _ => panic!("a drop notice"),
        })
        .collect();
    let e1 = Some(epoch("e1"));
    assert_eq!(
        why,
        vec![
            (
                "s1",
                DropReason::Lost {
                    epoch: e1.clone(),
                    last_seq: Some(q(2))
                }
            ),
            (
                "s2",
                DropReason::Lost {
                    epoch: e1,
                    last_seq: None
                }
            ),
        ]
    );
}
