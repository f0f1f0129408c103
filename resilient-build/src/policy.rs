//! Build-time policies: the `Policy`, `Retry` and `Hedge` builders, path matching, the
//! layered merge, validation and build warnings.

use std::io;
use std::time::Duration;

use crate::codes::{self, BadCode};
use crate::error::invalid_input;
use crate::model::{
    EffectivePolicy, MethodModel, NoHedge, NoRetry, PolicyValues, ServiceModel, Source, Sourced,
    show_duration,
};

/// Which failure causes a client built `with_fallback(..)` hands to the fallback.
///
/// The runtime's default, used when no layer sets it, is [`FallbackMode::DEFAULT`]:
/// an open circuit and a timeout go to the fallback, a failure status goes back to the
/// caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FallbackMode {
    /// The breaker rejected the call without sending it.
    pub open: bool,
    /// The call ran out of time.
    pub timeout: bool,
    /// The server answered with a status the classifier counts as a failure.
    pub failure: bool,
}

impl FallbackMode {
    /// No cause reaches the fallback: the fallback is off for the RPC.
    pub const NONE: FallbackMode = FallbackMode {
        open: false,
        timeout: false,
        failure: false,
    };
    /// Open circuit and timeout reach the fallback (the runtime's default).
    pub const DEFAULT: FallbackMode = FallbackMode {
        open: true,
        timeout: true,
        failure: false,
    };
    /// Every cause reaches the fallback, failure statuses included.
    pub const ALL: FallbackMode = FallbackMode {
        open: true,
        timeout: true,
        failure: true,
    };
}

/// The resilience settings for a set of RPCs, built field by field.
///
/// Every field starts unset; an unset field is taken from a lower layer (see the crate
/// documentation) and, if no layer sets it, from the `RESILIENT_ENV` preset at run time.
///
/// ```
/// use std::time::Duration;
/// use resilient_build::Policy;
///
/// let policy = Policy::new()
///     .failure_threshold(3)
///     .success_threshold(3)
///     .timeout(Duration::from_secs(2));
/// # let _ = policy;
/// ```
///
/// Retries and a bulkhead (a limit on calls in flight) are set the same way:
///
/// ```
/// use std::time::Duration;
/// use resilient_build::{Policy, Retry};
///
/// let policy = Policy::new()
///     .idempotent(true)
///     .retry(Retry::new().max_attempts(4).retryable_codes(&["UNAVAILABLE", "RESOURCE_EXHAUSTED"]))
///     .bulkhead(32)
///     .bulkhead_wait(Duration::from_millis(20));
/// # let _ = policy;
/// ```
///
/// Hedging instead of retries (the two exclude each other on one RPC):
///
/// ```
/// use std::time::Duration;
/// use resilient_build::{Hedge, Policy};
///
/// let policy = Policy::new()
///     .idempotent(true)
///     .no_retry()
///     .hedge(Hedge::new().max_attempts(3).delay(Duration::from_millis(30)).percentile(0.9));
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use = "a Policy does nothing until it is passed to `Builder::policy`"]
pub struct Policy {
    pub(crate) values: PolicyValues,
}

impl Policy {
    /// A policy with every field unset.
    pub fn new() -> Self {
        Policy::default()
    }

    /// Consecutive failures that open the breaker. Must be at least 1. Unset by default.
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.values.failure_threshold = Some(failures);
        self
    }

    /// Consecutive successful probes that close a half-open breaker. Must be at least 1.
    /// Unset by default.
    pub fn success_threshold(mut self, successes: u32) -> Self {
        self.values.success_threshold = Some(successes);
        self
    }

    /// How long the breaker stays open before it lets probes through. Must not be zero.
    /// Unset by default.
    pub fn open_for(mut self, duration: Duration) -> Self {
        self.values.open_for = Some(duration);
        self
    }

    /// Deadline of one call. Unary and client-streaming calls time out over the whole
    /// call; server-streaming and bidi calls time out on the response headers. Must not be
    /// zero. Unset by default.
    pub fn timeout(mut self, duration: Duration) -> Self {
        self.values.timeout = Some(duration);
        self
    }

    /// Probes admitted at once while the breaker is half-open. Must be at least 1.
    /// Unset by default.
    pub fn half_open_max_calls(mut self, calls: u32) -> Self {
        self.values.half_open_max_calls = Some(calls);
        self
    }

    /// `true` sends open-circuit and timeout causes to the fallback
    /// ([`FallbackMode::DEFAULT`]); `false` turns the fallback off
    /// ([`FallbackMode::NONE`]). Unset by default, which means [`FallbackMode::DEFAULT`]
    /// at run time.
    pub fn fallback(self, enabled: bool) -> Self {
        self.fallback_on(if enabled {
            FallbackMode::DEFAULT
        } else {
            FallbackMode::NONE
        })
    }

    /// Chooses exactly which causes reach the fallback. Unset by default.
    pub fn fallback_on(mut self, mode: FallbackMode) -> Self {
        self.values.fallback = Some(mode);
        self
    }

    /// Whether unary and client-streaming calls send their deadline to the server as
    /// `grpc-timeout`, so that the server can stop working on a call its caller has
    /// given up on. Unset by default, which means `true` at run time. The client
    /// enforces its deadline either way; `false` saves the header and the server's
    /// timer on every call.
    pub fn propagate_deadline(mut self, propagate: bool) -> Self {
        self.values.propagate_deadline = Some(propagate);
        self
    }

    /// Declares the RPCs safe to repeat, which retries need. Overrides the proto's
    /// `idempotency_level`. Unset by default, which means the RPC is idempotent only if
    /// the proto says so (`idempotency_level = NO_SIDE_EFFECTS` or `IDEMPOTENT`, or
    /// `idempotent: true` in its `resilient.v1` option).
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.values.idempotent = Some(idempotent);
        self
    }

    /// One breaker shared by all RPCs of a service instead of one per RPC. Only valid on
    /// a service, package or `"."` path; on an RPC path the build fails. Unset by default,
    /// which means one breaker per RPC.
    pub fn shared_breaker(mut self, shared: bool) -> Self {
        self.values.shared_breaker = Some(shared);
        self
    }

    /// Turns retries on and sets the fields `retry` sets; the fields it leaves unset come
    /// from lower layers, else the runtime's defaults (see [`Retry`]). Without
    /// [`Retry::max_attempts`], the attempts are those of the highest lower layer that
    /// turns retries on too (`max_attempts` above 1), else 3: a lower layer's "no retry"
    /// does not turn them off again. Calling it again merges, the later call winning
    /// field by field.
    ///
    /// Only RPCs that are safe to repeat are ever retried (see [`Policy::idempotent`]),
    /// and only unary and server-streaming ones (a request stream cannot be sent twice);
    /// for others the build prints a warning and the generated code carries no retry
    /// policy. The runtime configuration can still change every retry field.
    ///
    /// Unset by default: no retries, unless the runtime configuration sets `max_attempts`.
    pub fn retry(mut self, retry: Retry) -> Self {
        let v = &mut self.values;
        match retry.max_attempts {
            Some(attempts) => v.max_attempts = Some(attempts),
            // A `.no_retry()` earlier in this policy is undone; a count set earlier stays.
            None if v.max_attempts.is_some_and(|n| n <= 1) => v.max_attempts = None,
            None => {}
        }
        v.retry_requested = true;
        let Retry {
            max_attempts: _,
            initial_backoff,
            max_backoff,
            backoff_multiplier,
            retryable_codes,
            attempt_timeout,
        } = retry;
        v.initial_backoff = initial_backoff.or(v.initial_backoff);
        v.max_backoff = max_backoff.or(v.max_backoff);
        v.backoff_multiplier = backoff_multiplier.or(v.backoff_multiplier);
        v.retryable_codes = retryable_codes.or(v.retryable_codes.take());
        v.attempt_timeout = attempt_timeout.or(v.attempt_timeout);
        self
    }

    /// Turns retries off (`max_attempts = 1`), e.g. for one RPC of a service that retries.
    /// The runtime configuration can still turn them on. Unset by default.
    pub fn no_retry(mut self) -> Self {
        self.values.max_attempts = Some(1);
        self.values.retry_requested = false;
        self
    }

    /// Turns hedging on and sets the fields `hedge` sets; the fields it leaves unset come
    /// from lower layers, else the runtime's defaults (see [`Hedge`]). Without
    /// [`Hedge::max_attempts`], the attempts are those of the highest lower layer that
    /// turns hedging on too (`hedge_max_attempts` above 1), else 2: a lower layer's "no
    /// hedging" does not turn it off again. Calling it again merges, the later call
    /// winning field by field.
    ///
    /// Only unary RPCs that are safe to repeat are ever hedged (see
    /// [`Policy::idempotent`]); for others the build prints a warning and the generated
    /// code carries no hedging policy. Hedging and retries exclude each other: an RPC
    /// that ends up with both fails the build (turn one off with [`Policy::no_retry`] or
    /// [`Policy::no_hedge`]). The runtime configuration can still change every hedging
    /// field (`hedge_max_attempts`, `hedge_delay_ms`, `hedge_percentile`).
    ///
    /// Unset by default: no hedging, unless the runtime configuration sets a hedging
    /// field.
    pub fn hedge(mut self, hedge: Hedge) -> Self {
        let v = &mut self.values;
        match hedge.max_attempts {
            Some(attempts) => v.hedge_max_attempts = Some(attempts),
            // A `.no_hedge()` earlier in this policy is undone; a count set earlier stays.
            None if v.hedge_max_attempts.is_some_and(|n| n <= 1) => v.hedge_max_attempts = None,
            None => {}
        }
        v.hedge_requested = true;
        let Hedge {
            max_attempts: _,
            delay,
            percentile,
        } = hedge;
        v.hedge_delay = delay.or(v.hedge_delay);
        v.hedge_percentile = percentile.or(v.hedge_percentile);
        self
    }

    /// Turns hedging off (`hedge_max_attempts = 1`), e.g. for one RPC of a service that
    /// hedges. The runtime configuration can still turn it on. Unset by default.
    pub fn no_hedge(mut self) -> Self {
        self.values.hedge_max_attempts = Some(1);
        self.values.hedge_requested = false;
        self
    }

    /// Limits the RPCs to `max_concurrent` calls in flight (a bulkhead, per RPC unless
    /// [`Policy::shared_bulkhead`]): a call over the limit waits up to
    /// [`Policy::bulkhead_wait`], then fails at once with `RESOURCE_EXHAUSTED` naming the
    /// bulkhead. Must be at least 1. `max_concurrent` in proto options and the runtime
    /// configuration. Unset by default: no limit.
    pub fn bulkhead(mut self, max_concurrent: u32) -> Self {
        self.values.max_concurrent = Some(max_concurrent);
        self
    }

    /// How long a call over the bulkhead's limit waits for a slot before it is rejected.
    /// Has no effect on an RPC without [`Policy::bulkhead`]. `max_wait_ms` in proto options
    /// and the runtime configuration. Unset by default, which means zero: rejected at once.
    pub fn bulkhead_wait(mut self, max_wait: Duration) -> Self {
        self.values.max_wait = Some(max_wait);
        self
    }

    /// `true` makes the RPCs of a service that set it share one bulkhead instead of having
    /// one each; those RPCs must agree on its size and wait (set both on the service).
    /// Unset by default, which means one bulkhead per RPC.
    pub fn shared_bulkhead(mut self, shared: bool) -> Self {
        self.values.shared_bulkhead = Some(shared);
        self
    }
}

