#!/usr/bin/env bash
# rill's whole test suite: the README's test command, and exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Servers the tests start themselves: Debian's redis-server, installed when missing.
if ! command -v redis-server >/dev/null 2>&1; then
    echo "== installing redis-server (Debian's package, for the Redis sink tests)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q redis-server >/dev/null \
        || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q redis-server >/dev/null; }
    command -v redis-server >/dev/null || { echo "redis-server could not be installed" >&2; exit 1; }
fi

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
