//! The breaker state machine: lock-free admission, time passed in, stale results dropped.
//!
//! Everything that decides admission lives in one `u64` word:
//!
//! ```text
//!  63                      21 20          5 4    2 1   0
//! +-------------------------+-------------+------+-----+
//! |       generation        | probes      | mode |state|
//! +-------------------------+-------------+------+-----+
//! ```
//!
//! Every transition bumps the generation with one compare-and-swap, so exactly one
//! thread wins it, and a result recorded under an older generation is discarded (a
//! success from before the circuit opened cannot close it). Probes in flight are counted
//! in the word too, so the half-open limit is enforced by the same CAS that admits.
//!
//! The closed-state path reads the word once and never reads the clock. The clock is
//! read only to decide whether an open circuit may let a probe through, and for
//! time-based windows: callers pass it as a closure so that it is read only then.

use super::window::Window;
use crate::breaker::config::CircuitBreakerConfig;
use crate::classify::Outcome;
use crate::clock::nanos;
use crate::sync::{AtomicU32, AtomicU64, Mutex, Ordering, lock};

const STATE_MASK: u64 = 0b11;
const MODE_SHIFT: u32 = 2;
const MODE_MASK: u64 = 0b111 << MODE_SHIFT;
const PROBE_SHIFT: u32 = 5;
const PROBE_ONE: u64 = 1 << PROBE_SHIFT;
const PROBE_MASK: u64 = 0xFFFF << PROBE_SHIFT;
const GEN_SHIFT: u32 = 21;
const GEN_ONE: u64 = 1 << GEN_SHIFT;
/// Closed and in normal mode: the only bits that must be zero for the fast path.
const FAST_MASK: u64 = STATE_MASK | MODE_MASK;
/// `word & FAST_MASK` of a circuit opened by the state machine (normal mode).
const OPEN_NORMAL: u64 = 1;
/// `word & FAST_MASK` of a circuit forced open.
const OPEN_FORCED: u64 = 1 | (1 << MODE_SHIFT);

const COUNT_MASK: u64 = 0xFFFF_FFFF;

/// The state of a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitBreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls are rejected without being made.
    Open,
    /// A limited number of probe calls go through to test recovery.
    HalfOpen,
}

impl CircuitBreakerState {
    /// Every state, in order.
    pub const ALL: [CircuitBreakerState; 3] = [
        CircuitBreakerState::Closed,
        CircuitBreakerState::Open,
        CircuitBreakerState::HalfOpen,
    ];

    /// `"closed"`, `"open"` or `"half_open"`: the value of the `state` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitBreakerState::Closed => "closed",
            CircuitBreakerState::Open => "open",
            CircuitBreakerState::HalfOpen => "half_open",
        }
    }

    fn from_bits(bits: u64) -> Self {
        match bits & STATE_MASK {
            0 => CircuitBreakerState::Closed,
            1 => CircuitBreakerState::Open,
            _ => CircuitBreakerState::HalfOpen,
        }
    }

    fn bits(self) -> u64 {
        match self {
            CircuitBreakerState::Closed => 0,
            CircuitBreakerState::Open => 1,
            CircuitBreakerState::HalfOpen => 2,
        }
    }
}

impl std::fmt::Display for CircuitBreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CircuitBreakerState::Closed => "CLOSED",
            CircuitBreakerState::Open => "OPEN",
            CircuitBreakerState::HalfOpen => "HALF-OPEN",
        })
    }
}

/// Who decides: the state machine, or an operator's override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The state machine decides.
    Normal,
    /// Every call is rejected, whatever happens.
    ForcedOpen,
    /// Every call goes through; outcomes reach observers but never move the state.
    ForcedClosed,
    /// Every call goes through; nothing is recorded.
    Disabled,
    /// Shadow mode: the state machine runs and reports what it would do, but never
    /// rejects a call. For rolling a breaker out safely.
    MetricsOnly,
}

impl Mode {
    /// Every mode, in the order of the `circuit_breaker_mode` gauge's series.
    pub const ALL: [Mode; 5] = [
        Mode::Normal,
        Mode::ForcedOpen,
        Mode::ForcedClosed,
        Mode::Disabled,
        Mode::MetricsOnly,
    ];

