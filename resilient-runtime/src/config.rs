//! The operator's runtime overrides: a TOML file named by `RESILIENT_CONFIG`, keyed by
//! full proto paths, read when a client is built.
//!
//! ```toml
//! [".nova.auth.v1.AuthService"]
//! target = "dns:///auth-service.nova.svc.cluster.local:8083"
//! failure_threshold = 3
//! timeout_ms = 2000
//!
//! [".nova.auth.v1.AuthService.ValidateToken"]
//! timeout_ms = 1500
//! fallback = ["open", "timeout", "failure"]   # or true / false
//! mode = "metrics_only"                       # normal | forced_open | forced_closed | disabled | metrics_only
//! propagate_deadline = false                  # do not send grpc-timeout (default true)
//! ```
//!
//! An unknown key, a value of the wrong type or a zero threshold or time is rejected
//! with the file, line and key.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::breaker::{ConfigError, Mode};
use crate::spec::{FallbackMode, ServiceSpec};

/// The environment variable naming the runtime config file.
pub const CONFIG_ENV: &str = "RESILIENT_CONFIG";

/// Overrides for one service or one RPC. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverride {
    /// Where the service is (service tables only): a target string such as
    /// `dns:///auth-service.nova.svc.cluster.local:8083`.
    pub target: Option<String>,
    /// Consecutive failures that open the circuit.
    pub failure_threshold: Option<u32>,
    /// Consecutive successful probes that close it.
    pub success_threshold: Option<u32>,
    /// How long the circuit stays open, in milliseconds.
    pub open_for_ms: Option<u64>,
    /// The deadline of one call, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Concurrent half-open probes.
    pub half_open_max_calls: Option<u32>,
    /// Which causes go to the fallback: `true` (open and timeout), `false`, or a list of
    /// `"open"`, `"timeout"`, `"failure"`.
    pub fallback: Option<FallbackSetting>,
    /// An operator override of the breaker's mode.
    pub mode: Option<ModeSetting>,
    /// Attempts in all, the first included (1 = no retry; idempotent RPCs only).
    pub max_attempts: Option<u32>,
    /// The cap of the first retry's backoff, in milliseconds.
    pub initial_backoff_ms: Option<u64>,
    /// The largest backoff cap, in milliseconds.
    pub max_backoff_ms: Option<u64>,
    /// Growth of the backoff cap per attempt (≥ 1).
    pub backoff_multiplier: Option<f64>,
    /// Status codes worth a retry, by name (`["UNAVAILABLE", "RESOURCE_EXHAUSTED"]`).
    pub retryable_codes: Option<Vec<String>>,
    /// The deadline of one attempt, in milliseconds.
    pub attempt_timeout_ms: Option<u64>,
    /// Calls in flight at most (a bulkhead).
    pub max_concurrent: Option<u32>,
    /// How long a call over `max_concurrent` waits for a slot, in milliseconds.
    pub max_wait_ms: Option<u64>,
    /// Share one bulkhead among the service's RPCs that set this (also spelt
    /// `shared_bulkhead`, as in build.rs and the proto option).
    #[serde(alias = "shared_bulkhead")]
    pub bulkhead_shared: Option<bool>,
    /// Hedging: attempts in all, the first included (1 = no hedging; idempotent unary
    /// RPCs only; excludes retries).
    pub hedge_max_attempts: Option<u32>,
    /// Hedging: the wait before a hedged attempt, in milliseconds, while the latency
    /// percentile is not known (always, with `hedge_percentile = 0`).
    pub hedge_delay_ms: Option<u64>,
    /// Hedging: the quantile of recent latencies to wait before a hedged attempt
    /// (0.5 to 0.999), or 0 for the fixed `hedge_delay_ms`.
    pub hedge_percentile: Option<f64>,
    /// Whether unary and client-streaming calls send their deadline to the server as
    /// `grpc-timeout` (default `true`).
    pub propagate_deadline: Option<bool>,
    /// Retry budget (service tables): retries per request in the last 10 s.
    pub retry_budget_percent: Option<f64>,
    /// Retry budget (service tables): retries per second always allowed.
    pub retry_budget_min_per_second: Option<u32>,
}

