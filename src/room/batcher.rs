//! Group commit, for anything a room writes: while one batch is in flight, what arrives waits
//! and goes in the next one, so a busy room costs one store round trip per batch, not one per
//! item. Appends and read-cursor moves both go through a [`Batcher`].
//!
//! A batch that fails for one item's data can be retried one item at a time
//! ([`Batcher::retry_one_by_one`]), in its order and before anything newer, so only the bad item
//! fails (PROTOCOL §6).

use std::collections::VecDeque;

#[derive(Debug)]
pub struct Batcher<T> {
    queue: VecDeque<T>,
    in_flight: bool,
    max: usize,
    /// This many next batches hold one item each.
    solo: usize,
}

impl<T> Batcher<T> {
    /// Batches of at most `max` items (at least 1).
    pub fn new(max: usize) -> Batcher<T> {
        Batcher {
            queue: VecDeque::new(),
            in_flight: false,
            max: max.max(1),
            solo: 0,
        }
    }

    pub fn push(&mut self, item: T) {
        self.queue.push_back(item);
    }

    /// The next batch, when none is in flight and something waits; it is in flight from now on.
    pub fn take_batch(&mut self) -> Option<Vec<T>> {
        if self.in_flight || self.queue.is_empty() {
            return None;
        }
        let n = if self.solo > 0 {
            self.solo -= 1;
            1
        } else {
            self.queue.len().min(self.max)
        };
        self.in_flight = true;
        Some(self.queue.drain(..n).collect())
    }

    /// The batch in flight ended (whatever its outcome).
    pub fn done(&mut self) {
        self.in_flight = false;
    }

    /// Puts a failed batch back in front, to be sent one item per batch.
    pub fn retry_one_by_one(&mut self, items: Vec<T>) {
        self.solo += items.len();
        for item in items.into_iter().rev() {
            self.queue.push_front(item);
        }
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Nothing waits and nothing is in flight.
    pub fn is_idle(&self) -> bool {
        !self.in_flight && self.queue.is_empty()
    }

    /// How many items wait (not counting the batch in flight).
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_arrives_during_a_batch_goes_in_the_next_one() {
        let mut b = Batcher::new(3);
        b.push(1);
        assert_eq!(b.take_batch(), Some(vec![1]));
        b.push(2);
        b.push(3);
        assert_eq!(b.take_batch(), None, "one batch in flight at a time");
        b.done();
        assert_eq!(b.take_batch(), Some(vec![2, 3]));
        b.done();
        assert!(b.is_idle());
    }

    #[test]
    fn a_batch_holds_at_most_max_items() {
        let mut b = Batcher::new(2);
        (1..=5).for_each(|i| b.push(i));
        assert_eq!(b.take_batch(), Some(vec![1, 2]));
        b.done();
        assert_eq!(b.take_batch(), Some(vec![3, 4]));
        assert_eq!(b.waiting(), 1);
    }

    #[test]
    fn a_failed_batch_is_retried_one_by_one_before_anything_newer() {
        let mut b = Batcher::new(10);
        b.push(1);
        b.push(2);
        let failed = b.take_batch().expect("a batch");
        b.push(3);
        b.done();
        b.retry_one_by_one(failed);
        for want in [vec![1], vec![2], vec![3]] {
            assert_eq!(b.take_batch(), Some(want));
            b.done();
        }
    }
}
