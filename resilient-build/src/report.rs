//! `resilient-report.md`: every RPC, its effective build-time policy and where each value
//! came from. Pure: the builder writes the string.

use std::fmt::Write as _;
use std::time::Duration;

use crate::codes;
use crate::model::{
    MethodModel, NoHedge, NoRetry, ServiceModel, Source, Sourced, show_duration as duration,
};
use crate::policy::{FallbackMode, Hedge, HedgeValues, Retry};

const UNSET: &str = "—";
const PRESET: &str = "`RESILIENT_ENV` preset (run time)";
const RUNTIME_DEFAULT: &str = "runtime default";
/// The deadline of an RPC that sets none (`resilient_runtime::DEFAULT_TIMEOUT`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The report for `services`, after `policy::resolve`.
pub(crate) fn render(services: &[ServiceModel]) -> String {
    let mut out = String::new();
    out.push_str("# resilient-build report\n\n");
    out.push_str(
        "Build-time policy of every RPC and where each value came from. A value shown as \
         `—` is left to the `RESILIENT_ENV` preset at run time; a timeout, fallback, retry, \
         hedging or bulkhead value no layer sets is the runtime's default; the runtime \
         configuration named by \
         `RESILIENT_CONFIG` may override any value when the client is built.\n\n",
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
            write_rows(
                &mut out,
                [(
                    "timeout",
                    shown(&policy.timeout, |d| duration(*d)),
                    duration(DEFAULT_TIMEOUT),
                )],
            );
            row(
                &mut out,
                "half_open_max_calls",
                &policy.half_open_max_calls,
                |n| n.to_string(),
            );
            write_rows(
                &mut out,
                [(
                    "fallback",
                    shown(&policy.fallback, fallback),
                    fallback(&FallbackMode::DEFAULT),
                )],
            );
            if method.kind.sends_deadline() {
                write_rows(
                    &mut out,
                    [(
                        "propagate_deadline",
                        shown(&policy.propagate_deadline, |on| yes_no(*on).to_owned()),
                        yes_no(true).to_owned(),
                    )],
                );
            }
            match &policy.idempotent {
                Some(Sourced { value, source }) => {
                    let _ = writeln!(
                        out,
                        "| idempotent | {} | {} |",
                        yes_no(*value),
                        cell(&source.to_string())
                    );
                }
                None => out.push_str("| idempotent | no | not declared |\n"),
            }
            retry_rows(&mut out, method);
            hedge_rows(&mut out, method);
            bulkhead_rows(&mut out, method);
            notes(&mut out, method);
        }
    }
    out
}

fn retry_rows(out: &mut String, method: &MethodModel) {
    let policy = &method.policy;
    if !policy.has_retry() {
        out.push_str("| retry | off | not set |\n");
        return;
    }
    let attempts = |n: &u32| {
        if *n == 1 {
            "1 (no retry)".to_owned()
        } else {
            n.to_string()
        }
    };
    let default_codes = Retry::DEFAULT_RETRYABLE_CODES.join(", ");
    let rows = [
        (
            "max_attempts",
            policy
                .max_attempts
                .as_ref()
                .map(|v| (attempts(&v.value), &v.source)),
            "1 (no retry until max_attempts is set)".to_owned(),
        ),
        (
            "initial_backoff",
            policy
                .initial_backoff
                .as_ref()
                .map(|v| (duration(v.value), &v.source)),
            duration(Retry::DEFAULT_INITIAL_BACKOFF),
        ),
        (
            "max_backoff",
            policy
                .max_backoff
                .as_ref()
                .map(|v| (duration(v.value), &v.source)),
            duration(Retry::DEFAULT_MAX_BACKOFF),
        ),
        (
            "backoff_multiplier",
            policy
                .backoff_multiplier
                .as_ref()
                .map(|v| (v.value.to_string(), &v.source)),
            Retry::DEFAULT_BACKOFF_MULTIPLIER.to_string(),
        ),
        (
            "retryable_codes",
            policy.retryable_codes.as_ref().map(|v| {
                let names: Vec<&str> = codes::set(&v.value).iter().map(|c| c.name).collect();
                let names = if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                };
                (names, &v.source)
            }),
            default_codes,
        ),
        (
            "attempt_timeout",
            policy
                .attempt_timeout
                .as_ref()
                .map(|v| (duration(v.value), &v.source)),
            "what is left of the call's deadline".to_owned(),
        ),
    ];
    write_rows(out, rows);
}

