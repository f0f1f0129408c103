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

/// The build-time policy of one RPC: every field the build set (in build.rs or proto
/// options); `None` is filled from the environment preset when the client is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
