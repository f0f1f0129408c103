//! Build-script time: `resilient_build::configure().compile_protos` against plain
//! tonic-prost-build fed the same protox descriptors, on the protos of `tests/codegen`.
//! Results: `docs/bench-e2e.md` at the workspace root.
//!
//! Both write into an output directory that persists across iterations, as `OUT_DIR`
//! does across a build script's reruns, so after the first iteration both only compare
//! and skip unchanged files. The plain route drops the `resilient.v1` options file from
//! the descriptors, as resilient-build does, so that both generate the same packages.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

/// The root protos of `tests/codegen/build.rs`, in one call.
const PROTOS: [&str; 5] = [
    "nova/auth/v1/auth.proto",
    "test/echo/v1/echo.proto",
    "test/a/v1/catalog.proto",
    "test/hops/v1/hops.proto",
    "test/nested/deep/v1/keywords.proto",
];

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn proto_dir() -> PathBuf {
    crate_dir().join("../tests/codegen/proto")
}

fn protos() -> Vec<PathBuf> {
    PROTOS.iter().map(|p| proto_dir().join(p)).collect()
}

/// This process's output directory `name`, under the system's temp dir.
fn out_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "resilient-build-bench-{}/{name}",
        std::process::id()
    ))
}

/// [`out_path`], created empty.
fn out_dir(name: &str) -> PathBuf {
    let dir = out_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the bench output directory");
    dir
}

/// protox with the includes resilient-build uses: the test protos, the options proto
/// (resilient-build embeds it; here it comes from disk), and the google well-known types
/// (protox's default).
fn parse() -> protox::Compiler {
    let includes = [proto_dir(), crate_dir().join("proto")];
    let mut compiler = protox::Compiler::new(includes).expect("protox include paths");
    compiler.include_imports(true).include_source_info(true);
    for proto in protos() {
        compiler
            .open_file(proto.strip_prefix(proto_dir()).expect("under proto/"))
            .expect("the test protos compile");
    }
    compiler
}

/// What a plain tonic user's build.rs does with protox: parse, then tonic-prost-build.
fn plain(out: &Path) {
    let mut fds = parse().file_descriptor_set();
    fds.file.retain(|f| f.package() != "resilient.v1");
    tonic_prost_build::configure()
        .out_dir(out)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)
        .expect("tonic-prost-build");
}

fn resilient(out: &Path) {
    resilient_build::configure()
        .out_dir(out)
        .emit_rerun_if_changed(false)
        .compile_protos(&protos(), &[proto_dir()])
        .expect("resilient-build");
}

fn build_time(c: &mut Criterion) {
    let mut group = c.benchmark_group("build_script");
    group.bench_function("protox parse only", |b| {
        b.iter(|| black_box(parse().file_descriptor_set()))
    });
    let out = out_dir("plain");
    group.bench_function("plain tonic-prost-build", |b| b.iter(|| plain(&out)));
    let out = out_dir("resilient");
    group.bench_function("resilient-build", |b| b.iter(|| resilient(&out)));
    group.finish();

    // Same packages out of both, so the comparison is like for like (when a filter ran
    // both).
    let rust_files = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read the output directory")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| n.ends_with(".rs"))
            .collect();
        names.sort();
        names
    };
    let (plain_files, resilient_files) = (rust_files(&out_path("plain")), rust_files(&out));
    if !plain_files.is_empty() && !resilient_files.is_empty() {
        assert_eq!(
            plain_files, resilient_files,
            "the two routes generated different packages"
        );
    }
    let _ = std::fs::remove_dir_all(out.parent().expect("per-process dir"));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = build_time
}
criterion_main!(benches);
