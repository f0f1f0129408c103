//! Prometheus metrics for every breaker: an [`Observer`] that counts, and a collector
//! that reads the live breakers' state at scrape time.
//!
//! ```
//! use prometheus_client::registry::Registry;
//! use resilient_runtime::metrics::Metrics;
//!
//! // Once, at start-up, before the clients are built: every breaker built from now on
//! // reports to it.
//! let metrics = Metrics::install_global();
//!
//! // Serve it yourself, merged into your own registry...
//! let mut registry = Registry::default();
//! metrics.register(&mut registry);
//! // ...or as text (the Prometheus text format, version 0.0.4).
//! let text = metrics.encode();
//! # let _ = text;
//! ```
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `circuit_breaker_state` | gauge | service, rpc, state | 1 for the current state (`closed`, `open`, `half_open`), 0 for the other two |
//! | `circuit_breaker_mode` | gauge | service, rpc, mode | breakers in each mode (`normal`, `forced_open`, `forced_closed`, `disabled`, `metrics_only`): 1 for a lone breaker's mode, 0 for the others |
//! | `circuit_breaker_consecutive_failures` | gauge | service, rpc | failures in a row in the current closed period |
//! | `circuit_breaker_transitions_total` | counter | service, rpc, from, to | state changes |
//! | `circuit_breaker_rejected_calls_total` | counter | service, rpc | calls refused by an open circuit |
//! | `circuit_breaker_shadow_rejected_calls_total` | counter | service, rpc | calls a breaker in metrics-only mode would have refused |
//! | `circuit_breaker_fallbacks_total` | counter | service, rpc, cause | fallbacks served, by cause (`open`, `timeout`, `failure`) |
//! | `service_requests_total` | counter | service, rpc, outcome | admitted calls, by outcome (`success`, `failure`, `ignored`) |
//! | `service_errors_total` | counter | service, rpc, code | calls that ended with a non-OK gRPC code (`UNAVAILABLE`, ...) |
//! | `service_retries_total` | counter | service, rpc, kind | extra attempts sent: `retry` (after a failed attempt), `hedge` (alongside one in flight) |
//! | `bulkhead_rejected_calls_total` | counter | service, rpc | calls refused by a full bulkhead |
//! | `service_request_duration_seconds` | histogram | service, rpc | duration of admitted calls |
//! | `pool_endpoints` | gauge | target, state | endpoints of the live pools of a target (feature `discovery`), by state: `active`, `ejected`, `unhealthy`; each address once, in the best state any pool sees it in |
//! | `pool_ejections_total` | counter | target | endpoints the target's pools ejected for failing calls, since the process started |
//!
//! The state gauges cover every live breaker in the process, even one built before the
//! metrics were installed; the other series cover breakers that carry this observer.
//! A breaker without labels reports its name as `service` and an empty `rpc`. Breakers
//! that share labels (two clients of one service) share their counters, and their state
//! gauge shows the worst state of the group (open, then half-open, then closed), so that
//! `circuit_breaker_state{state="open"} == 1` holds while any of them is open; their mode
//! gauge counts them by mode.
//!
//! Calls refused by an open circuit are not requests: they are counted in
//! `circuit_breaker_rejected_calls_total` only. `service_errors_total` is fed by
//! [`CircuitBreaker::notify_status`](crate::CircuitBreaker::notify_status), which
//! generated clients call for every completed call.
//!
//! Recording is a few relaxed atomic additions: the series of a breaker's labels is
//! found in an insert-only lock-free table, without allocating or locking.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tonic::Code;

use crate::breaker::{CircuitBreaker, CircuitBreakerState, Mode};
use crate::classify::Outcome;
use crate::observe::status_event::code_name;
use crate::observe::{
    BreakerLabels, BulkheadEvent, FallbackEvent, Observer, OutcomeEvent, RejectionEvent,
    RetryEvent, StatusEvent, TransitionEvent,
};

/// The latency buckets, in seconds: 1 ms to 30 s.
pub const DEFAULT_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// `Content-Type` of [`Metrics::encode`]: the Prometheus text format, version 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// `Content-Type` of [`Metrics::encode_openmetrics`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Slots of the lock-free series table; label pairs past that go to a locked list.
const SLOTS: usize = 1024;
/// Probes before a lookup gives up on the table (bounds the cost of a miss).
const MAX_PROBES: usize = 32;
/// The dashboard keeps a snapshot of the counters at most this often.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);

/// The breakers' metrics. Clones share the same counters.
///
/// Attach it to breakers with [`Metrics::install_global`] (every breaker built
/// afterwards, generated clients included) or [`Metrics::observer`] (one breaker), then
/// read it with [`Metrics::encode`] or merge it into your registry with
/// [`Metrics::register`].
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<MetricsInner>,
}

struct MetricsInner {
    recorder: Arc<Recorder>,
    /// A registry holding only our collector, for [`Metrics::encode`].
    registry: Registry,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("series", &self.inner.recorder.table.len())
            .field("latency", &self.inner.recorder.latency)
            .finish()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Builds [`Metrics`] with other latency buckets, or without the latency histogram.
#[derive(Debug, Clone)]
pub struct MetricsBuilder {
    buckets: Vec<f64>,
    latency: bool,
}

impl MetricsBuilder {
    /// The upper bounds of the latency buckets, in seconds. Default: [`DEFAULT_BUCKETS`].
    ///
    /// Bounds that are not finite and positive are dropped, the rest sorted and
    /// de-duplicated (with a `tracing` warning when that changed anything); an empty
    /// list falls back to the default.
    pub fn latency_buckets(mut self, bounds: impl IntoIterator<Item = f64>) -> Self {
        self.buckets = bounds.into_iter().collect();
        self
    }

