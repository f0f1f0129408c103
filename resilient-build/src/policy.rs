//! Build-time policies: the `Policy` builder, path matching, the layered merge and validation.

use std::io;
use std::time::Duration;

use crate::model::{EffectivePolicy, PolicyValues, ServiceModel, Source, Sourced};

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

    /// Declares the RPCs safe to repeat. Overrides the proto's `idempotency_level`.
    /// Unset by default, which means the RPC is idempotent only if the proto says so.
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
}

/// The layer that `idempotency_level = NO_SIDE_EFFECTS | IDEMPOTENT` amounts to: just
/// below the RPC's own `(resilient.v1.policy)`.
const DECLARED_IDEMPOTENT: PolicyValues = PolicyValues {
    failure_threshold: None,
    success_threshold: None,
    open_for: None,
    timeout: None,
    half_open_max_calls: None,
    fallback: None,
    idempotent: Some(true),
    shared_breaker: None,
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
fn edit_distance(a: &str, b: &str) -> usize {
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
        let durations = [
            (
                "open_for",
                &policy.open_for,
                "the breaker would never stay open",
            ),
            (
                "timeout",
                &policy.timeout,
                "every call would time out before it starts",
            ),
        ];
        for (option, value, why) in durations {
            if let Some(Sourced { value, source }) = value
                && value.is_zero()
            {
                problems.push(format!(
                        "invalid policy for {}: {option} = 0 (set by {source}); {why}. \
                         Use a positive duration, or leave it unset to take the RESILIENT_ENV preset",
                        method.path
                    ));
            }
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
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MethodModel, ProtoLocation, ProtoOption, RpcKind};

    fn method(service: &str, name: &str) -> MethodModel {
        MethodModel {
            path: format!("{service}.{name}"),
            proto_name: name.to_owned(),
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
}