/// How [`Policy::retry`] retries a failed call: up to `max_attempts` attempts in all,
/// after a backoff drawn at random up to a cap (`initial_backoff`, then multiplied by
/// `backoff_multiplier` per attempt up to `max_backoff`), on the `retryable_codes`.
///
/// Every field starts unset; an unset field comes from a lower layer, else from the
/// runtime's default, the one each method names. The runtime never retries an open
/// circuit, stays within the service's retry budget and the call's deadline, and honours
/// the server's `grpc-retry-pushback-ms`.
///
/// ```
/// use std::time::Duration;
/// use resilient_build::Retry;
///
/// let retry = Retry::new()
///     .max_attempts(4)
///     .initial_backoff(Duration::from_millis(20))
///     .retryable_codes(&["UNAVAILABLE", "RESOURCE_EXHAUSTED"])
///     .attempt_timeout(Duration::from_millis(300));
/// # let _ = retry;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use = "a Retry does nothing until it is passed to `Policy::retry`"]
pub struct Retry {
    max_attempts: Option<u32>,
    initial_backoff: Option<Duration>,
    max_backoff: Option<Duration>,
    backoff_multiplier: Option<f64>,
    retryable_codes: Option<Vec<String>>,
    attempt_timeout: Option<Duration>,
}

// Copies of `resilient_runtime::spec::RetrySpec::DEFAULT` and its limits: a build
// dependency must not pull in the runtime (and tonic), so these are kept in step by hand.
impl Retry {
    /// The runtime's default `max_attempts`, used when retries are on and no layer sets a
    /// count.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
    /// The runtime's default `initial_backoff`.
    pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(50);
    /// The runtime's default `max_backoff`.
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(1);
    /// The runtime's default `backoff_multiplier`.
    pub const DEFAULT_BACKOFF_MULTIPLIER: f64 = 2.0;
    /// The runtime's default `retryable_codes`.
    pub const DEFAULT_RETRYABLE_CODES: &'static [&'static str] = &["UNAVAILABLE"];
    /// The most attempts a call may make.
    pub const MAX_ATTEMPTS_LIMIT: u32 = 10;

    /// Retries with the runtime's defaults: 3 attempts, backoff caps from 50 ms doubling
    /// up to 1 s, on `UNAVAILABLE` only, each attempt bounded by what is left of the
    /// call's deadline.
    pub fn new() -> Self {
        Retry::default()
    }

    /// Attempts in all, the first included: 1 means no retry. From 1 to 10. Unset by
    /// default: the count of a lower layer that turns retries on, else
    /// [`Retry::DEFAULT_MAX_ATTEMPTS`] (3).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// The cap of the first retry's backoff (the wait is drawn at random up to the cap).
    /// Must not be zero. `initial_backoff_ms` in proto options.
    /// Default: [`Retry::DEFAULT_INITIAL_BACKOFF`] (50 ms).
    pub fn initial_backoff(mut self, backoff: Duration) -> Self {
        self.initial_backoff = Some(backoff);
        self
    }

    /// The largest backoff cap. Must not be zero nor below `initial_backoff`.
    /// `max_backoff_ms` in proto options. Default: [`Retry::DEFAULT_MAX_BACKOFF`] (1 s).
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = Some(backoff);
        self
    }

    /// Growth of the backoff cap per attempt. A finite number of at least 1 (1 keeps
    /// every cap at `initial_backoff`). Default: [`Retry::DEFAULT_BACKOFF_MULTIPLIER`] (2).
    pub fn backoff_multiplier(mut self, multiplier: f64) -> Self {
        self.backoff_multiplier = Some(multiplier);
        self
    }

    /// The status codes worth another attempt, by their `google.rpc.Code` names
    /// (`"UNAVAILABLE"`, `"RESOURCE_EXHAUSTED"`; case does not matter). A name that is not
    /// a code, or `"OK"`, fails the build, naming the nearest code. An empty list retries
    /// nothing. Default: [`Retry::DEFAULT_RETRYABLE_CODES`] (`UNAVAILABLE` only).
    pub fn retryable_codes(mut self, codes: &[&str]) -> Self {
        self.retryable_codes = Some(codes.iter().map(|c| (*c).to_owned()).collect());
        self
    }

    /// The deadline of one attempt; each attempt gets the smaller of this and what is left
    /// of the call's deadline ([`Policy::timeout`]). Must not be zero.
    /// `attempt_timeout_ms` in proto options. Unset by default: each attempt may use all
    /// that is left.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }
}

/// How [`Policy::hedge`] hedges a slow call: when an attempt has not answered after a
/// delay, another one is sent (to another endpoint when the transport is a pool), up to
/// `max_attempts` in all; the first answer wins and the others are cancelled.
///
/// The delay is the `percentile` of the RPC's recent latencies (the last 10 to 20 s), or
/// the fixed `delay` while fewer than 20 calls have been seen, and always with
/// [`Hedge::fixed_delay`]. A failed attempt with a retryable code sends the next one at
/// once; any other code ends the call. Hedges draw on the service's retry budget.
///
/// Every field starts unset; an unset field comes from a lower layer, else from the
/// runtime's default, the one each method names.
///
/// ```
/// use std::time::Duration;
/// use resilient_build::Hedge;
///
/// // A second attempt after the 99th percentile of recent latencies (20 ms until known).
/// let hedge = Hedge::new()
///     .max_attempts(2)
///     .delay(Duration::from_millis(20))
///     .percentile(0.99);
/// // Up to 3 attempts, each 40 ms after the one before.
/// let fixed = Hedge::new().max_attempts(3).delay(Duration::from_millis(40)).fixed_delay();
/// # let _ = (hedge, fixed);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use = "a Hedge does nothing until it is passed to `Policy::hedge`"]
pub struct Hedge {
    max_attempts: Option<u32>,
    delay: Option<Duration>,
    percentile: Option<f64>,
}

// Copies of `resilient_runtime::spec::HedgeSpec::DEFAULT` and its limits: a build
// dependency must not pull in the runtime (and tonic), so these are kept in step by hand.
impl Hedge {
    /// The runtime's default `max_attempts`, used when hedging is on and no layer sets a
    /// count.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 2;
    /// The runtime's default `delay`.
    pub const DEFAULT_DELAY: Duration = Duration::from_millis(50);
    /// The runtime's default `percentile`.
    pub const DEFAULT_PERCENTILE: f64 = 0.95;
    /// The most attempts a hedged call may make.
    pub const MAX_ATTEMPTS_LIMIT: u32 = 5;
    /// The smallest `percentile` (below it, most calls would be hedged).
    pub const MIN_PERCENTILE: f64 = 0.5;
    /// The largest `percentile`.
    pub const MAX_PERCENTILE: f64 = 0.999;

    /// Hedging with the runtime's defaults: 2 attempts, the second after the 95th
    /// percentile of recent latencies (50 ms until it is known).
    pub fn new() -> Self {
        Hedge::default()
    }

    /// Attempts in all, the first included: 1 means no hedging. From 1 to 5.
    /// `hedge_max_attempts` in proto options. Unset by default: the count of a lower
    /// layer that turns hedging on, else [`Hedge::DEFAULT_MAX_ATTEMPTS`] (2).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// The wait before each hedged attempt while the percentile is not known yet (fewer
    /// than 20 recent calls), and always with [`Hedge::fixed_delay`]. Must not be zero.
    /// `hedge_delay_ms` in proto options. Default: [`Hedge::DEFAULT_DELAY`] (50 ms).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// The quantile of the RPC's recent latencies to wait before each hedged attempt, from
    /// 0.5 to 0.999: `0.95` hedges the slowest 5 % of calls. `0` means the fixed
    /// [`Hedge::delay`], like [`Hedge::fixed_delay`]. `hedge_percentile` in proto options.
    /// Default: [`Hedge::DEFAULT_PERCENTILE`] (0.95).
    pub fn percentile(mut self, quantile: f64) -> Self {
        self.percentile = Some(quantile);
        self
    }

    /// Waits the fixed [`Hedge::delay`] before each hedged attempt instead of a
    /// percentile of recent latencies (`hedge_percentile: 0` in proto options). Unset by
    /// default: the percentile.
    pub fn fixed_delay(self) -> Self {
        self.percentile(0.0)
    }
}

/// The layer that `idempotency_level = NO_SIDE_EFFECTS | IDEMPOTENT` amounts to: just
/// below the RPC's own `(resilient.v1.policy)`.
const DECLARED_IDEMPOTENT: PolicyValues = PolicyValues {
    idempotent: Some(true),
    ..PolicyValues::EMPTY
};

/// What a `.policy()` path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// `"."`: every RPC.
    Default,
    /// A package prefix (`.nova` or `.nova.auth.v1`) or a service path.
    Services,
    /// One RPC.
    Rpc,
}

/// Merges the build.rs policies with the proto options of every service and validates
/// the result. Fills `ServiceModel::shared_breaker` and `MethodModel::policy`.
///
/// `policies` holds the `.policy()` calls in call order; a later call on the same path
/// wins field by field.
pub(crate) fn resolve(
    services: &mut [ServiceModel],
    policies: &[(String, Policy)],
) -> io::Result<()> {
    let targets = classify_paths(services, policies)?;

    let defaults: Vec<&PolicyValues> = policies
        .iter()
        .zip(&targets)
        .rev()
        .filter(|(_, target)| **target == Target::Default)
        .map(|((_, policy), _)| &policy.values)
        .collect();

    let mut problems = Vec::new();
    for service in services.iter_mut() {
        // Service-level build.rs entries, most specific path first, later call first.
        let mut service_entries: Vec<(&str, &PolicyValues)> = policies
            .iter()
            .zip(&targets)
            .rev()
            .filter(|((path, _), target)| {
                **target == Target::Services && path_covers(path, &service.path)
            })
            .map(|((path, policy), _)| (path.as_str(), &policy.values))
            .collect();
        service_entries.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));

        let mut layers: Vec<(&PolicyValues, Source)> = Vec::new();
        for (path, values) in &service_entries {
            layers.push((values, Source::BuildService((*path).to_owned())));
        }
        let service_layers_end = layers.len();
        if let Some(option) = &service.option {
            layers.push((&option.values, Source::ProtoService(option.at.clone())));
        }
        for values in &defaults {
            layers.push((values, Source::BuildDefault));
        }

        service.shared_breaker = pick(&layers, |v| v.shared_breaker);

        for method in &mut service.methods {
            let mut method_layers: Vec<(&PolicyValues, Source)> = policies
                .iter()
                .zip(&targets)
                .rev()
                .filter(|((path, _), target)| **target == Target::Rpc && *path == method.path)
                .map(|((path, policy), _)| (&policy.values, Source::BuildRpc(path.clone())))
                .collect();
            method_layers.extend(layers[..service_layers_end].iter().cloned());
            if let Some(option) = &method.option {
                method_layers.push((&option.values, Source::ProtoMethod(option.at.clone())));
            }
            if let Some(declared) = &method.idempotency_level {
                method_layers.push((
                    &DECLARED_IDEMPOTENT,
                    Source::IdempotencyLevel(declared.clone()),
                ));
            }
            method_layers.extend(layers[service_layers_end..].iter().cloned());

            method.policy = EffectivePolicy {
                failure_threshold: pick(&method_layers, |v| v.failure_threshold),
                success_threshold: pick(&method_layers, |v| v.success_threshold),
                open_for: pick(&method_layers, |v| v.open_for),
                timeout: pick(&method_layers, |v| v.timeout),
                half_open_max_calls: pick(&method_layers, |v| v.half_open_max_calls),
                fallback: pick(&method_layers, |v| v.fallback),
                idempotent: pick(&method_layers, |v| v.idempotent),
                max_attempts: pick_attempts(&method_layers),
                initial_backoff: pick(&method_layers, |v| v.initial_backoff),
                max_backoff: pick(&method_layers, |v| v.max_backoff),
                backoff_multiplier: pick(&method_layers, |v| v.backoff_multiplier),
                retryable_codes: pick(&method_layers, |v| v.retryable_codes.clone()),
                attempt_timeout: pick(&method_layers, |v| v.attempt_timeout),
                max_concurrent: pick(&method_layers, |v| v.max_concurrent),
                max_wait: pick(&method_layers, |v| v.max_wait),
                shared_bulkhead: pick(&method_layers, |v| v.shared_bulkhead),
                hedge_max_attempts: pick_hedge_attempts(&method_layers),
                hedge_delay: pick(&method_layers, |v| v.hedge_delay),
                hedge_percentile: pick(&method_layers, |v| v.hedge_percentile),
                propagate_deadline: pick(&method_layers, |v| v.propagate_deadline),
            };
        }
        validate(service, &mut problems);
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(invalid_input(problems.join("\n")))
    }
}

