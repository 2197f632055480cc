# shellcheck shell=bash
# Shared helpers for scripts/*.sh. Source it; do not run it.
#
# Installs only what is missing: Debian/Ubuntu packages through apt-get
# (with sudo when not root), the rustfmt/clippy components through rustup.

if [[ -n "${MLSYSOPS_LIB_SOURCED:-}" ]]; then
    return 0
fi
MLSYSOPS_LIB_SOURCED=1

# shellcheck disable=SC2034 # used by the scripts that source this file
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive

section() {
    printf '\n==== %s ====\n' "$*"
}

info() {
    printf '[%s] %s\n' "$(basename "$0")" "$*"
}

die() {
    printf '[%s] ERROR: %s\n' "$(basename "$0")" "$*" >&2
    exit 1
}

# Run a command as root: directly when we are root, else through sudo.
as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo env DEBIAN_FRONTEND=noninteractive "$@"
    else
        die "need root for: $* (not root and sudo is not installed)"
    fi
}

_APT_UPDATED=""

# apt_install PKG...: install the packages that are not installed yet.
# Runs `apt-get update` at most once per script run, and only if something
# is missing.
apt_install() {
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "missing packages (${missing[*]}) and apt-get is not available: install them by hand"
    info "installing: ${missing[*]}"
    if [[ -z "$_APT_UPDATED" ]]; then
        as_root apt-get update -q
        _APT_UPDATED=1
    fi
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# System packages needed to build the workspace: a C/C++ toolchain for
# librocksdb-sys and lz4-sys, and libclang for bindgen (rocksdb feature
# `bindgen-runtime` loads libclang.so at build time).
ensure_build_deps() {
    apt_install build-essential pkg-config clang libclang-dev
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install Rust with rustup (https://rustup.rs) and open a new shell"
}

# rustfmt and clippy, which a minimal rustup profile leaves out.
ensure_rust_components() {
    local want=()
    cargo fmt --version >/dev/null 2>&1 || want+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || want+=(clippy)
    if [[ ${#want[@]} -gt 0 ]]; then
        command -v rustup >/dev/null 2>&1 || die "cargo ${want[*]} missing and rustup not found"
        info "rustup component add ${want[*]}"
        rustup component add "${want[@]}"
    fi
}

# s3s-fs: a real S3 server (files on disk) that the multi-backend tests start six
# of. Built once into target/tools; a debug build is plenty for loopback tests
# and compiles in about half the time of a release build.
S3S_FS_VERSION=0.14.1
ensure_s3s_fs() {
    local bin="$ROOT/target/tools/bin/s3s-fs"
    if [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
        return 0
    fi
    info "cargo install s3s-fs $S3S_FS_VERSION (into target/tools)"
    cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --debug \
        --root "$ROOT/target/tools" --target-dir "$ROOT/target/tools-build"
}

# Azurite (Microsoft's Azure Storage emulator, npm) for the Azure backend tests; needs Node.js.
AZURITE_VERSION=3.37.0
ensure_azurite() {
    local bin="$ROOT/target/azurite/node_modules/.bin/azurite-blob"
    [[ -x "$bin" ]] && return 0
    if ! command -v npm >/dev/null 2>&1; then
        info "npm not found: the Azure backend tests will skip (install Node.js >= 18 to run them)"
        return 0
    fi
    info "npm install azurite@$AZURITE_VERSION (into target/azurite)"
    npm install --silent --no-audit --no-fund --prefix "$ROOT/target/azurite" "azurite@$AZURITE_VERSION"
}
