//! `resilient-report.md`: every RPC, its effective build-time policy and where each value
//! came from. Pure: the builder writes the string.

use std::fmt::Write as _;
use std::time::Duration;

use crate::model::{ServiceModel, Sourced};
use crate::policy::FallbackMode;

const UNSET: &str = "—";
const PRESET: &str = "`RESILIENT_ENV` preset (run time)";

/// The report for `services`, after `policy::resolve`.
pub(crate) fn render(services: &[ServiceModel]) -> String {
    let mut out = String::new();
    out.push_str("# resilient-build report\n\n");
    out.push_str(
        "Build-time policy of every RPC and where each value came from. A value shown as \
         `—` is left to the `RESILIENT_ENV` preset at run time; the runtime configuration \
         named by `RESILIENT_CONFIG` may override any value when the client is built.\n\n",
    );
    out.push_str(
        "Precedence, highest first: runtime config > build.rs per-RPC > build.rs per-service \
         > proto method option > proto service option > build.rs default > environment preset.\n",
    );
    if services.is_empty() {
        out.push_str("\nThe compiled protos define no services.\n");
    }
    for service in services {
        let _ = write!(
            out,
            "\n## `{}`\n\nDeclared in `{}`. ",
            service.path, service.file
        );
        match &service.shared_breaker {
            Some(Sourced {
                value: true,
                source,
            }) => {
                let _ = writeln!(
                    out,
                    "One breaker shared by all RPCs (`shared_breaker` set by {}).",
                    cell(&source.to_string())
                );
            }
            Some(Sourced {
                value: false,
                source,
            }) => {
                let _ = writeln!(
                    out,
                    "One breaker per RPC (`shared_breaker = false` set by {}).",
                    cell(&source.to_string())
                );
            }
            None => out.push_str("One breaker per RPC (default).\n"),
        }
        for method in &service.methods {
            let policy = &method.policy;
            let _ = write!(
                out,
                "\n### `{}` ({}{})\n\n| option | value | source |\n|---|---|---|\n",
                method.proto_name,
                method.kind.describe(),
                if method.deprecated {
                    ", deprecated"
                } else {
                    ""
                }
            );
            row(
                &mut out,
                "failure_threshold",
                &policy.failure_threshold,
                |n| n.to_string(),
            );
            row(
                &mut out,
                "success_threshold",
                &policy.success_threshold,
                |n| n.to_string(),
            );
            row(&mut out, "open_for", &policy.open_for, |d| duration(*d));
            row(&mut out, "timeout", &policy.timeout, |d| duration(*d));
            row(
                &mut out,
                "half_open_max_calls",
                &policy.half_open_max_calls,
                |n| n.to_string(),
            );
            row(&mut out, "fallback", &policy.fallback, fallback);
            match &policy.idempotent {
                Some(Sourced { value, source }) => {
                    let _ = writeln!(
                        out,
                        "| idempotent | {} | {} |",
                        if *value { "yes" } else { "no" },
                        cell(&source.to_string())
                    );
                }
                None => out.push_str("| idempotent | no | not declared |\n"),
            }
        }
    }
    out
}

fn row<T>(out: &mut String, option: &str, value: &Option<Sourced<T>>, show: impl Fn(&T) -> String) {
    let _ = match value {
        Some(Sourced { value, source }) => writeln!(
            out,
            "| {option} | {} | {} |",
            cell(&show(value)),
            cell(&source.to_string())
        ),
        None => writeln!(out, "| {option} | {UNSET} | {PRESET} |"),
    };
}

/// Table cells cannot hold a bare `|`.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn duration(value: Duration) -> String {
    let millis = value.as_millis();
    if !value.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{value:?}")
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

fn fallback(mode: &FallbackMode) -> String {
    let causes: Vec<&str> = [
        (mode.open, "open"),
        (mode.timeout, "timeout"),
        (mode.failure, "failure"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if causes.is_empty() {
        "off".to_owned()
    } else {
        format!("on {}", causes.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_fallbacks_read_naturally() {
        assert_eq!(duration(Duration::from_secs(2)), "2s");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(fallback(&FallbackMode::NONE), "off");
        assert_eq!(fallback(&FallbackMode::DEFAULT), "on open, timeout");
        assert_eq!(cell("a|b"), "a\\|b");
    }

    #[test]
    fn no_services() {
        assert!(render(&[]).contains("define no services"));
    }
}
