//! The runtime state of one generated client: a breaker, a deadline and a fallback
//! switch per RPC, resolved from the build-time spec, the environment preset and the
//! operator's runtime config.
//!
//! Precedence, highest first: runtime config (`RESILIENT_CONFIG`, per RPC then per
//! service), then the build-time policy (build.rs and proto options, merged by
//! `resilient-build`), then the environment preset (`RESILIENT_ENV`). An RPC with no
//! deadline anywhere gets [`DEFAULT_TIMEOUT`]: no call waits forever.

use std::sync::Arc;
use std::time::Duration;

use crate::breaker::{CircuitBreaker, CircuitBreakerConfig, ConfigError, Environment, Mode};
use crate::bulkhead::Bulkhead;
use crate::classify::GrpcClassifier;

use crate::config::{PolicyOverride, RuntimeConfig, code_from_name};
use crate::deadline::grpc_timeout_header;
use crate::hedge::Hedging;
use crate::retry::{RetryBudget, RetryBudgetConfig};
use crate::spec::{
    BulkheadSpec, CodeSet, FallbackMode, HedgeSpec, MethodSpec, RetrySpec, RpcKind, ServiceSpec,
};

/// The deadline of an RPC that sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Breakers and policies of one generated client. Clones of the client share it.
pub struct ServiceRuntime {
    spec: &'static ServiceSpec,
    methods: Box<[MethodRuntime]>,
}

/// The service and, per RPC, its breaker and effective policy: what an operator asks of a
/// client (its spec and the retry budgets' ledgers are left out).
impl std::fmt::Debug for ServiceRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRuntime")
            .field("service", &self.spec.path)
            .field("methods", &self.methods)
            .finish()
    }
}

/// The effective policy of one RPC and its breaker.
#[derive(Clone)]
pub struct MethodRuntime {
    spec: &'static MethodSpec,
    breaker: CircuitBreaker,
    timeout: Duration,
    /// `timeout` as a `grpc-timeout` value, formatted once; `None` when the RPC does not
    /// send its deadline to the server.
    timeout_header: Option<http::HeaderValue>,
    fallback: FallbackMode,
    classifier: GrpcClassifier,
    retry: Option<RetrySpec>,
    hedge: Option<Hedging>,
    bulkhead: Option<Bulkhead>,
    budget: RetryBudget,
}

/// The RPC's name, breaker and effective policy (its spec, classifier and retry budget's
/// ledger are left out).
impl std::fmt::Debug for MethodRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodRuntime")
            .field("rpc", &self.spec.name)
            .field("breaker", &self.breaker)
            .field("timeout", &self.timeout)
            .field("propagates_deadline", &self.timeout_header.is_some())
            .field("fallback", &self.fallback)
            .field("retry", &self.retry)
            .field("hedge", &self.hedge)
            .field("bulkhead", &self.bulkhead)
            .finish_non_exhaustive()
    }
}

impl MethodRuntime {
    /// Its retry policy: `None` when it sets none, or when the RPC is not idempotent
    /// (such RPCs are never retried, whatever the config says).
    pub fn retry(&self) -> Option<&RetrySpec> {
        self.retry.as_ref()
    }

    /// Its hedging policy: `None` when it sets none, or when the RPC is not an idempotent
    /// unary one.
    pub fn hedge(&self) -> Option<&Hedging> {
        self.hedge.as_ref()
    }

    /// Its bulkhead, if it has a concurrency limit.
    pub fn bulkhead(&self) -> Option<&Bulkhead> {
        self.bulkhead.as_ref()
    }

    /// The retry budget of its service.
    pub fn retry_budget(&self) -> &RetryBudget {
        &self.budget
    }

