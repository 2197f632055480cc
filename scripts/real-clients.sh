#!/usr/bin/env bash
# Checks the gateway with real S3 clients: aws cli (PyPI awscli, in a venv),
# rclone and s3cmd (Debian packages), and the AWS SDK for JavaScript v3 (npm,
# when Node.js >= 20 is there: it is the client that sends aws-chunked bodies
# with checksum trailers over plain http). Installs whichever is missing, starts
# its own server on a temporary data dir and a free port, runs the checks,
# stops the server.
#
#   ./scripts/real-clients.sh [path/to/mlsysops]     (default target/debug/mlsysops)
#   ./scripts/real-clients.sh --install-only         only install the clients
#
# Env:
#   RC_KEEP_WORK=1       keep the temporary dir (always kept when a check fails)
#   RC_CMD_TIMEOUT=300   seconds before one client command is killed
#   RC_VENV=DIR          venv for awscli (default target/venv)
#   RC_NODE_DIR=DIR      npm prefix for the JS SDK (default target/node-clients)
#   RUST_LOG             passed to the server (default info)
#
# Ends with `real-clients: N passed, M failed`; exits 1 if M > 0.
set -euo pipefail
shopt -s inherit_errexit

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INSTALL_ONLY=""
if [[ "${1:-}" == "--install-only" ]]; then
    INSTALL_ONLY=1
    shift
fi
BIN="${1:-${MLSYSOPS_BIN:-$ROOT/target/debug/mlsysops}}"
if [[ -z "$INSTALL_ONLY" ]]; then
    [[ -x "$BIN" ]] || die "server binary not found: $BIN (run: cargo build --bin mlsysops)"
    BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
fi

VENV="${RC_VENV:-$ROOT/target/venv}"
NODE_DIR="${RC_NODE_DIR:-$ROOT/target/node-clients}"
# Pinned so that CI runs what was checked; bump deliberately.
AWSCLI_VERSION=1.46.3
JS_SDK_VERSION=3.1175.0
HAVE_JS_SDK=""
CMD_TIMEOUT="${RC_CMD_TIMEOUT:-300}"
ACCESS_KEY="rc-test-access-key"
SECRET_KEY="rc-test-secret-key-0123456789abcdef"

# ---------------------------------------------------------------- clients ---

ensure_clients() {
    apt_install rclone s3cmd curl ca-certificates coreutils diffutils
    if ! "$VENV/bin/aws" --version 2>&1 | grep -q "^aws-cli/$AWSCLI_VERSION "; then
        command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
        rm -rf "$VENV"
        mkdir -p "$(dirname "$VENV")"
        if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
            # Debian's python3 needs python3-venv for ensurepip.
            apt_install python3-venv
            rm -rf "$VENV"
            python3 -m venv "$VENV"
        fi
        info "pip install awscli==$AWSCLI_VERSION into $VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        # awscli >= 1.37 (botocore >= 1.36) sends CRC32 checksums by default
        # (as a header over http; only over https does botocore use trailers).
        "$VENV/bin/python" -m pip install -q "awscli==$AWSCLI_VERSION"
    fi
    ensure_js_sdk
    info "aws:    $("$VENV/bin/aws" --version 2>&1)"
    info "rclone: $(env -u AWS_CA_BUNDLE rclone version 2>/dev/null | head -n1)"
    info "s3cmd:  $(s3cmd --version 2>&1)"
    if [[ -n "$HAVE_JS_SDK" ]]; then
        info "js sdk: @aws-sdk/client-s3 $JS_SDK_VERSION on node $(node --version)"
    fi
}

# The JS SDK needs Node.js >= 20 (Debian 12's nodejs is 18): without it the
# JS SDK checks are reported as skipped.
ensure_js_sdk() {
    local major
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        info "node/npm not found: the JS SDK checks will be skipped"
        return 0
    fi
    major=$(node -p 'process.versions.node.split(".")[0]')
    if [[ "$major" -lt 20 ]]; then
        info "node $(node --version) < 20: the JS SDK checks will be skipped"
        return 0
    fi
    local have=""
    have=$(node -p "require('$NODE_DIR/node_modules/@aws-sdk/client-s3/package.json').version" 2>/dev/null || true)
    if [[ "$have" != "$JS_SDK_VERSION" ]]; then
        info "npm install @aws-sdk/client-s3@$JS_SDK_VERSION into $NODE_DIR"
        mkdir -p "$NODE_DIR"
        npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error \
            "@aws-sdk/client-s3@$JS_SDK_VERSION"
    fi
    HAVE_JS_SDK=1
}

