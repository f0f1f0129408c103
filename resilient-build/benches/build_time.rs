//! Build-script time: `resilient_build::configure().compile_protos` against plain
//! tonic-prost-build fed the same protox descriptors, on two sets of protos: those of
//! `tests/codegen` and the nova services of `examples/nova-demo` (`proto/nova`).
//! Results: `docs/bench-e2e.md` at the workspace root.
//!
//! Both write into an output directory that persists across iterations, as `OUT_DIR`
//! does across a build script's reruns, so after the first iteration both only compare
//! and skip unchanged files. The plain route drops the `resilient.v1` options file from
//! the descriptors, as resilient-build does, so that both generate the same packages.
//!
//! Each is timed twice: wall time (`build_script_wall`), what cargo waits for, and the
//! thread's CPU time (`build_script_cpu`), which other processes competing for the cores
//! do not inflate.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

/// Root protos compiled in one call, and the include directory they sit under.
struct Protos {
    /// Prefix of the benchmark names: empty for `tests/codegen`, the first set measured.
    label: &'static str,
    /// The include directory, relative to this crate.
    dir: &'static str,
    /// The root protos, relative to `dir`.
    roots: &'static [&'static str],
}

impl Protos {
    fn dir(&self) -> PathBuf {
        crate_dir().join(self.dir)
    }

    fn roots(&self) -> Vec<PathBuf> {
        self.roots.iter().map(|p| self.dir().join(p)).collect()
    }
}

/// The root protos of `tests/codegen/build.rs`, in one call.
const CODEGEN: Protos = Protos {
    label: "",
    dir: "../tests/codegen/proto",
    roots: &[
        "nova/auth/v1/auth.proto",
        "test/echo/v1/echo.proto",
        "test/a/v1/catalog.proto",
        "test/hops/v1/hops.proto",
        "test/nested/deep/v1/keywords.proto",
    ],
};

/// The root protos of `examples/nova-demo/build.rs`.
const NOVA: Protos = Protos {
    label: "nova: ",
    dir: "../proto",
    roots: &[
        "nova/auth/v1/auth.proto",
        "nova/user/v1/user.proto",
        "nova/content/v1/content.proto",
        "nova/media/v1/media.proto",
    ],
};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh, empty output directory `name` of this process, under the system's temp dir.
fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "resilient-build-bench-{}/{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the bench output directory");
    dir
}

/// protox with the includes resilient-build uses: the protos' directory, the options
/// proto (resilient-build embeds it; here it comes from disk), and the google well-known
/// types (protox's default).
fn parse(protos: &Protos) -> protox::Compiler {
    let includes = [protos.dir(), crate_dir().join("proto")];
    let mut compiler = protox::Compiler::new(includes).expect("protox include paths");
    compiler.include_imports(true).include_source_info(true);
    for proto in protos.roots {
        compiler.open_file(proto).expect("the protos compile");
    }
    compiler
}

/// What a plain tonic user's build.rs does with protox: parse, then tonic-prost-build.
fn plain(protos: &Protos, out: &Path) {
    let mut fds = parse(protos).file_descriptor_set();
    fds.file.retain(|f| f.package() != "resilient.v1");
    tonic_prost_build::configure()
        .out_dir(out)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)
        .expect("tonic-prost-build");
}

fn resilient(protos: &Protos, out: &Path) {
    resilient_build::configure()
        .out_dir(out)
        .emit_rerun_if_changed(false)
        .compile_protos(&protos.roots(), &[protos.dir()])
        .expect("resilient-build");
}

/// CPU time of the calling thread. The generators are single-threaded, so this is the
/// work a build script does, whatever else runs on the machine.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given and reads nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Runs `f` `iters` times; returns the thread CPU time it took.
fn cpu_time(iters: u64, mut f: impl FnMut()) -> Duration {
    let start = thread_cpu();
    for _ in 0..iters {
        f();
    }
    thread_cpu() - start
}

fn build_time(c: &mut Criterion) {
    let sets = [CODEGEN, NOVA];
    let outs: Vec<(PathBuf, PathBuf)> = sets
        .iter()
        .enumerate()
        .map(|(i, _)| {
            (
                out_dir(&format!("plain-{i}")),
                out_dir(&format!("resilient-{i}")),
            )
        })
        .collect();
    // Wall time, as cargo waits for a build script; then CPU time, which other processes
    // competing for the cores do not inflate.
    for clock in ["wall", "cpu"] {
        let mut group = c.benchmark_group(format!("build_script_{clock}"));
        let mut bench = |name: &str, f: &dyn Fn()| {
            group.bench_function(name, |b| match clock {
                "wall" => b.iter(f),
                _ => b.iter_custom(|iters| cpu_time(iters, f)),
            });
        };
        bench("protox parse only", &|| {
            black_box(parse(&CODEGEN).file_descriptor_set());
        });
        for (protos, (plain_out, resilient_out)) in sets.iter().zip(&outs) {
            let label = protos.label;
            bench(&format!("{label}plain tonic-prost-build"), &|| {
                plain(protos, plain_out)
            });
            bench(&format!("{label}resilient-build"), &|| {
                resilient(protos, resilient_out)
            });
        }
        group.finish();
    }

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
    for (plain_out, resilient_out) in &outs {
        let (plain_files, resilient_files) = (rust_files(plain_out), rust_files(resilient_out));
        if !plain_files.is_empty() && !resilient_files.is_empty() {
            assert_eq!(
                plain_files, resilient_files,
                "the two routes generated different packages"
            );
        }
    }
    let _ = std::fs::remove_dir_all(outs[0].0.parent().expect("per-process dir"));
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
