//! The circuit breaker of one webhook endpoint on one node, and the retry delay: pure logic with an
//! explicit clock (no I/O), so every transition is a unit test.
//!
//! ```text
//!  Closed ──(failures in a row ≥ threshold)──▶ Open ──(cool-down over; one probe admitted)──▶ HalfOpen
//!    ▲                                          ▲                                              │
//!    └───────────────(probe succeeded)──────────┴───────────────(probe failed)─────────────────┘
//! ```
//! While open, the endpoint gets no request at all from this node: a dead endpoint costs one probe
//! per cool-down, whatever its backlog. Each node keeps its own breaker (nothing shared to fail).

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The cool-down is over; `probing` while the one admitted request is in flight.
    HalfOpen {
        probing: bool,
    },
}

/// May a request go out now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Yes, as the half-open probe: its outcome decides the state.
    Probe,
    No,
}

#[derive(Debug, Clone)]
pub struct Circuit {
    state: State,
    threshold: u32,
    cooldown: Duration,
}

/// A change of the circuit worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Closed → open: too many failures in a row.
    Opened,
    /// Open or half-open → closed: a probe succeeded.
    Closed,
}

impl Circuit {
    pub fn new(threshold: u32, cooldown: Duration) -> Circuit {
        Circuit {
            state: State::Closed { failures: 0 },
            threshold: threshold.max(1),
            cooldown,
        }
    }

    /// How many requests may start now, at most `free`: all while closed, one probe when the
    /// cool-down is over and no probe is out, none otherwise. Changes nothing.
    pub fn capacity(&self, now: Instant, free: usize) -> usize {
        match self.state {
            State::Closed { .. } => free,
            State::Open { until } if now >= until => free.min(1),
            State::HalfOpen { probing: false } => free.min(1),
            _ => 0,
        }
    }

    /// Asks to send one request now.
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed { .. } => Admit::Yes,
            State::Open { until } if now < until => Admit::No,
            State::Open { .. } | State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                Admit::Probe
            }
            State::HalfOpen { probing: true } => Admit::No,
        }
    }

    /// The outcome of an admitted request, and the change it made, if it opened or closed the
    /// circuit (to be logged once).
    pub fn record(&mut self, ok: bool, now: Instant) -> Option<Change> {
        let was_closed = self.is_closed();
        self.state = match (self.state, ok) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            (_, false) => State::Open {
                until: now + self.cooldown,
            },
        };
        match (was_closed, self.is_closed()) {
            (true, false) => Some(Change::Opened),
            (false, true) => Some(Change::Closed),
            _ => None,
        }
    }

    /// "closed", "open" or "half_open" (the admin API's word).
    pub fn state(&self) -> &'static str {
        match self.state {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }
}

/// The delay before retry number `attempts` (1 = the first retry): exponential from `min`, doubling,
/// capped at `max`, with equal jitter (`random` in [0, 1) picks a point in the upper half), so a
/// room's retries stay spaced while many rooms' retries spread out.
pub fn retry_delay(attempts: u32, min: Duration, max: Duration, random: f64) -> Duration {
    let doubling = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
    let full = min.saturating_mul(doubling).min(max);
    full / 2 + full.mul_f64(random.clamp(0.0, 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(30);

    #[test]
    fn failures_in_a_row_open_it_and_a_success_resets_the_count() {
        let t = Instant::now();
        let mut c = Circuit::new(3, COOL);
        for ok in [false, false, true, false, false] {
            assert_eq!(c.record(ok, t), None, "nothing changed");
        }
        assert!(c.is_closed(), "four failures, but never three in a row");
        assert_eq!(c.capacity(t, 8), 8);
        assert_eq!(c.record(false, t), Some(Change::Opened));
        assert_eq!(c.state(), "open");
        assert_eq!(c.capacity(t, 8), 0);
        assert_eq!(c.admit(t + COOL / 2), Admit::No);
    }

    #[test]
    fn after_the_cool_down_exactly_one_probe_goes_and_its_success_closes_it() {
        let t = Instant::now();
        let mut c = Circuit::new(1, COOL);
        c.record(false, t);
        assert_eq!(c.capacity(t + COOL, 8), 1);
        assert_eq!(c.admit(t + COOL), Admit::Probe);
        assert_eq!(c.state(), "half_open");
        assert_eq!(c.capacity(t + COOL, 8), 0, "one probe at a time");
        assert_eq!(c.admit(t + COOL), Admit::No);
        assert_eq!(c.record(true, t + COOL), Some(Change::Closed));
        assert!(c.is_closed());
        assert_eq!(c.admit(t + COOL), Admit::Yes);
    }

    #[test]
    fn a_failed_probe_opens_it_for_another_cool_down() {
        let t = Instant::now();
        let mut c = Circuit::new(5, COOL);
        for _ in 0..5 {
            c.record(false, t);
        }
        assert_eq!(c.admit(t + COOL), Admit::Probe);
        assert_eq!(
            c.record(false, t + COOL),
            None,
            "still open: logged once, when it opened"
        );
        assert_eq!(c.state(), "open");
        assert_eq!(c.admit(t + COOL + COOL / 2), Admit::No);
        assert_eq!(c.admit(t + COOL * 2), Admit::Probe);
    }

    #[test]
    fn retries_double_from_the_minimum_up_to_the_cap_with_jitter_in_the_upper_half() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(300));
        assert_eq!(retry_delay(1, min, max, 0.0), Duration::from_millis(500));
        assert_eq!(retry_delay(1, min, max, 0.999_999).as_millis(), 999);
        assert_eq!(retry_delay(2, min, max, 0.0), Duration::from_secs(1));
        assert_eq!(retry_delay(4, min, max, 0.0), Duration::from_secs(4));
        assert_eq!(retry_delay(9, min, max, 0.0), Duration::from_secs(128));
        assert_eq!(retry_delay(10, min, max, 0.0), Duration::from_secs(150));
        assert_eq!(retry_delay(60, min, max, 0.0), Duration::from_secs(150));
        assert!(retry_delay(60, min, max, 1.0) <= max);
    }
}
