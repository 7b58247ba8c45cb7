//! Read cursors (PROTOCOL §7), batched like commits: one statement in flight per room.

use super::*;

fn mark(sim: &mut Sim, reply: u32, who: &str, seq: i64) -> Fx {
    sim.step(Input::MarkRead {
        user: who.into(),
        seq: q(seq),
        reply,
    })
}

fn marks(fx: &Fx) -> Vec<Vec<(String, i64)>> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::MarkRead(pairs) => Some(
                pairs
                    .iter()
                    .map(|(u, s)| (u.to_string(), s.get()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn read_answers(fx: &Fx) -> Vec<(u32, Result<i64, StoreError>)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::AnswerRead { to, outcome } => Some((
                *to,
                outcome
                    .as_ref()
                    .map(|(s, _)| s.read_seq.get())
                    .map_err(Clone::clone),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn read_cursor_moves_that_arrive_during_a_write_go_in_the_next_one() {
    let mut sim = Sim::started(false, 9);
    let fx = mark(&mut sim, 1, "bob", 3);
    assert_eq!(marks(&fx), vec![vec![("bob".to_string(), 3)]]);
    assert!(marks(&mark(&mut sim, 2, "cat", 4)).is_empty());
    assert!(marks(&mark(&mut sim, 3, "bob", 5)).is_empty());
    let fx = sim.done(Done::ReadsMarked {
        result: Ok(vec![(read_state(3, 6, 9), true)]),
    });
    assert_eq!(read_answers(&fx), vec![(1, Ok(3))]);
    assert_eq!(
        marks(&fx),
        vec![vec![("cat".to_string(), 4), ("bob".to_string(), 5)]]
    );
}

#[test]
fn a_failed_or_short_answer_fails_every_read_of_its_batch() {
    let mut sim = Sim::started(false, 9);
    mark(&mut sim, 1, "bob", 3);
    let fx = sim.done(Done::ReadsMarked {
        result: Err(StoreError::Unavailable("down".into())),
    });
    assert!(matches!(
        read_answers(&fx)[..],
        [(1, Err(StoreError::Unavailable(_)))]
    ));
    mark(&mut sim, 2, "bob", 3);
    let fx = sim.done(Done::ReadsMarked {
        result: Ok(Vec::new()),
    });
    assert!(matches!(
        read_answers(&fx)[..],
        [(2, Err(StoreError::Internal(_)))]
    ));
}
