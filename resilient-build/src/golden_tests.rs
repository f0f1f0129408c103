//! Golden files: the generated module and the report for `tests/golden/**/media.proto`.
//!
//! Run with `UPDATE_GOLDEN=1` to rewrite them after an intended change, then review the
//! diff.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::ServiceModel;
use crate::{Builder, FallbackMode, Policy, builder, render, report};

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
                .timeout(Duration::from_secs(30)),
        )
        .policy(
            ".golden.media.v1.MediaService.StreamMedia",
            Policy::new()
                .fallback_on(FallbackMode::ALL)
                .idempotent(true),
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
