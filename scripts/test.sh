#!/usr/bin/env bash
# rill's whole test suite: the README's test command, and exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== format"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== docs: every intra-doc link resolves"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

echo "== benches, one quick pass each (criterion's test mode)"
cargo test --workspace --benches

echo "== loom models: worker park/unpark handshake, barrier alignment, epoch handshake, versioned swap"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p rill-engine --release --test loom_signal --test loom_barrier --test loom_epoch --test loom_versioned

echo "== unit, integration, example, doc and README tests"
cargo test --workspace
