#!/usr/bin/env bash
# The one test command (README "Test"): installs what the tests need, then runs every check.
# Safe to run on a fresh clone; later runs reuse the cargo cache.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain"
cargo --version
cargo fmt --version >/dev/null 2>&1 || { echo "rustfmt is missing: rustup component add rustfmt" >&2; exit 1; }
cargo clippy --version >/dev/null 2>&1 || { echo "clippy is missing: rustup component add clippy" >&2; exit 1; }

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --locked --workspace
