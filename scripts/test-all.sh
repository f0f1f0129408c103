#!/usr/bin/env bash
# Runs every check and test of the workspace, installing what a fresh machine lacks.
# Usage: scripts/test-all.sh        (CI runs exactly this, through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all --check

step "clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests (unit, integration, doc)"
cargo test --workspace --locked

step "loom: exhaustive interleavings of half-open admission"
RUSTFLAGS="--cfg resilient_loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p resilient-runtime --no-default-features --test loom --release --locked

step "every check passed"