/// The `fallback` value: a switch or a list of causes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    untagged,
    expecting = "true, false, or a list of causes among \"open\", \"timeout\" and \"failure\""
)]
pub enum FallbackSetting {
    /// `true`: open and timeout; `false`: never.
    Switch(bool),
    /// The causes that go to the fallback.
    Causes(Vec<FallbackCauseName>),
}

/// One fallback cause, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackCauseName {
    /// The circuit is open.
    Open,
    /// The call timed out.
    Timeout,
    /// The dependency failed.
    Failure,
}

impl FallbackSetting {
    /// As a [`FallbackMode`].
    pub fn mode(&self) -> FallbackMode {
        match self {
            FallbackSetting::Switch(true) => FallbackMode::DEFAULT,
            FallbackSetting::Switch(false) => FallbackMode::OFF,
            FallbackSetting::Causes(causes) => FallbackMode {
                open: causes.contains(&FallbackCauseName::Open),
                timeout: causes.contains(&FallbackCauseName::Timeout),
                failure: causes.contains(&FallbackCauseName::Failure),
            },
        }
    }
}

/// The `mode` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeSetting {
    /// The state machine decides.
    Normal,
    /// Reject every call.
    ForcedOpen,
    /// Let every call through, never change state.
    ForcedClosed,
    /// Let every call through, record nothing.
    Disabled,
    /// Shadow mode: record and report, never reject.
    MetricsOnly,
}

impl ModeSetting {
    /// As a breaker [`Mode`].
    pub fn mode(self) -> Mode {
        match self {
            ModeSetting::Normal => Mode::Normal,
            ModeSetting::ForcedOpen => Mode::ForcedOpen,
            ModeSetting::ForcedClosed => Mode::ForcedClosed,
            ModeSetting::Disabled => Mode::Disabled,
            ModeSetting::MetricsOnly => Mode::MetricsOnly,
        }
    }
}

/// A loaded runtime config file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConfig {
    source: String,
    entries: BTreeMap<String, PolicyOverride>,
}

impl RuntimeConfig {
    /// Reads the file named by `RESILIENT_CONFIG`; `Ok(None)` when the variable is unset.
    pub fn from_env() -> Result<Option<RuntimeConfig>, ConfigError> {
        match std::env::var_os(CONFIG_ENV) {
            None => Ok(None),
            Some(path) if path.is_empty() => Ok(None),
            Some(path) => RuntimeConfig::from_file(Path::new(&path)).map(Some),
        }
    }