    /// Whether to record call durations. Default: `true`. Measuring takes two clock
    /// reads per call; without it the histogram is not exported and the dashboard shows
    /// no p99.
    pub fn latency(mut self, on: bool) -> Self {
        self.latency = on;
        self
    }

    /// The metrics.
    pub fn build(self) -> Metrics {
        let bounds = sanitize_buckets(self.buckets);
        let recorder = Arc::new(Recorder {
            table: Table::new(),
            bounds_nanos: bounds.iter().map(|&s| secs_to_nanos(s)).collect(),
            bounds,
            latency: self.latency,
            history: Mutex::new(VecDeque::new()),
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(MetricsCollector {
            recorder: recorder.clone(),
        }));
        Metrics {
            inner: Arc::new(MetricsInner { recorder, registry }),
        }
    }

    /// Builds the metrics and installs them process-wide, like
    /// [`Metrics::install_global`]. When metrics are installed already, those are
    /// returned and this builder's settings are not used.
    pub fn install_global(self) -> Metrics {
        install(|| self.build())
    }
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

fn install(build: impl FnOnce() -> Metrics) -> Metrics {
    GLOBAL
        .get_or_init(|| {
            let metrics = build();
            crate::registry::add_global_observer(metrics.observer());
            metrics
        })
        .clone()
}

impl Metrics {
    /// Metrics with the default buckets, attached to no breaker yet.
    pub fn new() -> Self {
        Metrics::builder().build()
    }

    /// A builder, for other latency buckets.
    pub fn builder() -> MetricsBuilder {
        MetricsBuilder {
            buckets: DEFAULT_BUCKETS.to_vec(),
            latency: true,
        }
    }

    /// The process-wide metrics: the first call creates them and adds their observer to
    /// every breaker built from then on (with [`crate::registry::add_global_observer`]);
    /// later calls return the same handle. The dashboard and the HTTP endpoint read
    /// these by default.
    ///
    /// Call it before building clients: a breaker built earlier shows in the state
    /// gauges and the dashboard, but its calls are not counted.
    pub fn install_global() -> Metrics {
        install(Metrics::new)
    }

    /// The process-wide metrics, if [`install_global`](Self::install_global) ran.
    pub fn global() -> Option<Metrics> {
        GLOBAL.get().cloned()
    }

    /// The observer to add to a breaker (`CircuitBreaker::builder(..).observer(..)`).
    pub fn observer(&self) -> Arc<dyn Observer> {
        self.inner.recorder.clone()
    }

    /// Registers these metrics with `registry`, to be served with your own.
    ///
    /// Register one `Metrics` per registry: every `Metrics` reports the state of every
    /// live breaker and pool of the process, so a second one in the same registry would
    /// repeat those families, which Prometheus rejects.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(MetricsCollector {
            recorder: self.inner.recorder.clone(),
        }));
    }

    /// These metrics in the Prometheus text format, version 0.0.4 ([`TEXT_CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and neither can our collector.
        let _ =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry);
        out
    }

    /// These metrics in the OpenMetrics text format ([`OPENMETRICS_CONTENT_TYPE`]),
    /// `# EOF` included.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    pub(crate) fn bounds(&self) -> &[f64] {
        &self.inner.recorder.bounds
    }

    pub(crate) fn records_latency(&self) -> bool {
        self.inner.recorder.latency
    }

    /// The counters over roughly the last `length`, from snapshots taken by earlier
    /// calls (one every 10 s at most). Without a snapshot that old, since these metrics
    /// were created.
    pub(crate) fn window(&self, length: Duration) -> Window {
        self.inner.recorder.window(length, Instant::now())
    }
}

fn sanitize_buckets(asked: Vec<f64>) -> Vec<f64> {
    let mut bounds: Vec<f64> = asked
        .iter()
        .copied()
        .filter(|b| b.is_finite() && *b > 0.0)
        .collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    if bounds.is_empty() {
        tracing::warn!(
            ?asked,
            "no usable latency bucket (finite and positive); using the default buckets"
        );
        return DEFAULT_BUCKETS.to_vec();
    }
    if bounds != asked {
        tracing::warn!(?asked, used = ?bounds, "latency buckets repaired");
    }
    bounds
}

fn secs_to_nanos(secs: f64) -> u64 {
    // Saturating float-to-int cast: bounds are finite and positive.
    (secs * 1e9) as u64
}

// ---------------------------------------------------------------------------------------
// Series: the counters of one (service, rpc).

/// The counters of one label pair. Only ever added to, never removed: counters of a
/// breaker that is gone must not go backwards.
struct Series {
    service: Box<str>,
    rpc: Box<str>,
    /// By outcome: success, failure, ignored.
    requests: [AtomicU64; 3],
    /// By gRPC code (index = the code's number); `OK` is never counted.
    errors: [AtomicU64; 17],
    /// Non-cumulative: bucket `i` counts durations in `(bound[i-1], bound[i]]`; the
    /// last one is `+Inf`.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
    /// `[from][to]`, by [`state_index`].
    transitions: [[AtomicU64; 3]; 3],
    rejected: AtomicU64,
    shadow_rejected: AtomicU64,
    /// By cause: open, timeout, failure.
    fallbacks: [AtomicU64; 3],
    /// Causes other than the three generated clients use (`notify_fallback` is public).
    other_fallbacks: Mutex<BTreeMap<&'static str, u64>>,
    /// Why the circuit last opened, for the dashboard.
    last_open_reason: Mutex<Option<String>>,
    /// Extra attempts: retries of failed ones, hedges sent alongside.
    retries: AtomicU64,
    hedges: AtomicU64,
    /// Calls refused by a full bulkhead.
    bulkhead_rejected: AtomicU64,
}

