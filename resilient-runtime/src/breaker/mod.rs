//! The circuit breaker: a cheap, cloneable handle over the state machine in `state.rs`.

pub(crate) mod config;
pub(crate) mod error;
mod future;
pub(crate) mod state;
mod window;

use std::future::Future;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use config::{CircuitBreakerConfig, ConfigError, Environment, OpenBackoff, SlidingWindow};
pub use error::{BreakerOpen, CircuitBreakerError};
pub use state::{CircuitBreakerState, Mode, TransitionReason};

use crate::classify::{Classifier, ErrorIsFailure, Outcome};
use crate::clock::{Clock, ClockSource, nanos};
use crate::observe::{
    BreakerLabels, FallbackEvent, Observer, OutcomeEvent, RejectionEvent, TransitionEvent,
    trace_transition,
};
use error::{LastError, set_last_error};
use future::CallFuture;
use state::{Admission, Core, FastAdmission, Ticket, TicketKind, Transition};

/// A circuit breaker. Clones share one state; it is `Send + Sync`.
///
/// ```
/// use resilient_runtime::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerError, CircuitBreakerState};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cb = CircuitBreaker::new(CircuitBreakerConfig {
///     failure_threshold: 2,
///     success_threshold: 3,
///     timeout: Duration::from_secs(1), // how long the circuit stays open
///     ..Default::default()
/// });
/// for _ in 0..2 {
///     let r: Result<(), CircuitBreakerError<&str>> =
///         cb.call(|| async { Err::<(), _>("Service error") }).await;
///     assert!(matches!(r, Err(CircuitBreakerError::Inner("Service error"))));
/// }
/// assert_eq!(cb.state(), CircuitBreakerState::Open);
/// let r = cb.call(|| async { Ok::<(), &str>(()) }).await;
/// assert!(matches!(r, Err(CircuitBreakerError::Open))); // rejected without calling
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

// Laid out by hand, on a cache line of its own: what every call reads (the flags, then
// the state machine's word and failure streak, see `Core`) comes first, so that a call
// touches one line of the breaker, wherever the allocator put it.
#[repr(C, align(64))]
pub(crate) struct Inner {
    /// Measure call durations: an observer wants them, or slow calls are counted.
    timed: bool,
    /// A closed-state success only clears the failure streak: nothing is timed, no
    /// observer is told, no window counts it.
    quiet_success: bool,
    /// A call needs no timing and no timer: `!timed` and no `call_timeout`.
    plain_call: bool,
    /// `observers` is not empty.
    observed: bool,
    /// Read by a rejection.
    clock: ClockSource,
    core: Core,
    observers: Box<[Arc<dyn Observer>]>,
    slow_nanos: Option<u64>,
    /// Process-unique, for naming the breaker in errors converted later.
    id: u64,
    name: Arc<str>,
    service: Arc<str>,
    rpc: Arc<str>,
    config: CircuitBreakerConfig,
}

impl Drop for Inner {
    fn drop(&mut self) {
        crate::registry::unregister(self.id);
    }
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("state", &self.state())
            .field("mode", &self.mode())
            .field("consecutive_failures", &self.consecutive_failures())
            .finish()
    }
}

/// Builds a [`CircuitBreaker`] with a name, labels, a clock and observers.
///
/// ```
/// use resilient_runtime::{CircuitBreaker, CircuitBreakerConfig, FakeClock};
///
/// let clock = FakeClock::new();
/// let cb = CircuitBreaker::builder(CircuitBreakerConfig::default())
///     .name("auth-service")
///     .clock(clock.clone())
///     .build()
///     .expect("valid config");
/// assert_eq!(cb.name(), "auth-service");
/// ```
pub struct CircuitBreakerBuilder {
    config: CircuitBreakerConfig,
    name: Option<String>,
    service: String,
    rpc: String,
    clock: ClockSource,
    observers: Vec<Arc<dyn Observer>>,
}

