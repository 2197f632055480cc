#!/usr/bin/env bash
# Full check: system deps, fmt, clippy, debug build, cargo test, real clients, deploy/.
#
#   ./scripts/test.sh
#
# Env: SKIP_REAL_CLIENTS=1 skips the real-client checks (aws cli, rclone,
# s3cmd against a running server). CI=true turns off incremental builds.
# The deploy/ checks (scripts/check-deploy.sh) always run, their live part on
# target/debug/mlsysops; they install their own tools (a venv, Debian's prometheus).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

export CARGO_TERM_COLOR=never
if [[ "${CI:-}" == "true" ]]; then
    export CARGO_INCREMENTAL=0
fi
# (Cargo.toml's `[profile.dev.build-override] debug = true` keeps clippy and
# build/test sharing the build-script outputs: RocksDB's C++ builds once.)

started=$SECONDS
stage() {
    section "$* (t+$((SECONDS - started))s)"
}

stage "system dependencies"
ensure_build_deps
ensure_rust_components
cargo --version
rustc --version

stage "cargo fmt --all -- --check"
cargo fmt --all -- --check

stage "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

stage "cargo build --bin mlsysops"
cargo build --bin mlsysops

stage "s3s-fs and Azurite (real servers used as backends by the tests)"
ensure_s3s_fs
export S3S_FS_BIN="$ROOT/target/tools/bin/s3s-fs"
ensure_azurite
if [[ -x "$ROOT/target/azurite/node_modules/.bin/azurite-blob" ]]; then
    export MLSYSOPS_REQUIRE_AZURITE=1
fi

stage "cargo test --workspace"
test_log=$(mktemp)
trap 'rm -f "$test_log"' EXIT
cargo test --workspace 2>&1 | tee "$test_log"
# cargo's last summary line is the (empty) doc-test run; count every suite for the closing line.
rust_passed=$(awk '/^test result:/ { n += $4 } END { print n + 0 }' "$test_log")
client_passed=0

if [[ "${SKIP_REAL_CLIENTS:-}" == "1" ]]; then
    stage "real clients: skipped (SKIP_REAL_CLIENTS=1)"
else
    stage "real clients (aws cli, rclone, s3cmd, AWS JS SDK) against target/debug/mlsysops"
    "$ROOT/scripts/real-clients.sh" "$ROOT/target/debug/mlsysops" 2>&1 | tee "$test_log"
    client_passed=$(sed -n 's/^real-clients: \([0-9]*\) passed.*/\1/p' "$test_log" | tail -n 1)
fi

stage "deploy/: manifests, compose, dashboard, live Prometheus scrape of target/debug/mlsysops"
CHECK_DEPLOY_LIVE=required MLSYSOPS_BIN="$ROOT/target/debug/mlsysops" \
    "$ROOT/scripts/check-deploy.sh" 2>&1 | tee "$test_log"
deploy_passed=$(sed -n 's/^check-deploy: \([0-9]*\) passed.*/\1/p' "$test_log" | tail -n 1)
[[ -n "$deploy_passed" ]] || die "check-deploy.sh printed no 'check-deploy: N passed' line"

section "all checks passed in $((SECONDS - started))s"
echo "cargo test: $rust_passed passed; real clients: ${client_passed:-0} passed; deploy: $deploy_passed passed"
echo "all: $((rust_passed + ${client_passed:-0} + deploy_passed)) passed, 0 failed"