/// The highest layer that sets the field.
fn pick<T>(
    layers: &[(&PolicyValues, Source)],
    field: impl Fn(&PolicyValues) -> Option<T>,
) -> Option<Sourced<T>> {
    layers.iter().find_map(|(values, source)| {
        field(values).map(|value| Sourced {
            value,
            source: source.clone(),
        })
    })
}

/// `max_attempts` from the highest layer that sets it, except that below a layer that
/// asks for retries without a count (`.retry(Retry::new())`), only counts above 1 apply,
/// and none means the runtime's default.
fn pick_attempts(layers: &[(&PolicyValues, Source)]) -> Option<Sourced<u32>> {
    pick_count(
        layers,
        |v| (v.max_attempts, v.retry_requested),
        Retry::DEFAULT_MAX_ATTEMPTS,
    )
}

/// `hedge_max_attempts`, picked like [`pick_attempts`] below `.hedge(Hedge::new())`.
fn pick_hedge_attempts(layers: &[(&PolicyValues, Source)]) -> Option<Sourced<u32>> {
    pick_count(
        layers,
        |v| (v.hedge_max_attempts, v.hedge_requested),
        Hedge::DEFAULT_MAX_ATTEMPTS,
    )
}

/// An attempt count from the highest layer that sets it; below a layer that turns the
/// feature on without a count (`requested`), only counts above 1 apply, and none means
/// `default`.
fn pick_count(
    layers: &[(&PolicyValues, Source)],
    field: impl Fn(&PolicyValues) -> (Option<u32>, bool),
    default: u32,
) -> Option<Sourced<u32>> {
    let mut requested_by: Option<&Source> = None;
    for (values, source) in layers {
        let (count, requested) = field(values);
        match count {
            Some(n) if requested_by.is_none() || n > 1 => {
                return Some(Sourced {
                    value: n,
                    source: source.clone(),
                });
            }
            _ => {}
        }
        if requested && requested_by.is_none() {
            requested_by = Some(source);
        }
    }
    requested_by.map(|source| Sourced {
        value: default,
        source: source.clone(),
    })
}

/// Whether a package or service path covers the service at `service_path`.
fn path_covers(path: &str, service_path: &str) -> bool {
    service_path == path
        || service_path
            .strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// Matches each `.policy()` path against the known packages, services and RPCs.
fn classify_paths(
    services: &[ServiceModel],
    policies: &[(String, Policy)],
) -> io::Result<Vec<Target>> {
    policies
        .iter()
        .map(|(path, policy)| {
            let target = classify_path(services, path)?;
            if target == Target::Rpc && policy.values.shared_breaker.is_some() {
                return Err(invalid_input(format!(
                    "`.policy(\"{path}\", ..)` sets shared_breaker, but \"{path}\" is an RPC; \
                     a breaker can only be shared by the RPCs of a service: set shared_breaker \
                     on the service path \"{}\" instead",
                    path.rsplit_once('.').map_or("", |(service, _)| service)
                )));
            }
            Ok(target)
        })
        .collect()
}

fn classify_path(services: &[ServiceModel], path: &str) -> io::Result<Target> {
    if path == "." {
        return Ok(Target::Default);
    }
    if !path.starts_with('.') {
        let qualified = format!(".{path}");
        let hint = if classify_path(services, &qualified).is_ok() {
            format!("; write \"{qualified}\"")
        } else {
            String::new()
        };
        return Err(invalid_input(format!(
            "policy path \"{path}\" must be fully qualified and start with \".\"{hint}"
        )));
    }
    for service in services {
        if service.methods.iter().any(|method| method.path == path) {
            return Ok(Target::Rpc);
        }
    }
    if services
        .iter()
        .any(|service| path_covers(path, &service.path))
    {
        return Ok(Target::Services);
    }
    let candidates = known_paths(services);
    let message = match nearest(path, &candidates) {
        Some(near) => {
            format!("no service or method matches \"{path}\"; did you mean \"{near}\"?")
        }
        None => format!(
            "no service or method matches \"{path}\"; the compiled protos define no services"
        ),
    };
    Err(invalid_input(message))
}

/// Every path a `.policy()` call may name: packages (and their prefixes), services, RPCs.
fn known_paths(services: &[ServiceModel]) -> Vec<String> {
    let mut paths = Vec::new();
    for service in services {
        let mut prefix = String::new();
        for part in service.package.split('.').filter(|p| !p.is_empty()) {
            prefix.push('.');
            prefix.push_str(part);
            paths.push(prefix.clone());
        }
        paths.push(service.path.clone());
        paths.extend(service.methods.iter().map(|m| m.path.clone()));
    }
    paths.sort();
    paths.dedup();
    paths
}

/// The candidate with the smallest edit distance to `wanted`; the first one on a tie.
pub(crate) fn nearest<'a>(wanted: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .min_by_key(|candidate| edit_distance(wanted, candidate))
        .map(String::as_str)
}

/// Levenshtein distance over chars.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Checks the effective values of every RPC of `service`, appending one line per problem.
/// The most probes a half-open breaker can have in flight (the runtime's limit).
const HALF_OPEN_MAX_CALLS_LIMIT: u32 = 0xFFFF;

fn validate(service: &ServiceModel, problems: &mut Vec<String>) {
    let shared = service.shared_breaker.as_ref().is_some_and(|s| s.value);
    for method in &service.methods {
        let policy = &method.policy;
        let counts = [
            (
                "failure_threshold",
                &policy.failure_threshold,
                "the breaker would open before any call failed",
            ),
            (
                "success_threshold",
                &policy.success_threshold,
                "a half-open breaker could never close",
            ),
            (
                "half_open_max_calls",
                &policy.half_open_max_calls,
                "a half-open breaker could never admit a probe",
            ),
        ];
        for (option, value, why) in counts {
            if let Some(Sourced { value: 0, source }) = value {
                problems.push(format!(
                    "invalid policy for {}: {option} = 0 (set by {source}); {why}. \
                     Use 1 or more, or leave it unset to take the RESILIENT_ENV preset",
                    method.path
                ));
            }
        }
        if let Some(Sourced { value, source }) = &policy.half_open_max_calls
            && *value > HALF_OPEN_MAX_CALLS_LIMIT
        {
            problems.push(format!(
                "invalid policy for {}: half_open_max_calls = {value} (set by {source}); the \
                 breaker counts at most {HALF_OPEN_MAX_CALLS_LIMIT} probes in flight. Use 1 to \
                 {HALF_OPEN_MAX_CALLS_LIMIT}",
                method.path
            ));
        }
        let durations = [
            (
                "open_for",
                &policy.open_for,
                "the breaker would never stay open",
                "take the RESILIENT_ENV preset",
            ),
            (
                "timeout",
                &policy.timeout,
                "every call would time out before it starts",
                "take the runtime's default (10s)",
            ),
        ];
        for (option, value, why, unset) in durations {
            if let Some(Sourced { value, source }) = value
                && value.is_zero()
            {
                problems.push(format!(
                    "invalid policy for {}: {option} = 0 (set by {source}); {why}. \
                     Use a positive duration, or leave it unset to {unset}",
                    method.path
                ));
            }
        }
        validate_retry(&method.path, policy, problems);
        validate_hedge(&method.path, policy, problems);
        validate_retry_or_hedge(method, problems);
        if let Some(Sourced { value: 0, source }) = &policy.max_concurrent {
            problems.push(format!(
                "invalid policy for {}: max_concurrent = 0 (set by {source}); no call could \
                 ever run. Use 1 or more, or leave it unset for no limit",
                method.path
            ));
        }
        if shared {
            let breaker_fields = [
                (
                    "failure_threshold",
                    policy.failure_threshold.as_ref().map(|s| &s.source),
                ),
                (
                    "success_threshold",
                    policy.success_threshold.as_ref().map(|s| &s.source),
                ),
                ("open_for", policy.open_for.as_ref().map(|s| &s.source)),
                (
                    "half_open_max_calls",
                    policy.half_open_max_calls.as_ref().map(|s| &s.source),
                ),
            ];
            for (option, source) in breaker_fields {
                if let Some(source) = source.filter(|s| s.is_rpc_level()) {
                    let shared_source = service
                        .shared_breaker
                        .as_ref()
                        .map(|s| s.source.to_string())
                        .unwrap_or_default();
                    problems.push(format!(
                        "invalid policy for {}: {option} is set for this RPC by {source}, but \
                         {} shares one breaker between all its RPCs (shared_breaker set by \
                         {shared_source}). Set breaker options on the service, or turn \
                         shared_breaker off",
                        method.path, service.path
                    ));
                }
            }
        }
    }
    validate_shared_bulkhead(service, problems);
}

/// The retry fields of an RPC, with the runtime's defaults for those no layer sets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetryValues {
    /// Attempts in all.
    pub(crate) max_attempts: u32,
    /// The first backoff cap.
    pub(crate) initial_backoff: Duration,
    /// The largest backoff cap.
    pub(crate) max_backoff: Duration,
    /// Growth of the cap per attempt.
    pub(crate) backoff_multiplier: f64,
    /// The retryable codes, in number order.
    pub(crate) retryable: Vec<codes::Code>,
    /// Deadline of one attempt; `None`: what is left of the call's.
    pub(crate) attempt_timeout: Option<Duration>,
}

impl RetryValues {
    /// `None` when no layer sets a retry field.
    pub(crate) fn of(policy: &EffectivePolicy) -> Option<RetryValues> {
        if !policy.has_retry() {
            return None;
        }
        let default_codes: Vec<String> = Retry::DEFAULT_RETRYABLE_CODES
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        Some(RetryValues {
            // Only `max_attempts` turns retries on; fields that only shape them leave one
            // attempt until a higher layer (or the runtime config) sets it.
            max_attempts: value_or(&policy.max_attempts, 1),
            initial_backoff: value_or(&policy.initial_backoff, Retry::DEFAULT_INITIAL_BACKOFF),
            max_backoff: value_or(&policy.max_backoff, Retry::DEFAULT_MAX_BACKOFF),
            backoff_multiplier: value_or(
                &policy.backoff_multiplier,
                Retry::DEFAULT_BACKOFF_MULTIPLIER,
            ),
            retryable: codes::set(
                policy
                    .retryable_codes
                    .as_ref()
                    .map_or(&default_codes, |c| &c.value),
            ),
            attempt_timeout: policy.attempt_timeout.as_ref().map(|t| t.value),
        })
    }
}

fn value_or<T: Clone>(value: &Option<Sourced<T>>, default: T) -> T {
    value.as_ref().map_or(default, |v| v.value.clone())
}