# ----------------------------------------------------------------- server ---

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mlsysops-rc.XXXXXX")"
SERVER_LOG="$WORK/server.log"
SERVER_PID=""
EP=""
: >"$SERVER_LOG"

start_server() {
    echo "---- server start $(date -u +%FT%TZ) ----" >>"$SERVER_LOG"
    MLSYSOPS_ACCESS_KEY="$ACCESS_KEY" MLSYSOPS_SECRET_KEY="$SECRET_KEY" \
        RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
        "$BIN" serve --data-dir "$WORK/data" --s3-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 \
        >>"$SERVER_LOG" 2>&1 </dev/null &
    SERVER_PID=$!
    local from i line
    from=$(wc -l <"$SERVER_LOG")
    for ((i = 0; i < 600; i++)); do
        line=$(tail -n "+$from" "$SERVER_LOG" | grep -aoE 'S3 endpoint: http://127\.0\.0\.1:[0-9]+' | head -n1 || true)
        if [[ -n "$line" ]]; then
            EP="${line#S3 endpoint: }"
            info "server pid $SERVER_PID at $EP (data dir $WORK/data)"
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            local rc=0
            wait "$SERVER_PID" || rc=$?
            SERVER_PID=""
            tail -n 40 "$SERVER_LOG" | sed 's/^/  server| /' >&2
            die "server exited with status $rc before printing 'S3 endpoint: http://127.0.0.1:PORT'"
        fi
        sleep 0.1
    done
    tail -n 40 "$SERVER_LOG" | sed 's/^/  server| /' >&2
    die "no 'S3 endpoint: http://127.0.0.1:PORT' line from the server within 60s"
}

# stop_server: SIGTERM, wait up to 20s, then SIGKILL. Returns the exit status.
stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    local pid=$SERVER_PID rc=0 i
    SERVER_PID=""
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "server pid $pid still running 20s after SIGTERM: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || rc=$?
    return "$rc"
}

PASS=0
FAIL=0
SKIP=0
FAILED=()

