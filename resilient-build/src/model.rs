//! Plain structs that `parse` fills from the descriptors and `render` and `report` read.

use std::fmt;
use std::time::Duration;

use crate::policy::FallbackMode;

/// One proto service and everything the generator needs to know about it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServiceModel {
    /// Fully qualified proto path with a leading dot: `.nova.auth.v1.AuthService`.
    pub(crate) path: String,
    /// Proto package: `nova.auth.v1` (empty when the file has none).
    pub(crate) package: String,
    /// Name as written in the proto file: `AuthService`.
    pub(crate) proto_name: String,
    /// Name as prost and tonic spell it in Rust: `AuthService`.
    pub(crate) rust_name: String,
    /// The proto file that declares the service, as shown to the user.
    pub(crate) file: String,
    /// The 1-based line of its declaration in `file`.
    pub(crate) line: u32,
    /// Leading and trailing proto comments, one entry per line, unprocessed.
    pub(crate) comments: Vec<String>,
    /// `option deprecated = true;` on the service.
    pub(crate) deprecated: bool,
    /// `option (resilient.v1.service_policy) = { ... };`, when present.
    pub(crate) option: Option<ProtoOption>,
    /// The RPCs, in proto order (the order of `ServiceSpec::methods`).
    pub(crate) methods: Vec<MethodModel>,
    /// One breaker for all RPCs; filled by `policy::resolve`, `None` when no layer sets it.
    pub(crate) shared_breaker: Option<Sourced<bool>>,
}

/// One RPC of a service.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MethodModel {
    /// Fully qualified proto path: `.nova.auth.v1.AuthService.ValidateToken`.
    pub(crate) path: String,
    /// Name as written in the proto file: `ValidateToken`.
    pub(crate) proto_name: String,
    /// The 1-based line of its declaration in the service's file.
    pub(crate) line: u32,
    /// Method name as tonic spells it: `validate_token`, `r#type`.
    pub(crate) rust_name: String,
    /// Which side streams.
    pub(crate) kind: RpcKind,
    /// Request message as tonic's client names it from inside the package module,
    /// e.g. `super::ValidateTokenRequest`, `()`, `::prost_types::Timestamp`.
    pub(crate) input_type: String,
    /// Response message, spelt like `input_type`.
    pub(crate) output_type: String,
    /// Leading and trailing proto comments, one entry per line, unprocessed.
    pub(crate) comments: Vec<String>,
    /// `option deprecated = true;` on the RPC.
    pub(crate) deprecated: bool,
    /// The standard `idempotency_level` option, when it says the RPC is safe to repeat.
    pub(crate) idempotency_level: Option<DeclaredIdempotency>,
    /// `option (resilient.v1.policy) = { ... };`, when present.
    pub(crate) option: Option<ProtoOption>,
    /// The build-time policy after merging every layer; filled by `policy::resolve`.
    pub(crate) policy: EffectivePolicy,
}

/// The streaming shape of an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RpcKind {
    /// One request, one response.
    Unary,
    /// A request stream, one response.
    ClientStreaming,
    /// One request, a response stream.
    ServerStreaming,
    /// Streams both ways.
    BidiStreaming,
}

impl RpcKind {
    /// From the two streaming flags of a method descriptor.
    pub(crate) fn from_streaming(client: bool, server: bool) -> Self {
        match (client, server) {
            (false, false) => RpcKind::Unary,
            (true, false) => RpcKind::ClientStreaming,
            (false, true) => RpcKind::ServerStreaming,
            (true, true) => RpcKind::BidiStreaming,
        }
    }

    /// Whether its calls send their deadline as `grpc-timeout`: the kinds whose deadline
    /// covers the whole call (a streamed response's covers only its headers).
    pub(crate) fn sends_deadline(self) -> bool {
        matches!(self, RpcKind::Unary | RpcKind::ClientStreaming)
    }

