//! The breaker against a simple reference model, over random sequences of calls,
//! outcomes, abandoned calls and clock moves.

use std::time::Duration;

use proptest::prelude::*;
use resilient_runtime::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerState, FakeClock, Outcome, OwnedPermit,
};

const OPEN_MS: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Closed,
    Probe,
}

#[derive(Debug, Clone, Copy)]
struct Ticket {
    generation: u64,
    kind: Kind,
}

/// The breaker as a plain state machine, one step at a time.
#[derive(Debug)]
struct Model {
    failure_threshold: u32,
    success_threshold: u32,
    half_open_max: u32,
    state: CircuitBreakerState,
    generation: u64,
    failures: u32,
    successes: u32,
    probes: u32,
    now_ms: u64,
    open_until_ms: u64,
}

impl Model {
    fn enter(&mut self, state: CircuitBreakerState) {
        self.state = state;
        self.generation += 1;
        self.failures = 0;
        self.successes = 0;
        self.probes = 0;
        if state == CircuitBreakerState::Open {
            self.open_until_ms = self.now_ms + OPEN_MS;
        }
    }

    fn acquire(&mut self) -> Option<Ticket> {
        match self.state {
            CircuitBreakerState::Closed => Some(Ticket {
                generation: self.generation,
                kind: Kind::Closed,
            }),
            CircuitBreakerState::Open => {
                if self.now_ms < self.open_until_ms {
                    return None;
                }
                self.enter(CircuitBreakerState::HalfOpen);
                self.probes = 1;
                Some(Ticket {
                    generation: self.generation,
                    kind: Kind::Probe,
                })
            }
            CircuitBreakerState::HalfOpen => {
                if self.probes >= self.half_open_max {
                    return None;
                }
                self.probes += 1;
                Some(Ticket {
                    generation: self.generation,
                    kind: Kind::Probe,
                })
            }
        }
    }

    fn current(&self, t: Ticket) -> bool {
        t.generation == self.generation
            && match t.kind {
                Kind::Closed => self.state == CircuitBreakerState::Closed,
                Kind::Probe => self.state == CircuitBreakerState::HalfOpen,
            }
    }

    fn record(&mut self, t: Ticket, outcome: Outcome) {
        if !self.current(t) {
            return;
        }
        match (t.kind, outcome) {
            (_, Outcome::Ignored) if t.kind == Kind::Closed => {}
            (Kind::Closed, Outcome::Success) => self.failures = 0,
            (Kind::Closed, Outcome::Failure) => {
                self.failures += 1;
                if self.failures >= self.failure_threshold {
                    self.enter(CircuitBreakerState::Open);
                }
            }
            (Kind::Probe, Outcome::Ignored) => self.probes -= 1,
            (Kind::Probe, Outcome::Failure) => self.enter(CircuitBreakerState::Open),
            (Kind::Probe, Outcome::Success) => {
                self.successes += 1;
                if self.successes >= self.success_threshold {
                    self.enter(CircuitBreakerState::Closed);
                } else {
                    self.probes -= 1;
                }
            }
            (Kind::Closed, Outcome::Ignored) => unreachable!(),
        }
    }

    fn abandon(&mut self, t: Ticket) {
        if t.kind == Kind::Probe && self.current(t) {
            self.probes -= 1;
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Record(usize, Outcome),
    Drop(usize),
    Advance(u64),
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => Just(Outcome::Success),
        4 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignored),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Acquire),
        6 => (any::<usize>(), outcome()).prop_map(|(i, o)| Op::Record(i, o)),
        1 => any::<usize>().prop_map(Op::Drop),
        2 => (0u64..15_000).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn breaker_matches_the_reference_model(
        failure_threshold in 1u32..5,
        success_threshold in 1u32..4,
        half_open_max in 1u32..4,
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let clock = FakeClock::new();
        let cb = CircuitBreaker::builder(CircuitBreakerConfig {
            failure_threshold,
            success_threshold,
            half_open_max_calls: half_open_max,
            timeout: Duration::from_millis(OPEN_MS),
            ..Default::default()
        })
        .clock(clock.clone())
        .build()
        .unwrap();
        let mut model = Model {
            failure_threshold,
            success_threshold,
            half_open_max,
            state: CircuitBreakerState::Closed,
            generation: 0,
            failures: 0,
            successes: 0,
            probes: 0,
            now_ms: 0,
            open_until_ms: 0,
        };
        let mut held: Vec<(OwnedPermit, Ticket)> = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Acquire => {
                    let real = cb.try_acquire_owned().ok();
                    let expected = model.acquire();
                    prop_assert_eq!(real.is_some(), expected.is_some(), "admission at step {}", step);
                    if let (Some(p), Some(t)) = (real, expected) {
                        prop_assert_eq!(p.is_probe(), t.kind == Kind::Probe, "probe at step {}", step);
                        held.push((p, t));
                    }
                }
                Op::Record(i, outcome) if !held.is_empty() => {
                    let (p, t) = held.remove(i % held.len());
                    p.record(outcome);
                    model.record(t, outcome);
                }
                Op::Drop(i) if !held.is_empty() => {
                    let (p, t) = held.remove(i % held.len());
                    drop(p);
                    model.abandon(t);
                }
                Op::Advance(ms) => {
                    clock.advance(Duration::from_millis(ms));
                    model.now_ms += ms;
                }
                _ => {}
            }
            prop_assert_eq!(cb.state(), model.state, "state after step {}", step);
            let expected_failures =
                if model.state == CircuitBreakerState::Closed { model.failures } else { 0 };
            prop_assert_eq!(cb.consecutive_failures(), expected_failures, "failures after step {}", step);
            let expected_probes =
                if model.state == CircuitBreakerState::HalfOpen { model.probes } else { 0 };
            prop_assert_eq!(cb.probes_in_flight(), expected_probes, "probes after step {}", step);
        }
    }
}
