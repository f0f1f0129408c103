#!/usr/bin/env bash
# Runs every check and test of the workspace, installing what a fresh machine lacks.
# Usage: scripts/test-all.sh        (CI runs exactly this, through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

target_dir="${CARGO_TARGET_DIR:-target}"
disk() { df -h "$(dirname "$target_dir")" | awk 'NR == 2 { print $4 " free on " $6 }'; }

# A one-off run (CI) gains nothing from incremental compilation, whose caches
# would double the size of the build directory.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
echo "disk: $(disk)"

step "tools the tests use (promtool, dnsmasq, etcd, chromium)"
scripts/install-deps.sh

step "format"
cargo fmt --all --check

step "clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "clippy of resilient-runtime with its default features, and with none"
cargo clippy -p resilient-runtime --all-targets --locked -- -D warnings
cargo clippy -p resilient-runtime --all-targets --no-default-features --locked -- -D warnings

step "docs (default features; a broken link is an error)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "tests (unit, integration, doc; including those that need the tools above)"
cargo test --workspace --all-features --locked -- --include-ignored

step "deploy: promtool check/test rules, kustomize of every overlay"
scripts/check-deploy.sh

step "loom: exhaustive interleavings of half-open admission"
RUSTFLAGS="--cfg resilient_loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p resilient-runtime --no-default-features --test loom --release --locked

step "every check passed"
echo "disk: $(disk); build directory: $(du -sh "$target_dir" | cut -f1)"