const OUTCOMES: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Ignored];
const STATES: [CircuitBreakerState; 3] = [
    CircuitBreakerState::Closed,
    CircuitBreakerState::Open,
    CircuitBreakerState::HalfOpen,
];
const CAUSES: [&str; 3] = ["open", "timeout", "failure"];

fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Success => 0,
        Outcome::Failure => 1,
        Outcome::Ignored => 2,
    }
}

fn state_index(state: CircuitBreakerState) -> usize {
    match state {
        CircuitBreakerState::Closed => 0,
        CircuitBreakerState::Open => 1,
        CircuitBreakerState::HalfOpen => 2,
    }
}

/// Open is worse than half-open, which is worse than closed.
fn severity(state: CircuitBreakerState) -> u8 {
    match state {
        CircuitBreakerState::Closed => 0,
        CircuitBreakerState::HalfOpen => 1,
        CircuitBreakerState::Open => 2,
    }
}

fn code_index(code: Code) -> usize {
    // `Code` is `repr(i32)` with the values 0..=16.
    (code as i32).clamp(0, 16) as usize
}

impl Series {
    fn new(service: &str, rpc: &str, buckets: usize) -> Series {
        Series {
            service: service.into(),
            rpc: rpc.into(),
            requests: Default::default(),
            errors: Default::default(),
            buckets: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            transitions: Default::default(),
            rejected: AtomicU64::new(0),
            shadow_rejected: AtomicU64::new(0),
            fallbacks: Default::default(),
            other_fallbacks: Mutex::new(BTreeMap::new()),
            last_open_reason: Mutex::new(None),
            retries: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
            bulkhead_rejected: AtomicU64::new(0),
        }
    }

    #[inline]
    fn is(&self, service: &str, rpc: &str) -> bool {
        same(&self.service, service) && same(&self.rpc, rpc)
    }

    fn counts(&self) -> Counts {
        Counts {
            requests: self.requests.iter().map(|c| c.load(Relaxed)).sum(),
            failures: self.requests[outcome_index(Outcome::Failure)].load(Relaxed),
            errors: self.errors.iter().map(|c| c.load(Relaxed)).sum(),
            buckets: self.buckets.iter().map(|c| c.load(Relaxed)).collect(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The labels a breaker's series carries.
#[inline]
fn key<'a>(b: &BreakerLabels<'a>) -> (&'a str, &'a str) {
    if b.service.is_empty() {
        (b.name, b.rpc)
    } else {
        (b.service, b.rpc)
    }
}

/// Insert-only open-addressing table of series, keyed by label content. A lookup is a
/// hash of two short strings, an acquire load and a string comparison: no lock, no
/// allocation, no reference-count traffic. A slot goes from empty to full once and
/// never changes, so two threads inserting the same key find the same slot.
struct Table {
    slots: Box<[OnceLock<Arc<Series>>]>,
    /// Every series, in creation order (for encoding and snapshots).
    all: Mutex<Vec<Arc<Series>>>,
    /// Series that found no slot in [`MAX_PROBES`] probes.
    overflow: Mutex<Vec<Arc<Series>>>,
}

impl Table {
    fn new() -> Table {
        Table {
            slots: (0..SLOTS).map(|_| OnceLock::new()).collect(),
            all: Mutex::new(Vec::new()),
            overflow: Mutex::new(Vec::new()),
        }
    }

    fn len(&self) -> usize {
        lock(&self.all).len()
    }

    fn snapshot(&self) -> Vec<Arc<Series>> {
        lock(&self.all).clone()
    }

    fn create(&self, service: &str, rpc: &str, buckets: usize) -> Arc<Series> {
        let series = Arc::new(Series::new(service, rpc, buckets));
        lock(&self.all).push(series.clone());
        series
    }

    /// Runs `f` on the series of (`service`, `rpc`), creating it on first use.
    #[inline]
    fn with<R>(&self, service: &str, rpc: &str, buckets: usize, f: impl FnOnce(&Series) -> R) -> R {
        let start = (hash(service, rpc) >> 7) as usize;
        for probe in 0..MAX_PROBES {
            let slot = &self.slots[(start.wrapping_add(probe)) & (SLOTS - 1)];
            let series = match slot.get() {
                Some(s) => s,
                None => slot.get_or_init(|| self.create(service, rpc, buckets)),
            };
            if series.is(service, rpc) {
                return f(series);
            }
        }
        self.with_overflow(service, rpc, buckets, f)
    }

    #[cold]
    fn with_overflow<R>(
        &self,
        service: &str,
        rpc: &str,
        buckets: usize,
        f: impl FnOnce(&Series) -> R,
    ) -> R {
        let series = {
            let mut overflow = lock(&self.overflow);
            match overflow.iter().find(|s| s.is(service, rpc)) {
                Some(s) => s.clone(),
                None => {
                    let s = self.create(service, rpc, buckets);
                    overflow.push(s.clone());
                    s
                }
            }
        };
        f(&series)
    }
}

/// A hash of the two labels from their length and first and last eight bytes: five
/// multiplications' worth of work, no loop, no call (hashing every byte cost more than
/// the rest of the recording). Labels that differ only in their middle share a start
/// slot and are told apart by the comparison, one probe further on.
#[inline]
fn hash(service: &str, rpc: &str) -> u64 {
    const K0: u64 = 0x9e37_79b9_7f4a_7c15;
    const K1: u64 = 0x517c_c1b7_2722_0a95;
    let (a0, a1) = words(service.as_bytes());
    let (b0, b1) = words(rpc.as_bytes());
    let x = (a0 ^ a1.rotate_left(29) ^ service.len() as u64).wrapping_mul(K0);
    let y = (b0 ^ b1.rotate_left(29) ^ (rpc.len() as u64) << 32).wrapping_mul(K1);
    let h = x ^ y.rotate_left(17);
    h ^ (h >> 31)
}

/// Equality of two labels; those of 16 bytes or fewer (nearly all) with two word
/// comparisons instead of a call to `memcmp`.
#[inline]
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len()
        && if a.len() <= 16 {
            words(a) == words(b)
        } else {
            a == b
        }
}

/// Two words that, for a string of 16 bytes or fewer, cover every byte: the first and
/// last eight (or four) bytes, overlapping; for three bytes or fewer, each byte.
#[inline]
fn words(s: &[u8]) -> (u64, u64) {
    let n = s.len();
    if n >= 8 {
        (read8(s), read8(&s[n - 8..]))
    } else if n >= 4 {
        (read4(s), read4(&s[n - 4..]))
    } else if n > 0 {
        let b = |i: usize| u64::from(s[i]);
        (b(0) | b(n / 2) << 8 | b(n - 1) << 16, 0)
    } else {
        (0, 0)
    }
}

#[inline]
fn read8(s: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[..8]);
    u64::from_le_bytes(w)
}

#[inline]
fn read4(s: &[u8]) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&s[..4]);
    u64::from(u32::from_le_bytes(w))
}

