//! The `resilient.v1` option values the generator reads, fuzzed with proptest (cargo-fuzz
//! needs a nightly toolchain CI does not have): random option bodies on RPCs and services
//! (every field name, misspelt ones, every kind of value: edge integers, floats, strings
//! with control characters, lists, nested messages), `idempotency_level` values, valid
//! options with characters inserted or removed, and extreme build.rs durations.
//!
//! Nothing may panic. A build that fails names its input (the proto file, or the build.rs
//! policy) and quotes no raw control character; a build that succeeds writes Rust that
//! parses. The inputs found interesting are kept under `tests/corpus/options/` and replayed
//! by `option_corpus_gives_clear_errors`; `RESILIENT_HARDENING_TABLE=1 cargo test -p
//! resilient-build --test fuzz_options -- --nocapture` prints the table kept in
//! `docs/hardening.md`.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use resilient_build::{Hedge, Policy, Retry};

/// Cases per property; `PROPTEST_CASES` raises it for a longer run.
fn cases(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A directory with one proto file, rebuilt for every case.
struct Workspace {
    root: PathBuf,
}

impl Workspace {
    fn new(name: &str) -> Self {
        let root = std::env::temp_dir().join(format!(
            "resilient-build-fuzz-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("proto/nova/auth/v1")).unwrap();
        Workspace { root }
    }

    fn proto_path(&self) -> PathBuf {
        self.root.join("proto/nova/auth/v1/auth.proto")
    }

    /// Builds `source` with `builder`: the generated file's text, or the error's text.
    /// A panic is returned as an error of the test case.
    fn build(
        &self,
        source: &str,
        builder: resilient_build::Builder,
    ) -> Result<Result<String, String>, TestCaseError> {
        let out = self.root.join("out");
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out).unwrap();
        fs::write(self.proto_path(), source).unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| {
            builder
                .out_dir(&out)
                .emit_rerun_if_changed(false)
                .compile_protos(&[self.proto_path()], &[self.root.join("proto")])
        }))
        .map_err(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            TestCaseError::fail(format!("panicked: {what}\ninput:\n{source}"))
        })?;
        Ok(match result {
            Ok(()) => Ok(fs::read_to_string(out.join("nova.auth.v1.rs")).unwrap()),
            Err(e) => Err(e.to_string()),
        })
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Checks what every build must give: Rust that parses, or an error naming `names`,
/// bounded in size and free of raw control characters.
fn check(outcome: Result<String, String>, names: &str, source: &str) -> Result<(), TestCaseError> {
    match outcome {
        Ok(rust) => {
            if let Err(e) = syn::parse_file(&rust) {
                return Err(TestCaseError::fail(format!(
                    "generated Rust does not parse: {e}\ninput:\n{source}"
                )));
            }
        }
        Err(message) => {
            prop_assert!(
                message.contains(names),
                "error does not name {names}: {message}\ninput:\n{source}"
            );
            prop_assert!(
                !message.chars().any(|c| c.is_control() && c != '\n'),
                "raw control character in: {message:?}"
            );
            prop_assert!(
                message.len() <= 4_000 + 4 * source.len(),
                "error of {} bytes for an input of {}",
                message.len(),
                source.len()
            );
        }
    }
    Ok(())
}

const POLICY_FIELDS: &[&str] = &[
    "failure_threshold",
    "success_threshold",
    "open_for_ms",
    "timeout_ms",
    "half_open_max_calls",
    "fallback",
    "idempotent",
    "shared_breaker",
    "max_attempts",
    "initial_backoff_ms",
    "max_backoff_ms",
    "backoff_multiplier",
    "retryable_codes",
    "attempt_timeout_ms",
    "max_concurrent",
    "max_wait_ms",
    "shared_bulkhead",
    "hedge_max_attempts",
    "hedge_delay_ms",
    "hedge_percentile",
    "propagate_deadline",
    // not fields
    "failure_treshold",
    "timeout",
    "[resilient.v1.policy]",
    "FAILURE_THRESHOLD",
];

const SCALARS: &[&str] = &[
    "0",
    "1",
    "2",
    "10",
    "11",
    "-1",
    "-0",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "0x10",
    "0xFFFFFFFF",
    "010",
    "08",
    "0.5",
    "0.999",
    "1.0",
    "1e308",
    "1e309",
    "-1e309",
    "inf",
    "-inf",
    "nan",
    "infinity",
    "true",
    "false",
    "True",
    "t",
    "UNAVAILABLE",
    "\"UNAVAILABLE\"",
    "\"unavailable\"",
    "\"RESOURCE_EXHAUSTD\"",
    "\"OK\"",
    "\"\"",
    "''",
    "\"\\x00\"",
    "\"\\n\\u001b[31m\"",
    "\"\\377\\377\"",
];

/// A proto text-format string literal with arbitrary (escaped or raw) content.
fn string_literal() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(
            "aAzZ09_ -\\\"'\n\t\u{0}\u{1b}\u{7f}é\u{200b}{}[]:;,"
                .chars()
                .collect::<Vec<_>>(),
        ),
        0..20,
    )
    .prop_map(|chars| {
        let body: String = chars.into_iter().collect();
        format!("\"{}\"", body.replace('\\', "\\\\").replace('"', "\\\""))
    })
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(SCALARS).prop_map(String::from),
        2 => any::<u32>().prop_map(|v| v.to_string()),
        1 => any::<i64>().prop_map(|v| v.to_string()),
        1 => any::<f64>().prop_map(|v| format!("{v:?}")),
        2 => string_literal(),
    ]
}