    /// The name used in configuration and metrics: `normal`, `forced_open`,
    /// `forced_closed`, `disabled`, `metrics_only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::ForcedOpen => "forced_open",
            Mode::ForcedClosed => "forced_closed",
            Mode::Disabled => "disabled",
            Mode::MetricsOnly => "metrics_only",
        }
    }

    fn from_bits(word: u64) -> Self {
        match (word & MODE_MASK) >> MODE_SHIFT {
            0 => Mode::Normal,
            1 => Mode::ForcedOpen,
            2 => Mode::ForcedClosed,
            3 => Mode::Disabled,
            _ => Mode::MetricsOnly,
        }
    }

    fn bits(self) -> u64 {
        let n = match self {
            Mode::Normal => 0,
            Mode::ForcedOpen => 1,
            Mode::ForcedClosed => 2,
            Mode::Disabled => 3,
            Mode::MetricsOnly => 4,
        };
        n << MODE_SHIFT
    }
}

/// Why a circuit changed state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TransitionReason {
    /// `failure_threshold` consecutive failures (the count).
    ConsecutiveFailures(u32),
    /// The failure rate over the window reached its threshold (the rate).
    FailureRate(f64),
    /// The slow-call rate over the window reached its threshold (the rate).
    SlowCallRate(f64),
    /// The open time passed; the next call is a probe.
    OpenTimeElapsed,
    /// A probe failed.
    ProbeFailed,
    /// `success_threshold` probes succeeded (the count).
    ProbesSucceeded(u32),
    /// An operator changed the mode.
    ModeChanged(Mode),
    /// An operator reset the breaker.
    Reset,
}

impl std::fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransitionReason::ConsecutiveFailures(n) => write!(f, "{n} consecutive failures"),
            TransitionReason::FailureRate(r) => write!(f, "failure rate {:.1}%", r * 100.0),
            TransitionReason::SlowCallRate(r) => write!(f, "slow-call rate {:.1}%", r * 100.0),
            TransitionReason::OpenTimeElapsed => f.write_str("open time elapsed"),
            TransitionReason::ProbeFailed => f.write_str("probe failed"),
            TransitionReason::ProbesSucceeded(n) => write!(f, "{n} probes succeeded"),
            TransitionReason::ModeChanged(m) => write!(f, "mode set to {m:?}"),
            TransitionReason::Reset => f.write_str("reset"),
        }
    }
}

/// A state change, handed to observers after it happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Transition {
    pub(crate) from: CircuitBreakerState,
    pub(crate) to: CircuitBreakerState,
    pub(crate) reason: TransitionReason,
    /// For a transition to open: how long it stays open.
    pub(crate) open_for_nanos: Option<u64>,
}

/// How an admitted call must be recorded.
///
/// A full word, like the generation beside it: a `Ticket` is built and copied as two
/// words, and a one-byte field read back as part of a wider load stalls the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum TicketKind {
    /// Counted against the closed generation.
    Closed,
    /// A half-open probe holding a slot.
    Probe,
    /// Reported to observers only (forced closed, or a call metrics-only mode would
    /// have rejected).
    Shadow,
    /// Not recorded at all (disabled).
    Untracked,
}

/// An admitted call: its generation and how it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) generation: u64,
    pub(crate) kind: TicketKind,
}

/// The decision on one call where it needs no write: [`Core::admit_fast`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FastAdmission {
    /// Closed, normal mode: go ahead.
    Admitted(Ticket),
    /// Open, and its time has not passed (or forced open): the retry-after in
    /// nanoseconds, `u64::MAX` when not known.
    Rejected(u64),
    /// Anything else: ask [`Core::admit`].
    Undecided,
}

/// The decision on one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Go ahead. `shadow_rejection` is true when metrics-only mode let through a call
    /// it would have rejected.
    Admitted {
        ticket: Ticket,
        shadow_rejection: bool,
    },
    /// Rejected; the circuit may let a probe through after this many nanoseconds
    /// (`None`: not known, e.g. forced open or half-open slots full).
    Rejected { retry_after_nanos: Option<u64> },
}

