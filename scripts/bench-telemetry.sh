#!/usr/bin/env bash
# Two benchmarks of the telemetry-driven data path, each with its baseline in the same run:
#
# 1. Hedged reads. Six local backends that answer after LAT_MS (+ exponential jitter), like
#    remote clouds. GET latency (1 MiB objects, ec-4-2) when all are healthy, and when one of
#    them answers SLOW_MS later: with hedged reads (the default) and with data-shards-first
#    reads (--read-strategy data-first).
# 2. The cost of telemetry on the hot path: ops/s of small PUTs and GETs on plain local
#    backends with --telemetry on vs off, alternated ROUNDS times.
#
#   scripts/bench-telemetry.sh            # both
#   ONLY=hedging scripts/bench-telemetry.sh
#   ONLY=cost scripts/bench-telemetry.sh
#
# Needs: cargo build --release --bin mlsysops.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MLSYSOPS_BIN:-$root/target/release/mlsysops}
[ -x "$bin" ] || { echo "missing $bin: cargo build --release --bin mlsysops" >&2; exit 1; }
lat_ms=${LAT_MS:-10}
jitter_ms=${JITTER_MS:-5}
slow_ms=${SLOW_MS:-200}
secs=${SECS:-20}
rounds=${ROUNDS:-2}
only=${ONLY:-all}

work=$(mktemp -d "${TMPDIR:-/tmp}/mlsysops-bench-telemetry.XXXXXX")
gw_pid=
cleanup() {
  [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export MLSYSOPS_ACCESS_KEY=benchaccess MLSYSOPS_SECRET_KEY=benchsecret-0123456789
export AWS_ACCESS_KEY_ID=$MLSYSOPS_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$MLSYSOPS_SECRET_KEY
export MLSYSOPS_ADMIN_TOKEN=bench-admin-token-0123456789
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME CONFIG_TOML [FLAGS...]: a gateway on fresh ports and a fresh data dir.
start() {
  local name=$1 config=$2
  shift 2
  port=$(free_port)
  local admin
  admin=$(free_port)
  mkdir -p "$work/$name"
  printf '%s' "$config" >"$work/$name/config.toml"
  "$bin" serve --data-dir "$work/$name/data" --s3-addr "127.0.0.1:$port" --admin-addr "127.0.0.1:$admin" \
    --config "$work/$name/config.toml" --scrub-interval-secs 86400 "$@" >"$work/$name/log" 2>&1 &
  gw_pid=$!
  for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return; sleep 0.05; done
  echo "gateway $name did not start:" >&2
  cat "$work/$name/log" >&2
  exit 1
}
stop() {
  kill "$gw_pid" && wait "$gw_pid" 2>/dev/null || true
  gw_pid=
}
# bench NAME ARGS...: runs the load tool, leaves the JSON report in $work/NAME.json.
bench() {
  local name=$1
  shift
  "$bin" bench --endpoint "http://127.0.0.1:$port" --quiet --json "$work/$name.json" "$@" >/dev/null
}
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{r['ops'][sys.argv[2]][sys.argv[3]]:.1f}\")" "$@"; }

# backends SLOW_INDEX: six local backends with latency faults; backend SLOW_INDEX (or none for
# -1) answers slow_ms later.
backends() {
  local slow=$1 i lat
  for i in 0 1 2 3 4 5; do
    lat=$lat_ms
    [ "$i" = "$slow" ] && lat=$((lat_ms + slow_ms))
    printf '[[backend]]\nid = "b%s"\nkind = "local"\npath = "%s/backends/b%s"\nfaults = { latency_ms = %s, jitter_ms = %s, seed = %s }\n\n' \
      "$i" "$work/$2" "$i" "$lat" "$jitter_ms" "$((i + 1))"
  done
}

if [ "$only" = all ] || [ "$only" = hedging ]; then
  echo "== hedged reads: GET 1 MiB, ec-4-2, 6 backends at ${lat_ms} ms + ${jitter_ms} ms jitter; one slow = +${slow_ms} ms; ${secs} s each"
  printf '%-34s %10s %10s %10s %10s\n' scenario "ops/s" "p50 ms" "p99 ms" "max ms"
  for scenario in healthy:-1:hedged slow-hedged:2:hedged slow-data-first:2:data-first healthy-data-first:-1:data-first; do
    IFS=: read -r name slow strategy <<<"$scenario"
    # No agents: the node agent would turn hedging on in the data-first baseline.
    start "$name" "$(backends "$slow" "$name")" --read-strategy "$strategy" --agents off
    bench "$name" --workload get --size 1MiB --objects 48 --concurrency 8 --duration "$secs"
    stop
    printf '%-34s %10s %10s %10s %10s\n' "$name ($strategy)" "$(field "$work/$name.json" get ops_per_sec)" \
      "$(field "$work/$name.json" get p50_ms)" "$(field "$work/$name.json" get p99_ms)" "$(field "$work/$name.json" get max_ms)"
    cp "$work/$name.json" "${OUT_DIR:-$work}/hedging-$name.json" 2>/dev/null || true
  done
  python3 - "$work" <<'EOF'
import json, sys
w = sys.argv[1]
p99 = {n: json.load(open(f"{w}/{n}.json"))["ops"]["get"]["p99_ms"] for n in ["healthy", "slow-hedged", "slow-data-first"]}
print(f"p99 ratio vs healthy: hedged {p99['slow-hedged'] / p99['healthy']:.2f}x, data-first {p99['slow-data-first'] / p99['healthy']:.2f}x")
EOF
fi

if [ "$only" = all ] || [ "$only" = cost ]; then
  echo "== telemetry cost: 4 KiB objects, 6 plain local backends, concurrency 16, ${secs} s per run, ${rounds} rounds"
  printf '%-14s %-10s %12s %12s\n' telemetry workload "ops/s" "p99 ms"
  for r in $(seq "$rounds"); do
    for t in on off; do
      start "cost-$t-$r" "" --telemetry "$t" --local-backends 6
      for wl in put get; do
        bench "cost-$t-$r-$wl" --workload "$wl" --size 4096 --objects 256 --concurrency 16 --duration "$secs"
        printf '%-14s %-10s %12s %12s\n' "$t (round $r)" "$wl" "$(field "$work/cost-$t-$r-$wl.json" "$wl" ops_per_sec)" \
          "$(field "$work/cost-$t-$r-$wl.json" "$wl" p99_ms)"
      done
      stop
    done
  done
  python3 - "$work" "$rounds" <<'EOF'
import json, sys
w, rounds = sys.argv[1], int(sys.argv[2])
for wl in ["put", "get"]:
    tot = {t: sum(json.load(open(f"{w}/cost-{t}-{r}-{wl}.json"))["ops"][wl]["ops_per_sec"] for r in range(1, rounds + 1)) for t in ["on", "off"]}
    print(f"{wl}: telemetry on / off = {tot['on'] / tot['off']:.3f}")
EOF
fi