// ---------------------------------------------------------------------------------------
// The observer.

/// Counts breaker events into [`Series`].
struct Recorder {
    table: Table,
    /// Bucket upper bounds in seconds (without `+Inf`).
    bounds: Vec<f64>,
    bounds_nanos: Box<[u64]>,
    latency: bool,
    history: Mutex<VecDeque<Snapshot>>,
}

impl Recorder {
    #[inline]
    fn with<R>(&self, b: &BreakerLabels<'_>, f: impl FnOnce(&Series) -> R) -> R {
        let (service, rpc) = key(b);
        self.table
            .with(service, rpc, self.bounds_nanos.len() + 1, f)
    }

    fn is(&self, observer: &Arc<dyn Observer>) -> bool {
        std::ptr::eq(
            Arc::as_ptr(observer).cast::<()>(),
            (self as *const Recorder).cast::<()>(),
        )
    }

    #[inline]
    fn observe(&self, series: &Series, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.bounds_nanos.partition_point(|&b| b < nanos);
        if let Some(b) = series.buckets.get(bucket) {
            b.fetch_add(1, Relaxed);
        }
        series.sum_nanos.fetch_add(nanos, Relaxed);
    }
}

impl Observer for Recorder {
    fn on_transition(&self, event: &TransitionEvent<'_>) {
        self.with(&event.breaker, |s| {
            // A mode set without a change of state is no transition (the mode gauge
            // shows it), but forcing an open circuit open still says why it is open.
            if event.from != event.to {
                s.transitions[state_index(event.from)][state_index(event.to)].fetch_add(1, Relaxed);
            }
            if event.to == CircuitBreakerState::Open {
                *lock(&s.last_open_reason) = Some(event.reason.to_string());
            }
        });
    }

    #[inline]
    fn on_outcome(&self, event: &OutcomeEvent<'_>) {
        self.with(&event.breaker, |s| {
            s.requests[outcome_index(event.outcome)].fetch_add(1, Relaxed);
            if let Some(latency) = event.latency {
                self.observe(s, latency);
            }
        });
    }

    fn on_rejection(&self, event: &RejectionEvent<'_>) {
        self.with(&event.breaker, |s| {
            if event.shadow {
                s.shadow_rejected.fetch_add(1, Relaxed);
            } else {
                s.rejected.fetch_add(1, Relaxed);
            }
        });
    }

    fn on_fallback(&self, event: &FallbackEvent<'_>) {
        self.with(&event.breaker, |s| {
            match CAUSES.iter().position(|c| *c == event.cause) {
                Some(i) => {
                    s.fallbacks[i].fetch_add(1, Relaxed);
                }
                None => *lock(&s.other_fallbacks).entry(event.cause).or_insert(0) += 1,
            }
        });
    }

    fn on_retry(&self, event: &RetryEvent<'_>) {
        self.with(&event.breaker, |s| {
            if event.hedged {
                s.hedges.fetch_add(1, Relaxed);
            } else {
                s.retries.fetch_add(1, Relaxed);
            }
        });
    }

    fn on_bulkhead_rejection(&self, event: &BulkheadEvent<'_>) {
        self.with(&event.breaker, |s| {
            s.bulkhead_rejected.fetch_add(1, Relaxed);
        });
    }