/// An option value: a scalar, a list, or a nested message body.
fn value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((prop::sample::select(POLICY_FIELDS), inner), 0..3).prop_map(
                |fields| {
                    let body: Vec<String> =
                        fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                    format!("{{ {} }}", body.join(" "))
                }
            ),
        ]
    })
}

/// `field: value` entries of one option body; separators vary like protoc accepts.
fn body() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(POLICY_FIELDS),
            value(),
            prop::sample::select(&[" ", ", ", "; ", "\n    "][..]),
        ),
        0..6,
    )
    .prop_map(|entries| {
        entries
            .iter()
            .map(|(k, v, sep)| format!("{k}: {v}{sep}"))
            .collect()
    })
}

const IDEMPOTENCY: &[&str] = &[
    "NO_SIDE_EFFECTS",
    "IDEMPOTENT",
    "IDEMPOTENCY_UNKNOWN",
    "0",
    "2",
    "3",
    "-1",
    "idempotent",
    "\"IDEMPOTENT\"",
];

/// The auth proto with `service_option` on the service and `rpc_option` on one RPC.
fn auth_proto(service_option: &str, rpc_option: &str) -> String {
    format!(
        "syntax = \"proto3\";\n\
         package nova.auth.v1;\n\
         import \"resilient/v1/options.proto\";\n\
         \n\
         service AuthService {{\n\
         {service_option}\n\
         \x20 rpc ValidateToken(ValidateTokenRequest) returns (Claims) {{\n\
         {rpc_option}\n\
         \x20 }}\n\
         \x20 rpc Watch(ValidateTokenRequest) returns (stream Claims);\n\
         }}\n\
         message ValidateTokenRequest {{ string token = 1; }}\n\
         message Claims {{ string sub = 1; }}\n"
    )
}

fn proto_file(workspace: &Workspace) -> String {
    workspace.proto_path().display().to_string()
}

#[test]
fn random_option_bodies_never_panic() {
    let workspace = Workspace::new("bodies");
    let file = proto_file(&workspace);
    let strategy = (
        body(),
        body(),
        prop::option::of(prop::sample::select(IDEMPOTENCY)),
        any::<bool>(),
    );
    TestRunner::new(cases(200))
        .run(&strategy, |(rpc, service, idempotency, aggregate)| {
            let mut rpc_option = format!("    option (resilient.v1.policy) = {{ {rpc} }};");
            if aggregate {
                // The other syntax: one field at a time.
                rpc_option.push_str("\n    option (resilient.v1.policy).max_attempts = 2;");
            }
            if let Some(level) = idempotency {
                rpc_option.push_str(&format!("\n    option idempotency_level = {level};"));
            }
            let source = auth_proto(
                &format!("  option (resilient.v1.service_policy) = {{ {service} }};"),
                &rpc_option,
            );
            let outcome = workspace.build(&source, resilient_build::configure())?;
            check(outcome, &file, &source)
        })
        .unwrap();
}

/// A valid option that sets every field, then broken at random places.
const VALID_RPC_OPTION: &str = "    option (resilient.v1.policy) = {\n      failure_threshold: 3 success_threshold: 2 open_for_ms: 5000 timeout_ms: 800\n      half_open_max_calls: 2 fallback: true idempotent: true max_attempts: 3\n      initial_backoff_ms: 20 max_backoff_ms: 400 backoff_multiplier: 1.5\n      retryable_codes: [\"UNAVAILABLE\", \"RESOURCE_EXHAUSTED\"] attempt_timeout_ms: 300\n      max_concurrent: 16 max_wait_ms: 5 shared_bulkhead: false\n      hedge_max_attempts: 1 hedge_delay_ms: 40 hedge_percentile: 0.9\n      propagate_deadline: false\n    };";
const VALID_SERVICE_OPTION: &str = "  option (resilient.v1.service_policy) = { failure_threshold: 5 timeout_ms: 2000 max_concurrent: 32 };";