    /// Variant name of `resilient_runtime::spec::RpcKind`.
    pub(crate) fn spec_variant(self) -> &'static str {
        match self {
            RpcKind::Unary => "Unary",
            RpcKind::ClientStreaming => "ClientStreaming",
            RpcKind::ServerStreaming => "ServerStreaming",
            RpcKind::BidiStreaming => "BidiStreaming",
        }
    }

    /// Lower-case words for the report.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            RpcKind::Unary => "unary",
            RpcKind::ClientStreaming => "client streaming",
            RpcKind::ServerStreaming => "server streaming",
            RpcKind::BidiStreaming => "bidi streaming",
        }
    }
}

/// A place in a proto file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProtoLocation {
    /// The file as shown to the user (its path on disk when known).
    pub(crate) file: String,
    /// 1-based line.
    pub(crate) line: u32,
}

impl fmt::Display for ProtoLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A `resilient.v1` option as written in a proto file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProtoOption {
    /// The fields the option sets.
    pub(crate) values: PolicyValues,
    /// Where the `option` statement is.
    pub(crate) at: ProtoLocation,
}

/// `idempotency_level = NO_SIDE_EFFECTS` or `IDEMPOTENT` on an RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeclaredIdempotency {
    /// The enum value as written: `NO_SIDE_EFFECTS` or `IDEMPOTENT`.
    pub(crate) level: &'static str,
    /// Where the option is.
    pub(crate) at: ProtoLocation,
}

/// One layer of policy values; `None` leaves the field to a lower layer.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PolicyValues {
    /// Consecutive failures that open the breaker.
    pub(crate) failure_threshold: Option<u32>,
    /// Consecutive half-open successes that close it.
    pub(crate) success_threshold: Option<u32>,
    /// How long the breaker stays open.
    pub(crate) open_for: Option<Duration>,
    /// Deadline of one call.
    pub(crate) timeout: Option<Duration>,
    /// Probes admitted at once while half-open.
    pub(crate) half_open_max_calls: Option<u32>,
    /// Which causes reach the fallback.
    pub(crate) fallback: Option<FallbackMode>,
    /// Whether the RPC is safe to repeat.
    pub(crate) idempotent: Option<bool>,
    /// One breaker for the whole service (service-level layers only).
    pub(crate) shared_breaker: Option<bool>,
    /// Attempts in all, the first included; 1 means no retry.
    pub(crate) max_attempts: Option<u32>,
    /// `.retry(..)` without `max_attempts`: retries on, with the attempts of the highest
    /// lower layer that turns them on too, else the runtime's default.
    pub(crate) retry_requested: bool,
    /// The cap of the first retry's backoff.
    pub(crate) initial_backoff: Option<Duration>,
    /// The largest backoff cap.
    pub(crate) max_backoff: Option<Duration>,
    /// Growth of the backoff cap per attempt.
    pub(crate) backoff_multiplier: Option<f64>,
    /// Status code names worth a retry, as written (checked by `policy::resolve`).
    pub(crate) retryable_codes: Option<Vec<String>>,
    /// Deadline of one attempt.
    pub(crate) attempt_timeout: Option<Duration>,
    /// Calls in flight at most (the bulkhead's size).
    pub(crate) max_concurrent: Option<u32>,
    /// How long a call over `max_concurrent` waits for a slot.
    pub(crate) max_wait: Option<Duration>,
    /// One bulkhead for the RPCs of the service that set this.
    pub(crate) shared_bulkhead: Option<bool>,
    /// Hedged attempts in all, the first included; 1 means no hedging.
    pub(crate) hedge_max_attempts: Option<u32>,
    /// `.hedge(..)` without `max_attempts`: hedging on, with the attempts of the highest
    /// lower layer that turns it on too, else the runtime's default.
    pub(crate) hedge_requested: bool,
    /// The wait before each hedged attempt while the percentile is not known (always,
    /// with a fixed delay).
    pub(crate) hedge_delay: Option<Duration>,
    /// The latency quantile to wait before each hedged attempt; 0 means the fixed
    /// `hedge_delay`.
    pub(crate) hedge_percentile: Option<f64>,
    /// Whether calls send their deadline to the server as `grpc-timeout`.
    pub(crate) propagate_deadline: Option<bool>,
}