/// Fixed limits taken from a validated config.
#[derive(Debug, Clone)]
struct Limits {
    failure_threshold: u32,
    success_threshold: u32,
    half_open_max: u64,
    open_nanos: u64,
    backoff: Option<Backoff>,
    failure_rate: Option<f64>,
    slow_rate: Option<f64>,
    minimum_calls: u32,
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    multiplier: f64,
    max_nanos: u64,
    jitter: f64,
}

/// The shared state of one breaker.
#[derive(Debug)]
// In this order: a call reads `word`, a success `failures`, a rejection `open_until`
// (the first `HOT_END` bytes).
#[repr(C)]
pub(crate) struct Core {
    word: AtomicU64,
    /// Consecutive failures while closed, tagged with the generation they belong to.
    failures: AtomicU64,
    /// When an open circuit may let a probe through.
    open_until: AtomicU64,
    /// Consecutive probe successes while half-open, tagged likewise.
    successes: AtomicU64,
    /// Consecutive re-opens after failed probes (for backoff).
    reopens: AtomicU32,
    window: Option<Mutex<Window>>,
    /// Held by whoever opens the circuit or sets a mode, from its check of `word` to its
    /// swap of it: only the thread that makes the circuit open writes `open_until`, so a
    /// thread that lost its race can never overwrite a later period's deadline. Closed
    /// and half-open calls and open-state rejections never take it.
    opening: Mutex<()>,
    limits: Limits,
}

#[inline]
fn generation(word: u64) -> u64 {
    word >> GEN_SHIFT
}

#[inline]
fn probes(word: u64) -> u64 {
    (word & PROBE_MASK) >> PROBE_SHIFT
}

#[inline]
fn tag(generation: u64) -> u64 {
    (generation & COUNT_MASK) << 32
}

/// A word one generation on, in `state`, with no probes (or `probes` probes).
#[inline]
fn next_word(word: u64, state: CircuitBreakerState, mode: Mode, probes: u64) -> u64 {
    ((generation(word) + 1) << GEN_SHIFT) | (probes << PROBE_SHIFT) | mode.bits() | state.bits()
}

/// Increments a generation-tagged counter; a counter of an older generation restarts at
/// one. A counter already tagged with a newer generation is left alone (`None`): the
/// call is stale, and must not wipe the newer generation's count.
fn increment_tagged(counter: &AtomicU64, generation: u64) -> Option<u32> {
    let tag = tag(generation);
    let mut current = counter.load(Ordering::Relaxed);
    loop {
        let current_tag = current & !COUNT_MASK;
        let next = if current_tag == tag {
            tag | ((current & COUNT_MASK) + 1).min(COUNT_MASK)
        } else if ((current_tag >> 32) as u32).wrapping_sub(generation as u32) as i32 > 0 {
            return None;
        } else {
            tag | 1
        };
        match counter.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return Some((next & COUNT_MASK) as u32),
            Err(seen) => current = seen,
        }
    }
}

fn read_tagged(counter: &AtomicU64, generation: u64) -> u32 {
    let v = counter.load(Ordering::Relaxed);
    if v & !COUNT_MASK == tag(generation) {
        (v & COUNT_MASK) as u32
    } else {
        0
    }
}

impl Core {
    /// Where the fields every call may read end.
    #[cfg(all(test, not(resilient_loom)))]
    pub(crate) const HOT_END: usize =
        std::mem::offset_of!(Core, open_until) + size_of::<AtomicU64>();

    pub(crate) fn new(config: &CircuitBreakerConfig) -> Self {
        let window = config
            .sliding_window
            .filter(|_| {
                config.failure_rate_threshold.is_some() || config.slow_call_rate_threshold.is_some()
            })
            .map(|w| Mutex::new(Window::new(w)));
        Self {
            // generation 1, so that tags of a fresh counter (generation 0) never match
            word: AtomicU64::new(GEN_ONE),
            failures: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            open_until: AtomicU64::new(0),
            reopens: AtomicU32::new(0),
            window,
            opening: Mutex::new(()),
            limits: Limits {
                failure_threshold: config.failure_threshold,
                success_threshold: config.success_threshold,
                half_open_max: u64::from(config.half_open_max_calls),
                open_nanos: nanos(config.timeout),
                backoff: config.open_backoff.map(|b| Backoff {
                    multiplier: b.multiplier,
                    max_nanos: nanos(b.max),
                    jitter: b.jitter,
                }),
                failure_rate: config.failure_rate_threshold,
                slow_rate: config.slow_call_rate_threshold,
                minimum_calls: config.minimum_calls,
            },
        }
    }

