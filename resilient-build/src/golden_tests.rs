//! Golden files: the generated module and the report for `tests/golden/**/media.proto`.
//!
//! Run with `UPDATE_GOLDEN=1` to rewrite them after an intended change, then review the
//! diff.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::ServiceModel;
use crate::{Builder, FallbackMode, Hedge, Policy, Retry, builder, policy, render, report};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The build.rs configuration the golden files are made with.
fn configure() -> Builder {
    crate::configure()
        .default_policy(Policy::new().half_open_max_calls(2))
        .policy(
            ".golden.media.v1.MediaService.UploadMedia",
            Policy::new()
                .failure_threshold(5)
                .open_for(Duration::from_secs(60))
                .timeout(Duration::from_secs(30))
                .propagate_deadline(false),
        )
        .policy(
            ".golden.media.v1.MediaService.StreamMedia",
            Policy::new()
                .fallback_on(FallbackMode::ALL)
                .idempotent(true)
                .retry(
                    Retry::new()
                        .initial_backoff(Duration::from_millis(20))
                        .max_backoff(Duration::from_millis(500)),
                ),
        )
        // The proto sets the count and delay; build.rs makes the delay fixed.
        .policy(
            ".golden.media.v1.MediaService.GetThumbnail",
            Policy::new().hedge(Hedge::new().fixed_delay()),
        )
        // Not idempotent: never retried, with a warning.
        .policy(
            ".golden.media.v1.MediaService.Type",
            Policy::new().retry(Retry::new().max_attempts(2)),
        )
        .policy(
            ".golden.media.v1.MediaService.UploadMedia",
            Policy::new()
                .shared_bulkhead(true)
                .bulkhead_wait(Duration::from_millis(100)),
        )
}

fn services(builder: &Builder) -> Vec<ServiceModel> {
    let dir = golden_dir();
    let compiler = builder::load(&[dir.join("golden/media/v1/media.proto")], &[dir]).unwrap();
    // Proto names rather than paths on disk keep the goldens machine-independent.
    builder
        .model(&compiler.descriptor_pool(), &|name| name.to_owned())
        .unwrap()
}

fn check(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the generated output at line {}:\n  golden:    {:?}\n  generated: {:?}\n\
             run with UPDATE_GOLDEN=1 to accept the change, then review the diff",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

#[test]
fn golden_resilient_module() {
    let builder = configure();
    let services = services(&builder);
    assert_eq!(services.len(), 1);
    let code = render::render_service(&services[0], &builder.render_options()).unwrap();
    check("media_service_resilient.rs", &code);
}

#[test]
fn golden_resilient_module_without_raw_clients() {
    let builder = configure().expose_raw_clients(false);
    let services = services(&builder);
    let code = render::render_service(&services[0], &builder.render_options()).unwrap();
    check("media_service_resilient_hidden.rs", &code);
}

#[test]
fn golden_report() {
    check(
        "resilient-report.md",
        &report::render(&services(&configure())),
    );
}

#[test]
fn golden_warnings() {
    assert_eq!(
        policy::warnings(&services(&configure())),
        [
            ".golden.media.v1.MediaService.Type: retries are configured (max_attempts = 2, set \
             by build.rs `.policy(\".golden.media.v1.MediaService.Type\", ..)`), but nothing \
             declares it idempotent, so it is never retried. If repeating it is safe, mark it \
             with `option idempotency_level = IDEMPOTENT;` (or NO_SIDE_EFFECTS) in the proto, \
             `idempotent: true` in its `(resilient.v1.policy)`, or `.idempotent(true)` in \
             build.rs; otherwise turn retries off for it with `.no_retry()` or `max_attempts: 1`"
        ]
    );
}

#[test]
fn embedded_options_match_the_workspace_copy() {
    let workspace_copy =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/resilient/v1/options.proto");
    // A published crate has no workspace around it; the copy under `proto/` is then the
    // only one.
    if let Ok(workspace) = fs::read_to_string(&workspace_copy) {
        assert_eq!(
            workspace,
            crate::OPTIONS_PROTO,
            "proto/resilient/v1/options.proto and resilient-build/proto/resilient/v1/options.proto differ; copy one over the other"
        );
    }
}