impl CircuitBreakerBuilder {
    /// The name used in errors, events and metrics. Default: `"circuit-breaker"`, or
    /// `service/rpc` when labels are set.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The service and RPC this breaker protects, for metrics labels and the dashboard.
    pub fn labels(mut self, service: impl Into<String>, rpc: impl Into<String>) -> Self {
        self.service = service.into();
        self.rpc = rpc.into();
        self
    }

    /// The time source. Default: the system's coarse monotonic clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = ClockSource::Custom(Arc::new(clock));
        self
    }

    /// Adds an observer (any number; called in the order added). Observers registered
    /// process-wide with [`crate::registry::add_global_observer`] are added too.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Validates the config and builds the breaker.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        self.config.validate()?;
        Ok(self.build_unchecked())
    }

    fn build_unchecked(mut self) -> CircuitBreaker {
        let name: Arc<str> = match self.name {
            Some(n) => n.into(),
            None if !self.service.is_empty() => format!("{}/{}", self.service, self.rpc).into(),
            None => "circuit-breaker".into(),
        };
        self.observers.extend(crate::registry::global_observers());
        let timed = self.observers.iter().any(|o| o.wants_latency())
            || self.config.slow_call_duration.is_some();
        let core = Core::new(&self.config);
        let quiet_success = !timed && self.observers.is_empty() && !core.has_window();
        let plain_call = !timed && self.config.call_timeout.is_none();
        let inner = Arc::new(Inner {
            core,
            id: crate::registry::next_id(),
            name,
            service: self.service.into(),
            rpc: self.rpc.into(),
            slow_nanos: self
                .config
                .slow_call_duration
                .filter(|_| self.config.slow_call_rate_threshold.is_some())
                .map(nanos),
            config: self.config,
            clock: self.clock,
            observed: !self.observers.is_empty(),
            observers: self.observers.into_boxed_slice(),
            timed,
            quiet_success,
            plain_call,
        });
        crate::registry::register(&inner);
        CircuitBreaker { inner }
    }
}