    /// Reads and checks a config file.
    pub fn from_file(path: &Path) -> Result<RuntimeConfig, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(CONFIG_ENV, format!("cannot read {name}: {e}")))?;
        RuntimeConfig::from_toml_str(&name, &text)
    }

    /// Parses and checks config text; `source` names it in errors.
    pub fn from_toml_str(source: &str, text: &str) -> Result<RuntimeConfig, ConfigError> {
        let entries: BTreeMap<String, PolicyOverride> =
            toml::from_str(text).map_err(|e| toml_error(source, text, &e))?;
        let config = RuntimeConfig {
            source: source.to_string(),
            entries,
        };
        for (path, entry) in &config.entries {
            config.check_entry(path, entry)?;
        }
        Ok(config)
    }

    fn key(&self, path: &str, field: &str) -> String {
        format!("{}: [\"{path}\"].{field}", self.source)
    }

    fn check_entry(&self, path: &str, entry: &PolicyOverride) -> Result<(), ConfigError> {
        if !path.starts_with('.') || path.len() < 2 || path.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                format!("{}: [\"{path}\"]", self.source),
                "tables are named by full proto paths starting with '.', e.g. [\".nova.auth.v1.AuthService\"]",
            ));
        }
        let zero = |field: &str| ConfigError::new(self.key(path, field), "must be above zero");
        if entry.failure_threshold == Some(0) {
            return Err(zero("failure_threshold"));
        }
        if entry.success_threshold == Some(0) {
            return Err(zero("success_threshold"));
        }
        if entry.open_for_ms == Some(0) {
            return Err(zero("open_for_ms"));
        }
        if entry.timeout_ms == Some(0) {
            return Err(zero("timeout_ms"));
        }
        if let Some(n) = entry.half_open_max_calls
            && (n == 0 || n > crate::breaker::config::MAX_PROBES)
        {
            return Err(ConfigError::new(
                self.key(path, "half_open_max_calls"),
                "must be between 1 and 65535",
            ));
        }
        if let Some(target) = &entry.target
            && target.trim().is_empty()
        {
            return Err(ConfigError::new(self.key(path, "target"), "is empty"));
        }
        if let Some(n) = entry.max_attempts
            && !(1..=10).contains(&n)
        {
            return Err(ConfigError::new(
                self.key(path, "max_attempts"),
                "must be between 1 and 10",
            ));
        }
        if let Some(m) = entry.backoff_multiplier
            && !(m.is_finite() && m >= 1.0)
        {
            return Err(ConfigError::new(
                self.key(path, "backoff_multiplier"),
                "must be a finite number of at least 1",
            ));
        }
        if let Some(codes) = &entry.retryable_codes {
            for code in codes {
                if code_from_name(code).is_none() {
                    return Err(ConfigError::new(
                        self.key(path, "retryable_codes"),
                        format!("unknown status code {code:?}; use names like \"UNAVAILABLE\""),
                    ));
                }
            }
        }
        if entry.attempt_timeout_ms == Some(0) {
            return Err(zero("attempt_timeout_ms"));
        }
        if entry.max_concurrent == Some(0) {
            return Err(zero("max_concurrent"));
        }
        if let Some(n) = entry.hedge_max_attempts
            && !(1..=5).contains(&n)
        {
            return Err(ConfigError::new(
                self.key(path, "hedge_max_attempts"),
                "must be between 1 (no hedging) and 5",
            ));
        }
        if entry.hedge_delay_ms == Some(0) {
            return Err(zero("hedge_delay_ms"));
        }
        if let Some(q) = entry.hedge_percentile
            && !(q == 0.0 || (0.5..=0.999).contains(&q))
        {
            return Err(ConfigError::new(
                self.key(path, "hedge_percentile"),
                "must be between 0.5 and 0.999 (or 0 for the fixed hedge_delay_ms)",
            ));
        }
        if let Some(p) = entry.retry_budget_percent
            && !(p.is_finite() && (0.0..=10.0).contains(&p))
        {
            return Err(ConfigError::new(
                self.key(path, "retry_budget_percent"),
                "must be between 0 and 10 (retries per request)",
            ));
        }
        Ok(())
    }

    /// Checks that every table under `service`'s path names one of its RPCs, and that
    /// RPC tables set no `target`.
    pub fn check_service(&self, service: &ServiceSpec) -> Result<(), ConfigError> {
        let prefix = format!("{}.", service.path);
        for (path, entry) in self.entries.range(prefix.clone()..) {
            let Some(rpc) = path.strip_prefix(&prefix) else {
                break;
            };
            if service.method(rpc).is_none() {
                let names: Vec<&str> = service.methods.iter().map(|m| m.name).collect();
                let hint = nearest(rpc, &names)
                    .map(|n| format!("; did you mean \"{}{n}\"?", prefix))
                    .unwrap_or_default();
                return Err(ConfigError::new(
                    format!("{}: [\"{path}\"]", self.source),
                    format!("{} has no RPC named {rpc:?}{hint}", service.path),
                ));
            }
            let service_wide = [
                ("target", entry.target.is_some()),
                ("retry_budget_percent", entry.retry_budget_percent.is_some()),
                (
                    "retry_budget_min_per_second",
                    entry.retry_budget_min_per_second.is_some(),
                ),
            ];
            if let Some((field, _)) = service_wide.iter().find(|(_, set)| *set) {
                return Err(ConfigError::new(
                    self.key(path, field),
                    format!(
                        "{} belongs to the service table [\"{}\"]",
                        field.replace('_', " "),
                        service.path
                    ),
                ));
            }
            let breaker_fields = [
                ("failure_threshold", entry.failure_threshold.is_some()),
                ("success_threshold", entry.success_threshold.is_some()),
                ("open_for_ms", entry.open_for_ms.is_some()),
                ("half_open_max_calls", entry.half_open_max_calls.is_some()),
                ("mode", entry.mode.is_some()),
            ];
            if service.shared_breaker
                && let Some((field, _)) = breaker_fields.iter().find(|(_, set)| *set)
            {
                return Err(ConfigError::new(
                    self.key(path, field),
                    format!(
                        "the RPCs of {} share one breaker (shared_breaker), so {field} is \
                         set for all of them in the service table [\"{}\"]",
                        service.path, service.path
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The overrides for a service or RPC path.
    pub fn get(&self, path: &str) -> Option<&PolicyOverride> {
        self.entries.get(path)
    }

    /// The configured target of a service (full proto path).
    pub fn target(&self, service_path: &str) -> Option<&str> {
        self.entries.get(service_path)?.target.as_deref()
    }

    /// Where this config was read from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// The gRPC code named `name` (`"UNAVAILABLE"`, case-insensitive).
pub fn code_from_name(name: &str) -> Option<tonic::Code> {
    use tonic::Code::*;
    let code = match name.trim().to_ascii_uppercase().as_str() {
        "OK" => Ok,
        "CANCELLED" => Cancelled,
        "UNKNOWN" => Unknown,
        "INVALID_ARGUMENT" => InvalidArgument,
        "DEADLINE_EXCEEDED" => DeadlineExceeded,
        "NOT_FOUND" => NotFound,
        "ALREADY_EXISTS" => AlreadyExists,
        "PERMISSION_DENIED" => PermissionDenied,
        "RESOURCE_EXHAUSTED" => ResourceExhausted,
        "FAILED_PRECONDITION" => FailedPrecondition,
        "ABORTED" => Aborted,
        "OUT_OF_RANGE" => OutOfRange,
        "UNIMPLEMENTED" => Unimplemented,
        "INTERNAL" => Internal,
        "UNAVAILABLE" => Unavailable,
        "DATA_LOSS" => DataLoss,
        "UNAUTHENTICATED" => Unauthenticated,
        _ => return None,
    };
    Some(code)
}

impl PolicyOverride {
    pub(crate) fn open_for(&self) -> Option<Duration> {
        self.open_for_ms.map(Duration::from_millis)
    }

    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }
}

fn toml_error(source: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let snippet = text
                .get(span.clone())
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
                .trim();
            let snippet: String = snippet.escape_debug().collect();
            // A bad value: the span is the value, and the key is before the `=`.
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let field = before[line_start..]
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"'))
                .filter(|k| !k.is_empty() && k.len() <= 80);
            let key = match field {
                Some(field) => format!("{source}:{line}: {field}"),
                None if snippet.is_empty() || snippet.len() > 80 => format!("{source}:{line}"),
                None => format!("{source}:{line}: {snippet}"),
            };
            ConfigError::new(key, message)
        }
        None => ConfigError::new(source.to_string(), message),
    }
}

/// The candidate closest to `name` by edit distance, if close enough to be a typo.
pub(crate) fn nearest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| {
            (
                edit_distance(&name.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                *c,
            )
        })
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{MethodSpec, PolicySpec, RpcKind};

    static AUTH: ServiceSpec = ServiceSpec {
        path: ".nova.auth.v1.AuthService",
        name: "AuthService",
        shared_breaker: false,
        methods: &[MethodSpec {
            name: "ValidateToken",
            kind: RpcKind::Unary,
            idempotent: true,
            policy: PolicySpec::EMPTY,
        }],
    };

    #[test]
    fn parses_the_documented_example() {
        let c = RuntimeConfig::from_toml_str(
            "resilient.toml",
            r#"
[".nova.auth.v1.AuthService"]
target = "dns:///auth-service.nova.svc.cluster.local:8083"
failure_threshold = 3
timeout_ms = 2000

[".nova.auth.v1.AuthService.ValidateToken"]
timeout_ms = 1500
fallback = ["open", "timeout", "failure"]
mode = "metrics_only"
"#,
        )
        .unwrap();
        assert_eq!(
            c.target(".nova.auth.v1.AuthService"),
            Some("dns:///auth-service.nova.svc.cluster.local:8083")
        );
        let rpc = c.get(".nova.auth.v1.AuthService.ValidateToken").unwrap();
        assert_eq!(rpc.fallback.as_ref().unwrap().mode(), FallbackMode::ALL);
        assert_eq!(rpc.mode, Some(ModeSetting::MetricsOnly));
        c.check_service(&AUTH).unwrap();
    }

    fn err(text: &str) -> ConfigError {
        RuntimeConfig::from_toml_str("resilient.toml", text).unwrap_err()
    }

    #[test]
    fn bad_configs_name_the_key() {
        let e = err("[\".nova.auth.v1.AuthService\"]\nfailur_threshold = 3\n");
        assert_eq!(e.key(), "resilient.toml:2: failur_threshold", "{e}");
        assert!(e.message().contains("unknown field"), "{e}");

        let e = err("[\".nova.auth.v1.AuthService\"]\nfailure_threshold = 0\n");
        assert_eq!(
            e.key(),
            "resilient.toml: [\".nova.auth.v1.AuthService\"].failure_threshold"
        );

        let e = err("[\".nova.auth.v1.AuthService\"]\ntimeout_ms = \"2s\"\n");
        assert_eq!(e.key(), "resilient.toml:2: timeout_ms", "{e}");
        assert!(e.message().contains("\"2s\""), "{e}");

        let e = err("[\".x\"]\nmode = \"sideways\"\n");
        assert_eq!(e.key(), "resilient.toml:2: mode", "{e}");

        let e = err("[\".x\"]\npropagate_deadline = \"no\"\n");
        assert_eq!(e.key(), "resilient.toml:2: propagate_deadline", "{e}");

        let e = err("[\"nova.auth\"]\ntimeout_ms = 1\n");
        assert!(e.message().contains("full proto paths"), "{e}");

        let e = err("[\".a\"]\nhalf_open_max_calls = 70000\n");
        assert!(e.key().ends_with("half_open_max_calls"), "{e}");

        let e = err("not toml at all [");
        assert!(e.key().starts_with("resilient.toml:1"), "{e}");

        // a fallback that is neither a switch nor a list says what it may be
        let e = err("[\".a\"]\nfallback = \"yes\"\n");
        assert!(e.key().ends_with("fallback"), "{e}");
        assert!(
            e.message()
                .contains("true, false, or a list of causes among \"open\", \"timeout\""),
            "{e}"
        );
    }

    #[test]
    fn unknown_rpc_suggests_the_nearest() {
        let c = RuntimeConfig::from_toml_str(
            "r.toml",
            "[\".nova.auth.v1.AuthService.ValidateTokn\"]\ntimeout_ms = 5\n",
        )
        .unwrap();
        let e = c.check_service(&AUTH).unwrap_err();
        assert!(
            e.to_string()
                .contains("did you mean \".nova.auth.v1.AuthService.ValidateToken\""),
            "{e}"
        );
    }

    #[test]
    fn nearest_only_suggests_plausible_typos() {
        assert_eq!(
            nearest("ValidateTokn", &["ValidateToken", "Other"]),
            Some("ValidateToken")
        );
        assert_eq!(nearest("Completely", &["ValidateToken"]), None);
    }
}