    /// The current state (as last decided; an open circuit whose time has passed reports
    /// open until the next call turns it half-open).
    #[inline]
    pub(crate) fn state(&self) -> CircuitBreakerState {
        CircuitBreakerState::from_bits(self.word.load(Ordering::Acquire))
    }

    pub(crate) fn mode(&self) -> Mode {
        Mode::from_bits(self.word.load(Ordering::Acquire))
    }

    /// Consecutive failures counted in the current closed period.
    pub(crate) fn consecutive_failures(&self) -> u32 {
        let w = self.word.load(Ordering::Acquire);
        read_tagged(&self.failures, generation(w))
    }

    /// Probes in flight (half-open only).
    pub(crate) fn probes_in_flight(&self) -> u32 {
        probes(self.word.load(Ordering::Acquire)) as u32
    }

    /// Whether outcomes feed a sliding window (then every outcome takes the lock).
    pub(crate) fn has_window(&self) -> bool {
        self.window.is_some()
    }

    /// When an open circuit may let a probe through, in clock nanoseconds.
    pub(crate) fn open_until(&self) -> u64 {
        self.open_until.load(Ordering::Acquire)
    }

    /// The ticket of a call admitted by a closed circuit in normal mode, or `None` when
    /// the decision needs [`Core::admit_fast`] or [`Core::admit`].
    #[inline]
    pub(crate) fn admit_closed(&self) -> Option<Ticket> {
        let w = self.word.load(Ordering::Acquire);
        (w & FAST_MASK == 0).then_some(Ticket {
            generation: generation(w),
            kind: TicketKind::Closed,
        })
    }

    /// Decides the two common cases with one load of the word: a closed circuit in
    /// normal mode admits, and an open one rejects until its time has passed (`now` is
    /// read only then). Everything else, including every transition, is
    /// [`FastAdmission::Undecided`].
    #[inline]
    pub(crate) fn admit_fast(&self, now: impl FnOnce() -> u64) -> FastAdmission {
        let w = self.word.load(Ordering::Acquire);
        match w & FAST_MASK {
            0 => FastAdmission::Admitted(Ticket {
                generation: generation(w),
                kind: TicketKind::Closed,
            }),
            OPEN_NORMAL => {
                let t = now();
                // The deadline is written before the word says open (see `open_from`).
                let until = self.open_until.load(Ordering::Acquire);
                if t < until {
                    FastAdmission::Rejected(until - t)
                } else {
                    FastAdmission::Undecided
                }
            }
            OPEN_FORCED => FastAdmission::Rejected(u64::MAX),
            _ => FastAdmission::Undecided,
        }
    }

    /// Decides on one call. `now` is read only when the decision needs the time.
    #[inline]
    pub(crate) fn admit(&self, now: &impl Fn() -> u64) -> (Admission, Option<Transition>) {
        let w = self.word.load(Ordering::Acquire);
        if w & FAST_MASK == 0 {
            return (
                Admission::Admitted {
                    ticket: Ticket {
                        generation: generation(w),
                        kind: TicketKind::Closed,
                    },
                    shadow_rejection: false,
                },
                None,
            );
        }
        self.admit_slow(w, now)
    }