#[test]
fn valid_options_build_and_mutations_never_panic() {
    let workspace = Workspace::new("mutations");
    let file = proto_file(&workspace);

    let source = auth_proto(VALID_SERVICE_OPTION, VALID_RPC_OPTION);
    let rust = workspace
        .build(&source, resilient_build::configure())
        .unwrap()
        .expect("the valid options build");
    assert!(rust.contains("AuthServiceResilientClient"), "{rust}");
    // The options reached the generated policy.
    assert!(
        rust.contains("800"),
        "timeout_ms is not in the generated code"
    );
    assert!(
        rust.contains("percentile: Some(0.9)"),
        "hedge_percentile is not in the generated code"
    );
    assert!(
        rust.contains("propagate_deadline: Some(false)"),
        "propagate_deadline is not in the generated code"
    );

    let edit = (
        0usize..VALID_RPC_OPTION.len() + VALID_SERVICE_OPTION.len(),
        0u8..3,
        prop::sample::select(
            "0123456789-.:;,{}[]\"'\\ \nxe\u{0}é"
                .chars()
                .collect::<Vec<_>>(),
        ),
    );
    TestRunner::new(cases(200))
        .run(&prop::collection::vec(edit, 1..5), |edits| {
            let mut text: Vec<char> = format!("{VALID_SERVICE_OPTION}\u{1}{VALID_RPC_OPTION}")
                .chars()
                .collect();
            for (at, op, c) in edits {
                let at = at.min(text.len().saturating_sub(1));
                match op {
                    0 => text.insert(at, c),
                    1 if text[at] != '\u{1}' => {
                        text.remove(at);
                    }
                    _ if text[at] != '\u{1}' => text[at] = c,
                    _ => {}
                }
            }
            let text: String = text.into_iter().collect();
            let (service, rpc) = text.split_once('\u{1}').unwrap();
            let source = auth_proto(service, rpc);
            let outcome = workspace.build(&source, resilient_build::configure())?;
            check(outcome, &file, &source)
        })
        .unwrap();
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_micros(999)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(u64::from(u32::MAX))),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_millis),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

#[test]
fn extreme_build_rs_values_never_panic() {
    let workspace = Workspace::new("builder");
    let source = auth_proto("", "");
    let strategy = (
        duration(),
        duration(),
        duration(),
        duration(),
        any::<u32>(),
        (any::<u32>(), any::<f64>()),
        any::<u32>(),
        (any::<u32>(), duration(), any::<f64>(), any::<bool>()),
    );
    TestRunner::new(cases(120))
        .run(
            &strategy,
            |(
                timeout,
                open_for,
                backoff,
                wait,
                threshold,
                (attempts, multiplier),
                limit,
                (hedges, delay, percentile, idempotent),
            )| {
                let policy = Policy::new()
                    .idempotent(idempotent)
                    .hedge(
                        Hedge::new()
                            .max_attempts(hedges)
                            .delay(delay)
                            .percentile(percentile),
                    )
                    .timeout(timeout)
                    .open_for(open_for)
                    .failure_threshold(threshold)
                    .retry(
                        Retry::new()
                            .max_attempts(attempts)
                            .initial_backoff(backoff)
                            .backoff_multiplier(multiplier),
                    )
                    .bulkhead(limit)
                    .bulkhead_wait(wait);
                let builder = resilient_build::configure()
                    .policy(".nova.auth.v1.AuthService.ValidateToken", policy);
                let outcome = workspace.build(&source, builder)?;
                check(outcome, "build.rs", &source)
            },
        )
        .unwrap();
}

// ---------------------------------------------------------------- corpus

fn corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/options");
    let mut files: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", root.display());
    files
}

/// Each corpus file is an RPC option (its first line says which part is shown in the
/// table); every one must fail the build with an error naming the proto file.
#[test]
fn option_corpus_gives_clear_errors() {
    let workspace = Workspace::new("corpus");
    let file = proto_file(&workspace);
    let table = std::env::var_os("RESILIENT_HARDENING_TABLE").is_some();
    for path in corpus() {
        let option = fs::read_to_string(&path).unwrap();
        let (service, rpc) = option.split_once("// rpc\n").unwrap_or(("", &option));
        let source = auth_proto(service.trim_end(), rpc.trim_end());
        let message = match workspace.build(&source, resilient_build::configure()) {
            Ok(Err(message)) => message,
            Ok(Ok(_)) => panic!("{}: the build must fail", path.display()),
            Err(e) => panic!("{}: {e}", path.display()),
        };
        assert!(message.contains(&file), "{}: {message}", path.display());
        assert!(
            !message.chars().any(|c| c.is_control() && c != '\n'),
            "{}: {message:?}",
            path.display()
        );
        if table {
            let cell = |s: &str| {
                s.replace(&file, "auth.proto")
                    .replace('|', "\\|")
                    .replace('`', "'")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let shown = rpc.lines().chain(service.lines()).find_map(|l| {
                let l = l.trim();
                (l.starts_with("option")).then_some(l)
            });
            println!(
                "| proto option | `{}` | {} |",
                cell(shown.unwrap_or(option.trim())),
                cell(&message)
            );
        }
    }
}