impl PolicyValues {
    /// Every field unset.
    pub(crate) const EMPTY: PolicyValues = PolicyValues {
        failure_threshold: None,
        success_threshold: None,
        open_for: None,
        timeout: None,
        half_open_max_calls: None,
        fallback: None,
        idempotent: None,
        shared_breaker: None,
        max_attempts: None,
        retry_requested: false,
        initial_backoff: None,
        max_backoff: None,
        backoff_multiplier: None,
        retryable_codes: None,
        attempt_timeout: None,
        max_concurrent: None,
        max_wait: None,
        shared_bulkhead: None,
        hedge_max_attempts: None,
        hedge_requested: false,
        hedge_delay: None,
        hedge_percentile: None,
        propagate_deadline: None,
    };
}

/// Where an effective value came from, for error messages and the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// `.policy(".pkg.Service.Method", ..)` in build.rs.
    BuildRpc(String),
    /// `.policy(".pkg.Service", ..)` or `.policy(".pkg", ..)` in build.rs.
    BuildService(String),
    /// `(resilient.v1.policy)` on the RPC.
    ProtoMethod(ProtoLocation),
    /// The standard `idempotency_level` option on the RPC.
    IdempotencyLevel(DeclaredIdempotency),
    /// `(resilient.v1.service_policy)` on the service.
    ProtoService(ProtoLocation),
    /// `.policy(".", ..)` / `.default_policy(..)` in build.rs.
    BuildDefault,
}

impl Source {
    /// Whether the layer addresses one RPC rather than a whole service.
    pub(crate) fn is_rpc_level(&self) -> bool {
        matches!(
            self,
            Source::BuildRpc(_) | Source::ProtoMethod(_) | Source::IdempotencyLevel(_)
        )
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::BuildRpc(path) | Source::BuildService(path) => {
                write!(f, "build.rs `.policy(\"{path}\", ..)`")
            }
            Source::ProtoMethod(at) => write!(f, "`(resilient.v1.policy)` at {at}"),
            Source::IdempotencyLevel(declared) => {
                write!(
                    f,
                    "`idempotency_level = {}` at {}",
                    declared.level, declared.at
                )
            }
            Source::ProtoService(at) => write!(f, "`(resilient.v1.service_policy)` at {at}"),
            Source::BuildDefault => f.write_str("build.rs default policy (`.policy(\".\", ..)`)"),
        }
    }
}

/// A value together with the layer that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sourced<T> {
    /// The value.
    pub(crate) value: T,
    /// The layer that set it.
    pub(crate) source: Source,
}

/// The build-time policy of one RPC; `None` fields are filled at run time from the
/// `RESILIENT_ENV` preset (the breaker's thresholds, open time and probes) or the
/// runtime's defaults (timeout, fallback, retry, hedging and bulkhead).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EffectivePolicy {
    /// Consecutive failures that open the breaker.
    pub(crate) failure_threshold: Option<Sourced<u32>>,
    /// Consecutive half-open successes that close it.
    pub(crate) success_threshold: Option<Sourced<u32>>,
    /// How long the breaker stays open.
    pub(crate) open_for: Option<Sourced<Duration>>,
    /// Deadline of one call.
    pub(crate) timeout: Option<Sourced<Duration>>,
    /// Probes admitted at once while half-open.
    pub(crate) half_open_max_calls: Option<Sourced<u32>>,
    /// Which causes reach the fallback.
    pub(crate) fallback: Option<Sourced<FallbackMode>>,
    /// Whether the RPC is safe to repeat; `None` means nobody declared it (not idempotent).
    pub(crate) idempotent: Option<Sourced<bool>>,
    /// Attempts in all; above 1 turns retries on.
    pub(crate) max_attempts: Option<Sourced<u32>>,
    /// The cap of the first retry's backoff.
    pub(crate) initial_backoff: Option<Sourced<Duration>>,
    /// The largest backoff cap.
    pub(crate) max_backoff: Option<Sourced<Duration>>,
    /// Growth of the backoff cap per attempt.
    pub(crate) backoff_multiplier: Option<Sourced<f64>>,
    /// Status codes worth a retry; checked names after `policy::resolve`.
    pub(crate) retryable_codes: Option<Sourced<Vec<String>>>,
    /// Deadline of one attempt.
    pub(crate) attempt_timeout: Option<Sourced<Duration>>,
    /// Calls in flight at most; the RPC has a bulkhead only when this is set.
    pub(crate) max_concurrent: Option<Sourced<u32>>,
    /// How long a call over the limit waits for a slot.
    pub(crate) max_wait: Option<Sourced<Duration>>,
    /// One bulkhead for the RPCs of the service that set this.
    pub(crate) shared_bulkhead: Option<Sourced<bool>>,
    /// Hedged attempts in all; above 1 turns hedging on.
    pub(crate) hedge_max_attempts: Option<Sourced<u32>>,
    /// The wait before each hedged attempt while the percentile is not known.
    pub(crate) hedge_delay: Option<Sourced<Duration>>,
    /// The latency quantile to wait; 0 means the fixed `hedge_delay`.
    pub(crate) hedge_percentile: Option<Sourced<f64>>,
    /// Whether calls send their deadline to the server as `grpc-timeout`.
    pub(crate) propagate_deadline: Option<Sourced<bool>>,
}