/// Where an effective value came from, or that it is the runtime's default.
fn source_or_default<T>(value: &Option<Sourced<T>>) -> String {
    value
        .as_ref()
        .map_or("the runtime's default".to_owned(), |v| {
            format!("set by {}", v.source)
        })
}

fn validate_retry(path: &str, policy: &EffectivePolicy, problems: &mut Vec<String>) {
    if let Some(Sourced { value, source }) = &policy.max_attempts
        && (*value == 0 || *value > Retry::MAX_ATTEMPTS_LIMIT)
    {
        let why = if *value == 0 {
            "a call makes at least one attempt"
        } else {
            "more attempts would multiply the load on a failing dependency"
        };
        problems.push(format!(
            "invalid policy for {path}: max_attempts = {value} (set by {source}); {why}. Use 1 \
             (no retry) to {}",
            Retry::MAX_ATTEMPTS_LIMIT
        ));
    }
    if let Some(Sourced { value, source }) = &policy.backoff_multiplier
        && !(value.is_finite() && *value >= 1.0)
    {
        let why = if value.is_finite() {
            "the backoff would shrink from one attempt to the next"
        } else {
            "it is not a finite number"
        };
        problems.push(format!(
            "invalid policy for {path}: backoff_multiplier = {value} (set by {source}); {why}. \
             Use a finite number of at least 1"
        ));
    }
    let durations = [
        (
            "initial_backoff",
            &policy.initial_backoff,
            "retries would not back off",
            "leave it unset for the runtime's default (50ms)",
        ),
        (
            "max_backoff",
            &policy.max_backoff,
            "retries would not back off",
            "leave it unset for the runtime's default (1s)",
        ),
        (
            "attempt_timeout",
            &policy.attempt_timeout,
            "every attempt would time out before it starts",
            "leave it unset to give each attempt what is left of the call's deadline",
        ),
    ];
    for (option, value, why, unset) in durations {
        if let Some(Sourced { value, source }) = value
            && value.is_zero()
        {
            problems.push(format!(
                "invalid policy for {path}: {option} = 0 (set by {source}); {why}. Use a \
                 positive duration, or {unset}"
            ));
        }
    }
    if let Some(Sourced { value, source }) = &policy.retryable_codes {
        for name in value {
            match codes::retryable(name) {
                Ok(_) => {}
                Err(BadCode::Ok) => problems.push(format!(
                    "invalid policy for {path}: retryable_codes names {name:?} (set by \
                     {source}), which is not an error and is never retried; remove it"
                )),
                Err(BadCode::Unknown { nearest }) => problems.push(format!(
                    "invalid policy for {path}: retryable_codes names {name:?} (set by \
                     {source}), which is not a gRPC status code; did you mean \"{nearest}\"?"
                )),
            }
        }
    }
    if let Some(retry) = RetryValues::of(policy)
        && !retry.initial_backoff.is_zero()
        && !retry.max_backoff.is_zero()
        && retry.max_backoff < retry.initial_backoff
    {
        problems.push(format!(
            "invalid policy for {path}: max_backoff = {} ({}) is below initial_backoff = \
             {} ({}); raise max_backoff or lower initial_backoff",
            show_duration(retry.max_backoff),
            source_or_default(&policy.max_backoff),
            show_duration(retry.initial_backoff),
            source_or_default(&policy.initial_backoff),
        ));
    }
}

/// The hedging fields of an RPC, with the runtime's defaults for those no layer sets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HedgeValues {
    /// Attempts in all.
    pub(crate) max_attempts: u32,
    /// The wait before each hedged attempt while the percentile is not known.
    pub(crate) delay: Duration,
    /// The latency quantile to wait; `None`: always the fixed `delay`.
    pub(crate) percentile: Option<f64>,
}

impl HedgeValues {
    /// `None` when no layer sets a hedging field.
    pub(crate) fn of(policy: &EffectivePolicy) -> Option<HedgeValues> {
        if !policy.has_hedge() {
            return None;
        }
        Some(HedgeValues {
            max_attempts: value_or(&policy.hedge_max_attempts, Hedge::DEFAULT_MAX_ATTEMPTS),
            delay: value_or(&policy.hedge_delay, Hedge::DEFAULT_DELAY),
            percentile: match &policy.hedge_percentile {
                Some(q) if q.value == 0.0 => None,
                Some(q) => Some(q.value),
                None => Some(Hedge::DEFAULT_PERCENTILE),
            },
        })
    }
}

fn validate_hedge(path: &str, policy: &EffectivePolicy, problems: &mut Vec<String>) {
    if let Some(Sourced { value, source }) = &policy.hedge_max_attempts
        && (*value == 0 || *value > Hedge::MAX_ATTEMPTS_LIMIT)
    {
        let why = if *value == 0 {
            "a call makes at least one attempt"
        } else {
            "more attempts would multiply the load on a slow dependency"
        };
        problems.push(format!(
            "invalid policy for {path}: hedge_max_attempts = {value} (set by {source}); {why}. \
             Use 1 (no hedging) to {}",
            Hedge::MAX_ATTEMPTS_LIMIT
        ));
    }
    if let Some(Sourced { value, source }) = &policy.hedge_delay
        && value.is_zero()
    {
        problems.push(format!(
            "invalid policy for {path}: hedge_delay = 0 (set by {source}); every attempt \
             would be sent at once. Use a positive duration, or leave it unset for the \
             runtime's default (50ms)"
        ));
    }
    if let Some(Sourced { value, source }) = &policy.hedge_percentile
        && !(*value == 0.0 || (Hedge::MIN_PERCENTILE..=Hedge::MAX_PERCENTILE).contains(value))
    {
        let why = if !value.is_finite() {
            "it is not a finite number"
        } else if !(0.0..=1.0).contains(value) {
            "a percentile is a fraction of the calls, between 0 and 1"
        } else if *value < Hedge::MIN_PERCENTILE {
            "most calls would be hedged"
        } else {
            "so few recent calls are that slow that the estimate would not hold"
        };
        problems.push(format!(
            "invalid policy for {path}: hedge_percentile = {value} (set by {source}); {why}. \
             Use {} to {}, or 0 (`.fixed_delay()`) to wait the fixed hedge_delay",
            Hedge::MIN_PERCENTILE,
            Hedge::MAX_PERCENTILE
        ));
    }
}

/// Hedging and retries exclude each other (the runtime rejects an RPC with both): an RPC
/// whose generated spec would turn both on fails the build, naming where each came from.
fn validate_retry_or_hedge(method: &MethodModel, problems: &mut Vec<String>) {
    let policy = &method.policy;
    let retries = RetryValues::of(policy).filter(|r| {
        method.no_retry().is_none() && (2..=Retry::MAX_ATTEMPTS_LIMIT).contains(&r.max_attempts)
    });
    let hedging = HedgeValues::of(policy).filter(|h| {
        method.no_hedge().is_none() && (2..=Hedge::MAX_ATTEMPTS_LIMIT).contains(&h.max_attempts)
    });
    if retries.is_none() || hedging.is_none() {
        return;
    }
    let hedged_by = turned_on_by(
        &policy.hedge_max_attempts,
        "hedge_max_attempts",
        Hedge::DEFAULT_MAX_ATTEMPTS,
        &[
            (
                "hedge_delay",
                policy.hedge_delay.as_ref().map(|v| &v.source),
            ),
            (
                "hedge_percentile",
                policy.hedge_percentile.as_ref().map(|v| &v.source),
            ),
        ],
    );
    let retried_by = turned_on_by(
        &policy.max_attempts,
        "max_attempts",
        Retry::DEFAULT_MAX_ATTEMPTS,
        &[
            (
                "initial_backoff",
                policy.initial_backoff.as_ref().map(|v| &v.source),
            ),
            (
                "max_backoff",
                policy.max_backoff.as_ref().map(|v| &v.source),
            ),
            (
                "backoff_multiplier",
                policy.backoff_multiplier.as_ref().map(|v| &v.source),
            ),
            (
                "retryable_codes",
                policy.retryable_codes.as_ref().map(|v| &v.source),
            ),
            (
                "attempt_timeout",
                policy.attempt_timeout.as_ref().map(|v| &v.source),
            ),
        ],
    );
    problems.push(format!(
        "invalid policy for {}: hedging ({hedged_by}) and retries ({retried_by}) exclude each \
         other. To hedge it, turn retries off for this RPC with `.no_retry()` or \
         `max_attempts: 1`; to retry it, turn hedging off with `.no_hedge()` or \
         `hedge_max_attempts: 1`",
        method.path
    ));
}

/// What turns retries or hedging on: the attempt count and its layer, else the first
/// other field that is set, with the default count.
fn turned_on_by(
    count: &Option<Sourced<u32>>,
    option: &str,
    default: u32,
    others: &[(&str, Option<&Source>)],
) -> String {
    if let Some(Sourced { value, source }) = count {
        return format!("{option} = {value}, set by {source}");
    }
    match others
        .iter()
        .find_map(|(name, source)| source.map(|s| (name, s)))
    {
        Some((name, source)) => {
            format!("{name} set by {source}, with the default {option} = {default}")
        }
        None => format!("{option} = {default} by default"),
    }
}

/// The RPCs that share a bulkhead must agree on its size and wait: the runtime builds it
/// from whichever comes first.
fn validate_shared_bulkhead(service: &ServiceModel, problems: &mut Vec<String>) {
    let sharing: Vec<_> = service
        .methods
        .iter()
        .filter(|m| {
            m.policy.shared_bulkhead.as_ref().is_some_and(|s| s.value)
                && m.policy.max_concurrent.is_some()
        })
        .collect();
    let Some((first, rest)) = sharing.split_first() else {
        return;
    };
    for other in rest {
        let fields = [
            (
                "max_concurrent",
                first
                    .policy
                    .max_concurrent
                    .as_ref()
                    .map(|v| v.value.to_string()),
                other
                    .policy
                    .max_concurrent
                    .as_ref()
                    .map(|v| v.value.to_string()),
                source_or_default(&first.policy.max_concurrent),
                source_or_default(&other.policy.max_concurrent),
            ),
            (
                "max_wait",
                Some(show_duration(value_or(
                    &first.policy.max_wait,
                    Duration::ZERO,
                ))),
                Some(show_duration(value_or(
                    &other.policy.max_wait,
                    Duration::ZERO,
                ))),
                source_or_default(&first.policy.max_wait),
                source_or_default(&other.policy.max_wait),
            ),
        ];
        for (option, a, b, a_source, b_source) in fields {
            if a != b {
                problems.push(format!(
                    "invalid policy for {}: {} and {} share one bulkhead (shared_bulkhead) but \
                     ask for different sizes: {option} = {} ({a_source}) and {} ({b_source}). \
                     Set the bulkhead on the service, or turn shared_bulkhead off for one of them",
                    service.path,
                    first.proto_name,
                    other.proto_name,
                    a.unwrap_or_default(),
                    b.unwrap_or_default(),
                ));
            }
        }
    }
}