impl CircuitBreaker {
    /// A breaker with `config`.
    ///
    /// A config that fails [`CircuitBreakerConfig::validate`] does not panic: each wrong
    /// field is replaced by its nearest valid value and the problem is logged with
    /// `tracing::error!`. Use [`CircuitBreaker::try_new`] to get the error instead.
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self::builder(config).build_lenient()
    }

    /// A breaker with a name used in errors, events and metrics.
    pub fn named(name: impl Into<String>, config: CircuitBreakerConfig) -> Self {
        Self::builder(config).name(name).build_lenient()
    }

    /// A breaker with `config`, or the error naming the first wrong field.
    pub fn try_new(config: CircuitBreakerConfig) -> Result<Self, ConfigError> {
        Self::builder(config).build()
    }

    /// A builder, for a name, labels, a clock or observers.
    pub fn builder(config: CircuitBreakerConfig) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            config,
            name: None,
            service: String::new(),
            rpc: String::new(),
            clock: ClockSource::System,
            observers: Vec::new(),
        }
    }

    /// The current state. An open circuit whose open time has passed still reports
    /// `Open` until the next call turns it half-open (no timer runs in the background).
    #[inline]
    pub fn state(&self) -> CircuitBreakerState {
        self.inner.core.state()
    }

    /// Who decides: the state machine, or an override.
    pub fn mode(&self) -> Mode {
        self.inner.core.mode()
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The service label (empty when not set).
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// The RPC label (empty when not set).
    pub fn rpc(&self) -> &str {
        &self.inner.rpc
    }

    /// The configuration in force (after repair, for a breaker built with `new`).
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.inner.config
    }

    /// Consecutive failures in the current closed period.
    pub fn consecutive_failures(&self) -> u32 {
        self.inner.core.consecutive_failures()
    }

    /// Probes in flight while half-open.
    pub fn probes_in_flight(&self) -> u32 {
        self.inner.core.probes_in_flight()
    }

    /// When an open circuit lets a probe through (zero if it would now); `None` unless
    /// the state is open, and when it is [forced open](Self::force_open), which lets no
    /// probe through until it is reset.
    pub fn retry_after(&self) -> Option<Duration> {
        if self.state() != CircuitBreakerState::Open || self.mode() == Mode::ForcedOpen {
            return None;
        }
        let now = self.inner.clock.now_nanos();
        Some(Duration::from_nanos(
            self.inner.core.open_until().saturating_sub(now),
        ))
    }

    /// Whether two handles share one breaker.
    pub fn ptr_eq(&self, other: &CircuitBreaker) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The name, shared (for fallback causes).
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn name_arc(&self) -> Arc<str> {
        self.inner.name.clone()
    }

    /// Its observers, for events raised outside the breaker (gRPC statuses).
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn observers(&self) -> &[Arc<dyn Observer>] {
        &self.inner.observers
    }

    /// Its labels, as observers see them.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn labels(&self) -> BreakerLabels<'_> {
        self.inner.labels()
    }

    /// Tells observers that a fallback was served for a call through this breaker.
    pub fn notify_fallback(&self, cause: &'static str) {
        let event = FallbackEvent {
            breaker: self.inner.labels(),
            cause,
        };
        for o in self.inner.observers.iter() {
            o.on_fallback(&event);
        }
    }

    /// Tells observers that a call through this breaker is retried.
    pub fn notify_retry(&self, attempt: u32, backoff: Duration) {
        self.notify_attempt(attempt, backoff, false);
    }

    /// Tells observers that a hedged attempt (number `attempt`) of a call through this
    /// breaker is sent after `waited` with no answer.
    pub fn notify_hedge(&self, attempt: u32, waited: Duration) {
        self.notify_attempt(attempt, waited, true);
    }

    fn notify_attempt(&self, attempt: u32, backoff: Duration, hedged: bool) {
        let event = crate::observe::RetryEvent {
            breaker: self.inner.labels(),
            attempt,
            backoff,
            hedged,
        };
        for o in self.inner.observers.iter() {
            o.on_retry(&event);
        }
    }

    /// Tells observers that a full bulkhead rejected a call to this breaker's RPC.
    pub fn notify_bulkhead_rejection(&self, bulkhead: &str) {
        let event = crate::observe::BulkheadEvent {
            breaker: self.inner.labels(),
            bulkhead,
        };
        for o in self.inner.observers.iter() {
            o.on_bulkhead_rejection(&event);
        }
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Runs `f` through the breaker: every `Err` counts as a failure, every `Ok` as a
    /// success. An open circuit returns [`CircuitBreakerError::Open`] at once, without
    /// calling `f`; with `call_timeout` set, a call past its deadline returns
    /// [`CircuitBreakerError::Timeout`] and counts as a failure. A call whose future is
    /// dropped records nothing (and frees its half-open probe slot).
    ///
    /// Nothing happens until the returned future is first polled: that poll asks the
    /// breaker, calls `f` if admitted and polls its future at once.
    #[inline]
    pub fn call<T, E, F, Fut>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<T, CircuitBreakerError<E>>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        CallFuture::new(&self.inner, &ErrorIsFailure, f)
    }

    /// Like [`call`](Self::call), with `classifier` deciding what counts as a failure.
    #[inline]
    pub fn call_with<T, E, C, F, Fut>(
        &self,
        classifier: &C,
        f: F,
    ) -> impl Future<Output = Result<T, CircuitBreakerError<E>>>
    where
        C: Classifier<T, E> + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        CallFuture::new(&self.inner, classifier, f)
    }

    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn remember_open(&self, retry_after: Option<Duration>) {
        self.inner
            .remember_open(retry_after.map_or(u64::MAX, nanos));
    }

    /// Asks to make one call. The [`Permit`] records the call's outcome; dropping it
    /// without recording frees the slot and records nothing.
    ///
    /// For driving calls by hand (streams, callbacks), where `call` does not fit.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, BreakerOpen> {
        self.inner.acquire().map_err(|nanos| BreakerOpen {
            retry_after: from_nanos(nanos),
        })
    }

    /// Like [`try_acquire`](Self::try_acquire), with a permit that owns a handle to the
    /// breaker, so that it can live in a stream or another task.
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, BreakerOpen> {
        let permit = self.try_acquire()?;
        let (ticket, started) = (permit.ticket, permit.started);
        std::mem::forget(permit);
        Ok(OwnedPermit {
            breaker: self.clone(),
            ticket,
            started,
            done: false,
        })
    }

    /// Rejects every call until [`reset`](Self::reset) (an operator's override).
    pub fn force_open(&self) {
        self.set_mode(Mode::ForcedOpen, CircuitBreakerState::Open);
    }

    /// Lets every call through and never changes state; outcomes still reach observers.
    pub fn force_closed(&self) {
        self.set_mode(Mode::ForcedClosed, CircuitBreakerState::Closed);
    }

    /// Lets every call through and records nothing.
    pub fn disable(&self) {
        self.set_mode(Mode::Disabled, CircuitBreakerState::Closed);
    }

    /// Shadow mode: the state machine runs and reports what it would do (rejections are
    /// reported with `shadow: true`), but no call is rejected.
    pub fn metrics_only(&self) {
        self.set_mode(Mode::MetricsOnly, CircuitBreakerState::Closed);
    }

    /// Back to normal operation, closed, with every count cleared.
    ///
    /// The overrides above change nothing when the breaker is already in their mode (a
    /// configuration applied again keeps a shadow state machine's counts); `reset`
    /// always clears.
    pub fn reset(&self) {
        self.set_mode(Mode::Normal, CircuitBreakerState::Closed);
    }

    fn set_mode(&self, mode: Mode, state: CircuitBreakerState) {
        let inner = &*self.inner;
        if let Some(t) = inner
            .core
            .set_mode(mode, state, &|| inner.clock.now_nanos())
        {
            inner.emit_transition(&t);
        } else {
            tracing::info!(breaker = %inner.name, ?mode, "circuit breaker mode set");
        }
    }
}

