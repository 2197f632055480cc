#!/usr/bin/env bash
# A/B comparison of two gateway builds on the same machine in the same run: the guard for a
# refactoring that must not change performance. Each round starts a fresh gateway of each build
# in turn (six local backends, ec-4-2, default settings) and drives it with `mlsysops bench`:
# PUT and GET of 1 MiB objects (concurrency 8), PUT of 4 KiB objects at concurrency 16 and 64,
# GET of 4 KiB objects (concurrency 16). Rounds alternate A, B, A, B... so drift of the shared
# machine hits both; the summary gives each build's median ops/s and p99 per workload and the
# ratio B/A of the medians.
#
#   A=/path/to/mlsysops-before B=/path/to/mlsysops-after scripts/bench-ab.sh
#   ROUNDS=3 SECS=10 A=... B=... scripts/bench-ab.sh
#   A=bin B=bin A_ARGS="--durability relaxed" B_ARGS="--durability fsync" scripts/bench-ab.sh
#   WORKLOADS="put-1m put-4k-c16" ROUNDS=8 A=... B=... scripts/bench-ab.sh
#
# A_ARGS / B_ARGS: extra `serve` flags of each side (one build, two settings). WORKLOADS: a
# subset of the workloads, in the order run.
#
# Needs: two release builds (cargo build --release --bin mlsysops, at each commit).
set -euo pipefail
a=${A:?A=path of the baseline mlsysops binary}
b=${B:?B=path of the mlsysops binary to compare}
a_args=${A_ARGS:-}
b_args=${B_ARGS:-}
rounds=${ROUNDS:-3}
secs=${SECS:-10}
for f in "$a" "$b"; do [ -x "$f" ] || { echo "missing $f" >&2; exit 1; }; done

work=$(mktemp -d "${TMPDIR:-/tmp}/mlsysops-bench-ab.XXXXXX")
gw_pid=
cleanup() {
  [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export MLSYSOPS_ACCESS_KEY=benchaccess MLSYSOPS_SECRET_KEY=benchsecret-0123456789
export AWS_ACCESS_KEY_ID=$MLSYSOPS_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$MLSYSOPS_SECRET_KEY
export MLSYSOPS_ADMIN_TOKEN=bench-admin-token-0123456789 RUST_LOG=warn
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start BIN DIR [FLAGS...]: a gateway of BIN on fresh ports over a fresh data dir.
start() {
  local bin=$1 dir=$2 admin
  shift 2
  port=$(free_port)
  admin=$(free_port)
  mkdir -p "$dir"
  "$bin" serve --data-dir "$dir/data" --s3-addr "127.0.0.1:$port" --admin-addr "127.0.0.1:$admin" \
    --scrub-interval-secs 86400 "$@" >"$dir/log" 2>&1 &
  gw_pid=$!
  for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return; sleep 0.05; done
  echo "gateway $bin did not start:" >&2
  cat "$dir/log" >&2
  exit 1
}
stop() {
  kill "$gw_pid" && wait "$gw_pid" 2>/dev/null || true
  gw_pid=
}

# The load tool of build A drives both builds, so only the gateway differs. Each workload
# starts with nothing dirty in the page cache: what a side (or workload) before it wrote without
# syncing would otherwise be flushed during it.
bench() {
  local out=$1
  shift
  sync
  "$a" bench --endpoint "http://127.0.0.1:$port" --quiet --duration "$secs" --json "$out" "$@" >/dev/null
}

# run WORKLOAD DIR: one named workload against the running gateway.
run() {
  case $1 in
    put-1m) bench "$2/put-1m.json" --workload put --size 1MiB --concurrency 8 --bucket big ;;
    get-1m) bench "$2/get-1m.json" --workload get --size 1MiB --objects 64 --concurrency 8 --bucket big ;;
    put-4k-c16) bench "$2/put-4k-c16.json" --workload put --size 4096 --concurrency 16 --bucket small ;;
    put-4k-c64) bench "$2/put-4k-c64.json" --workload put --size 4096 --concurrency 64 --bucket small ;;
    get-4k-c16) bench "$2/get-4k-c16.json" --workload get --size 4096 --objects 256 --concurrency 16 --bucket small ;;
    *) echo "unknown workload $1" >&2; exit 1 ;;
  esac
}

# shellcheck disable=SC2206 # the names are words
workloads=(${WORKLOADS:-put-1m get-1m put-4k-c16 put-4k-c64 get-4k-c16})
for r in $(seq "$rounds"); do
  for side in A B; do
    bin=$a
    args=$a_args
    [ "$side" = B ] && bin=$b && args=$b_args
    dir=$work/$side-$r
    # shellcheck disable=SC2086 # the flags are words
    start "$bin" "$dir" $args
    for wl in "${workloads[@]}"; do
      run "$wl" "$dir"
    done
    stop
    # Only the reports are kept: a round's objects take gigabytes.
    rm -rf "$dir/data"
    echo "round $r: $side done (load average $(cut -d" " -f1 /proc/loadavg))" >&2
  done
done

python3 - "$work" "$rounds" "${workloads[@]}" <<'EOF'
import json, statistics, sys
work, rounds, workloads = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def stat(side, wl, field):
    vals = []
    for r in range(1, rounds + 1):
        rep = json.load(open(f"{work}/{side}-{r}/{wl}.json"))["ops"]
        op = "put" if wl.startswith("put") else "get"
        vals.append(rep[op][field])
    return statistics.median(vals), vals
print(f"{'workload':<12} {'A ops/s':>9} {'B ops/s':>9} {'B/A':>6} {'A p99 ms':>9} {'B p99 ms':>9} {'B/A':>6}  (per-round ops/s A | B)")
for wl in workloads:
    ao, av = stat("A", wl, "ops_per_sec")
    bo, bv = stat("B", wl, "ops_per_sec")
    ap, _ = stat("A", wl, "p99_ms")
    bp, _ = stat("B", wl, "p99_ms")
    rounds_txt = " ".join(f"{v:.0f}" for v in av) + " | " + " ".join(f"{v:.0f}" for v in bv)
    print(f"{wl:<12} {ao:>9.1f} {bo:>9.1f} {bo / ao:>6.2f} {ap:>9.1f} {bp:>9.1f} {bp / ap:>6.2f}  ({rounds_txt})")
EOF
