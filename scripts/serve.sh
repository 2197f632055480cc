#!/usr/bin/env bash
# Build in release mode and run the gateway with its embedded defaults:
# S3 on http://127.0.0.1:9000, data under ./data, credentials generated on
# first start and printed (kept in ./data/credentials.json).
#
#   ./scripts/serve.sh [mlsysops serve options...]   e.g. --s3-addr 0.0.0.0:9000
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_build_deps
# Build from the workspace but keep the caller's working directory, so the
# default ./data (and any relative --data-dir) is where the user ran this.
cargo build --release --bin mlsysops --manifest-path "$ROOT/Cargo.toml"
exec "${CARGO_TARGET_DIR:-$ROOT/target}/release/mlsysops" serve "$@"