impl EffectivePolicy {
    /// Whether the RPC counts as idempotent.
    pub(crate) fn is_idempotent(&self) -> bool {
        self.idempotent.as_ref().is_some_and(|v| v.value)
    }

    /// Whether any layer sets a retry field (retries may still be off: `max_attempts = 1`).
    pub(crate) fn has_retry(&self) -> bool {
        self.max_attempts.is_some()
            || self.initial_backoff.is_some()
            || self.max_backoff.is_some()
            || self.backoff_multiplier.is_some()
            || self.retryable_codes.is_some()
            || self.attempt_timeout.is_some()
    }

    /// Whether the layers ask for retries: `max_attempts` above 1.
    pub(crate) fn asks_for_retries(&self) -> bool {
        self.max_attempts.as_ref().is_some_and(|n| n.value > 1)
    }

    /// Whether any layer sets a hedging field (hedging may still be off:
    /// `hedge_max_attempts = 1`).
    pub(crate) fn has_hedge(&self) -> bool {
        self.hedge_max_attempts.is_some()
            || self.hedge_delay.is_some()
            || self.hedge_percentile.is_some()
    }

    /// Whether any layer sets a bulkhead field (the RPC has a bulkhead only with
    /// `max_concurrent`).
    pub(crate) fn has_bulkhead_fields(&self) -> bool {
        self.max_concurrent.is_some() || self.max_wait.is_some() || self.shared_bulkhead.is_some()
    }
}

/// Why an RPC is never retried, whatever its policy says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoRetry {
    /// Nothing declares it safe to repeat.
    NotIdempotent,
    /// Its request stream is consumed by the first attempt (client streaming, bidi).
    StreamedRequest,
}

/// Why an RPC is never hedged, whatever its policy says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoHedge {
    /// Nothing declares it safe to repeat.
    NotIdempotent,
    /// It streams requests or responses: only unary calls are hedged.
    NotUnary,
}

impl MethodModel {
    /// `None` when the runtime can retry the RPC, else why it never does. The generated
    /// spec carries a retry policy only for RPCs that can be retried.
    pub(crate) fn no_retry(&self) -> Option<NoRetry> {
        if !self.policy.is_idempotent() {
            Some(NoRetry::NotIdempotent)
        } else if matches!(self.kind, RpcKind::ClientStreaming | RpcKind::BidiStreaming) {
            Some(NoRetry::StreamedRequest)
        } else {
            None
        }
    }

    /// `None` when the runtime can hedge the RPC, else why it never does. The generated
    /// spec carries a hedging policy only for RPCs that can be hedged.
    pub(crate) fn no_hedge(&self) -> Option<NoHedge> {
        if !self.policy.is_idempotent() {
            Some(NoHedge::NotIdempotent)
        } else if self.kind != RpcKind::Unary {
            Some(NoHedge::NotUnary)
        } else {
            None
        }
    }
}

/// A duration as people write it: `2s`, `1500ms`, `1.5µs`.
pub(crate) fn show_duration(value: Duration) -> String {
    let millis = value.as_millis();
    if !value.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{value:?}")
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}
