//! Where a generated client's target comes from: the environment, then the runtime config
//! file. No address is ever compiled in.

use crate::config::{CONFIG_ENV, RuntimeConfig};
use crate::spec::ServiceSpec;

use super::{DiscoveryError, ErrorKind, Target};

/// The target of `spec`'s service, checked with [`Target::parse`]:
///
/// 1. the environment variable [`ServiceSpec::target_env_var`] (`AUTH_SERVICE_URL` for
///    `AuthService`), when set and not blank;
/// 2. else `target = "..."` in the service's table (`[".nova.auth.v1.AuthService"]`) of
///    the file named by `RESILIENT_CONFIG`;
/// 3. else an error of kind [`ErrorKind::NotConfigured`] naming both places.
///
/// An unreadable or invalid config file is an error too (it names the file and key),
/// and so is a malformed target (it names where it was found).
pub fn target_for(spec: &ServiceSpec) -> Result<String, DiscoveryError> {
    let env = std::env::var(spec.target_env_var()).ok();
    let config = RuntimeConfig::from_env().map_err(|e| {
        DiscoveryError::new(
            ErrorKind::NotConfigured,
            "",
            format!(
                "cannot read the target of {} from {CONFIG_ENV}: {e}",
                spec.logical_name()
            ),
        )
    })?;
    target_from(spec, env.as_deref(), config.as_ref())
}

/// [`target_for`] with the environment value and config given: the same precedence and
/// errors, without reading the process environment.
pub fn target_from(
    spec: &ServiceSpec,
    env_value: Option<&str>,
    config: Option<&RuntimeConfig>,
) -> Result<String, DiscoveryError> {
    let var = spec.target_env_var();
    let checked = |text: &str, place: &str| {
        Target::parse(text)
            .map(|t| t.as_str().to_string())
            .map_err(|e| {
                DiscoveryError::new(
                    ErrorKind::InvalidTarget,
                    e.target(),
                    format!("{} (from {place})", e.message()),
                )
            })
    };
    if let Some(value) = env_value.filter(|v| !v.trim().is_empty()) {
        return checked(value, &var);
    }
    if let Some(config) = config
        && let Some(target) = config.target(spec.path)
    {
        return checked(
            target,
            &format!("{} [\"{}\"].target", config.source(), spec.path),
        );
    }
    Err(DiscoveryError::new(
        ErrorKind::NotConfigured,
        "",
        format!(
            "no target for {name}: set {var} (e.g. {var}=dns:///{name}.nova.svc.cluster.local:8083) \
             or `target = \"...\"` under [\"{path}\"] in the file named by {CONFIG_ENV}{file}",
            name = spec.logical_name(),
            path = spec.path,
            file = match config {
                Some(c) => format!(" ({} has none)", c.source()),
                None => " (unset)".to_string(),
            },
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    static AUTH: ServiceSpec = ServiceSpec {
        path: ".nova.auth.v1.AuthService",
        name: "AuthService",
        shared_breaker: false,
        methods: &[],
    };

    fn config(text: &str) -> RuntimeConfig {
        RuntimeConfig::from_toml_str("resilient.toml", text).unwrap()
    }

    #[test]
    fn env_first_then_config_then_a_clear_error() {
        let file = config("[\".nova.auth.v1.AuthService\"]\ntarget = \"consul:///auth-service\"\n");
        assert_eq!(
            target_from(&AUTH, Some("http://auth-service:8083"), Some(&file)).unwrap(),
            "http://auth-service:8083"
        );
        assert_eq!(
            target_from(&AUTH, Some("  "), Some(&file)).unwrap(),
            "consul:///auth-service"
        );
        assert_eq!(
            target_from(&AUTH, None, Some(&file)).unwrap(),
            "consul:///auth-service"
        );

        let e = target_from(&AUTH, None, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotConfigured);
        let m = e.to_string();
        assert!(m.contains("AUTH_SERVICE_URL"), "{m}");
        assert!(m.contains("RESILIENT_CONFIG"), "{m}");
        assert!(m.contains("[\".nova.auth.v1.AuthService\"]"), "{m}");

        let other = config("[\".nova.user.v1.UserService\"]\ntimeout_ms = 5\n");
        let m = target_from(&AUTH, None, Some(&other))
            .unwrap_err()
            .to_string();
        assert!(m.contains("resilient.toml has none"), "{m}");
    }

    #[test]
    fn a_bad_target_says_where_it_came_from() {
        let e = target_from(&AUTH, Some("zk:///auth"), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidTarget);
        assert!(e.to_string().contains("from AUTH_SERVICE_URL"), "{e}");
        let file = config("[\".nova.auth.v1.AuthService\"]\ntarget = \"dns:///auth\"\n");
        let e = target_from(&AUTH, None, Some(&file)).unwrap_err();
        assert!(
            e.to_string()
                .contains("resilient.toml [\".nova.auth.v1.AuthService\"].target"),
            "{e}"
        );
    }
}
