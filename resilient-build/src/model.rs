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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
/// `RESILIENT_ENV` preset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
}

impl EffectivePolicy {
    /// Whether the RPC counts as idempotent.
    pub(crate) fn is_idempotent(&self) -> bool {
        self.idempotent.as_ref().is_some_and(|v| v.value)
    }
}
