#!/usr/bin/env bash
# The whole test suite, as CI runs it: build the `meshlog` binary that the process
# tests start, then run every test of the workspace (one build profile: dev).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  echo "cargo-nextest not found; falling back to cargo test" >&2
  cargo test --workspace --locked --no-fail-fast "$@"
fi
