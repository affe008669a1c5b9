#!/usr/bin/env bash
# The lints CI enforces (STYLE.md), runnable on their own:
#  1. clippy with the workspace's lint table, -D warnings, on every target (tests too);
#  2. function length (clippy's too_many_lines, 70 lines, clippy.toml) on the code
#     outside tests: the node and protocol libraries and the binary (the `tests` crate
#     is test code throughout).
# The architecture rules (layers, libp2p/sled confinement, pure cores, file size) are the
# test tests/tests/architecture.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo clippy --workspace --all-targets --locked -- -D warnings -A clippy::too_many_lines
cargo clippy -p meshlog -p meshlog-protocol --lib --bins --locked -- -D warnings