impl CircuitBreakerBuilder {
    fn build_lenient(self) -> CircuitBreaker {
        match self.config.validate() {
            Ok(()) => self.build_unchecked(),
            Err(err) => {
                tracing::error!(
                    breaker = self.name.as_deref().unwrap_or("circuit-breaker"),
                    error = %err,
                    "invalid circuit breaker config; using the nearest valid values"
                );
                let config = self.config.sanitized();
                CircuitBreakerBuilder { config, ..self }.build_unchecked()
            }
        }
    }
}

/// What [`Inner::admit_call`] decided.
enum CallAdmission<'a> {
    /// Closed, and the call needs no timing and no timer.
    Plain(Permit<'a>),
    /// Open: the retry-after in nanoseconds (`u64::MAX`: not known).
    Rejected(u64),
    /// Anything else: ask [`Inner::acquire_other`].
    Other,
}

impl Inner {
    /// Admits a call, or rejects it with the retry-after in nanoseconds (`u64::MAX`:
    /// not known). Inlined, it is the closed, untimed path only: two loads.
    #[inline]
    fn acquire(&self) -> Result<Permit<'_>, u64> {
        if !self.timed
            && let Some(ticket) = self.core.admit_closed()
        {
            return Ok(Permit {
                inner: self,
                ticket,
                started: None,
            });
        }
        self.acquire_other()
    }

    /// The decision for [`CircuitBreaker::call`], inlined into its `poll`: one load of
    /// the word admits a closed call with nothing to time, and rejects a call to an
    /// open circuit whose time has not passed when no observer is to be told (reading
    /// the coarse clock and the open deadline).
    #[inline(always)]
    fn admit_call(&self) -> CallAdmission<'_> {
        match self.core.admit_fast(|| self.clock.now_nanos()) {
            FastAdmission::Admitted(ticket) if self.plain_call => CallAdmission::Plain(Permit {
                inner: self,
                ticket,
                started: None,
            }),
            FastAdmission::Rejected(retry_after) if !self.observed => {
                CallAdmission::Rejected(retry_after)
            }
            _ => CallAdmission::Other,
        }
    }

    /// Every admission but the closed, untimed one. An open circuit costs one more load
    /// and a read of the coarse clock.
    #[inline(never)]
    fn acquire_other(&self) -> Result<Permit<'_>, u64> {
        match self.core.admit_fast(|| self.clock.now_nanos()) {
            FastAdmission::Admitted(ticket) => Ok(self.permit(ticket)),
            FastAdmission::Rejected(retry_after) => {
                if self.observed {
                    self.emit_rejection(from_nanos(retry_after), false);
                }
                Err(retry_after)
            }
            FastAdmission::Undecided => self.acquire_slow(),
        }
    }

    fn permit(&self, ticket: Ticket) -> Permit<'_> {
        Permit {
            inner: self,
            ticket,
            started: self.timed.then(Instant::now),
        }
    }

    #[cold]
    #[inline(never)]
    fn acquire_slow(&self) -> Result<Permit<'_>, u64> {
        let (admission, transition) = self.core.admit(&|| self.clock.now_nanos());
        if let Some(t) = transition {
            self.emit_transition(&t);
        }
        match admission {
            Admission::Admitted {
                ticket,
                shadow_rejection,
            } => {
                if shadow_rejection {
                    self.emit_rejection(None, true);
                }
                Ok(self.permit(ticket))
            }
            Admission::Rejected { retry_after_nanos } => {
                if self.observed {
                    self.emit_rejection(retry_after_nanos.map(Duration::from_nanos), false);
                }
                Err(retry_after_nanos.unwrap_or(u64::MAX))
            }
        }
    }

    /// Notes on this thread that this breaker rejected a call, for a `Status` made from
    /// the error right after (`u64::MAX`: retry-after not known).
    #[inline]
    fn remember_open(&self, retry_after_nanos: u64) {
        set_last_error(LastError {
            breaker: self.id,
            nanos: retry_after_nanos,
            open: true,
        });
    }

    /// Notes on this thread that a call through this breaker passed its deadline.
    fn remember_timeout(&self, deadline: Duration) {
        set_last_error(LastError {
            breaker: self.id,
            nanos: nanos(deadline),
            open: false,
        });
    }

    fn labels(&self) -> BreakerLabels<'_> {
        BreakerLabels {
            name: &self.name,
            service: &self.service,
            rpc: &self.rpc,
        }
    }

    #[cold]
    fn emit_transition(&self, t: &Transition) {
        let event = TransitionEvent {
            breaker: self.labels(),
            from: t.from,
            to: t.to,
            reason: t.reason,
            open_for: t.open_for_nanos.map(Duration::from_nanos),
        };
        trace_transition(&event);
        for o in self.observers.iter() {
            o.on_transition(&event);
        }
    }

    #[cold]
    #[inline(never)]
    fn emit_rejection(&self, retry_after: Option<Duration>, shadow: bool) {
        let event = RejectionEvent {
            breaker: self.labels(),
            retry_after,
            shadow,
        };
        for o in self.observers.iter() {
            o.on_rejection(&event);
        }
    }

    #[inline]
    fn finish(&self, ticket: Ticket, outcome: Outcome, started: Option<Instant>, timed_out: bool) {
        let latency = started.map(|s| s.elapsed());
        let slow = match (self.slow_nanos, latency) {
            (Some(limit), Some(l)) => nanos(l) > limit,
            _ => false,
        };
        let transition = self
            .core
            .record(ticket, outcome, slow, &|| self.clock.now_nanos());
        if self.observed && ticket.kind != TicketKind::Untracked {
            let event = OutcomeEvent {
                breaker: self.labels(),
                outcome,
                latency,
                timed_out,
                slow,
            };
            for o in self.observers.iter() {
                o.on_outcome(&event);
            }
        }
        if let Some(t) = transition {
            self.emit_transition(&t);
        }
    }

    #[inline(never)]
    fn finish_cold(&self, ticket: Ticket, outcome: Outcome, started: Option<Instant>) {
        self.finish(ticket, outcome, started, false);
    }

    #[inline]
    fn abandon(&self, ticket: Ticket) {
        if ticket.kind == TicketKind::Probe {
            self.core.release(ticket.generation);
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

/// `nanos` as a retry-after, `u64::MAX` meaning not known.
fn from_nanos(nanos: u64) -> Option<Duration> {
    (nanos != u64::MAX).then(|| Duration::from_nanos(nanos))
}

/// Permission to make one call. Record its outcome with [`record`](Permit::record) (or
/// `success` / `failure` / `timed_out`); dropping it unrecorded records nothing and frees
/// a half-open probe slot, so a cancelled probe can never leave the breaker stuck.
#[must_use = "a permit records nothing unless its outcome is recorded"]
pub struct Permit<'a> {
    inner: &'a Inner,
    ticket: Ticket,
    started: Option<Instant>,
}

impl Permit<'_> {
    /// Records the outcome.
    #[inline]
    pub fn record(self, outcome: Outcome) {
        // Recording consumes the permit without running its `Drop` (which abandons it):
        // no flag to set and read back.
        let Permit {
            inner,
            ticket,
            started,
        } = *ManuallyDrop::new(self);
        // The common case, kept small enough to inline: a closed-state success with no
        // observer to tell and no duration to measure only clears a failure streak.
        if outcome == Outcome::Success && ticket.kind == TicketKind::Closed && inner.quiet_success {
            inner.core.clear_failures(ticket.generation);
            return;
        }
        inner.finish_cold(ticket, outcome, started);
    }

    /// Records a success.
    pub fn success(self) {
        self.record(Outcome::Success)
    }

    /// Records a failure.
    pub fn failure(self) {
        self.record(Outcome::Failure)
    }

    /// Records a call that hit its deadline (a failure).
    pub fn timed_out(self) {
        let Permit {
            inner,
            ticket,
            started,
        } = *ManuallyDrop::new(self);
        inner.finish(ticket, Outcome::Failure, started, true);
    }

    /// True when this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.ticket.kind == TicketKind::Probe
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.inner.abandon(self.ticket);
    }
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.inner.name)
            .field("probe", &self.is_probe())
            .finish()
    }
}