/// One line per RPC whose policy asks for retries or hedging the runtime never does, for
/// the builder to print as `cargo:warning`.
pub(crate) fn warnings(services: &[ServiceModel]) -> Vec<String> {
    let mut warnings = Vec::new();
    for method in services.iter().flat_map(|s| &s.methods) {
        if let Some(warning) = hedge_warning(method) {
            warnings.push(warning);
        }
        let policy = &method.policy;
        let (Some(attempts), Some(reason)) = (&policy.max_attempts, method.no_retry()) else {
            continue;
        };
        if !policy.asks_for_retries() {
            continue;
        }
        let asked = format!(
            "{}: retries are configured (max_attempts = {}, set by {})",
            method.path, attempts.value, attempts.source
        );
        warnings.push(match reason {
            NoRetry::NotIdempotent => {
                let why = match &policy.idempotent {
                    Some(Sourced { source, .. }) => {
                        format!("it is declared not idempotent by {source}")
                    }
                    None => "nothing declares it idempotent".to_owned(),
                };
                format!(
                    "{asked}, but {why}, so it is never retried. If repeating it is safe, mark \
                     it with `option idempotency_level = IDEMPOTENT;` (or NO_SIDE_EFFECTS) in \
                     the proto, `idempotent: true` in its `(resilient.v1.policy)`, or \
                     `.idempotent(true)` in build.rs; otherwise turn retries off for it with \
                     `.no_retry()` or `max_attempts: 1`"
                )
            }
            NoRetry::StreamedRequest => format!(
                "{asked}, but it is a {} RPC: its request stream is consumed by the first \
                 attempt, so it is never retried. Turn retries off for it with `.no_retry()` \
                 or `max_attempts: 1`",
                method.kind.describe()
            ),
        });
    }
    warnings
}