fn hedge_rows(out: &mut String, method: &MethodModel) {
    let policy = &method.policy;
    if !policy.has_hedge() {
        out.push_str("| hedge | off | not set |\n");
        return;
    }
    let percentile = |q: f64| {
        if q == 0.0 {
            "0 (fixed delay)".to_owned()
        } else {
            q.to_string()
        }
    };
    let rows = [
        (
            "hedge_max_attempts",
            policy.hedge_max_attempts.as_ref().map(|v| {
                let shown = if v.value == 1 {
                    "1 (no hedging)".to_owned()
                } else {
                    v.value.to_string()
                };
                (shown, &v.source)
            }),
            Hedge::DEFAULT_MAX_ATTEMPTS.to_string(),
        ),
        (
            "hedge_delay",
            policy
                .hedge_delay
                .as_ref()
                .map(|v| (duration(v.value), &v.source)),
            duration(Hedge::DEFAULT_DELAY),
        ),
        (
            "hedge_percentile",
            policy
                .hedge_percentile
                .as_ref()
                .map(|v| (percentile(v.value), &v.source)),
            percentile(Hedge::DEFAULT_PERCENTILE),
        ),
    ];
    write_rows(out, rows);
}

/// A set value as a [`Row`] shows it: the value written out, and where it was set.
fn shown<T>(value: &Option<Sourced<T>>, show: impl Fn(&T) -> String) -> Option<(String, &Source)> {
    value.as_ref().map(|v| (show(&v.value), &v.source))
}

/// One row per option: its value and where it was set, or the runtime's default.
fn write_rows<'a>(out: &mut String, rows: impl IntoIterator<Item = Row<'a>>) {
    for (option, value, default) in rows {
        let _ = match value {
            Some((value, source)) => writeln!(
                out,
                "| {option} | {} | {} |",
                cell(&value),
                cell(&source.to_string())
            ),
            None => writeln!(out, "| {option} | {} | {RUNTIME_DEFAULT} |", cell(&default)),
        };
    }
}

/// An option's name, its value and source when a layer sets it, and its default.
type Row<'a> = (&'static str, Option<(String, &'a Source)>, String);

fn bulkhead_rows(out: &mut String, method: &MethodModel) {
    let policy = &method.policy;
    if !policy.has_bulkhead_fields() {
        out.push_str("| bulkhead | none | not set |\n");
        return;
    }
    match &policy.max_concurrent {
        Some(Sourced { value, source }) => {
            let _ = writeln!(
                out,
                "| max_concurrent | {value} | {} |",
                cell(&source.to_string())
            );
        }
        None => out.push_str("| max_concurrent | — | not set: no bulkhead |\n"),
    }
    write_rows(
        out,
        [
            (
                "max_wait",
                shown(&policy.max_wait, |d| duration(*d)),
                "0s (rejected at once)".to_owned(),
            ),
            (
                "shared_bulkhead",
                shown(&policy.shared_bulkhead, |on| yes_no(*on).to_owned()),
                yes_no(false).to_owned(),
            ),
        ],
    );
}

/// What the table alone does not say: settings that have no effect.
fn notes(out: &mut String, method: &MethodModel) {
    let policy = &method.policy;
    if policy.asks_for_retries() {
        match method.no_retry() {
            Some(NoRetry::NotIdempotent) => out.push_str(
                "\nNever retried: the RPC is not idempotent, so the generated code carries no \
                 retry policy (the build warned). Mark it idempotent to retry it.\n",
            ),
            Some(NoRetry::StreamedRequest) => out.push_str(
                "\nNever retried: its request stream is consumed by the first attempt, so the \
                 generated code carries no retry policy (the build warned).\n",
            ),
            None => {}
        }
    }
    if HedgeValues::of(policy).is_some_and(|h| h.max_attempts > 1) {
        match method.no_hedge() {
            Some(NoHedge::NotIdempotent) => out.push_str(
                "\nNever hedged: the RPC is not idempotent, so the generated code carries no \
                 hedging policy (the build warned). Mark it idempotent to hedge it.\n",
            ),
            Some(NoHedge::NotUnary) => out.push_str(
                "\nNever hedged: only unary calls are hedged, so the generated code carries no \
                 hedging policy (the build warned).\n",
            ),
            None => {}
        }
    }
    if policy.has_bulkhead_fields() && policy.max_concurrent.is_none() {
        out.push_str(
            "\nNo bulkhead: `max_wait` and `shared_bulkhead` take effect only with \
             `max_concurrent`.\n",
        );
    }
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

fn yes_no(on: bool) -> &'static str {
    if on { "yes" } else { "no" }
}

/// Table cells cannot hold a bare `|`.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
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
    use std::time::Duration;

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
