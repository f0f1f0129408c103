//! What `resilient-build` knows at build time about each service, as static data in the
//! generated code. The runtime turns it into breakers and timeouts ([`crate::client`]).

use std::time::Duration;

/// The four kinds of RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcKind {
    /// One request, one response.
    Unary,
    /// A stream of requests, one response.
    ClientStreaming,
    /// One request, a stream of responses.
    ServerStreaming,
    /// Streams both ways.
    BidiStreaming,
}

/// Which causes a client with a fallback sends to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FallbackMode {
    /// The circuit is open.
    pub open: bool,
    /// The call timed out.
    pub timeout: bool,
    /// The dependency answered with a failure-classified status.
    pub failure: bool,
}

impl FallbackMode {
    /// Open circuit and timeout: the default for a client built `with_fallback`.
    pub const DEFAULT: FallbackMode = FallbackMode {
        open: true,
        timeout: true,
        failure: false,
    };
    /// Never (`fallback: false`).
    pub const OFF: FallbackMode = FallbackMode {
        open: false,
        timeout: false,
        failure: false,
    };
    /// Every cause.
    pub const ALL: FallbackMode = FallbackMode {
        open: true,
        timeout: true,
        failure: true,
    };

    /// Whether any cause goes to the fallback.
    pub fn any(self) -> bool {
        self.open || self.timeout || self.failure
    }
}

impl Default for FallbackMode {
    fn default() -> Self {
        FallbackMode::DEFAULT
    }
}

/// A set of gRPC status codes, as a bit set (bit `n` is code `n`), so that it can live in
/// a `const`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodeSet(pub u32);

impl CodeSet {
    /// `UNAVAILABLE` only: the default retryable set.
    pub const UNAVAILABLE: CodeSet = CodeSet(1 << 14);
    /// No code.
    pub const NONE: CodeSet = CodeSet(0);

    /// The set of `codes` (numeric gRPC codes; values above 16 are ignored).
    pub const fn of(codes: &[i32]) -> CodeSet {
        let mut bits = 0u32;
        let mut i = 0;
        while i < codes.len() {
            if codes[i] >= 0 && codes[i] <= 16 {
                bits |= 1 << codes[i];
            }
            i += 1;
        }
        CodeSet(bits)
    }

    /// Whether `code` is in the set.
    pub fn contains(self, code: tonic::Code) -> bool {
        let n = code as i32;
        (0..=16).contains(&n) && self.0 & (1 << n) != 0
    }
}

/// When and how an RPC is retried. Retries apply only to RPCs that are safe to repeat
/// ([`MethodSpec::idempotent`]); for others the runtime ignores this.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySpec {
    /// Attempts in all, the first included (1 = no retry). At most 10.
    pub max_attempts: u32,
    /// The cap of the first backoff; each retry waits a random time up to the cap
    /// ("full jitter").
    pub initial_backoff: Duration,
    /// The largest cap.
    pub max_backoff: Duration,
    /// Growth of the cap per attempt.
    pub multiplier: f64,
    /// The codes worth another attempt.
    pub retryable: CodeSet,
    /// The deadline of one attempt (each attempt gets the smaller of this and what is left
    /// of the call's deadline). `None`: what is left.
    pub attempt_timeout: Option<Duration>,
}

impl RetrySpec {
    /// 3 attempts, backoff caps 50 ms, 100 ms, ... up to 1 s, on `UNAVAILABLE`.
    pub const DEFAULT: RetrySpec = RetrySpec {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        multiplier: 2.0,
        retryable: CodeSet::UNAVAILABLE,
        attempt_timeout: None,
    };
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec::DEFAULT
    }
}

/// Hedged attempts for an idempotent unary RPC: when the first attempt has not answered
/// after a delay, another is sent (to another endpoint when the transport is a pool),
/// the first answer wins and the others are cancelled. Hedging and retries exclude each
/// other (as in gRPC's service config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HedgeSpec {
    /// Attempts in all, the first included: 2 to 5.
    pub max_attempts: u32,
    /// The wait before each hedged attempt while the latency percentile is not known yet
    /// (fewer than [`HedgeSpec::MIN_SAMPLES`] recent calls), and always when `percentile`
    /// is `None`.
    pub delay: Duration,
    /// The quantile of the RPC's recent latencies (the last 10 to 20 s) to wait before
    /// each hedged attempt, from 0.5 to 0.999: `0.95` hedges the slowest 5 %.
    pub percentile: Option<f64>,
}

impl HedgeSpec {
    /// 2 attempts, the second after the 95th percentile of recent latencies (50 ms until
    /// it is known).
    pub const DEFAULT: HedgeSpec = HedgeSpec {
        max_attempts: 2,
        delay: Duration::from_millis(50),
        percentile: Some(0.95),
    };