    /// The RPC's build-time spec.
    pub fn spec(&self) -> &'static MethodSpec {
        self.spec
    }

    /// Its breaker (shared with the other RPCs when the service uses one breaker).
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Its deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Its deadline as a `grpc-timeout` header value, or `None` when calls do not send
    /// their deadline to the server.
    pub(crate) fn timeout_header(&self) -> Option<&http::HeaderValue> {
        self.timeout_header.as_ref()
    }

    /// Whether unary and client-streaming calls send their deadline to the server as
    /// `grpc-timeout` (`propagate_deadline`, on unless turned off).
    pub fn propagates_deadline(&self) -> bool {
        self.timeout_header.is_some()
    }

    /// The causes that go to a fallback.
    pub fn fallback(&self) -> FallbackMode {
        self.fallback
    }

    /// How its statuses are classified.
    pub fn classifier(&self) -> &GrpcClassifier {
        &self.classifier
    }
}

/// Why a generated client's `connect` failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The transport could not connect.
    Transport(tonic::transport::Error),
    /// The runtime config is invalid.
    Config(ConfigError),
    /// No target is configured, or it is malformed (`from_config`).
    #[cfg(feature = "discovery")]
    Discovery(crate::discover::DiscoveryError),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Transport(e) => write!(f, "cannot connect: {e}"),
            ConnectError::Config(e) => e.fmt(f),
            #[cfg(feature = "discovery")]
            ConnectError::Discovery(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Transport(e) => Some(e),
            ConnectError::Config(e) => Some(e),
            #[cfg(feature = "discovery")]
            ConnectError::Discovery(e) => Some(e),
        }
    }
}

impl ServiceRuntime {
    /// Resolves `spec` with `RESILIENT_ENV` and `RESILIENT_CONFIG`; an unknown
    /// environment, an unreadable file, an unknown key or a bad value is an error naming
    /// the key.
    pub fn try_new(spec: &'static ServiceSpec) -> Result<Arc<ServiceRuntime>, ConfigError> {
        let env = Environment::from_env()?;
        let config = RuntimeConfig::from_env()?;
        ServiceRuntime::resolve(spec, env, config.as_ref())
    }

    /// Like [`try_new`](Self::try_new), but a bad environment or config is logged
    /// (`tracing::error!`) and the build-time policy with the production preset is used,
    /// so that a typo in an operator's file never takes the service down.
    pub fn new_or_log(spec: &'static ServiceSpec) -> Arc<ServiceRuntime> {
        match ServiceRuntime::try_new(spec) {
            Ok(rt) => rt,
            Err(error) => {
                tracing::error!(
                    service = spec.path,
                    %error,
                    "invalid resilient runtime config; using the build-time policy"
                );
                let env = Environment::from_env().unwrap_or(Environment::Production);
                match ServiceRuntime::resolve(spec, env, None) {
                    Ok(rt) => rt,
                    Err(_) => ServiceRuntime::resolve(spec, Environment::Production, None)
                        .unwrap_or_else(|_| ServiceRuntime::lenient(spec)),
                }
            }
        }
    }