/// A [`Permit`] that owns a handle to its breaker (`'static`).
#[must_use = "a permit records nothing unless its outcome is recorded"]
pub struct OwnedPermit {
    breaker: CircuitBreaker,
    ticket: Ticket,
    started: Option<Instant>,
    done: bool,
}

impl OwnedPermit {
    /// Records the outcome.
    pub fn record(mut self, outcome: Outcome) {
        self.done = true;
        self.breaker
            .inner
            .finish(self.ticket, outcome, self.started, false);
    }

    /// Records a call that hit its deadline (a failure).
    pub fn timed_out(mut self) {
        self.done = true;
        self.breaker
            .inner
            .finish(self.ticket, Outcome::Failure, self.started, true);
    }

    /// True when this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.ticket.kind == TicketKind::Probe
    }

    /// The breaker this permit belongs to.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.inner.abandon(self.ticket);
        }
    }
}

impl std::fmt::Debug for OwnedPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("breaker", &self.breaker.inner.name)
            .field("probe", &self.is_probe())
            .finish()
    }
}

#[cfg(all(test, not(resilient_loom)))]
mod layout {
    use std::mem::offset_of;

    /// What a call reads of its breaker (the flags, the clock a rejection reads, the
    /// state word, the failure streak and the open deadline) fits one 64-byte line.
    #[test]
    fn a_call_reads_one_cache_line_of_its_breaker() {
        assert_eq!(align_of::<super::Inner>(), 64);
        let hot_end = offset_of!(super::Inner, core) + super::state::Core::HOT_END;
        assert!(hot_end <= 64, "the hot fields end at byte {hot_end}");
        for flag in [
            offset_of!(super::Inner, timed),
            offset_of!(super::Inner, quiet_success),
            offset_of!(super::Inner, plain_call),
            offset_of!(super::Inner, observed),
            offset_of!(super::Inner, clock),
        ] {
            assert!(flag < offset_of!(super::Inner, core));
        }
    }
}