    #[inline]
    fn on_status(&self, event: &StatusEvent<'_>) {
        if event.code == Code::Ok {
            return;
        }
        self.with(&event.breaker, |s| {
            s.errors[code_index(event.code)].fetch_add(1, Relaxed);
        });
    }

    fn wants_latency(&self) -> bool {
        self.latency
    }
}

// ---------------------------------------------------------------------------------------
// Live state of the breakers, for the state gauges and the dashboard.

/// The breakers of one label pair that are alive now.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub(crate) service: String,
    pub(crate) rpc: String,
    /// The worst state of the group.
    pub(crate) state: CircuitBreakerState,
    /// How many breakers of the group are in each mode, in [`Mode::ALL`] order.
    pub(crate) modes: [u32; 5],
    /// The most consecutive failures of the group.
    pub(crate) consecutive_failures: u32,
    /// When the soonest open breaker of the group lets a probe through.
    pub(crate) retry_after: Option<Duration>,
}

impl Live {
    /// An operator's override if a breaker of the group has one (the first in
    /// [`Mode::ALL`] order), else normal.
    pub(crate) fn mode(&self) -> Mode {
        Mode::ALL
            .iter()
            .zip(self.modes)
            .skip(1)
            .find(|(_, n)| *n > 0)
            .map_or(Mode::Normal, |(m, _)| *m)
    }
}

/// Every live breaker, grouped by label pair, sorted by (service, rpc). When `recorder`
/// is given, the label pairs of breakers that carry it get their (zero) series now, so
/// that their counters exist from the first scrape.
fn live(recorder: Option<&Recorder>) -> Vec<Live> {
    let mut groups: BTreeMap<(String, String), Live> = BTreeMap::new();
    for breaker in crate::registry::all() {
        let labels = breaker.labels();
        let (service, rpc) = key(&labels);
        if let Some(r) = recorder
            && breaker.observers().iter().any(|o| r.is(o))
        {
            r.with(&labels, |_| ());
        }
        let state = breaker.state();
        let entry = groups
            .entry((service.to_owned(), rpc.to_owned()))
            .or_insert_with(|| Live {
                service: service.to_owned(),
                rpc: rpc.to_owned(),
                state,
                modes: [0; 5],
                consecutive_failures: 0,
                retry_after: None,
            });
        merge(entry, &breaker, state);
    }
    groups.into_values().collect()
}

fn merge(entry: &mut Live, breaker: &CircuitBreaker, state: CircuitBreakerState) {
    if severity(state) > severity(entry.state) {
        entry.state = state;
    }
    let mode = breaker.mode();
    if let Some(i) = Mode::ALL.iter().position(|m| *m == mode) {
        entry.modes[i] += 1;
    }
    entry.consecutive_failures = entry
        .consecutive_failures
        .max(breaker.consecutive_failures());
    if let Some(after) = breaker.retry_after() {
        entry.retry_after = Some(entry.retry_after.map_or(after, |a| a.min(after)));
    }
}

/// Every live breaker, grouped by label pair (for the dashboard).
pub(crate) fn live_breakers() -> Vec<Live> {
    live(None)
}

// ---------------------------------------------------------------------------------------
// Windows over the counters, for the dashboard.

#[derive(Debug, Clone, Default)]
struct Counts {
    requests: u64,
    failures: u64,
    errors: u64,
    buckets: Vec<u64>,
}

impl Counts {
    fn minus(&self, base: Option<&Counts>) -> Counts {
        let Some(base) = base else {
            return self.clone();
        };
        Counts {
            requests: self.requests.saturating_sub(base.requests),
            failures: self.failures.saturating_sub(base.failures),
            errors: self.errors.saturating_sub(base.errors),
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, c)| c.saturating_sub(base.buckets.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }
}

/// Counters of every series at one time, indexed like [`Table::all`].
struct Snapshot {
    at: Instant,
    counts: Vec<Counts>,
}

/// What happened to one label pair over a window.
#[derive(Debug, Clone)]
pub(crate) struct SeriesWindow {
    pub(crate) service: String,
    pub(crate) rpc: String,
    pub(crate) requests: u64,
    /// Non-OK statuses, or failed outcomes for breakers that report no status
    /// (whichever is larger: every failure of a generated client has a non-OK status).
    pub(crate) errors: u64,
    /// Non-cumulative bucket counts, `+Inf` last.
    pub(crate) buckets: Vec<u64>,
    pub(crate) last_open_reason: Option<String>,
}

/// The counters over a window.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    /// How long the window really is; `None` when it starts at the metrics' creation.
    pub(crate) span: Option<Duration>,
    pub(crate) series: Vec<SeriesWindow>,
}

impl Recorder {
    fn window(&self, length: Duration, now: Instant) -> Window {
        let series = self.table.snapshot();
        let counts: Vec<Counts> = series.iter().map(|s| s.counts()).collect();
        let mut history = lock(&self.history);
        // The base: the newest snapshot at least `length` old; else the start.
        let base = history
            .iter()
            .rposition(|s| now.saturating_duration_since(s.at) >= length);
        let (span, base_counts) = match base {
            Some(i) => (
                Some(now.saturating_duration_since(history[i].at)),
                Some(&history[i].counts),
            ),
            None => (None, None),
        };
        let window = Window {
            span,
            series: series
                .iter()
                .zip(&counts)
                .enumerate()
                .map(|(i, (s, c))| {
                    let d = c.minus(base_counts.and_then(|b| b.get(i)));
                    SeriesWindow {
                        service: s.service.to_string(),
                        rpc: s.rpc.to_string(),
                        requests: d.requests,
                        errors: d.errors.max(d.failures),
                        buckets: d.buckets,
                        last_open_reason: lock(&s.last_open_reason).clone(),
                    }
                })
                .collect(),
        };
        // Keep one snapshot older than `length`, and the ones since.
        if let Some(i) = base {
            history.drain(..i);
        }
        let due = history
            .back()
            .is_none_or(|s| now.saturating_duration_since(s.at) >= SNAPSHOT_EVERY);
        if due {
            history.push_back(Snapshot { at: now, counts });
        }
        window
    }
}