    /// Resolves `spec` for `env` with optional overrides (no environment read).
    pub fn resolve(
        spec: &'static ServiceSpec,
        env: Environment,
        config: Option<&RuntimeConfig>,
    ) -> Result<Arc<ServiceRuntime>, ConfigError> {
        if let Some(config) = config {
            config.check_service(spec)?;
        }
        let service_override = config.and_then(|c| c.get(spec.path));
        let logical = spec.logical_name();
        let defaults = RetryBudgetConfig::default();
        let budget = RetryBudget::new(RetryBudgetConfig {
            percent: service_override
                .and_then(|o| o.retry_budget_percent)
                .unwrap_or(defaults.percent),
            min_per_second: service_override
                .and_then(|o| o.retry_budget_min_per_second)
                .unwrap_or(defaults.min_per_second),
            ..defaults
        });
        let mut shared: Option<CircuitBreaker> = None;
        // The shared bulkhead, the RPC that sized it, and its size.
        let mut shared_bulkhead: Option<(Bulkhead, &str, (u32, Duration))> = None;
        let mut methods = Vec::with_capacity(spec.methods.len());
        for method in spec.methods {
            let path = format!("{}.{}", spec.path, method.name);
            let method_override = config.and_then(|c| c.get(&path));
            let layers = [method_override, service_override];
            let pick = |f: &dyn Fn(&PolicyOverride) -> Option<u64>| {
                layers.iter().flatten().find_map(|o| f(o))
            };
            let preset = CircuitBreakerConfig::for_environment(env);
            let p = &method.policy;
            let breaker_config = CircuitBreakerConfig {
                failure_threshold: pick(&|o| o.failure_threshold.map(u64::from))
                    .map(|v| v as u32)
                    .or(p.failure_threshold)
                    .unwrap_or(preset.failure_threshold),
                success_threshold: pick(&|o| o.success_threshold.map(u64::from))
                    .map(|v| v as u32)
                    .or(p.success_threshold)
                    .unwrap_or(preset.success_threshold),
                timeout: layers
                    .iter()
                    .flatten()
                    .find_map(|o| o.open_for())
                    .or(p.open_for)
                    .unwrap_or(preset.timeout),
                half_open_max_calls: pick(&|o| o.half_open_max_calls.map(u64::from))
                    .map(|v| v as u32)
                    .or(p.half_open_max_calls)
                    .unwrap_or(preset.half_open_max_calls),
                ..preset
            };
            breaker_config.validate().map_err(|e| e.in_source(&path))?;
            let timeout = layers
                .iter()
                .flatten()
                .find_map(|o| o.timeout())
                .or(p.timeout)
                .unwrap_or(DEFAULT_TIMEOUT);
            if timeout.is_zero() {
                return Err(ConfigError::new(
                    format!("{path}.timeout"),
                    "must be above zero",
                ));
            }
            let fallback = layers
                .iter()
                .flatten()
                .find_map(|o| o.fallback.as_ref().map(|f| f.mode()))
                .or(p.fallback)
                .unwrap_or(FallbackMode::DEFAULT);
            let propagate_deadline = layers
                .iter()
                .flatten()
                .find_map(|o| o.propagate_deadline)
                .or(p.propagate_deadline)
                .unwrap_or(true);
            let mode = layers
                .iter()
                .flatten()
                .find_map(|o| o.mode.map(|m| m.mode()));
            let retry = resolve_retry(&path, method, &layers);
            let hedge = resolve_hedge(&path, method, &layers);
            if hedge.is_some() && retry.is_some() {
                return Err(ConfigError::new(
                    format!("{path}.hedge_max_attempts"),
                    "hedging and retries exclude each other; set max_attempts = 1 to hedge, \
                     or hedge_max_attempts = 1 to retry",
                ));
            }
            let bulkhead = match resolve_bulkhead(method, &layers) {
                Some(b) if b.shared => Some(match &shared_bulkhead {
                    Some((bulkhead, _, size)) if *size == (b.max_concurrent, b.max_wait) => {
                        bulkhead.clone()
                    }
                    Some((_, first, (max_concurrent, max_wait))) => {
                        return Err(ConfigError::new(
                            format!("{path}.max_concurrent"),
                            format!(
                                "the RPCs sharing the bulkhead {logical}/* size it differently: \
                                 {} calls and a {} ms wait here, {max_concurrent} calls and a \
                                 {} ms wait for {first}; set max_concurrent and max_wait_ms \
                                 once, in the service table [\"{}\"]",
                                b.max_concurrent,
                                b.max_wait.as_millis(),
                                max_wait.as_millis(),
                                spec.path
                            ),
                        ));
                    }
                    None => {
                        let bulkhead =
                            Bulkhead::new(format!("{logical}/*"), b.max_concurrent, b.max_wait);
                        let size = (b.max_concurrent, b.max_wait);
                        shared_bulkhead = Some((bulkhead.clone(), method.name, size));
                        bulkhead
                    }
                }),
                Some(b) => Some(Bulkhead::new(
                    format!("{logical}/{}", method.name),
                    b.max_concurrent,
                    b.max_wait,
                )),
                None => None,
            };
            let breaker = match (&shared, spec.shared_breaker) {
                (Some(b), true) => b.clone(),
                _ => {
                    let rpc = if spec.shared_breaker {
                        "*"
                    } else {
                        method.name
                    };
                    let b = CircuitBreaker::builder(breaker_config)
                        .name(format!("{logical}/{rpc}"))
                        .labels(logical.clone(), rpc)
                        .build()?;
                    apply_mode(&b, mode);
                    if spec.shared_breaker {
                        shared = Some(b.clone());
                    }
                    b
                }
            };
            methods.push(MethodRuntime {
                spec: method,
                breaker,
                timeout,
                timeout_header: propagate_deadline.then(|| grpc_timeout_header(timeout)),
                fallback,
                classifier: GrpcClassifier::default(),
                retry,
                hedge,
                bulkhead,
                budget: budget.clone(),
            });
        }
        Ok(Arc::new(ServiceRuntime {
            spec,
            methods: methods.into_boxed_slice(),
        }))
    }