    #[cold]
    fn admit_slow(&self, mut w: u64, now: &impl Fn() -> u64) -> (Admission, Option<Transition>) {
        let shadow = |ticket_gen: u64| Admission::Admitted {
            ticket: Ticket {
                generation: ticket_gen,
                kind: TicketKind::Shadow,
            },
            shadow_rejection: true,
        };
        let mut time: Option<u64> = None;
        loop {
            let mode = Mode::from_bits(w);
            match mode {
                Mode::ForcedOpen => {
                    return (
                        Admission::Rejected {
                            retry_after_nanos: None,
                        },
                        None,
                    );
                }
                Mode::ForcedClosed => {
                    let ticket = Ticket {
                        generation: generation(w),
                        kind: TicketKind::Shadow,
                    };
                    return (
                        Admission::Admitted {
                            ticket,
                            shadow_rejection: false,
                        },
                        None,
                    );
                }
                Mode::Disabled => {
                    let ticket = Ticket {
                        generation: generation(w),
                        kind: TicketKind::Untracked,
                    };
                    return (
                        Admission::Admitted {
                            ticket,
                            shadow_rejection: false,
                        },
                        None,
                    );
                }
                Mode::Normal | Mode::MetricsOnly => {}
            }
            let metrics_only = mode == Mode::MetricsOnly;
            match CircuitBreakerState::from_bits(w) {
                CircuitBreakerState::Closed => {
                    let ticket = Ticket {
                        generation: generation(w),
                        kind: TicketKind::Closed,
                    };
                    return (
                        Admission::Admitted {
                            ticket,
                            shadow_rejection: false,
                        },
                        None,
                    );
                }
                CircuitBreakerState::Open => {
                    let t = *time.get_or_insert_with(now);
                    let until = self.open_until.load(Ordering::Acquire);
                    if t < until {
                        if metrics_only {
                            return (shadow(generation(w)), None);
                        }
                        return (
                            Admission::Rejected {
                                retry_after_nanos: Some(until - t),
                            },
                            None,
                        );
                    }
                    let next = next_word(w, CircuitBreakerState::HalfOpen, mode, 1);
                    match self
                        .word
                        .compare_exchange(w, next, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => {
                            let ticket = Ticket {
                                generation: generation(next),
                                kind: TicketKind::Probe,
                            };
                            let transition = Transition {
                                from: CircuitBreakerState::Open,
                                to: CircuitBreakerState::HalfOpen,
                                reason: TransitionReason::OpenTimeElapsed,
                                open_for_nanos: None,
                            };
                            return (
                                Admission::Admitted {
                                    ticket,
                                    shadow_rejection: false,
                                },
                                Some(transition),
                            );
                        }
                        Err(seen) => w = seen,
                    }
                }
                CircuitBreakerState::HalfOpen => {
                    if probes(w) >= self.limits.half_open_max {
                        if metrics_only {
                            return (shadow(generation(w)), None);
                        }
                        return (
                            Admission::Rejected {
                                retry_after_nanos: None,
                            },
                            None,
                        );
                    }
                    match self.word.compare_exchange(
                        w,
                        w + PROBE_ONE,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            let ticket = Ticket {
                                generation: generation(w),
                                kind: TicketKind::Probe,
                            };
                            return (
                                Admission::Admitted {
                                    ticket,
                                    shadow_rejection: false,
                                },
                                None,
                            );
                        }
                        Err(seen) => w = seen,
                    }
                }
            }
        }
    }

    /// Records the outcome of an admitted call. `slow` says it took longer than the
    /// configured slow-call duration.
    #[inline]
    pub(crate) fn record(
        &self,
        ticket: Ticket,
        outcome: Outcome,
        slow: bool,
        now: &impl Fn() -> u64,
    ) -> Option<Transition> {
        match ticket.kind {
            TicketKind::Closed => self.record_closed(ticket.generation, outcome, slow, now),
            TicketKind::Probe => self.record_probe(ticket.generation, outcome, now),
            TicketKind::Shadow | TicketKind::Untracked => None,
        }
    }

    /// Clears the failure streak of closed generation `generation_of_call`. Most of the
    /// time there is none: one shared read, no write. This is all a closed-state success
    /// does when the breaker has no window.
    #[inline]
    pub(crate) fn clear_failures(&self, generation_of_call: u64) {
        let mut v = self.failures.load(Ordering::Relaxed);
        // A failure counted meanwhile makes the exchange fail; try again, or the success
        // would be lost and the streak would run on across it.
        while v & COUNT_MASK != 0 && v & !COUNT_MASK == tag(generation_of_call) {
            match self.failures.compare_exchange_weak(
                v,
                tag(generation_of_call),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(current) => v = current,
            }
        }
    }

    #[inline]
    fn record_closed(
        &self,
        generation_of_call: u64,
        outcome: Outcome,
        slow: bool,
        now: &impl Fn() -> u64,
    ) -> Option<Transition> {
        if self.window.is_none() {
            match outcome {
                Outcome::Success => {
                    // Fast path: a success only has to clear a failure streak, and most of
                    // the time there is none, so this is one shared read and no write.
                    self.clear_failures(generation_of_call);
                    return None;
                }
                Outcome::Ignored => return None,
                Outcome::Failure => {}
            }
        }
        self.record_closed_slow(generation_of_call, outcome, slow, now)
    }

    #[cold]
    fn record_closed_slow(
        &self,
        generation_of_call: u64,
        outcome: Outcome,
        slow: bool,
        now: &impl Fn() -> u64,
    ) -> Option<Transition> {
        if outcome == Outcome::Ignored {
            return None;
        }
        let w = self.word.load(Ordering::Acquire);
        if generation(w) != generation_of_call
            || CircuitBreakerState::from_bits(w) != CircuitBreakerState::Closed
        {
            return None; // stale: the circuit moved on while this call ran
        }
        let mut reason = None;
        match outcome {
            Outcome::Success => self.clear_failures(generation_of_call),
            Outcome::Failure => {
                let n = increment_tagged(&self.failures, generation_of_call)?;
                if n >= self.limits.failure_threshold {
                    reason = Some(TransitionReason::ConsecutiveFailures(n));
                }
            }
            Outcome::Ignored => {}
        }
        if let Some(window) = &self.window {
            let mut window = lock(window);
            window.record(generation_of_call, outcome == Outcome::Failure, slow, now);
            if reason.is_none() {
                reason = window.verdict(
                    self.limits.failure_rate,
                    self.limits.slow_rate,
                    self.limits.minimum_calls,
                );
            }
        }
        let reason = reason?;
        self.open_from(CircuitBreakerState::Closed, generation_of_call, reason, now)
    }

    fn record_probe(
        &self,
        generation_of_call: u64,
        outcome: Outcome,
        now: &impl Fn() -> u64,
    ) -> Option<Transition> {
        match outcome {
            Outcome::Ignored => {
                self.release(generation_of_call);
                None
            }
            Outcome::Failure => self.open_from(
                CircuitBreakerState::HalfOpen,
                generation_of_call,
                TransitionReason::ProbeFailed,
                now,
            ),
            Outcome::Success => {
                let w = self.word.load(Ordering::Acquire);
                if generation(w) != generation_of_call
                    || CircuitBreakerState::from_bits(w) != CircuitBreakerState::HalfOpen
                {
                    return None; // a probe of an earlier half-open period
                }
                let n = increment_tagged(&self.successes, generation_of_call)?;
                if n < self.limits.success_threshold {
                    self.release(generation_of_call);
                    return None;
                }
                let mut w = self.word.load(Ordering::Acquire);
                loop {
                    if generation(w) != generation_of_call
                        || CircuitBreakerState::from_bits(w) != CircuitBreakerState::HalfOpen
                    {
                        return None;
                    }
                    let next = next_word(w, CircuitBreakerState::Closed, Mode::from_bits(w), 0);
                    match self
                        .word
                        .compare_exchange(w, next, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => {
                            self.reopens.store(0, Ordering::Relaxed);
                            return Some(Transition {
                                from: CircuitBreakerState::HalfOpen,
                                to: CircuitBreakerState::Closed,
                                reason: TransitionReason::ProbesSucceeded(n),
                                open_for_nanos: None,
                            });
                        }
                        Err(seen) => w = seen,
                    }
                }
            }
        }
    }

    /// Frees a probe slot without a verdict (the probe was dropped, or its outcome is
    /// ignored). A slot of an older generation is already gone.
    pub(crate) fn release(&self, generation_of_call: u64) {
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            if generation(w) != generation_of_call
                || CircuitBreakerState::from_bits(w) != CircuitBreakerState::HalfOpen
                || probes(w) == 0
            {
                return;
            }
            match self
                .word
                .compare_exchange(w, w - PROBE_ONE, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(seen) => w = seen,
            }
        }
    }

    /// Opens the circuit from `from` if it is still in generation `generation_of_call`.
    fn open_from(
        &self,
        from: CircuitBreakerState,
        generation_of_call: u64,
        reason: TransitionReason,
        now: &impl Fn() -> u64,
    ) -> Option<Transition> {
        let _opening = lock(&self.opening);
        let reopens = if from == CircuitBreakerState::HalfOpen {
            self.reopens.load(Ordering::Relaxed).saturating_add(1)
        } else {
            0
        };
        let open_for = self.open_duration(reopens);
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            if generation(w) != generation_of_call || CircuitBreakerState::from_bits(w) != from {
                return None;
            }
            // Written before the CAS publishes the open state, so any thread that sees
            // "open" sees this deadline. Under `opening`, nothing else can open the
            // circuit meanwhile: should the CAS fail (a probe slot taken, a probe's
            // verdict), the circuit is not open and this value is never read.
            self.open_until
                .store(now().saturating_add(open_for), Ordering::Release);
            let next = next_word(w, CircuitBreakerState::Open, Mode::from_bits(w), 0);
            match self
                .word
                .compare_exchange(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if from == CircuitBreakerState::HalfOpen {
                        self.reopens.fetch_add(1, Ordering::Relaxed);
                    }
                    return Some(Transition {
                        from,
                        to: CircuitBreakerState::Open,
                        reason,
                        open_for_nanos: Some(open_for),
                    });
                }
                Err(seen) => w = seen,
            }
        }
    }

    /// How long the next open period lasts after `reopens` consecutive failed probes.
    fn open_duration(&self, reopens: u32) -> u64 {
        let base = self.limits.open_nanos;
        let Some(b) = self.limits.backoff else {
            return base;
        };
        if reopens == 0 {
            return base;
        }
        let grown = (base as f64) * b.multiplier.powi(reopens.min(64) as i32);
        let capped = grown.min(b.max_nanos as f64);
        let jittered = capped * (1.0 - b.jitter * fastrand::f64());
        (jittered as u64).max(1)
    }

    /// Moves to `mode`, and to `state` in a new generation.
    pub(crate) fn set_mode(
        &self,
        mode: Mode,
        state: CircuitBreakerState,
        now: &impl Fn() -> u64,
    ) -> Option<Transition> {
        let _opening = lock(&self.opening);
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            if mode != Mode::Normal && Mode::from_bits(w) == mode {
                // Already there: an override set again (a config reload) keeps its state
                // (a shadow state machine's counts, a forced open's time).
                return None;
            }
            let next = next_word(w, state, mode, 0);
            if state == CircuitBreakerState::Open {
                self.open_until.store(
                    now().saturating_add(self.limits.open_nanos),
                    Ordering::Release,
                );
            }
            match self
                .word
                .compare_exchange(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(seen) => w = seen,
            }
        }
        if mode == Mode::Normal {
            self.reopens.store(0, Ordering::Relaxed);
        }
        let from = CircuitBreakerState::from_bits(w);
        let old_mode = Mode::from_bits(w);
        if from == state && old_mode == mode {
            return None;
        }
        Some(Transition {
            from,
            to: state,
            reason: if mode == Mode::Normal && state == CircuitBreakerState::Closed {
                TransitionReason::Reset
            } else {
                TransitionReason::ModeChanged(mode)
            },
            open_for_nanos: (state == CircuitBreakerState::Open).then_some(self.limits.open_nanos),
        })
    }
}