/// The warning for an RPC whose policy asks for hedging that the runtime never does.
fn hedge_warning(method: &MethodModel) -> Option<String> {
    let policy = &method.policy;
    let reason = method.no_hedge()?;
    let hedge = HedgeValues::of(policy).filter(|h| h.max_attempts > 1)?;
    let asked = match &policy.hedge_max_attempts {
        Some(Sourced { value, source }) => format!(
            "{}: hedging is configured (hedge_max_attempts = {value}, set by {source})",
            method.path
        ),
        None => {
            let source = [
                policy
                    .hedge_delay
                    .as_ref()
                    .map(|v| ("hedge_delay", &v.source)),
                policy
                    .hedge_percentile
                    .as_ref()
                    .map(|v| ("hedge_percentile", &v.source)),
            ]
            .into_iter()
            .flatten()
            .next()
            .map_or_else(String::new, |(name, source)| {
                format!("{name} set by {source}, ")
            });
            format!(
                "{}: hedging is configured ({source}hedge_max_attempts = {} by default)",
                method.path, hedge.max_attempts
            )
        }
    };
    Some(match reason {
        NoHedge::NotIdempotent => {
            let why = match &policy.idempotent {
                Some(Sourced { source, .. }) => {
                    format!("it is declared not idempotent by {source}")
                }
                None => "nothing declares it idempotent".to_owned(),
            };
            format!(
                "{asked}, but {why}, so it is never hedged. If repeating it is safe, mark it \
                 with `option idempotency_level = IDEMPOTENT;` (or NO_SIDE_EFFECTS) in the \
                 proto, `idempotent: true` in its `(resilient.v1.policy)`, or \
                 `.idempotent(true)` in build.rs; otherwise turn hedging off for it with \
                 `.no_hedge()` or `hedge_max_attempts: 1`"
            )
        }
        NoHedge::NotUnary => format!(
            "{asked}, but it is a {} RPC and only unary calls are hedged, so it is never \
             hedged. Turn hedging off for it with `.no_hedge()` or `hedge_max_attempts: 1`",
            method.kind.describe()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MethodModel, ProtoLocation, ProtoOption, RpcKind};

    fn method(service: &str, name: &str) -> MethodModel {
        MethodModel {
            path: format!("{service}.{name}"),
            proto_name: name.to_owned(),
            line: 1,
            rust_name: heck::ToSnakeCase::to_snake_case(name),
            kind: RpcKind::Unary,
            input_type: "super::Req".to_owned(),
            output_type: "super::Resp".to_owned(),
            comments: Vec::new(),
            deprecated: false,
            idempotency_level: None,
            option: None,
            policy: EffectivePolicy::default(),
        }
    }

    fn service(package: &str, name: &str, methods: &[&str]) -> ServiceModel {
        let path = format!(".{package}.{name}");
        ServiceModel {
            methods: methods.iter().map(|m| method(&path, m)).collect(),
            path,
            package: package.to_owned(),
            proto_name: name.to_owned(),
            rust_name: name.to_owned(),
            file: "x.proto".to_owned(),
            line: 1,
            comments: Vec::new(),
            deprecated: false,
            option: None,
            shared_breaker: None,
        }
    }

    fn at(line: u32) -> ProtoLocation {
        ProtoLocation {
            file: "nova/auth/v1/auth.proto".to_owned(),
            line,
        }
    }

    fn fixture() -> Vec<ServiceModel> {
        let mut auth = service("nova.auth.v1", "AuthService", &["ValidateToken", "Login"]);
        auth.option = Some(ProtoOption {
            values: Policy::new()
                .failure_threshold(7)
                .timeout(Duration::from_millis(900))
                .values,
            at: at(9),
        });
        auth.methods[0].option = Some(ProtoOption {
            values: Policy::new()
                .timeout(Duration::from_millis(2000))
                .fallback(true)
                .values,
            at: at(12),
        });
        let media = service(
            "nova.media.v1",
            "MediaService",
            &["UploadMedia", "GetMedia"],
        );
        vec![auth, media]
    }

    fn policies(entries: Vec<(&str, Policy)>) -> Vec<(String, Policy)> {
        entries
            .into_iter()
            .map(|(p, v)| (p.to_owned(), v))
            .collect()
    }

    fn err(services: &mut [ServiceModel], entries: Vec<(&str, Policy)>) -> String {
        resolve(services, &policies(entries))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn layers_merge_field_by_field_in_documented_order() {
        let mut services = fixture();
        resolve(
            &mut services,
            &policies(vec![
                (
                    ".",
                    Policy::new()
                        .failure_threshold(1)
                        .success_threshold(1)
                        .half_open_max_calls(4),
                ),
                (
                    ".nova.auth.v1.AuthService",
                    Policy::new().success_threshold(3),
                ),
                (
                    ".nova.auth.v1.AuthService.ValidateToken",
                    Policy::new().success_threshold(5),
                ),
            ]),
        )
        .unwrap();
        let validate = &services[0].methods[0].policy;
        // build.rs per-RPC beats build.rs per-service.
        assert_eq!(validate.success_threshold.as_ref().unwrap().value, 5);
        assert_eq!(
            validate.success_threshold.as_ref().unwrap().source,
            Source::BuildRpc(".nova.auth.v1.AuthService.ValidateToken".to_owned())
        );
        // proto method option beats proto service option.
        assert_eq!(
            validate.timeout.as_ref().unwrap().value,
            Duration::from_millis(2000)
        );
        assert_eq!(
            validate.timeout.as_ref().unwrap().source,
            Source::ProtoMethod(at(12))
        );
        // proto service option beats build.rs default.
        assert_eq!(validate.failure_threshold.as_ref().unwrap().value, 7);
        assert_eq!(
            validate.failure_threshold.as_ref().unwrap().source,
            Source::ProtoService(at(9))
        );
        // build.rs default fills the rest; nothing sets open_for.
        assert_eq!(
            validate.half_open_max_calls.as_ref().unwrap().source,
            Source::BuildDefault
        );
        assert_eq!(validate.open_for, None);
        assert_eq!(
            validate.fallback.as_ref().unwrap().value,
            FallbackMode::DEFAULT
        );

        let login = &services[0].methods[1].policy;
        assert_eq!(login.success_threshold.as_ref().unwrap().value, 3);
        assert_eq!(
            login.timeout.as_ref().unwrap().value,
            Duration::from_millis(900)
        );
        assert_eq!(login.fallback, None);

        let upload = &services[1].methods[0].policy;
        assert_eq!(upload.failure_threshold.as_ref().unwrap().value, 1);
        assert_eq!(upload.success_threshold.as_ref().unwrap().value, 1);
    }

    #[test]
    fn build_service_policy_beats_proto_method_option() {
        let mut services = fixture();
        resolve(
            &mut services,
            &policies(vec![(
                ".nova.auth.v1.AuthService",
                Policy::new().timeout(Duration::from_secs(2)),
            )]),
        )
        .unwrap();
        let timeout = services[0].methods[0].policy.timeout.clone().unwrap();
        assert_eq!(timeout.value, Duration::from_secs(2));
        assert_eq!(
            timeout.source,
            Source::BuildService(".nova.auth.v1.AuthService".to_owned())
        );
    }

    #[test]
    fn package_paths_apply_below_service_paths_and_later_calls_win() {
        let mut services = fixture();
        resolve(
            &mut services,
            &policies(vec![
                (
                    ".nova",
                    Policy::new().failure_threshold(2).success_threshold(2),
                ),
                (".nova.media.v1", Policy::new().failure_threshold(4)),
                (
                    ".nova.media.v1.MediaService",
                    Policy::new().open_for(Duration::from_secs(1)),
                ),
                (
                    ".nova.media.v1.MediaService",
                    Policy::new().open_for(Duration::from_secs(9)),
                ),
            ]),
        )
        .unwrap();
        let upload = &services[1].methods[0].policy;
        assert_eq!(upload.failure_threshold.as_ref().unwrap().value, 4);
        assert_eq!(upload.success_threshold.as_ref().unwrap().value, 2);
        assert_eq!(
            upload.open_for.as_ref().unwrap().value,
            Duration::from_secs(9)
        );
        // `.nova` beats the proto service option of AuthService.
        assert_eq!(
            services[0].methods[1]
                .policy
                .failure_threshold
                .as_ref()
                .unwrap()
                .value,
            2
        );
    }

    #[test]
    fn idempotency_comes_from_level_option_or_build() {
        let mut services = fixture();
        services[1].methods[1].idempotency_level = Some(crate::model::DeclaredIdempotency {
            level: "NO_SIDE_EFFECTS",
            at: at(30),
        });
        services[0].methods[1].idempotency_level = Some(crate::model::DeclaredIdempotency {
            level: "IDEMPOTENT",
            at: at(14),
        });
        resolve(
            &mut services,
            &policies(vec![(
                ".nova.auth.v1.AuthService.Login",
                Policy::new().idempotent(false),
            )]),
        )
        .unwrap();
        assert!(services[1].methods[1].policy.is_idempotent());
        assert!(!services[1].methods[0].policy.is_idempotent());
        assert_eq!(services[1].methods[0].policy.idempotent, None);
        assert!(!services[0].methods[1].policy.is_idempotent());
    }

    #[test]
    fn shared_breaker_is_a_service_setting() {
        let mut services = fixture();
        resolve(
            &mut services,
            &policies(vec![(
                ".nova.media.v1.MediaService",
                Policy::new().shared_breaker(true),
            )]),
        )
        .unwrap();
        assert!(services[1].shared_breaker.as_ref().unwrap().value);
        assert_eq!(services[0].shared_breaker, None);

        let message = err(
            &mut fixture(),
            vec![(
                ".nova.media.v1.MediaService.GetMedia",
                Policy::new().shared_breaker(true),
            )],
        );
        assert!(message.contains("sets shared_breaker"), "{message}");
        assert!(
            message.contains("\".nova.media.v1.MediaService\""),
            "{message}"
        );
    }

    #[test]
    fn shared_breaker_rejects_per_rpc_breaker_settings() {
        // ValidateToken's proto option sets only timeout and fallback, which stay per RPC;
        // the service option's failure_threshold applies to the shared breaker: allowed.
        let mut services = fixture();
        resolve(
            &mut services,
            &policies(vec![(
                ".nova.auth.v1.AuthService",
                Policy::new().shared_breaker(true),
            )]),
        )
        .unwrap();

        let message = err(
            &mut fixture(),
            vec![
                (
                    ".nova.auth.v1.AuthService",
                    Policy::new().shared_breaker(true),
                ),
                (
                    ".nova.auth.v1.AuthService.Login",
                    Policy::new().failure_threshold(2),
                ),
            ],
        );
        assert!(
            message.contains(".nova.auth.v1.AuthService.Login: failure_threshold"),
            "{message}"
        );
        assert!(message.contains("turn shared_breaker off"), "{message}");
    }

    #[test]
    fn unknown_paths_name_the_nearest_real_path() {
        let table: &[(&str, &str)] = &[
            (".nova.auth.v1.AuthServce", ".nova.auth.v1.AuthService"),
            (
                ".nova.auth.v1.AuthService.ValidateTokn",
                ".nova.auth.v1.AuthService.ValidateToken",
            ),
            (".nova.media.v2", ".nova.media.v1"),
            (".nova.auth.v1.Auth", ".nova.auth.v1"),
        ];
        for (wrong, near) in table {
            let message = err(&mut fixture(), vec![(*wrong, Policy::new())]);
            assert_eq!(
                message,
                format!("no service or method matches \"{wrong}\"; did you mean \"{near}\"?")
            );
        }
    }

    #[test]
    fn relative_paths_are_rejected_with_the_fix() {
        let message = err(
            &mut fixture(),
            vec![("nova.auth.v1.AuthService", Policy::new())],
        );
        assert!(message.contains("must be fully qualified"), "{message}");
        assert!(
            message.contains("write \".nova.auth.v1.AuthService\""),
            "{message}"
        );
    }

    #[test]
    fn zero_values_name_rpc_option_and_source() {
        let message = err(
            &mut fixture(),
            vec![(
                ".nova.media.v1.MediaService",
                Policy::new().failure_threshold(0),
            )],
        );
        assert!(
            message.contains(
                "invalid policy for .nova.media.v1.MediaService.UploadMedia: failure_threshold = 0"
            ),
            "{message}"
        );
        assert!(
            message.contains("set by build.rs `.policy(\".nova.media.v1.MediaService\", ..)`"),
            "{message}"
        );
        assert!(message.contains("Use 1 or more"), "{message}");

        let mut services = fixture();
        services[0].methods[1].option = Some(ProtoOption {
            values: Policy::new().timeout(Duration::ZERO).values,
            at: at(20),
        });
        let message = err(&mut services, vec![]);
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(
            message.contains(".nova.auth.v1.AuthService.Login: timeout = 0"),
            "{message}"
        );
        assert!(
            message.contains("`(resilient.v1.policy)` at nova/auth/v1/auth.proto:20"),
            "{message}"
        );

        for policy in [
            Policy::new().success_threshold(0),
            Policy::new().half_open_max_calls(0),
            Policy::new().open_for(Duration::ZERO),
        ] {
            let message = err(&mut fixture(), vec![(".", policy)]);
            assert!(message.contains("build.rs default policy"), "{message}");
        }
    }

    #[test]
    fn more_probes_than_the_runtime_counts_is_an_error() {
        let message = err(
            &mut fixture(),
            vec![(".", Policy::new().half_open_max_calls(100_000))],
        );
        assert!(
            message.contains("half_open_max_calls = 100000 (set by build.rs default policy"),
            "{message}"
        );
        assert!(message.contains("Use 1 to 65535"), "{message}");
        let mut services = fixture();
        resolve(
            &mut services,
            &policies(vec![(".", Policy::new().half_open_max_calls(65_535))]),
        )
        .unwrap();
    }

    #[test]
    fn overridden_zero_is_not_an_error() {
        let mut services = fixture();
        resolve(
            &mut services,
            &policies(vec![
                (".", Policy::new().failure_threshold(0)),
                (".nova", Policy::new().failure_threshold(3)),
            ]),
        )
        .unwrap();
    }

    #[test]
    fn edit_distance_table() {
        for (a, b, d) in [
            ("", "", 0),
            ("a", "", 1),
            ("kitten", "sitting", 3),
            ("abc", "abc", 0),
            ("ab", "ba", 2),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a} {b}");
        }
        assert_eq!(nearest("x", &[]), None);
    }

    #[test]
    fn fallback_bool_maps_to_modes() {
        assert_eq!(
            Policy::new().fallback(true).values.fallback,
            Some(FallbackMode::DEFAULT)
        );
        assert_eq!(
            Policy::new().fallback(false).values.fallback,
            Some(FallbackMode::NONE)
        );
        assert_eq!(
            Policy::new().fallback_on(FallbackMode::ALL).values.fallback,
            Some(FallbackMode::ALL)
        );
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn rpc(name: &str) -> Source {
        Source::BuildRpc(name.to_owned())
    }

    #[test]
    fn retry_sets_attempts_and_only_the_fields_it_names() {
        let values = Policy::new().retry(Retry::new()).values;
        assert_eq!(
            values,
            PolicyValues {
                retry_requested: true,
                ..PolicyValues::EMPTY
            }
        );
        // A second call merges, the later one winning field by field.
        let values = Policy::new()
            .retry(
                Retry::new()
                    .max_attempts(5)
                    .initial_backoff(ms(10))
                    .retryable_codes(&["ABORTED"]),
            )
            .retry(
                Retry::new()
                    .initial_backoff(ms(20))
                    .attempt_timeout(ms(300)),
            )
            .values;
        assert_eq!(values.max_attempts, Some(5));
        assert_eq!(values.initial_backoff, Some(ms(20)));
        assert_eq!(values.retryable_codes, Some(vec!["ABORTED".to_owned()]));
        assert_eq!(values.attempt_timeout, Some(ms(300)));
        assert_eq!(values.max_backoff, None);
        // The later of `.retry()` and `.no_retry()` wins.
        let off = Policy::new().retry(Retry::new()).no_retry().values;
        assert_eq!((off.max_attempts, off.retry_requested), (Some(1), false));
        let on = Policy::new().no_retry().retry(Retry::new()).values;
        assert_eq!((on.max_attempts, on.retry_requested), (None, true));
        let bulkhead = Policy::new()
            .bulkhead(8)
            .bulkhead_wait(ms(5))
            .shared_bulkhead(true)
            .values;
        assert_eq!(
            (
                bulkhead.max_concurrent,
                bulkhead.max_wait,
                bulkhead.shared_bulkhead
            ),
            (Some(8), Some(ms(5)), Some(true))
        );
    }

    #[test]
    fn retry_and_bulkhead_fields_merge_per_field_with_sources() {
        let mut services = fixture();
        services[0].option = Some(ProtoOption {
            values: PolicyValues {
                max_attempts: Some(2),
                backoff_multiplier: Some(1.5),
                max_concurrent: Some(16),
                ..PolicyValues::EMPTY
            },
            at: at(9),
        });
        services[0].methods[0].option = Some(ProtoOption {
            values: PolicyValues {
                retryable_codes: Some(vec!["UNAVAILABLE".into(), "ABORTED".into()]),
                max_wait: Some(ms(25)),
                ..PolicyValues::EMPTY
            },
            at: at(12),
        });
        resolve(
            &mut services,
            &policies(vec![
                (".", Policy::new().bulkhead_wait(ms(1))),
                (
                    ".nova.auth.v1.AuthService",
                    Policy::new().retry(Retry::new().max_attempts(4).initial_backoff(ms(10))),
                ),
                (".nova.auth.v1.AuthService.Login", Policy::new().no_retry()),
            ]),
        )
        .unwrap();
        let validate = &services[0].methods[0].policy;
        let service = Source::BuildService(".nova.auth.v1.AuthService".to_owned());
        // build.rs per-service beats the proto service option...
        assert_eq!(
            validate.max_attempts,
            Some(Sourced {
                value: 4,
                source: service.clone()
            })
        );
        assert_eq!(validate.initial_backoff.as_ref().unwrap().source, service);
        // ...which still fills what build.rs leaves unset.
        assert_eq!(
            validate.backoff_multiplier,
            Some(Sourced {
                value: 1.5,
                source: Source::ProtoService(at(9))
            })
        );
        assert_eq!(
            validate.retryable_codes.as_ref().unwrap().source,
            Source::ProtoMethod(at(12))
        );
        assert_eq!(validate.max_backoff, None);
        assert_eq!(
            validate.max_concurrent.as_ref().unwrap().source,
            Source::ProtoService(at(9))
        );
        // The method option beats the build.rs default.
        assert_eq!(validate.max_wait.as_ref().unwrap().value, ms(25));

        let retry = RetryValues::of(validate).unwrap();
        assert_eq!(retry.max_attempts, 4);
        assert_eq!(retry.max_backoff, Retry::DEFAULT_MAX_BACKOFF);
        let numbers: Vec<i32> = retry.retryable.iter().map(|c| c.number).collect();
        assert_eq!(numbers, [10, 14]);

        let login = &services[0].methods[1].policy;
        assert_eq!(
            login.max_attempts,
            Some(Sourced {
                value: 1,
                source: rpc(".nova.auth.v1.AuthService.Login")
            })
        );
        assert!(!login.asks_for_retries() && login.has_retry());
        assert_eq!(
            login.max_wait.as_ref().unwrap().source,
            Source::BuildDefault
        );

        // No layer sets anything for MediaService.
        let upload = &services[1].methods[0].policy;
        assert!(!upload.has_retry() && RetryValues::of(upload).is_none());
        assert!(upload.max_concurrent.is_none() && upload.has_bulkhead_fields());
    }

    #[test]
    fn retry_without_a_count_keeps_a_lower_layers_count_but_not_its_no_retry() {
        /// Proto service `max_attempts`, proto method `max_attempts`, build.rs per RPC,
        /// the expected count and layer.
        type Case = (
            Option<u32>,
            Option<u32>,
            Policy,
            Option<(u32, &'static str)>,
        );
        let table: Vec<Case> = vec![
            (
                None,
                Some(4),
                Policy::new().retry(Retry::new()),
                Some((4, "method")),
            ),
            (
                Some(5),
                Some(1),
                Policy::new().retry(Retry::new()),
                Some((5, "service")),
            ),
            (
                None,
                Some(1),
                Policy::new().retry(Retry::new()),
                Some((3, "build")),
            ),
            (
                None,
                None,
                Policy::new().retry(Retry::new()),
                Some((3, "build")),
            ),
            (
                None,
                Some(4),
                Policy::new().retry(Retry::new().max_attempts(2)),
                Some((2, "build")),
            ),
            (None, Some(4), Policy::new().no_retry(), Some((1, "build"))),
            (Some(5), Some(1), Policy::new(), Some((1, "method"))),
            (None, None, Policy::new(), None),
        ];
        for (service_attempts, method_attempts, policy, expected) in table {
            let mut services = fixture();
            services[0].option = service_attempts.map(|n| ProtoOption {
                values: PolicyValues {
                    max_attempts: Some(n),
                    ..PolicyValues::EMPTY
                },
                at: at(9),
            });
            services[0].methods[1].option = method_attempts.map(|n| ProtoOption {
                values: PolicyValues {
                    max_attempts: Some(n),
                    ..PolicyValues::EMPTY
                },
                at: at(20),
            });
            let login = ".nova.auth.v1.AuthService.Login";
            resolve(&mut services, &policies(vec![(login, policy.clone())])).unwrap();
            let expected = expected.map(|(value, layer)| Sourced {
                value,
                source: match layer {
                    "service" => Source::ProtoService(at(9)),
                    "method" => Source::ProtoMethod(at(20)),
                    _ => rpc(login),
                },
            });
            assert_eq!(
                services[0].methods[1].policy.max_attempts, expected,
                "{service_attempts:?} {method_attempts:?} {policy:?}"
            );
        }
    }

    #[test]
    fn invalid_retry_and_bulkhead_values_name_rpc_option_and_source() {
        let login = ".nova.auth.v1.AuthService.Login";
        let table: Vec<(Policy, &str)> = vec![
            (
                Policy::new().retry(Retry::new().max_attempts(0)),
                "max_attempts = 0 (set by build.rs `.policy(\".nova.auth.v1.AuthService.Login\", ..)`); \
                 a call makes at least one attempt. Use 1 (no retry) to 10",
            ),
            (
                Policy::new().retry(Retry::new().max_attempts(11)),
                "max_attempts = 11 (set by",
            ),
            (
                Policy::new().retry(Retry::new().backoff_multiplier(0.5)),
                "backoff_multiplier = 0.5 (set by build.rs `.policy(\".nova.auth.v1.AuthService.Login\", ..)`); \
                 the backoff would shrink from one attempt to the next. Use a finite number of at least 1",
            ),
            (
                Policy::new().retry(Retry::new().backoff_multiplier(f64::NAN)),
                "backoff_multiplier = NaN (set by",
            ),
            (
                Policy::new().retry(Retry::new().backoff_multiplier(f64::INFINITY)),
                "backoff_multiplier = inf (set by",
            ),
            (
                Policy::new().retry(Retry::new().initial_backoff(Duration::ZERO)),
                "initial_backoff = 0 (set by",
            ),
            (
                Policy::new().retry(Retry::new().max_backoff(Duration::ZERO)),
                "max_backoff = 0 (set by",
            ),
            (
                Policy::new().retry(Retry::new().attempt_timeout(Duration::ZERO)),
                "attempt_timeout = 0 (set by",
            ),
            (
                Policy::new().retry(Retry::new().retryable_codes(&["UNAVAILBLE"])),
                "retryable_codes names \"UNAVAILBLE\" (set by build.rs \
                 `.policy(\".nova.auth.v1.AuthService.Login\", ..)`), which is not a gRPC status \
                 code; did you mean \"UNAVAILABLE\"?",
            ),
            (
                Policy::new().retry(Retry::new().retryable_codes(&["ok"])),
                "retryable_codes names \"ok\" (set by",
            ),
            (
                Policy::new().retry(Retry::new().initial_backoff(ms(2000))),
                "max_backoff = 1s (the runtime's default) is below initial_backoff = 2s (set by \
                 build.rs `.policy(\".nova.auth.v1.AuthService.Login\", ..)`); raise max_backoff \
                 or lower initial_backoff",
            ),
            (
                Policy::new().bulkhead(0),
                "max_concurrent = 0 (set by build.rs `.policy(\".nova.auth.v1.AuthService.Login\", ..)`); \
                 no call could ever run",
            ),
        ];
        for (policy, expected) in table {
            let message = err(&mut fixture(), vec![(login, policy)]);
            assert_eq!(message.lines().count(), 1, "{message}");
            assert!(
                message.starts_with(&format!("invalid policy for {login}: {expected}")),
                "{message}\n{expected}"
            );
        }

        // From a proto option, the source is its file and line.
        let mut services = fixture();
        services[0].methods[1].option = Some(ProtoOption {
            values: PolicyValues {
                retryable_codes: Some(vec!["DEADLINE".into()]),
                ..PolicyValues::EMPTY
            },
            at: at(20),
        });
        let message = err(&mut services, vec![]);
        assert_eq!(
            message,
            "invalid policy for .nova.auth.v1.AuthService.Login: retryable_codes names \
             \"DEADLINE\" (set by `(resilient.v1.policy)` at nova/auth/v1/auth.proto:20), which is \
             not a gRPC status code; did you mean \"DEADLINE_EXCEEDED\"?"
        );
    }

    #[test]
    fn valid_edges_and_overridden_values_are_accepted() {
        for policy in [
            Policy::new().retry(Retry::new().max_attempts(1)),
            Policy::new().retry(Retry::new().max_attempts(10)),
            Policy::new().retry(Retry::new().backoff_multiplier(1.0)),
            Policy::new().retry(Retry::new().retryable_codes(&[])),
            Policy::new().retry(Retry::new().initial_backoff(ms(2000)).max_backoff(ms(2000))),
            Policy::new().bulkhead(1).bulkhead_wait(Duration::ZERO),
        ] {
            resolve(
                &mut fixture(),
                &policies(vec![(".nova.auth.v1.AuthService.Login", policy)]),
            )
            .unwrap();
        }
        resolve(
            &mut fixture(),
            &policies(vec![
                (".", Policy::new().retry(Retry::new().max_attempts(0))),
                (".nova", Policy::new().retry(Retry::new().max_attempts(2))),
            ]),
        )
        .unwrap();
    }

    #[test]
    fn rpcs_sharing_a_bulkhead_must_agree_on_it() {
        let mut services = fixture();
        resolve(
            &mut services,
            &policies(vec![(
                ".nova.auth.v1.AuthService",
                Policy::new().bulkhead(8).shared_bulkhead(true),
            )]),
        )
        .unwrap();
        assert!(
            services[0]
                .methods
                .iter()
                .all(|m| m.policy.shared_bulkhead.as_ref().unwrap().value)
        );

        let message = err(
            &mut fixture(),
            vec![
                (
                    ".nova.auth.v1.AuthService",
                    Policy::new().bulkhead(8).shared_bulkhead(true),
                ),
                (
                    ".nova.auth.v1.AuthService.Login",
                    Policy::new().bulkhead(4).bulkhead_wait(ms(10)),
                ),
            ],
        );
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(
            lines,
            [
                "invalid policy for .nova.auth.v1.AuthService: ValidateToken and Login share one \
                 bulkhead (shared_bulkhead) but ask for different sizes: max_concurrent = 8 (set \
                 by build.rs `.policy(\".nova.auth.v1.AuthService\", ..)`) and 4 (set by build.rs \
                 `.policy(\".nova.auth.v1.AuthService.Login\", ..)`). Set the bulkhead on the \
                 service, or turn shared_bulkhead off for one of them",
                "invalid policy for .nova.auth.v1.AuthService: ValidateToken and Login share one \
                 bulkhead (shared_bulkhead) but ask for different sizes: max_wait = 0s (the \
                 runtime's default) and 10ms (set by build.rs \
                 `.policy(\".nova.auth.v1.AuthService.Login\", ..)`). Set the bulkhead on the \
                 service, or turn shared_bulkhead off for one of them",
            ]
        );

        // An RPC that leaves the shared bulkhead may size its own.
        resolve(
            &mut fixture(),
            &policies(vec![
                (
                    ".nova.auth.v1.AuthService",
                    Policy::new().bulkhead(8).shared_bulkhead(true),
                ),
                (
                    ".nova.auth.v1.AuthService.Login",
                    Policy::new().bulkhead(4).shared_bulkhead(false),
                ),
            ]),
        )
        .unwrap();
    }

    #[test]
    fn warnings_for_retries_that_never_happen() {
        let mut services = fixture();
        services[0].methods[0].idempotency_level = Some(crate::model::DeclaredIdempotency {
            level: "IDEMPOTENT",
            at: at(13),
        });
        services[1].methods[0].kind = RpcKind::ClientStreaming;
        services[1].methods[1].kind = RpcKind::BidiStreaming;
        resolve(
            &mut services,
            &policies(vec![
                (".", Policy::new().retry(Retry::new())),
                (
                    ".nova.auth.v1.AuthService.Login",
                    Policy::new().idempotent(false),
                ),
                (
                    ".nova.media.v1.MediaService.UploadMedia",
                    Policy::new().idempotent(true),
                ),
                (
                    ".nova.media.v1.MediaService.GetMedia",
                    Policy::new().idempotent(true).no_retry(),
                ),
            ]),
        )
        .unwrap();
        let warnings = warnings(&services);
        // ValidateToken is idempotent and unary: retried, no warning. GetMedia: retries off.
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert_eq!(
            warnings[0],
            ".nova.auth.v1.AuthService.Login: retries are configured (max_attempts = 3, set by \
             build.rs default policy (`.policy(\".\", ..)`)), but it is declared not idempotent by \
             build.rs `.policy(\".nova.auth.v1.AuthService.Login\", ..)`, so it is never retried. \
             If repeating it is safe, mark it with `option idempotency_level = IDEMPOTENT;` (or \
             NO_SIDE_EFFECTS) in the proto, `idempotent: true` in its `(resilient.v1.policy)`, or \
             `.idempotent(true)` in build.rs; otherwise turn retries off for it with \
             `.no_retry()` or `max_attempts: 1`"
        );
        assert_eq!(
            warnings[1],
            ".nova.media.v1.MediaService.UploadMedia: retries are configured (max_attempts = 3, \
             set by build.rs default policy (`.policy(\".\", ..)`)), but it is a client streaming \
             RPC: its request stream is consumed by the first attempt, so it is never retried. \
             Turn retries off for it with `.no_retry()` or `max_attempts: 1`"
        );
        assert!(warnings.iter().all(|w| !w.contains('\n')));

        // Without retries, no warnings.
        let mut services = fixture();
        resolve(&mut services, &[]).unwrap();
        assert!(self::warnings(&services).is_empty());
    }

    #[test]
    fn hedge_sets_attempts_and_only_the_fields_it_names() {
        let values = Policy::new().hedge(Hedge::new()).values;
        assert_eq!(
            values,
            PolicyValues {
                hedge_requested: true,
                ..PolicyValues::EMPTY
            }
        );
        let values = Policy::new()
            .hedge(Hedge::new().max_attempts(3).delay(ms(10)))
            .hedge(Hedge::new().fixed_delay())
            .values;
        assert_eq!(values.hedge_max_attempts, Some(3));
        assert_eq!(values.hedge_delay, Some(ms(10)));
        assert_eq!(values.hedge_percentile, Some(0.0));
        assert_eq!(
            Policy::new()
                .hedge(Hedge::new().percentile(0.9))
                .values
                .hedge_percentile,
            Some(0.9)
        );
        // The later of `.hedge()` and `.no_hedge()` wins.
        let off = Policy::new().hedge(Hedge::new()).no_hedge().values;
        assert_eq!(
            (off.hedge_max_attempts, off.hedge_requested),
            (Some(1), false)
        );
        let on = Policy::new().no_hedge().hedge(Hedge::new()).values;
        assert_eq!((on.hedge_max_attempts, on.hedge_requested), (None, true));
    }

    #[test]
    fn hedge_fields_merge_per_field_with_sources() {
        let mut services = fixture();
        services[0].option = Some(ProtoOption {
            values: PolicyValues {
                hedge_delay: Some(ms(40)),
                hedge_max_attempts: Some(4),
                ..PolicyValues::EMPTY
            },
            at: at(9),
        });
        services[0].methods[0].option = Some(ProtoOption {
            values: PolicyValues {
                hedge_percentile: Some(0.0),
                hedge_max_attempts: Some(1),
                ..PolicyValues::EMPTY
            },
            at: at(12),
        });
        let validate = ".nova.auth.v1.AuthService.ValidateToken";
        resolve(
            &mut services,
            &policies(vec![
                (".", Policy::new().hedge(Hedge::new().delay(ms(5)))),
                (validate, Policy::new().idempotent(true).hedge(Hedge::new())),
                (
                    ".nova.auth.v1.AuthService.Login",
                    Policy::new().hedge(Hedge::new().max_attempts(3).percentile(0.99)),
                ),
            ]),
        )
        .unwrap();
        let policy = &services[0].methods[0].policy;
        // `.hedge(Hedge::new())` keeps a lower layer's count above 1, not its "no hedging".
        assert_eq!(
            policy.hedge_max_attempts,
            Some(Sourced {
                value: 4,
                source: Source::ProtoService(at(9))
            })
        );
        // The proto service option beats the build.rs default.
        assert_eq!(
            policy.hedge_delay,
            Some(Sourced {
                value: ms(40),
                source: Source::ProtoService(at(9))
            })
        );
        assert_eq!(
            policy.hedge_percentile,
            Some(Sourced {
                value: 0.0,
                source: Source::ProtoMethod(at(12))
            })
        );
        assert_eq!(
            HedgeValues::of(policy),
            Some(HedgeValues {
                max_attempts: 4,
                delay: ms(40),
                percentile: None
            })
        );
        let login = &services[0].methods[1].policy;
        assert_eq!(login.hedge_max_attempts.as_ref().unwrap().value, 3);
        assert_eq!(
            HedgeValues::of(login).unwrap().percentile,
            Some(0.99),
            "{login:?}"
        );

        // Without a count anywhere, `.hedge(Hedge::new())` means the runtime's default.
        let mut services = fixture();
        resolve(
            &mut services,
            &policies(vec![(validate, Policy::new().hedge(Hedge::new()))]),
        )
        .unwrap();
        let policy = &services[0].methods[0].policy;
        assert_eq!(
            policy.hedge_max_attempts,
            Some(Sourced {
                value: Hedge::DEFAULT_MAX_ATTEMPTS,
                source: rpc(validate)
            })
        );
        assert_eq!(
            HedgeValues::of(policy),
            Some(HedgeValues {
                max_attempts: 2,
                delay: Hedge::DEFAULT_DELAY,
                percentile: Some(Hedge::DEFAULT_PERCENTILE)
            })
        );
        // No layer sets a hedging field for MediaService.
        assert!(!services[1].methods[0].policy.has_hedge());
        assert_eq!(HedgeValues::of(&services[1].methods[0].policy), None);
    }

    #[test]
    fn invalid_hedge_values_name_rpc_option_and_source() {
        let login = ".nova.auth.v1.AuthService.Login";
        let source = "set by build.rs `.policy(\".nova.auth.v1.AuthService.Login\", ..)`";
        let table: Vec<(Hedge, String)> = vec![
            (
                Hedge::new().max_attempts(0),
                format!(
                    "hedge_max_attempts = 0 ({source}); a call makes at least one attempt. Use 1 \
                     (no hedging) to 5"
                ),
            ),
            (
                Hedge::new().max_attempts(6),
                format!(
                    "hedge_max_attempts = 6 ({source}); more attempts would multiply the load on \
                     a slow dependency. Use 1 (no hedging) to 5"
                ),
            ),
            (
                Hedge::new().delay(Duration::ZERO),
                format!(
                    "hedge_delay = 0 ({source}); every attempt would be sent at once. Use a \
                     positive duration, or leave it unset for the runtime's default (50ms)"
                ),
            ),
            (
                Hedge::new().percentile(0.3),
                format!(
                    "hedge_percentile = 0.3 ({source}); most calls would be hedged. Use 0.5 to \
                     0.999, or 0 (`.fixed_delay()`) to wait the fixed hedge_delay"
                ),
            ),
            (
                Hedge::new().percentile(0.9999),
                format!(
                    "hedge_percentile = 0.9999 ({source}); so few recent calls are that slow \
                     that the estimate would not hold. Use 0.5 to 0.999, or 0 \
                     (`.fixed_delay()`) to wait the fixed hedge_delay"
                ),
            ),
            (
                Hedge::new().percentile(95.0),
                format!(
                    "hedge_percentile = 95 ({source}); a percentile is a fraction of the calls, \
                     between 0 and 1. Use"
                ),
            ),
            (
                Hedge::new().percentile(-0.5),
                "hedge_percentile = -0.5 (set by".to_owned(),
            ),
            (
                Hedge::new().percentile(f64::NAN),
                format!("hedge_percentile = NaN ({source}); it is not a finite number. Use"),
            ),
            (
                Hedge::new().percentile(f64::INFINITY),
                "hedge_percentile = inf (set by".to_owned(),
            ),
        ];
        for (hedge, expected) in table {
            let message = err(&mut fixture(), vec![(login, Policy::new().hedge(hedge))]);
            assert_eq!(message.lines().count(), 1, "{message}");
            assert!(
                message.starts_with(&format!("invalid policy for {login}: {expected}")),
                "{message}\n{expected}"
            );
        }

        // From a proto option, the source is its file and line.
        let mut services = fixture();
        services[0].methods[1].option = Some(ProtoOption {
            values: PolicyValues {
                hedge_max_attempts: Some(9),
                ..PolicyValues::EMPTY
            },
            at: at(20),
        });
        assert_eq!(
            err(&mut services, vec![]),
            "invalid policy for .nova.auth.v1.AuthService.Login: hedge_max_attempts = 9 (set by \
             `(resilient.v1.policy)` at nova/auth/v1/auth.proto:20); more attempts would \
             multiply the load on a slow dependency. Use 1 (no hedging) to 5"
        );

        for hedge in [
            Hedge::new().max_attempts(1),
            Hedge::new().max_attempts(5),
            Hedge::new().percentile(0.5),
            Hedge::new().percentile(0.999),
            Hedge::new().percentile(-0.0),
            Hedge::new().fixed_delay().delay(Duration::from_nanos(1)),
        ] {
            resolve(
                &mut fixture(),
                &policies(vec![(login, Policy::new().idempotent(true).hedge(hedge))]),
            )
            .unwrap();
        }
        // An overridden bad value is not an error.
        resolve(
            &mut fixture(),
            &policies(vec![
                (".", Policy::new().hedge(Hedge::new().max_attempts(0))),
                (".nova", Policy::new().hedge(Hedge::new().max_attempts(2))),
            ]),
        )
        .unwrap();
    }

    #[test]
    fn hedging_and_retries_on_one_rpc_fail_the_build_naming_both() {
        let validate = ".nova.auth.v1.AuthService.ValidateToken";
        let message = err(
            &mut fixture(),
            vec![
                (".", Policy::new().retry(Retry::new())),
                (
                    validate,
                    Policy::new()
                        .idempotent(true)
                        .hedge(Hedge::new().max_attempts(3)),
                ),
            ],
        );
        assert_eq!(
            message,
            "invalid policy for .nova.auth.v1.AuthService.ValidateToken: hedging \
             (hedge_max_attempts = 3, set by build.rs \
             `.policy(\".nova.auth.v1.AuthService.ValidateToken\", ..)`) and retries \
             (max_attempts = 3, set by build.rs default policy (`.policy(\".\", ..)`)) exclude \
             each other. To hedge it, turn retries off for this RPC with `.no_retry()` or \
             `max_attempts: 1`; to retry it, turn hedging off with `.no_hedge()` or \
             `hedge_max_attempts: 1`"
        );

        // A field that only shapes retries does not turn them on: hedging alone is fine,
        // and the spec carries one attempt until the runtime config sets max_attempts.
        let mut services = fixture();
        services[0].methods[0].option = Some(ProtoOption {
            values: PolicyValues {
                idempotent: Some(true),
                hedge_delay: Some(ms(30)),
                initial_backoff: Some(ms(10)),
                ..PolicyValues::EMPTY
            },
            at: at(12),
        });
        resolve(&mut services, &policies(vec![])).unwrap();
        let shaped = &services[0].methods[0].policy;
        assert_eq!(RetryValues::of(shaped).unwrap().max_attempts, 1);
        assert_eq!(HedgeValues::of(shaped).unwrap().max_attempts, 2);

        // Either one off, or an RPC the runtime would neither retry nor hedge: no error.
        let mut services = fixture();
        services[1].methods[1].kind = RpcKind::ServerStreaming;
        resolve(
            &mut services,
            &policies(vec![
                (
                    ".",
                    Policy::new()
                        .retry(Retry::new())
                        .hedge(Hedge::new())
                        .idempotent(true),
                ),
                (validate, Policy::new().no_retry()),
                (".nova.auth.v1.AuthService.Login", Policy::new().no_hedge()),
                (
                    ".nova.media.v1.MediaService.UploadMedia",
                    Policy::new().idempotent(false),
                ),
            ]),
        )
        .unwrap();
        let hedged = |i: usize, j: usize| HedgeValues::of(&services[i].methods[j].policy);
        assert_eq!(hedged(0, 0).unwrap().max_attempts, 2);
        assert_eq!(hedged(0, 1).unwrap().max_attempts, 1);
        // GetMedia streams its responses: retried, never hedged (a warning, not an error).
        assert!(services[1].methods[1].policy.asks_for_retries());
        assert_eq!(services[1].methods[1].no_hedge(), Some(NoHedge::NotUnary));
    }

    #[test]
    fn warnings_for_hedging_that_never_happens() {
        let mut services = fixture();
        services[1].methods[1].kind = RpcKind::ServerStreaming;
        resolve(
            &mut services,
            &policies(vec![
                (".", Policy::new().hedge(Hedge::new().max_attempts(3))),
                (
                    ".nova.auth.v1.AuthService.ValidateToken",
                    Policy::new().idempotent(true),
                ),
                (
                    ".nova.auth.v1.AuthService.Login",
                    Policy::new().idempotent(false),
                ),
                (
                    ".nova.media.v1.MediaService.UploadMedia",
                    Policy::new().no_hedge(),
                ),
                (
                    ".nova.media.v1.MediaService.GetMedia",
                    Policy::new().idempotent(true),
                ),
            ]),
        )
        .unwrap();
        let warnings = warnings(&services);
        // ValidateToken is hedged; UploadMedia turns hedging off.
        assert_eq!(
            warnings,
            [
                ".nova.auth.v1.AuthService.Login: hedging is configured (hedge_max_attempts = 3, \
                 set by build.rs default policy (`.policy(\".\", ..)`)), but it is declared not \
                 idempotent by build.rs `.policy(\".nova.auth.v1.AuthService.Login\", ..)`, so \
                 it is never hedged. If repeating it is safe, mark it with `option \
                 idempotency_level = IDEMPOTENT;` (or NO_SIDE_EFFECTS) in the proto, \
                 `idempotent: true` in its `(resilient.v1.policy)`, or `.idempotent(true)` in \
                 build.rs; otherwise turn hedging off for it with `.no_hedge()` or \
                 `hedge_max_attempts: 1`",
                ".nova.media.v1.MediaService.GetMedia: hedging is configured (hedge_max_attempts \
                 = 3, set by build.rs default policy (`.policy(\".\", ..)`)), but it is a server \
                 streaming RPC and only unary calls are hedged, so it is never hedged. Turn \
                 hedging off for it with `.no_hedge()` or `hedge_max_attempts: 1`",
            ]
        );

        // In a proto option, a delay alone turns hedging on, with the default count.
        let mut services = fixture();
        services[0].methods[1].option = Some(ProtoOption {
            values: PolicyValues {
                hedge_delay: Some(ms(20)),
                ..PolicyValues::EMPTY
            },
            at: at(20),
        });
        resolve(&mut services, &[]).unwrap();
        assert_eq!(
            self::warnings(&services),
            [
                ".nova.auth.v1.AuthService.Login: hedging is configured (hedge_delay set by \
                 `(resilient.v1.policy)` at nova/auth/v1/auth.proto:20, hedge_max_attempts = 2 \
                 by default), but nothing declares it idempotent, so it is never hedged. If \
                 repeating it is safe, mark it with `option idempotency_level = IDEMPOTENT;` (or \
                 NO_SIDE_EFFECTS) in the proto, `idempotent: true` in its \
                 `(resilient.v1.policy)`, or `.idempotent(true)` in build.rs; otherwise turn \
                 hedging off for it with `.no_hedge()` or `hedge_max_attempts: 1`"
            ]
        );
    }
}