    /// Last resort: every value repaired rather than rejected.
    fn lenient(spec: &'static ServiceSpec) -> Arc<ServiceRuntime> {
        let logical = spec.logical_name();
        let budget = RetryBudget::new(RetryBudgetConfig::default());
        let methods = spec
            .methods
            .iter()
            .map(|m| MethodRuntime {
                spec: m,
                breaker: CircuitBreaker::builder(CircuitBreakerConfig::default())
                    .name(format!("{logical}/{}", m.name))
                    .labels(logical.clone(), m.name)
                    .build()
                    .unwrap_or_else(|_| CircuitBreaker::new(CircuitBreakerConfig::default())),
                timeout: lenient_timeout(m),
                timeout_header: Some(grpc_timeout_header(lenient_timeout(m))),
                fallback: FallbackMode::DEFAULT,
                classifier: GrpcClassifier::default(),
                retry: None,
                hedge: None,
                bulkhead: None,
                budget: budget.clone(),
            })
            .collect();
        Arc::new(ServiceRuntime { spec, methods })
    }

    /// The service's build-time spec.
    pub fn spec(&self) -> &'static ServiceSpec {
        self.spec
    }

    /// The RPC at `index` in the spec's order. Generated code passes only valid indices.
    ///
    /// # Panics
    ///
    /// When `index` is not below the number of RPCs in the spec, as slice indexing does.
    #[inline]
    pub fn method(&self, index: usize) -> &MethodRuntime {
        &self.methods[index]
    }

    /// Every RPC, in proto order.
    pub fn methods(&self) -> &[MethodRuntime] {
        &self.methods
    }

    /// The breaker of the RPC with this proto name (`"ValidateToken"`).
    pub fn breaker(&self, rpc: &str) -> Option<&CircuitBreaker> {
        self.methods
            .iter()
            .find(|m| m.spec.name == rpc)
            .map(|m| &m.breaker)
    }
}