#[cfg(all(test, not(resilient_loom)))]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn config(f: u32, s: u32, open_secs: u64) -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            failure_threshold: f,
            success_threshold: s,
            timeout: std::time::Duration::from_secs(open_secs),
            ..Default::default()
        }
    }

    fn admit(core: &Core, t: u64) -> Admission {
        core.admit(&|| t).0
    }

    fn ticket(a: Admission) -> Ticket {
        match a {
            Admission::Admitted { ticket, .. } => ticket,
            Admission::Rejected { .. } => panic!("rejected"),
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn closed_path_does_not_read_the_clock() {
        let core = Core::new(&config(3, 1, 1));
        let reads = Cell::new(0);
        let now = || {
            reads.set(reads.get() + 1);
            0
        };
        for _ in 0..10 {
            let (a, _) = core.admit(&now);
            core.record(ticket(a), Outcome::Success, false, &now);
        }
        let (a, _) = core.admit(&now);
        core.record(ticket(a), Outcome::Failure, false, &now);
        assert_eq!(reads.get(), 0);
    }

    #[test]
    fn fast_admission_decides_closed_and_open_and_never_transitions() {
        let core = Core::new(&config(1, 1, 10));
        let reads = Cell::new(0);
        let now = || {
            reads.set(reads.get() + 1);
            S
        };
        assert!(matches!(
            core.admit_fast(now),
            FastAdmission::Admitted(Ticket {
                kind: TicketKind::Closed,
                ..
            })
        ));
        assert_eq!(reads.get(), 0, "the closed path read the clock");
        let t = ticket(admit(&core, S));
        assert!(core.record(t, Outcome::Failure, false, &|| S).is_some());
        // open until 11 s
        assert_eq!(core.admit_fast(|| 4 * S), FastAdmission::Rejected(7 * S));
        assert_eq!(core.admit_fast(|| 11 * S), FastAdmission::Undecided);
        assert_eq!(core.state(), CircuitBreakerState::Open);
        // shadow mode must report what it would reject: never decided here
        core.set_mode(Mode::MetricsOnly, CircuitBreakerState::Open, &|| S);
        assert_eq!(core.admit_fast(|| S), FastAdmission::Undecided);
        core.set_mode(Mode::ForcedOpen, CircuitBreakerState::Open, &|| S);
        assert_eq!(
            core.admit_fast(|| panic!("forced open read the clock")),
            FastAdmission::Rejected(u64::MAX)
        );
        core.set_mode(Mode::ForcedClosed, CircuitBreakerState::Closed, &|| S);
        assert_eq!(core.admit_fast(|| S), FastAdmission::Undecided);
    }

    #[test]
    fn stale_results_are_discarded() {
        let core = Core::new(&config(1, 1, 10));
        let old = ticket(admit(&core, S));
        let t = ticket(admit(&core, S));
        assert!(core.record(t, Outcome::Failure, false, &|| S).is_some());
        assert_eq!(core.state(), CircuitBreakerState::Open);
        // a success from before the circuit opened neither closes it nor counts
        assert!(core.record(old, Outcome::Success, false, &|| S).is_none());
        assert_eq!(core.state(), CircuitBreakerState::Open);
        // after the open time, a probe; a stale failure from the old closed period is dropped
        let probe = ticket(admit(&core, 20 * S));
        assert_eq!(probe.kind, TicketKind::Probe);
        assert!(
            core.record(old, Outcome::Failure, false, &|| 20 * S)
                .is_none()
        );
        assert_eq!(core.state(), CircuitBreakerState::HalfOpen);
        let closed = core
            .record(probe, Outcome::Success, false, &|| 20 * S)
            .unwrap();
        assert_eq!(closed.to, CircuitBreakerState::Closed);
    }

    #[test]
    fn tagged_counter_restarts_on_a_new_generation() {
        let c = AtomicU64::new(0);
        assert_eq!(increment_tagged(&c, 7), Some(1));
        assert_eq!(increment_tagged(&c, 7), Some(2));
        assert_eq!(read_tagged(&c, 7), 2);
        assert_eq!(read_tagged(&c, 8), 0);
        assert_eq!(increment_tagged(&c, 8), Some(1));
        // a stale increment does not wipe the newer generation's count
        assert_eq!(increment_tagged(&c, 7), None);
        assert_eq!(read_tagged(&c, 8), 1);
    }

    #[test]
    fn backoff_grows_and_caps() {
        let mut cfg = config(1, 1, 10);
        cfg.open_backoff = Some(crate::OpenBackoff {
            multiplier: 2.0,
            max: std::time::Duration::from_secs(35),
            jitter: 0.0,
        });
        let core = Core::new(&cfg);
        assert_eq!(core.open_duration(0), 10 * S);
        assert_eq!(core.open_duration(1), 20 * S);
        assert_eq!(core.open_duration(2), 35 * S);
        assert_eq!(core.open_duration(30), 35 * S);
    }
}