cleanup() {
    local rc=$?
    stop_server >/dev/null 2>&1 || true
    if [[ $FAIL -gt 0 || $rc -ne 0 || "${RC_KEEP_WORK:-}" == "1" ]]; then
        info "kept work dir (logs, server.log, data): $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ----------------------------------------------------------------- checks ---

# check NAME FUNCTION [ARGS...]: runs FUNCTION in a subshell with errexit,
# counts pass/fail; on failure prints its output and the server log lines
# written while it ran.
check() {
    local name=$1
    shift
    local n=$((PASS + FAIL + 1))
    local log
    log="$WORK/logs/$(printf '%02d' "$n")-$1.log"
    mkdir -p "$WORK/logs"
    local from t0=$SECONDS rc=0
    from=$(($(wc -l <"$SERVER_LOG") + 1))
    (
        set -euo pipefail
        "$@"
    ) >"$log" 2>&1 </dev/null &
    wait $! || rc=$?
    if [[ $rc -eq 0 ]]; then
        PASS=$((PASS + 1))
        printf 'PASS  %s (%ds)\n' "$name" $((SECONDS - t0))
    else
        FAIL=$((FAIL + 1))
        FAILED+=("$name")
        printf 'FAIL  %s (exit %d, %ds; full log %s)\n' "$name" "$rc" $((SECONDS - t0)) "$log"
        # (aws cli progress lines end in \r: keep only the last state of each)
        tr '\r' '\n' <"$log" | grep -v '^Completed .* remaining' | tail -n 40 | sed 's/^/      | /' || true
        echo "      server log while it ran (last 25 lines):"
        tail -n "+$from" "$SERVER_LOG" | tail -n 25 | sed 's/^/      server| /'
    fi
}

fail() {
    echo "CHECK FAILED: $*" >&2
    exit 1
}

expect_eq() { # what expected got
    [[ "$2" == "$3" ]] || fail "$1: expected [$2], got [$3]"
}

expect_contains() { # what haystack needle
    grep -qF -- "$3" <<<"$2" || fail "$1: expected output to contain [$3]; output was:
$2"
}

expect_not_contains() { # what haystack needle
    ! grep -qF -- "$3" <<<"$2" || fail "$1: expected output not to contain [$3]; output was:
$2"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }
md5() { md5sum "$1" | cut -d' ' -f1; }

same_file() { # expected got
    local a b
    a=$(sha "$1")
    b=$(sha "$2")
    [[ "$a" == "$b" ]] || fail "content differs: $1 sha256=$a ($(stat -c %s "$1") bytes), $2 sha256=$b ($(stat -c %s "$2") bytes)"
}

aws() {
    echo "+ aws $*" >&2
    timeout "$CMD_TIMEOUT" "$VENV/bin/aws" --endpoint-url "$EP" "$@"
}

rcl() {
    echo "+ rclone $*" >&2
    timeout "$CMD_TIMEOUT" env -u AWS_CA_BUNDLE rclone --retries 1 --low-level-retries 2 "$@"
}

s3c() {
    echo "+ s3cmd $*" >&2
    timeout "$CMD_TIMEOUT" s3cmd -c "$WORK/s3cfg" "$@"
}

# Local list of the files under a dir, relative, sorted bytewise.
list_tree() {
    (cd "$1" && find . -type f | sed 's|^\./||' | LC_ALL=C sort)
}

# ------------------------------------------------------------- test data ---

make_data() {
    head -c $((64 * 1024 * 1024)) /dev/urandom >"$WORK/big.bin"
    head -c $((6 * 1024 * 1024)) /dev/urandom >"$WORK/part1.bin"
    head -c $((1024 * 1024 + 123)) /dev/urandom >"$WORK/part2.bin"
    head -c $((20 * 1024 * 1024 + 7)) /dev/urandom >"$WORK/s3cmd-mp.bin"
    printf 'hello from s3cmd\n' >"$WORK/s3cmd-small.txt"
    head -c $((3 * 1024 * 1024 + 1)) /dev/urandom >"$WORK/persist.bin"

    local t="$WORK/tree" i
    mkdir -p "$t"
    printf 'top-level readme\n' >"$t/README.txt"
    : >"$t/empty.txt"
    printf 'spaces\n' >"$t/a b c.txt"
    printf 'plus\n' >"$t/plus+sign.txt"
    printf 'amp\n' >"$t/x&y=z.txt"
    printf 'percent\n' >"$t/pct%41.txt"
    printf 'parens\n' >"$t/paren (1).txt"
    printf 'tilde\n' >"$t/tilde~file.txt"
    printf 'unicode\n' >"$t/ünïcødé.txt"
    printf 'emoji\n' >"$t/emoji-🎉.txt"
    mkdir -p "$t/日本語" "$t/dir with spaces/nested deeper" "$t/d1/d2/d3/d4" "$t/many" "$t/data"
    printf 'nihongo\n' >"$t/日本語/ファイル.txt"
    printf 'deep\n' >"$t/dir with spaces/nested deeper/file 1.txt"
    printf 'deep2\n' >"$t/dir with spaces/nested deeper/file 2.txt"
    printf 'top\n' >"$t/dir with spaces/top.txt"
    head -c $((300 * 1024)) /dev/urandom >"$t/d1/d2/d3/d4/deep.bin"
    printf 'd1\n' >"$t/d1/one.txt"
    printf 'd2\n' >"$t/d1/d2/two.txt"
    head -c $((2 * 1024 * 1024 + 17)) /dev/urandom >"$t/data/medium.bin"
    head -c $((1024 * 1024)) /dev/urandom >"$t/data/exactly-1MiB.bin"
    for i in $(seq -w 1 20); do
        printf 'file %s\n' "$i" >"$t/many/file-$i.txt"
    done
    # Old mtimes: `aws s3 sync` re-uploads when the local mtime is newer than
    # the object's LastModified, so a fresh file could look "changed" when the
    # server rounds LastModified down to the second.
    find "$t" -exec touch -h -d '2020-01-02 03:04:05' {} +
}

# ----------------------------------------------------------- aws cli ---

BA="rc-aws"

aws_mb() {
    aws s3 mb "s3://$BA"
    local out
    out=$(aws s3 ls)
    expect_contains "aws s3 ls (buckets)" "$out" "$BA"
}

aws_cp_up() {
    aws s3 cp "$WORK/big.bin" "s3://$BA/big.bin"
}

aws_cp_down() {
    aws s3 cp "s3://$BA/big.bin" "$WORK/big.down"
    same_file "$WORK/big.bin" "$WORK/big.down"
}

aws_presign() {
    local url
    url=$(aws s3 presign "s3://$BA/big.bin" --expires-in 300)
    echo "+ curl $url" >&2
    curl -fsS --max-time "$CMD_TIMEOUT" -o "$WORK/big.presigned" "$url"
    same_file "$WORK/big.bin" "$WORK/big.presigned"
}

aws_sync_up() {
    aws s3 sync "$WORK/tree" "s3://$BA/tree/"
}

# botocore sends `Expect: 100-continue` even for an empty body; a server that
# (as RFC 9110 allows) answers such a request without a 100 leaves botocore's
# pooled connection parsing the NEXT response on it against a stale status
# line: a 60 s stall, then a silent retry (boto/botocore#3755). One worker,
# one connection, no retries, short read timeout: the stall shows as a
# failure instead of a slow pass.
aws_empty_then_more() {
    # s3transfer does not keep the submission order, so interleave several
    # empty and non-empty files: any empty -> non-empty succession on the
    # connection shows the problem.
    local i
    mkdir -p "$WORK/expect/src"
    for i in 1 2 3 4 5; do
        : >"$WORK/expect/src/$i-a-empty.txt"
        printf 'not empty %s\n' "$i" >"$WORK/expect/src/$i-b-data.txt"
    done
    printf '[default]\ns3 =\n    max_concurrent_requests = 1\n' >"$WORK/expect/config"
    AWS_CONFIG_FILE="$WORK/expect/config" AWS_MAX_ATTEMPTS=1 \
        aws --cli-read-timeout 15 s3 cp --recursive "$WORK/expect/src" "s3://$BA/expect/"
    aws s3 cp --recursive "s3://$BA/expect/" "$WORK/expect/down"
    diff -r "$WORK/expect/src" "$WORK/expect/down"
}

aws_sync_noop() {
    local out
    out=$(aws s3 sync "$WORK/tree" "s3://$BA/tree/")
    expect_eq "second 'aws s3 sync' of an unchanged tree (should transfer nothing)" "" "$out"
}

aws_sync_down() {
    aws s3 sync "s3://$BA/tree/" "$WORK/tree-aws"
    echo "+ diff -r tree tree-aws"
    diff -r "$WORK/tree" "$WORK/tree-aws"
}

aws_ls() {
    local out
    out=$(aws s3 ls "s3://$BA/")
    echo "$out"
    grep -qE '^ +PRE tree/$' <<<"$out" || fail "aws s3 ls s3://$BA/: no 'PRE tree/' line; output was:
$out"
    grep -qE ' big\.bin$' <<<"$out" || fail "aws s3 ls s3://$BA/: no big.bin line; output was:
$out"
    out=$(aws s3 ls "s3://$BA/tree/")
    echo "$out"
    grep -qE '^ +PRE 日本語/$' <<<"$out" || fail "aws s3 ls s3://$BA/tree/: no 'PRE 日本語/' line"
    grep -qE ' a b c\.txt$' <<<"$out" || fail "aws s3 ls s3://$BA/tree/: no 'a b c.txt' line"
}

aws_ls_recursive() {
    local out got want
    out=$(aws s3 ls --recursive "s3://$BA/tree/")
    echo "$out"
    # lines: DATE TIME SIZE KEY (KEY may contain spaces)
    got=$(sed -E 's/^[0-9-]+ [0-9:]+ +[0-9]+ //' <<<"$out" | LC_ALL=C sort)
    want=$(list_tree "$WORK/tree" | sed 's|^|tree/|')
    [[ "$got" == "$want" ]] || fail "aws s3 ls --recursive: keys differ from the local tree (< expected, > got):
$(diff <(echo "$want") <(echo "$got") || true)"
}

aws_multipart() {
    local key=mp/two-parts.bin uid e1 e2 out etag
    uid=$(aws s3api create-multipart-upload --bucket "$BA" --key "$key" --query UploadId --output text)
    [[ -n "$uid" && "$uid" != "None" ]] || fail "create-multipart-upload returned no UploadId"
    e1=$(aws s3api upload-part --bucket "$BA" --key "$key" --upload-id "$uid" --part-number 1 \
        --body "$WORK/part1.bin" --query ETag --output text)
    e2=$(aws s3api upload-part --bucket "$BA" --key "$key" --upload-id "$uid" --part-number 2 \
        --body "$WORK/part2.bin" --query ETag --output text)
    expect_eq "upload-part 1 ETag (MD5 of the part)" "\"$(md5 "$WORK/part1.bin")\"" "$e1"
    expect_eq "upload-part 2 ETag (MD5 of the part)" "\"$(md5 "$WORK/part2.bin")\"" "$e2"
    out=$(aws s3api list-parts --bucket "$BA" --key "$key" --upload-id "$uid" \
        --query 'Parts[].[PartNumber,Size,ETag]' --output text)
    expect_eq "list-parts (PartNumber Size ETag)" \
        "$(printf '1\t%s\t%s\n2\t%s\t%s' "$(stat -c %s "$WORK/part1.bin")" "$e1" "$(stat -c %s "$WORK/part2.bin")" "$e2")" \
        "$out"
    "$VENV/bin/python" -c 'import json,sys; json.dump({"Parts":[{"ETag":sys.argv[1],"PartNumber":1},{"ETag":sys.argv[2],"PartNumber":2}]}, open(sys.argv[3],"w"))' \
        "$e1" "$e2" "$WORK/parts.json"
    cat "$WORK/parts.json"
    echo
    aws s3api complete-multipart-upload --bucket "$BA" --key "$key" --upload-id "$uid" \
        --multipart-upload "file://$WORK/parts.json"
    aws s3api get-object --bucket "$BA" --key "$key" "$WORK/mp.down"
    cat "$WORK/part1.bin" "$WORK/part2.bin" >"$WORK/mp.expected"
    same_file "$WORK/mp.expected" "$WORK/mp.down"
    etag=$(aws s3api head-object --bucket "$BA" --key "$key" --query ETag --output text)
    [[ "$etag" =~ -2\"?$ ]] || fail "head-object ETag: expected it to end with -2, got [$etag]"
    out=$(aws s3api head-object --bucket "$BA" --key "$key" --query ContentLength --output text)
    expect_eq "head-object ContentLength" "$(stat -c %s "$WORK/mp.expected")" "$out"
}

aws_multipart_etag_value() {
    # S3's multipart ETag: hex(MD5(MD5(part1) || MD5(part2))) + "-2"
    local want got
    want=$("$VENV/bin/python" -c '
import hashlib, sys
d = b"".join(hashlib.md5(open(f, "rb").read()).digest() for f in sys.argv[1:])
print(hashlib.md5(d).hexdigest() + "-%d" % (len(sys.argv) - 1))' "$WORK/part1.bin" "$WORK/part2.bin")
    got=$(aws s3api head-object --bucket "$BA" --key mp/two-parts.bin --query ETag --output text)
    expect_eq "multipart ETag (md5 of part md5s, -2)" "\"$want\"" "$got"
}

aws_multipart_abort() {
    local key=mp/aborted.bin uid out
    uid=$(aws s3api create-multipart-upload --bucket "$BA" --key "$key" --query UploadId --output text)
    aws s3api upload-part --bucket "$BA" --key "$key" --upload-id "$uid" --part-number 1 --body "$WORK/part2.bin"
    out=$(aws s3api list-multipart-uploads --bucket "$BA" --query 'Uploads[].[Key,UploadId]' --output text)
    expect_contains "list-multipart-uploads before abort" "$out" "$uid"
    aws s3api abort-multipart-upload --bucket "$BA" --key "$key" --upload-id "$uid"
    out=$(aws s3api list-multipart-uploads --bucket "$BA" --query 'Uploads[].[Key,UploadId]' --output text)
    expect_not_contains "list-multipart-uploads after abort" "$out" "$uid"
    if out=$(aws s3api list-parts --bucket "$BA" --key "$key" --upload-id "$uid" 2>&1); then
        fail "list-parts on an aborted upload succeeded; expected NoSuchUpload; output: $out"
    fi
    expect_contains "list-parts on an aborted upload" "$out" "NoSuchUpload"
    if out=$(aws s3api head-object --bucket "$BA" --key "$key" 2>&1); then
        fail "head-object of an aborted upload's key succeeded; expected 404"
    fi
}

# `aws s3 cp --sse AES256` of a file above the multipart threshold (8 MiB) into
# a bucket without default encryption: every part is sealed, HeadObject says
# AES256, and no backend file holds a line of the plaintext. The same upload
# without --sse is the control that shows grep finds plaintext when it is there.
aws_cp_sse_multipart() {
    local sealed='<rc-sse-multipart>plaintext-line' control='<rc-sse-control>-plaintext-line' got
    yes "$sealed" | head -c $((20 * 1024 * 1024)) >"$WORK/sse.bin" || true
    yes "$control" | head -c $((20 * 1024 * 1024)) >"$WORK/sse-control.bin" || true
    aws s3 cp "$WORK/sse-control.bin" "s3://$BA/sse/control.bin"
    grep -rlF -- "$control" "$WORK/data/backends" >/dev/null ||
        fail "control: grep finds no plaintext of an unencrypted multipart upload under $WORK/data/backends"
    aws s3 cp "$WORK/sse.bin" "s3://$BA/sse/sealed.bin" --sse AES256
    got=$(aws s3api head-object --bucket "$BA" --key sse/sealed.bin --query ServerSideEncryption --output text)
    expect_eq "head-object ServerSideEncryption after 'aws s3 cp --sse AES256' (multipart)" "AES256" "$got"
    got=$(aws s3api head-object --bucket "$BA" --key sse/sealed.bin --query ETag --output text)
    expect_contains "ETag of the 20 MiB upload (multipart)" "$got" "-"
    aws s3 cp "s3://$BA/sse/sealed.bin" "$WORK/sse.down"
    same_file "$WORK/sse.bin" "$WORK/sse.down"
    if got=$(grep -rlF -- "$sealed" "$WORK/data/backends"); then
        fail "backend files hold plaintext of an object uploaded with --sse AES256:
$got"
    fi
}

aws_rm_recursive() {
    aws s3 rm --recursive "s3://$BA/"
    local out
    # shellcheck disable=SC2016 # JMESPath literal, not a shell expansion
    out=$(aws s3api list-objects-v2 --bucket "$BA" --query 'length(Contents || `[]`)' --output text)
    expect_eq "number of keys from list-objects-v2 after 'aws s3 rm --recursive'" "0" "$out"
}

aws_rb() {
    aws s3 rb "s3://$BA"
    local out
    out=$(aws s3 ls)
    expect_not_contains "aws s3 ls after rb" "$out" "$BA"
}

# ------------------------------------------------------------------ rclone ---

BR="rc-rclone"

rclone_mkdir() {
    rcl mkdir "gw:$BR"
}

rclone_copy() {
    rcl copy "$WORK/tree" "gw:$BR/dir"
}

rclone_check() {
    local out
    out=$(rcl check "$WORK/tree" "gw:$BR/dir" 2>&1)
    echo "$out"
    expect_contains "rclone check" "$out" "0 differences found"
}

rclone_lsf() {
    local got want
    got=$(rcl lsf -R --files-only "gw:$BR/dir" | LC_ALL=C sort)
    want=$(list_tree "$WORK/tree")
    [[ "$got" == "$want" ]] || fail "rclone lsf -R: listing differs from the local tree (< expected, > got):
$(diff <(echo "$want") <(echo "$got") || true)"
}

rclone_copy_down() {
    rcl copy "gw:$BR/dir" "$WORK/tree-rclone"
    echo "+ diff -r tree tree-rclone"
    diff -r "$WORK/tree" "$WORK/tree-rclone"
}

rclone_multipart() {
    # 64 MiB in 5 MiB chunks: rclone's own multipart upload path.
    rcl copyto "$WORK/big.bin" "gw:$BR/big.bin" --s3-upload-cutoff 5M --s3-chunk-size 5M
    echo "+ rclone cat gw:$BR/big.bin > big.rclone"
    timeout "$CMD_TIMEOUT" env -u AWS_CA_BUNDLE rclone cat "gw:$BR/big.bin" >"$WORK/big.rclone"
    same_file "$WORK/big.bin" "$WORK/big.rclone"
}

rclone_purge() {
    rcl purge "gw:$BR"
    local out
    out=$(rcl lsd gw:)
    expect_not_contains "rclone lsd gw: after purge" "$out" "$BR"
}

# ------------------------------------------------------------------- s3cmd ---

BS="rc-s3cmd"

s3cmd_mb() {
    s3c mb "s3://$BS"
}

s3cmd_put() {
    s3c put "$WORK/s3cmd-small.txt" "s3://$BS/small.txt"
    s3c put "$WORK/s3cmd-mp.bin" "s3://$BS/dir/multipart.bin" # > 15 MiB: multipart
}

s3cmd_ls() {
    local out
    out=$(s3c ls "s3://$BS")
    echo "$out"
    expect_contains "s3cmd ls s3://$BS" "$out" "s3://$BS/small.txt"
    expect_contains "s3cmd ls s3://$BS" "$out" "s3://$BS/dir/"
    out=$(s3c ls --recursive "s3://$BS")
    echo "$out"
    expect_contains "s3cmd ls --recursive s3://$BS" "$out" "s3://$BS/dir/multipart.bin"
}

s3cmd_get() {
    s3c get --force "s3://$BS/small.txt" "$WORK/s3cmd-small.down"
    same_file "$WORK/s3cmd-small.txt" "$WORK/s3cmd-small.down"
    s3c get --force "s3://$BS/dir/multipart.bin" "$WORK/s3cmd-mp.down"
    same_file "$WORK/s3cmd-mp.bin" "$WORK/s3cmd-mp.down"
}

s3cmd_cleanup() {
    s3c del --recursive --force "s3://$BS"
    s3c rb "s3://$BS"
}

# ------------------------------------------------------------- restart ---

BP="rc-persist"

persist_put() {
    aws s3 mb "s3://$BP"
    aws s3 cp "$WORK/persist.bin" "s3://$BP/obj.bin"
}

SIGTERM_RC=""
sigterm_rc_zero() {
    expect_eq "server exit status after SIGTERM (143 = killed by the signal, 137 = needed SIGKILL)" "0" "$SIGTERM_RC"
}

persist_get() {
    aws s3 cp "s3://$BP/obj.bin" "$WORK/persist.down"
    same_file "$WORK/persist.bin" "$WORK/persist.down"
    aws s3 rm "s3://$BP/obj.bin"
    aws s3 rb "s3://$BP"
}

no_panics() {
    if grep -anE 'panicked at' "$SERVER_LOG"; then
        fail "server log has panics (above)"
    fi
}

# ------------------------------------------------------------- JS SDK v3 ---

BJ="rc-sdk-js"

sdkjs() { # SCENARIO [FILE]
    echo "+ node sdk-js-check.js $EP $BJ $*" >&2
    NODE_PATH="$NODE_DIR/node_modules" timeout "$CMD_TIMEOUT" \
        node "$ROOT/scripts/sdk-js-check.js" "$EP" "$BJ" "$@"
}

# ------------------------------------------------------------------ main ---

section "real clients: install"
ensure_clients
if [[ -n "$INSTALL_ONLY" ]]; then
    exit 0
fi

export AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY"
export AWS_DEFAULT_REGION=us-east-1 AWS_PAGER="" AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE="$WORK/aws-config" AWS_SHARED_CREDENTIALS_FILE="$WORK/aws-credentials"
export AWS_RETRY_MODE=standard AWS_MAX_ATTEMPTS=2
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3
export PYTHONIOENCODING=utf-8 LC_ALL=C.UTF-8
# aws-cli v1 presigns with SigV2 unless told otherwise, and the gateway refuses SigV2.
printf '[default]\ns3 =\n    signature_version = s3v4\n' >"$AWS_CONFIG_FILE"

section "real clients: test data and server"
make_data
start_server

export RCLONE_CONFIG="$WORK/rclone.conf" # not created: the remote comes from env
export RCLONE_CONFIG_GW_TYPE=s3 RCLONE_CONFIG_GW_PROVIDER=Other
export RCLONE_CONFIG_GW_ACCESS_KEY_ID="$ACCESS_KEY" RCLONE_CONFIG_GW_SECRET_ACCESS_KEY="$SECRET_KEY"
export RCLONE_CONFIG_GW_ENDPOINT="$EP" RCLONE_CONFIG_GW_REGION=us-east-1

cat >"$WORK/s3cfg" <<EOF
[default]
access_key = $ACCESS_KEY
secret_key = $SECRET_KEY
host_base = ${EP#http://}
host_bucket = ${EP#http://}
use_https = False
signature_v2 = False
bucket_location = us-east-1
check_ssl_certificate = False
EOF

section "real clients: aws cli"
check "aws s3 mb + ls lists the bucket" aws_mb
check "aws s3 cp upload 64 MiB (multipart, CRC32 checksums)" aws_cp_up
check "aws s3 cp download 64 MiB, sha256 matches" aws_cp_down
check "aws s3 presign + curl GET, sha256 matches" aws_presign
check "aws s3 sync tree up (nested, spaces, unicode, + & % = ~)" aws_sync_up
check "aws s3 sync again transfers nothing" aws_sync_noop
check "aws s3 cp empty file then others on one connection, no stall (Expect: 100-continue)" aws_empty_then_more
check "aws s3 sync tree down, diff -r clean" aws_sync_down
check "aws s3 ls shows prefixes and keys" aws_ls
check "aws s3 ls --recursive lists exactly the tree's keys" aws_ls_recursive
check "aws s3api multipart create/upload-part x2/list-parts/complete/get/head (-2 ETag)" aws_multipart
check "aws s3api multipart ETag is md5(md5(p1)||md5(p2))-2" aws_multipart_etag_value
check "aws s3api multipart abort (list-multipart-uploads, NoSuchUpload)" aws_multipart_abort
check "aws s3 cp --sse AES256 20 MiB (multipart): HeadObject AES256, no plaintext on any backend" aws_cp_sse_multipart
check "aws s3 rm --recursive empties the bucket" aws_rm_recursive
check "aws s3 rb removes the bucket" aws_rb

section "real clients: rclone"
check "rclone mkdir (create bucket)" rclone_mkdir
check "rclone copy tree to gw:$BR/dir" rclone_copy
check "rclone check: 0 differences" rclone_check
check "rclone lsf -R lists exactly the tree" rclone_lsf
check "rclone copy back down, diff -r clean" rclone_copy_down
check "rclone multipart upload 64 MiB + cat, sha256 matches" rclone_multipart
check "rclone purge removes the bucket" rclone_purge

section "real clients: s3cmd"
check "s3cmd mb" s3cmd_mb
check "s3cmd put (small + 20 MiB multipart)" s3cmd_put
check "s3cmd ls" s3cmd_ls
check "s3cmd get, content matches" s3cmd_get
check "s3cmd del --recursive + rb" s3cmd_cleanup

section "real clients: AWS SDK for JavaScript v3 (aws-chunked + checksum trailers)"
if [[ -n "$HAVE_JS_SDK" ]]; then
    check "js sdk CreateBucket" sdkjs create-bucket
    check "js sdk PutObject stream, CRC32 trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER)" sdkjs put-stream-CRC32 "$WORK/part1.bin"
    check "js sdk PutObject stream, CRC32C trailer" sdkjs put-stream-CRC32C "$WORK/part2.bin"
    check "js sdk PutObject stream, SHA1 trailer" sdkjs put-stream-SHA1 "$WORK/s3cmd-small.txt"
    check "js sdk PutObject stream, SHA256 trailer" sdkjs put-stream-SHA256 "$WORK/persist.bin"
    check "js sdk multipart, 20 MiB in 5 MiB stream parts with CRC32 trailers" sdkjs multipart-stream "$WORK/s3cmd-mp.bin"
    check "js sdk DeleteObjects (batch) empties the bucket" sdkjs delete-objects
    check "js sdk DeleteBucket" sdkjs delete-bucket
else
    SKIP=$((SKIP + 1))
    echo "SKIP  AWS SDK for JavaScript v3 checks (needs node >= 20 and npm)"
fi

section "real clients: restart"
check "aws put before restart" persist_put
SIGTERM_RC=0
stop_server || SIGTERM_RC=$?
check "server exits 0 on SIGTERM within 20s" sigterm_rc_zero
start_server
export RCLONE_CONFIG_GW_ENDPOINT="$EP"
check "object readable after restart, sha256 matches" persist_get
check "no panics in the server log" no_panics
stop_server || true

echo
if [[ $FAIL -gt 0 ]]; then
    echo "failed checks:"
    printf '  - %s\n' "${FAILED[@]}"
fi
if [[ $SKIP -gt 0 ]]; then
    echo "real-clients: $PASS passed, $FAIL failed, $SKIP skipped"
else
    echo "real-clients: $PASS passed, $FAIL failed"
fi
[[ $FAIL -eq 0 ]]