/// The build-time deadline of an RPC, or the default one when it is unset or zero.
fn lenient_timeout(method: &MethodSpec) -> Duration {
    method
        .policy
        .timeout
        .filter(|t| !t.is_zero())
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// The retry policy of one RPC: runtime overrides over the build-time spec; none for an
/// RPC that is not idempotent.
fn resolve_retry(
    path: &str,
    method: &MethodSpec,
    layers: &[Option<&PolicyOverride>; 2],
) -> Option<RetrySpec> {
    let set = || layers.iter().flatten();
    let asked = method.policy.retry.is_some() || set().any(|o| o.max_attempts.is_some());
    if !asked {
        return None;
    }
    if !method.idempotent {
        tracing::warn!(
            rpc = path,
            "retries are configured but the RPC is not idempotent; it is never retried \
             (mark it with `option idempotency_level = IDEMPOTENT` or NO_SIDE_EFFECTS)"
        );
        return None;
    }
    let base = method.policy.retry.unwrap_or(RetrySpec::DEFAULT);
    let retryable = retryable_codes(layers).unwrap_or(base.retryable);
    let spec = RetrySpec {
        max_attempts: set()
            .find_map(|o| o.max_attempts)
            .unwrap_or(base.max_attempts)
            .clamp(1, 10),
        initial_backoff: set()
            .find_map(|o| o.initial_backoff_ms.map(Duration::from_millis))
            .unwrap_or(base.initial_backoff),
        max_backoff: set()
            .find_map(|o| o.max_backoff_ms.map(Duration::from_millis))
            .unwrap_or(base.max_backoff),
        multiplier: set()
            .find_map(|o| o.backoff_multiplier)
            .unwrap_or(base.multiplier),
        retryable,
        attempt_timeout: set()
            .find_map(|o| o.attempt_timeout_ms.map(Duration::from_millis))
            .or(base.attempt_timeout),
    };
    (spec.max_attempts > 1).then_some(spec)
}

/// The hedging policy of one RPC: runtime overrides over the build-time spec; none for an
/// RPC that is not idempotent or not unary. Non-fatal codes are the retryable codes.
fn resolve_hedge(
    path: &str,
    method: &MethodSpec,
    layers: &[Option<&PolicyOverride>; 2],
) -> Option<Hedging> {
    let set = || layers.iter().flatten();
    let asked = method.policy.hedge.is_some()
        || set().any(|o| {
            o.hedge_max_attempts.is_some()
                || o.hedge_delay_ms.is_some()
                || o.hedge_percentile.is_some()
        });
    if !asked {
        return None;
    }
    if !method.idempotent || method.kind != RpcKind::Unary {
        tracing::warn!(
            rpc = path,
            "hedging is configured but the RPC is not an idempotent unary one; it is never \
             hedged"
        );
        return None;
    }
    let base = method.policy.hedge.unwrap_or(HedgeSpec::DEFAULT);
    let spec = HedgeSpec {
        max_attempts: set()
            .find_map(|o| o.hedge_max_attempts)
            .unwrap_or(base.max_attempts)
            .clamp(1, 5),
        delay: set()
            .find_map(|o| o.hedge_delay_ms.map(Duration::from_millis))
            .unwrap_or(base.delay),
        percentile: match set().find_map(|o| o.hedge_percentile) {
            Some(q) if q > 0.0 => Some(q),
            Some(_) => None,
            None => base.percentile,
        },
    };
    let non_fatal = retryable_codes(layers)
        .or(method.policy.retry.map(|r| r.retryable))
        .unwrap_or(CodeSet::UNAVAILABLE);
    (spec.max_attempts > 1).then(|| Hedging::new(spec, non_fatal))
}

/// The `retryable_codes` of the highest layer that sets them.
fn retryable_codes(layers: &[Option<&PolicyOverride>; 2]) -> Option<CodeSet> {
    let names = layers
        .iter()
        .flatten()
        .find_map(|o| o.retryable_codes.as_ref())?;
    let codes: Vec<i32> = names
        .iter()
        .filter_map(|n| code_from_name(n))
        .map(|c| c as i32)
        .collect();
    Some(CodeSet::of(&codes))
}

fn resolve_bulkhead(
    method: &MethodSpec,
    layers: &[Option<&PolicyOverride>; 2],
) -> Option<BulkheadSpec> {
    let set = || layers.iter().flatten();
    let base = method.policy.bulkhead;
    let max_concurrent = set()
        .find_map(|o| o.max_concurrent)
        .or(base.map(|b| b.max_concurrent))?;
    Some(BulkheadSpec {
        max_concurrent,
        max_wait: set()
            .find_map(|o| o.max_wait_ms.map(Duration::from_millis))
            .or(base.map(|b| b.max_wait))
            .unwrap_or(Duration::ZERO),
        shared: set()
            .find_map(|o| o.bulkhead_shared)
            .or(base.map(|b| b.shared))
            .unwrap_or(false),
    })
}

fn apply_mode(breaker: &CircuitBreaker, mode: Option<Mode>) {
    match mode {
        None | Some(Mode::Normal) => {}
        Some(Mode::ForcedOpen) => breaker.force_open(),
        Some(Mode::ForcedClosed) => breaker.force_closed(),
        Some(Mode::Disabled) => breaker.disable(),
        Some(Mode::MetricsOnly) => breaker.metrics_only(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{PolicySpec, RpcKind};

    static SPEC: ServiceSpec = ServiceSpec {
        path: ".nova.auth.v1.AuthService",
        name: "AuthService",
        shared_breaker: false,
        methods: &[
            MethodSpec {
                name: "ValidateToken",
                kind: RpcKind::Unary,
                idempotent: true,
                policy: PolicySpec {
                    failure_threshold: Some(3),
                    timeout: Some(Duration::from_secs(2)),
                    ..PolicySpec::EMPTY
                },
            },
            MethodSpec {
                name: "Refresh",
                kind: RpcKind::Unary,
                idempotent: false,
                policy: PolicySpec::EMPTY,
            },
        ],
    };

    static SHARED: ServiceSpec = ServiceSpec {
        shared_breaker: true,
        ..SPEC
    };

    #[test]
    fn precedence_runtime_over_build_over_preset() {
        let rt = ServiceRuntime::resolve(&SPEC, Environment::Staging, None).unwrap();
        let v = rt.method(0);
        assert_eq!(v.breaker().config().failure_threshold, 3); // build time
        assert_eq!(v.breaker().config().success_threshold, 2); // staging preset
        assert_eq!(v.timeout(), Duration::from_secs(2));
        assert_eq!(rt.method(1).timeout(), DEFAULT_TIMEOUT);
        assert_eq!(v.breaker().name(), "auth-service/ValidateToken");
        assert_eq!(v.breaker().service(), "auth-service");

        let config = RuntimeConfig::from_toml_str(
            "r.toml",
            r#"
[".nova.auth.v1.AuthService"]
failure_threshold = 7
timeout_ms = 900
[".nova.auth.v1.AuthService.ValidateToken"]
timeout_ms = 100
fallback = false
mode = "forced_open"
"#,
        )
        .unwrap();
        let rt = ServiceRuntime::resolve(&SPEC, Environment::Staging, Some(&config)).unwrap();
        let v = rt.method(0);
        assert_eq!(v.breaker().config().failure_threshold, 7); // service-level runtime beats build
        assert_eq!(v.timeout(), Duration::from_millis(100)); // rpc-level runtime beats service-level
        assert_eq!(v.fallback(), FallbackMode::OFF);
        assert_eq!(v.breaker().mode(), Mode::ForcedOpen);
        assert_eq!(rt.method(1).timeout(), Duration::from_millis(900));
        assert!(rt.breaker("Refresh").is_some());
        assert!(rt.breaker("Nope").is_none());
    }

    #[test]
    fn deadline_propagation_is_on_unless_turned_off() {
        static OFF_AT_BUILD: ServiceSpec = ServiceSpec {
            methods: &[MethodSpec {
                name: "ValidateToken",
                kind: RpcKind::Unary,
                idempotent: true,
                policy: PolicySpec {
                    propagate_deadline: Some(false),
                    ..PolicySpec::EMPTY
                },
            }],
            ..SPEC
        };
        let rt = ServiceRuntime::resolve(&SPEC, Environment::Production, None).unwrap();
        assert!(rt.method(0).propagates_deadline());
        let rt = ServiceRuntime::resolve(&OFF_AT_BUILD, Environment::Production, None).unwrap();
        assert!(!rt.method(0).propagates_deadline());
        // the operator's config beats build time, the RPC's table beats the service's
        let config = RuntimeConfig::from_toml_str(
            "r.toml",
            "[\".nova.auth.v1.AuthService\"]\npropagate_deadline = false\n\
             [\".nova.auth.v1.AuthService.ValidateToken\"]\npropagate_deadline = true\n",
        )
        .unwrap();
        let rt =
            ServiceRuntime::resolve(&OFF_AT_BUILD, Environment::Production, Some(&config)).unwrap();
        assert!(rt.method(0).propagates_deadline());
        let config = RuntimeConfig::from_toml_str(
            "r.toml",
            "[\".nova.auth.v1.AuthService\"]\npropagate_deadline = false\n",
        )
        .unwrap();
        let rt = ServiceRuntime::resolve(&SPEC, Environment::Production, Some(&config)).unwrap();
        assert!(!rt.method(0).propagates_deadline());
        assert!(!rt.method(1).propagates_deadline());
        // a wrong type names the key
        let err = RuntimeConfig::from_toml_str(
            "r.toml",
            "[\".nova.auth.v1.AuthService\"]\npropagate_deadline = \"no\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("propagate_deadline"), "{err}");
    }

    #[test]
    fn shared_breaker_is_one_breaker() {
        let rt = ServiceRuntime::resolve(&SHARED, Environment::Production, None).unwrap();
        assert!(rt.method(0).breaker().ptr_eq(rt.method(1).breaker()));
        assert_eq!(rt.method(0).breaker().rpc(), "*");
        let rt = ServiceRuntime::resolve(&SPEC, Environment::Production, None).unwrap();
        assert!(!rt.method(0).breaker().ptr_eq(rt.method(1).breaker()));
    }

    /// A key the RPC's table cannot decide alone is an error naming it, not a value
    /// silently dropped or applied to every RPC.
    #[test]
    fn service_wide_keys_in_an_rpc_table_are_rejected() {
        let error = |spec: &'static ServiceSpec, toml: &str| {
            let config = RuntimeConfig::from_toml_str("r.toml", toml).unwrap();
            ServiceRuntime::resolve(spec, Environment::Production, Some(&config))
                .unwrap_err()
                .to_string()
        };
        let e = error(
            &SPEC,
            "[\".nova.auth.v1.AuthService.Refresh\"]\nretry_budget_percent = 0.0\n",
        );
        assert!(
            e.contains("[\".nova.auth.v1.AuthService.Refresh\"].retry_budget_percent")
                && e.contains("belongs to the service table [\".nova.auth.v1.AuthService\"]"),
            "{e}"
        );
        // with one shared breaker, its settings and mode are the service's
        for key in [
            "failure_threshold = 2",
            "open_for_ms = 10",
            "mode = \"forced_open\"",
        ] {
            let e = error(
                &SHARED,
                &format!("[\".nova.auth.v1.AuthService.Refresh\"]\n{key}\n"),
            );
            let field = key.split(' ').next().unwrap();
            assert!(
                e.contains(&format!("AuthService.Refresh\"].{field}"))
                    && e.contains("share one breaker (shared_breaker)"),
                "{e}"
            );
        }
        // ...while separate breakers take them per RPC
        let config = RuntimeConfig::from_toml_str(
            "r.toml",
            "[\".nova.auth.v1.AuthService.Refresh\"]\nmode = \"forced_open\"\n",
        )
        .unwrap();
        let rt = ServiceRuntime::resolve(&SPEC, Environment::Production, Some(&config)).unwrap();
        assert_eq!(rt.method(0).breaker().mode(), Mode::Normal);
        assert_eq!(rt.method(1).breaker().mode(), Mode::ForcedOpen);
    }

    #[test]
    fn rpcs_sharing_a_bulkhead_size_it_once() {
        let config = |toml: &str| RuntimeConfig::from_toml_str("r.toml", toml).unwrap();
        let shared =
            "[\".nova.auth.v1.AuthService\"]\nmax_concurrent = 8\nbulkhead_shared = true\n";
        let rt =
            ServiceRuntime::resolve(&SPEC, Environment::Production, Some(&config(shared))).unwrap();
        let (a, b) = (rt.method(0).bulkhead(), rt.method(1).bulkhead());
        assert_eq!(a.unwrap().name(), "auth-service/*");
        assert_eq!(a.unwrap().name(), b.unwrap().name());
        let differing =
            format!("{shared}[\".nova.auth.v1.AuthService.Refresh\"]\nmax_concurrent = 2\n");
        let e = ServiceRuntime::resolve(&SPEC, Environment::Production, Some(&config(&differing)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(".nova.auth.v1.AuthService.Refresh.max_concurrent")
                && e.contains(
                    "2 calls and a 0 ms wait here, 8 calls and a 0 ms wait for ValidateToken"
                ),
            "{e}"
        );
    }

    #[test]
    fn unknown_rpc_in_runtime_config_is_rejected() {
        let config = RuntimeConfig::from_toml_str(
            "r.toml",
            "[\".nova.auth.v1.AuthService.Refesh\"]\ntimeout_ms = 1\n",
        )
        .unwrap();
        let err =
            ServiceRuntime::resolve(&SPEC, Environment::Production, Some(&config)).unwrap_err();
        assert!(err.to_string().contains("Refresh"), "{err}");
    }
}