/// The `q` quantile (0..=1) of a histogram's non-cumulative `buckets` (`+Inf` last) with
/// upper `bounds` in seconds, interpolated within its bucket as Prometheus'
/// `histogram_quantile` does; in the `+Inf` bucket, the highest finite bound. `None`
/// without observations.
pub(crate) fn quantile(q: f64, bounds: &[f64], buckets: &[u64]) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut seen = 0u64;
    for (i, &count) in buckets.iter().enumerate() {
        let before = seen;
        seen += count;
        if (seen as f64) >= rank && count > 0 {
            let Some(&upper) = bounds.get(i) else {
                return bounds.last().copied();
            };
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let within = (rank - before as f64) / count as f64;
            return Some(lower + (upper - lower) * within);
        }
    }
    bounds.last().copied()
}

// ---------------------------------------------------------------------------------------
// Encoding.

struct MetricsCollector {
    recorder: Arc<Recorder>,
}

impl fmt::Debug for MetricsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsCollector").finish_non_exhaustive()
    }
}

/// Writes one metric family, or nothing when it has no sample.
fn family<T>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: &[T],
    mut write: impl FnMut(&mut prometheus_client::encoding::MetricEncoder<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for sample in samples {
        write(&mut metric, sample)?;
    }
    Ok(())
}