    /// Recent calls needed before the percentile replaces the fixed delay.
    pub const MIN_SAMPLES: u32 = 20;
}

impl Default for HedgeSpec {
    fn default() -> Self {
        HedgeSpec::DEFAULT
    }
}

/// A limit on concurrent calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkheadSpec {
    /// Calls in flight at most.
    pub max_concurrent: u32,
    /// How long a call over the limit may wait for a slot before it is rejected
    /// (zero: rejected at once).
    pub max_wait: Duration,
    /// One limit for every RPC of the service that sets `shared` (instead of one per
    /// RPC).
    pub shared: bool,
}

/// The build-time policy of one RPC: every field the build set (in build.rs or proto
/// options); `None` is filled from the environment preset when the client is built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicySpec {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: Option<u32>,
    /// Consecutive successful probes that close it.
    pub success_threshold: Option<u32>,
    /// How long the circuit stays open.
    pub open_for: Option<Duration>,
    /// The deadline of one call.
    pub timeout: Option<Duration>,
    /// Concurrent half-open probes.
    pub half_open_max_calls: Option<u32>,
    /// Which causes go to the fallback.
    pub fallback: Option<FallbackMode>,
    /// Retries (idempotent RPCs only).
    pub retry: Option<RetrySpec>,
    /// A concurrency limit.
    pub bulkhead: Option<BulkheadSpec>,
    /// Hedged attempts (idempotent unary RPCs only).
    pub hedge: Option<HedgeSpec>,
    /// Whether unary and client-streaming calls send their deadline to the server as
    /// `grpc-timeout` (unset: yes).
    pub propagate_deadline: Option<bool>,
}

impl PolicySpec {
    /// Nothing set. Generated code ends each literal with `..PolicySpec::EMPTY` so that it
    /// keeps compiling when fields are added.
    pub const EMPTY: PolicySpec = PolicySpec {
        failure_threshold: None,
        success_threshold: None,
        open_for: None,
        timeout: None,
        half_open_max_calls: None,
        fallback: None,
        retry: None,
        bulkhead: None,
        hedge: None,
        propagate_deadline: None,
    };
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec::EMPTY
    }
}

/// One RPC of a service.
#[derive(Debug, Clone, Copy)]
pub struct MethodSpec {
    /// The proto name (`ValidateToken`).
    pub name: &'static str,
    /// Its kind.
    pub kind: RpcKind,
    /// Safe to repeat (`idempotency_level`, our option, or build.rs).
    pub idempotent: bool,
    /// The build-time policy.
    pub policy: PolicySpec,
}

/// One proto service.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// The full proto path (`.nova.auth.v1.AuthService`).
    pub path: &'static str,
    /// The proto name (`AuthService`).
    pub name: &'static str,
    /// One breaker for every RPC of the service, instead of one per RPC.
    pub shared_breaker: bool,
    /// Its RPCs, in proto order.
    pub methods: &'static [MethodSpec],
}

impl ServiceSpec {
    /// The logical service name used for targets and metrics: `AuthService` →
    /// `auth-service`.
    pub fn logical_name(&self) -> String {
        logical_name(self.name)
    }

    /// The environment variable holding this service's target: `AuthService` →
    /// `AUTH_SERVICE_URL`.
    pub fn target_env_var(&self) -> String {
        format!(
            "{}_URL",
            logical_name(self.name)
                .replace('-', "_")
                .to_ascii_uppercase()
        )
    }

    /// The RPC named `name`.
    pub fn method(&self, name: &str) -> Option<&'static MethodSpec> {
        self.methods.iter().find(|m| m.name == name)
    }
}

/// Kebab case of a CamelCase proto name; a name already ending in `Service` keeps it
/// (`AuthService` → `auth-service`, `Media` → `media`, `HTTPGateway` → `http-gateway`).
pub fn logical_name(proto_name: &str) -> String {
    let chars: Vec<char> = proto_name.chars().collect();
    let mut out = String::with_capacity(proto_name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) && !out.ends_with('-') {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else if c == '_' {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_names() {
        for (proto, logical) in [
            ("AuthService", "auth-service"),
            ("MediaService", "media-service"),
            ("Media", "media"),
            ("HTTPGateway", "http-gateway"),
            ("user_service", "user-service"),
            ("V2Search", "v2-search"),
        ] {
            assert_eq!(logical_name(proto), logical, "{proto}");
        }
        let spec = ServiceSpec {
            path: ".nova.auth.v1.AuthService",
            name: "AuthService",
            shared_breaker: false,
            methods: &[],
        };
        assert_eq!(spec.target_env_var(), "AUTH_SERVICE_URL");
    }
}