fn counter(
    metric: &mut prometheus_client::encoding::MetricEncoder<'_>,
    labels: &impl EncodeLabelSet,
    value: u64,
) -> fmt::Result {
    metric
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn gauge(
    metric: &mut prometheus_client::encoding::MetricEncoder<'_>,
    labels: &impl EncodeLabelSet,
    value: i64,
) -> fmt::Result {
    metric.encode_family(labels)?.encode_gauge(&value)
}

impl Collector for MetricsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let r = &*self.recorder;
        let live = live(Some(r));
        let mut series = r.table.snapshot();
        series.sort_by(|a, b| (&a.service, &a.rpc).cmp(&(&b.service, &b.rpc)));

        family(
            &mut encoder,
            "circuit_breaker_state",
            "Circuit breaker state: 1 for the current state (closed, open, half_open), 0 for the others.",
            MetricType::Gauge,
            &live,
            |m, l| {
                for state in STATES {
                    let labels = [
                        ("service", l.service.as_str()),
                        ("rpc", l.rpc.as_str()),
                        ("state", state.as_str()),
                    ];
                    gauge(m, &labels, i64::from(l.state == state))?;
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "circuit_breaker_mode",
            "Who decides the breaker's state, by mode (normal, forced_open, forced_closed, disabled, metrics_only): how many breakers of these labels are in it (1 or 0 for a lone breaker).",
            MetricType::Gauge,
            &live,
            |m, l| {
                for (mode, n) in Mode::ALL.iter().zip(l.modes) {
                    let labels = [
                        ("service", l.service.as_str()),
                        ("rpc", l.rpc.as_str()),
                        ("mode", mode.as_str()),
                    ];
                    gauge(m, &labels, i64::from(n))?;
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "circuit_breaker_consecutive_failures",
            "Failures in a row in the breaker's current closed period.",
            MetricType::Gauge,
            &live,
            |m, l| {
                let labels = [("service", l.service.as_str()), ("rpc", l.rpc.as_str())];
                gauge(m, &labels, i64::from(l.consecutive_failures))
            },
        )?;

        let transitions: Vec<_> = series
            .iter()
            .flat_map(|s| {
                // Every change of state from the first scrape on, at zero until it
                // happens, so that `increase()` sees the first opening.
                STATES.iter().flat_map(move |&from| {
                    STATES
                        .iter()
                        .filter(move |&&to| to != from)
                        .map(move |&to| {
                            let n = s.transitions[state_index(from)][state_index(to)].load(Relaxed);
                            (s, from, to, n)
                        })
                })
            })
            .collect();
        family(
            &mut encoder,
            "circuit_breaker_transitions",
            "Circuit breaker state changes.",
            MetricType::Counter,
            &transitions,
            |m, (s, from, to, n)| {
                let labels = [
                    ("service", &*s.service),
                    ("rpc", &*s.rpc),
                    ("from", from.as_str()),
                    ("to", to.as_str()),
                ];
                counter(m, &labels, *n)
            },
        )?;
        family(
            &mut encoder,
            "circuit_breaker_rejected_calls",
            "Calls refused by an open circuit, without calling the service.",
            MetricType::Counter,
            &series,
            |m, s| {
                let labels = [("service", &*s.service), ("rpc", &*s.rpc)];
                counter(m, &labels, s.rejected.load(Relaxed))
            },
        )?;
        let shadow: Vec<_> = series
            .iter()
            .filter(|s| s.shadow_rejected.load(Relaxed) > 0)
            .collect();
        family(
            &mut encoder,
            "circuit_breaker_shadow_rejected_calls",
            "Calls a breaker in metrics-only mode would have refused (they went ahead).",
            MetricType::Counter,
            &shadow,
            |m, s| {
                let labels = [("service", &*s.service), ("rpc", &*s.rpc)];
                counter(m, &labels, s.shadow_rejected.load(Relaxed))
            },
        )?;
        family(
            &mut encoder,
            "circuit_breaker_fallbacks",
            "Fallback answers served instead of an error, by cause (open, timeout, failure).",
            MetricType::Counter,
            &series,
            |m, s| {
                for (i, cause) in CAUSES.iter().enumerate() {
                    let labels = [("service", &*s.service), ("rpc", &*s.rpc), ("cause", cause)];
                    counter(m, &labels, s.fallbacks[i].load(Relaxed))?;
                }
                for (cause, n) in lock(&s.other_fallbacks).iter() {
                    let labels = [("service", &*s.service), ("rpc", &*s.rpc), ("cause", cause)];
                    counter(m, &labels, *n)?;
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "service_requests",
            "Calls admitted by the breaker, by outcome (success, failure, ignored).",
            MetricType::Counter,
            &series,
            |m, s| {
                for outcome in OUTCOMES {
                    let labels = [
                        ("service", &*s.service),
                        ("rpc", &*s.rpc),
                        ("outcome", outcome.as_str()),
                    ];
                    counter(m, &labels, s.requests[outcome_index(outcome)].load(Relaxed))?;
                }
                Ok(())
            },
        )?;
        let errors: Vec<_> = series
            .iter()
            .flat_map(|s| {
                (1..=16).filter_map(move |i| {
                    let n = s.errors[i].load(Relaxed);
                    (n > 0).then_some((s, Code::from_i32(i as i32), n))
                })
            })
            .collect();
        family(
            &mut encoder,
            "service_errors",
            "Calls that ended with a non-OK gRPC status, by code.",
            MetricType::Counter,
            &errors,
            |m, (s, code, n)| {
                let labels = [
                    ("service", &*s.service),
                    ("rpc", &*s.rpc),
                    ("code", code_name(*code)),
                ];
                counter(m, &labels, *n)
            },
        )?;
        #[cfg(feature = "discovery")]
        {
            let pools = crate::pool::live_pools();
            family(
                &mut encoder,
                "pool_endpoints",
                "Endpoints of the live pools of a target, by state (active, ejected, unhealthy); each address once, in the best state any pool sees it in.",
                MetricType::Gauge,
                &pools,
                |m, p| {
                    for (state, n) in [
                        ("active", p.active),
                        ("ejected", p.ejected),
                        ("unhealthy", p.unhealthy),
                    ] {
                        let labels = [("target", p.target.as_str()), ("state", state)];
                        gauge(m, &labels, i64::try_from(n).unwrap_or(i64::MAX))?;
                    }
                    Ok(())
                },
            )?;
            family(
                &mut encoder,
                "pool_ejections",
                "Endpoints ejected for failing calls, by the pools of a target, since the process started.",
                MetricType::Counter,
                &crate::pool::ejections_by_target(),
                |m, (target, n)| counter(m, &[("target", target.as_str())], *n),
            )?;
        }
        family(
            &mut encoder,
            "service_retries",
            "Extra attempts sent, by kind: retry (after a failed attempt) or hedge (while the earlier ones were still in flight).",
            MetricType::Counter,
            &series,
            |m, s| {
                for (kind, n) in [("retry", &s.retries), ("hedge", &s.hedges)] {
                    let labels = [("service", &*s.service), ("rpc", &*s.rpc), ("kind", kind)];
                    counter(m, &labels, n.load(Relaxed))?;
                }
                Ok(())
            },
        )?;
        family(
            &mut encoder,
            "bulkhead_rejected_calls",
            "Calls refused by a full bulkhead (RESOURCE_EXHAUSTED), before the breaker.",
            MetricType::Counter,
            &series,
            |m, s| {
                let labels = [("service", &*s.service), ("rpc", &*s.rpc)];
                counter(m, &labels, s.bulkhead_rejected.load(Relaxed))
            },
        )?;
        if r.latency {
            family(
                &mut encoder,
                "service_request_duration_seconds",
                "Duration of calls admitted by the breaker, in seconds.",
                MetricType::Histogram,
                &series,
                |m, s| {
                    let counts: Vec<u64> = s.buckets.iter().map(|b| b.load(Relaxed)).collect();
                    let buckets: Vec<(f64, u64)> = r
                        .bounds
                        .iter()
                        .copied()
                        .chain([f64::INFINITY])
                        .zip(counts.iter().copied())
                        .collect();
                    let count = counts.iter().sum();
                    let sum = s.sum_nanos.load(Relaxed) as f64 / 1e9;
                    let labels = [("service", &*s.service), ("rpc", &*s.rpc)];
                    m.encode_family(&labels)?
                        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
                },
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_repaired_not_rejected() {
        assert_eq!(
            sanitize_buckets(vec![0.5, f64::NAN, 0.1, -1.0, 0.5, f64::INFINITY]),
            vec![0.1, 0.5]
        );
        assert_eq!(sanitize_buckets(vec![]), DEFAULT_BUCKETS.to_vec());
        assert_eq!(sanitize_buckets(vec![0.0, -2.0]), DEFAULT_BUCKETS.to_vec());
    }

    #[test]
    fn quantile_interpolates_like_prometheus() {
        let bounds = [0.01, 0.1, 1.0];
        // 100 observations: 90 in (0, 10ms], 10 in (10ms, 100ms].
        let buckets = [90, 10, 0, 0];
        let p99 = quantile(0.99, &bounds, &buckets).unwrap();
        assert!((p99 - 0.091).abs() < 1e-9, "{p99}");
        let p50 = quantile(0.5, &bounds, &buckets).unwrap();
        assert!((p50 - 0.01 * 50.0 / 90.0).abs() < 1e-9, "{p50}");
        assert_eq!(quantile(0.99, &bounds, &[0, 0, 0, 0]), None);
        // Beyond the last bound: the last bound, as histogram_quantile answers.
        assert_eq!(quantile(0.99, &bounds, &[0, 0, 0, 5]), Some(1.0));
    }

    #[test]
    fn table_finds_each_key_in_one_place_even_when_full() {
        let table = Table::new();
        for i in 0..(SLOTS + 50) {
            table.with("svc", &format!("rpc{i}"), 2, |s| {
                s.rejected.fetch_add(1, Relaxed);
            });
        }
        for i in 0..(SLOTS + 50) {
            table.with("svc", &format!("rpc{i}"), 2, |s| {
                assert_eq!(s.rejected.fetch_add(1, Relaxed), 1, "rpc{i}");
            });
        }
        assert_eq!(table.len(), SLOTS + 50);
    }

    #[test]
    fn table_is_safe_to_fill_from_many_threads() {
        let table = Arc::new(Table::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let table = table.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        table.with("svc", &format!("rpc{i}"), 2, |s| {
                            s.rejected.fetch_add(1, Relaxed);
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(table.len(), 200);
        for s in table.snapshot() {
            assert_eq!(s.rejected.load(Relaxed), 4, "{}", s.rpc);
        }
    }

    fn recorder() -> Recorder {
        let bounds = vec![0.01, 0.1];
        Recorder {
            table: Table::new(),
            bounds_nanos: bounds.iter().map(|&s| secs_to_nanos(s)).collect(),
            bounds,
            latency: true,
            history: Mutex::new(VecDeque::new()),
        }
    }

    fn calls(r: &Recorder, n: u64, errors: u64) {
        let labels = BreakerLabels {
            name: "w",
            service: "win-svc",
            rpc: "Get",
        };
        r.with(&labels, |s| {
            s.requests[0].fetch_add(n, Relaxed);
            s.errors[14].fetch_add(errors, Relaxed);
            s.buckets[0].fetch_add(n, Relaxed);
        });
    }

    #[test]
    fn windows_start_at_the_newest_snapshot_old_enough() {
        let r = recorder();
        let t0 = Instant::now();
        let five = Duration::from_secs(300);
        calls(&r, 100, 10);
        // No snapshot yet: since start. This call takes the first snapshot.
        let w = r.window(five, t0);
        assert_eq!(w.span, None);
        assert_eq!((w.series[0].requests, w.series[0].errors), (100, 10));

        calls(&r, 50, 1);
        // 4 s later: no new snapshot (one per 10 s), none 5 minutes old.
        let w = r.window(five, t0 + Duration::from_secs(4));
        assert_eq!(w.span, None);
        assert_eq!((w.series[0].requests, w.series[0].errors), (150, 11));
        assert_eq!(lock(&r.history).len(), 1);

        // A snapshot at t0 + 60 s, then at t0 + 301 s the window starts at t0.
        let w = r.window(five, t0 + Duration::from_secs(60));
        assert_eq!(w.span, None);
        calls(&r, 10, 5);
        let w = r.window(five, t0 + Duration::from_secs(301));
        assert_eq!(w.span, Some(Duration::from_secs(301)));
        assert_eq!((w.series[0].requests, w.series[0].errors), (60, 6));
        assert_eq!(w.series[0].buckets, vec![60, 0, 0]);

        // Later still: the window moves to the t0 + 60 s snapshot; t0 is dropped.
        let w = r.window(five, t0 + Duration::from_secs(400));
        assert_eq!(w.span, Some(Duration::from_secs(340)));
        assert_eq!((w.series[0].requests, w.series[0].errors), (10, 5));
        assert_eq!(
            lock(&r.history).front().map(|s| s.at),
            Some(t0 + Duration::from_secs(60))
        );
    }

    #[test]
    fn label_equality_is_exact_at_every_length() {
        let long = "x".repeat(40);
        for n in 0..=40 {
            let a = &long[..n];
            assert!(same(a, a), "{n}");
            for i in 0..n {
                let mut b = a.as_bytes().to_vec();
                b[i] = b'y';
                let b = String::from_utf8(b).unwrap();
                assert!(!same(a, &b), "{n} bytes, differing at {i}");
            }
            if n < 40 {
                assert!(!same(a, &long[..n + 1]), "{n} against {}", n + 1);
            }
        }
        assert!(!same("ab", "abc") && !same("", "a") && same("", ""));
    }

    #[test]
    fn hash_spreads_similar_keys() {
        use std::collections::HashSet;
        let slots: HashSet<usize> = (0..64)
            .map(|i| (hash("auth-service", &format!("Rpc{i}")) >> 7) as usize & (SLOTS - 1))
            .collect();
        assert!(slots.len() > 48, "{} distinct slots of 64", slots.len());
    }
}
