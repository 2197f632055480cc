#!/usr/bin/env bash
# What a live migration costs the clients of a bucket, and what the migrator's throttle buys.
#
# One gateway with BACKENDS (12) local backends. A bucket is filled with OBJECTS (1000) objects of
# SIZE (1 MiB) under data/, then the same client load (`mlsysops bench`, WORKLOAD mixed or get, on
# LOAD_OBJECTS objects under load/, CONCURRENCY 8, SECS seconds) runs:
#
#   1. baseline: the bucket at rest on ec-4-2, no migration;
#   2. for each throttle of THROTTLES (MiB/s, 0 = unlimited; default "0 40 10"): the bucket is
#      first brought back to ec-4-2 without load, then the load runs while its policy changes
#      ec-4-2 -> ec-8-4 with the migrator at that throttle;
#   3. the bucket at rest under ec-8-4: what the new policy costs clients by itself, so the
#      migration's own cost is the ratio against this row.
#
# Every scenario thus starts from the same layout and migrates the same way. The policy change
# is made the moment the load's measured phase begins (its first GET shows on /metrics).
# Migration throughput is bytes_total / (finished - started) of the migration view (bytes_total
# also counts the load's own objects that its PUTs overwrote meanwhile, which count as done
# without being read, so it slightly overstates what the migrator read); `migration s` is how
# long it ran, so a migration shorter than SECS overlapped only that part of the load.
# Prints a markdown table.
#
#   scripts/bench-migration.sh
#   OBJECTS=400 SECS=30 THROTTLES="0 20" scripts/bench-migration.sh
#
# Needs: cargo build --release --bin mlsysops; curl, python3.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MLSYSOPS_BIN:-$root/target/release/mlsysops}
[ -x "$bin" ] || { echo "missing $bin: cargo build --release --bin mlsysops" >&2; exit 1; }
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }
command -v python3 >/dev/null || { echo "needs python3" >&2; exit 1; }
backends=${BACKENDS:-12}
objects=${OBJECTS:-1000}
size=${SIZE:-1MiB}
load_objects=${LOAD_OBJECTS:-32}
load_size=${LOAD_SIZE:-$size}
workload=${WORKLOAD:-mixed}
concurrency=${CONCURRENCY:-8}
secs=${SECS:-20}
throttles=${THROTTLES:-0 40 10}
migration_timeout=${MIGRATION_TIMEOUT_SECS:-1800}
bucket=migrate

work=$(mktemp -d "${TMPDIR:-/tmp}/mlsysops-bench-migration.XXXXXX")
gw_pid=
bench_pid=
cleanup() {
  # Only the script itself cleans up, never a subshell of it.
  [ "$BASHPID" = "$$" ] || return 0
  if [ -n "$bench_pid" ]; then kill "$bench_pid" 2>/dev/null || true; fi
  if [ -n "$gw_pid" ]; then kill "$gw_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export MLSYSOPS_ACCESS_KEY=benchaccess MLSYSOPS_SECRET_KEY=benchsecret-0123456789
export AWS_ACCESS_KEY_ID=$MLSYSOPS_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$MLSYSOPS_SECRET_KEY
export MLSYSOPS_ADMIN_TOKEN=bench-admin-token-0123456789
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
die() {
  echo "bench-migration: $*" >&2
  [ -f "$work/gateway.log" ] && { echo "--- last lines of the gateway log ---" >&2; tail -n 40 "$work/gateway.log" >&2; }
  exit 1
}

# admin METHOD PATH [JSON]: calls the admin API, prints the response body; fails on HTTP errors.
admin() {
  local out args=(-sS --fail-with-body -X "$1" -H "Authorization: Bearer $MLSYSOPS_ADMIN_TOKEN")
  [ $# -ge 3 ] && args+=(-H 'content-type: application/json' --data "$3")
  out=$(curl "${args[@]}" "http://127.0.0.1:$admin_port$2") || die "admin $1 $2 ${3:-}: $out"
  printf '%s\n' "$out"
}
# json FIELD: reads a JSON document on stdin, prints one top-level field.
json() { python3 -c 'import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print("" if v is None else v)' "$1"; }

start_gateway() {
  port=$(free_port)
  admin_port=$(free_port)
  "$bin" serve --data-dir "$work/data" --s3-addr "127.0.0.1:$port" --admin-addr "127.0.0.1:$admin_port" \
    --local-backends "$backends" --default-policy ec-4-2 --scrub-interval-secs 86400 >"$work/gateway.log" 2>&1 &
  gw_pid=$!
  for _ in $(seq 400); do
    if (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && (echo >/dev/tcp/127.0.0.1/"$admin_port") 2>/dev/null; then
      return
    fi
    kill -0 "$gw_pid" 2>/dev/null || die "the gateway exited at start"
    sleep 0.05
  done
  die "the gateway did not start"
}

# bench NAME ARGS...: runs the load tool, leaves the JSON report in $work/NAME.json.
bench() {
  local name=$1
  shift
  "$bin" bench --endpoint "http://127.0.0.1:$port" --bucket "$bucket" --quiet --json "$work/$name.json" "$@" \
    >"$work/$name.out" 2>&1 || die "bench $name failed: $(cat "$work/$name.out")"
}
# The client load of every scenario.
load_args=(--prefix load/ --workload "$workload" --objects "$load_objects" --size "$load_size"
  --concurrency "$concurrency" --duration "$secs")

# Successful and failed GetObject requests the gateway has answered (its /metrics).
get_count() {
  admin GET /metrics | awk '/^http_server_request_duration_seconds_count\{/ && /rpc_method="GetObject"/ { s += $NF } END { printf "%d\n", s }'
}

# migrate NAME THROTTLE_MIB PRESET: runs the load and, once its measured phase has begun,
# changes the policy to PRESET with the migrator throttled to THROTTLE_MIB MiB/s (0 = none);
# waits for the load and for the migration, keeps the final migration view in NAME-migration.json.
migrate() {
  local name=$1 throttle=$2 preset=$3 before now epoch view state deadline
  admin PUT /api/v1/migration "{\"max_mib_per_sec\": $throttle, \"paused\": false}" >/dev/null
  before=$(get_count)
  "$bin" bench --endpoint "http://127.0.0.1:$port" --bucket "$bucket" --quiet --json "$work/$name.json" \
    "${load_args[@]}" >"$work/$name.out" 2>&1 &
  bench_pid=$!
  deadline=$((SECONDS + 300))
  while :; do
    now=$(get_count)
    [ "$now" -gt "$before" ] && break
    kill -0 "$bench_pid" 2>/dev/null || die "the load of $name ended before its first GET"
    [ "$SECONDS" -lt "$deadline" ] || die "the load of $name made no GET within 300 s"
    sleep 0.1
  done
  view=$(admin PUT "/api/v1/buckets/$bucket/policy" "{\"preset\": \"$preset\", \"reason\": \"bench-migration $name\"}")
  [ "$(printf '%s' "$view" | json changed)" = True ] || die "policy change to $preset changed nothing: $view"
  epoch=$(printf '%s' "$view" | python3 -c 'import json,sys; print(json.load(sys.stdin)["policy"]["epoch"])')
  deadline=$((SECONDS + migration_timeout))
  while :; do
    view=$(admin GET "/api/v1/buckets/$bucket/migration")
    state=$(printf '%s' "$view" | json state)
    if [ "$state" = "done" ] && [ "$(printf '%s' "$view" | json target_epoch)" = "$epoch" ]; then
      break
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "migration to $preset not done after ${migration_timeout} s: $view"
    sleep 0.25
  done
  printf '%s\n' "$view" >"$work/$name-migration.json"
  wait "$bench_pid" || die "the load of $name failed: $(cat "$work/$name.out")"
  bench_pid=
  [ "$(printf '%s' "$view" | json errors)" = 0 ] || die "the migration of $name had errors: $view"
}

# reset: brings the bucket back to ec-4-2 with no load and the migrator unthrottled.
reset() {
  local view epoch deadline
  admin PUT /api/v1/migration '{"max_mib_per_sec": 0, "paused": false}' >/dev/null
  view=$(admin PUT "/api/v1/buckets/$bucket/policy" '{"preset": "ec-4-2", "reason": "bench-migration reset"}')
  [ "$(printf '%s' "$view" | json changed)" = True ] || return 0
  epoch=$(printf '%s' "$view" | python3 -c 'import json,sys; print(json.load(sys.stdin)["policy"]["epoch"])')
  deadline=$((SECONDS + migration_timeout))
  while :; do
    view=$(admin GET "/api/v1/buckets/$bucket/migration")
    [ "$(printf '%s' "$view" | json state)" = done ] && [ "$(printf '%s' "$view" | json target_epoch)" = "$epoch" ] && return 0
    [ "$SECONDS" -lt "$deadline" ] || die "reset to ec-4-2 not done after ${migration_timeout} s: $view"
    sleep 0.25
  done
}

start_gateway
echo "== migration under load: $backends local backends, $objects x $size under data/; load: $workload on" \
  "$load_objects x $load_size under load/, concurrency $concurrency, ${secs} s per scenario" >&2
bench fill --prefix data/ --workload get --objects "$objects" --size "$size" --concurrency 8 --ops 1
echo "filled $objects objects" >&2
bench baseline "${load_args[@]}"
echo "baseline done" >&2
for t in $throttles; do
  reset
  migrate "throttle-$t" "$t" ec-8-4
  echo "migration ec-4-2 -> ec-8-4 at ${t} MiB/s (0 = unlimited) done" >&2
done
# The same load on the bucket at rest under ec-8-4: what the new policy costs by itself.
bench at-rest "${load_args[@]}"
echo "ec-8-4 at rest done" >&2

python3 - "$work" $throttles <<'EOF'
import json, sys

work, throttles = sys.argv[1], sys.argv[2:]


def client(name):
    ops = json.load(open(f"{work}/{name}.json"))["ops"]
    get = ops.get("get", {})
    return {
        "ops": sum(o["ops_per_sec"] for o in ops.values()),
        "p50": get.get("p50_ms", 0.0),
        "p99": get.get("p99_ms", 0.0),
        "put_p99": f"{ops['put']['p99_ms']:.1f}" if "put" in ops else "-",
        "errors": sum(o["errors"] for o in ops.values()),
    }


base = client("baseline")
rest = client("at-rest")
print()
print("| scenario | throttle | migration MiB/s | migration s | objects migrated | client ops/s | p50 ms | p99 ms "
      "| PUT p99 ms | p99 vs ec-4-2 at rest | p99 vs ec-8-4 at rest | client errors |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
scenarios = [("baseline (no migration)", "-", "baseline")]
for t in throttles:
    scenarios.append(("ec-4-2 -> ec-8-4", "unlimited" if float(t) == 0 else f"{t} MiB/s", f"throttle-{t}"))
scenarios.append(("ec-8-4 at rest (no migration)", "-", "at-rest"))
for scenario, throttle_text, name in scenarios:
    r = client(name)
    rate = secs = migrated = "-"
    if name not in ("baseline", "at-rest"):
        v = json.load(open(f"{work}/{name}-migration.json"))
        elapsed = max((v["finished_ms"] - v["started_ms"]) / 1000.0, 1e-3)
        rate, secs, migrated = f"{v['bytes_total'] / 1048576.0 / elapsed:.1f}", f"{elapsed:.1f}", v["objects_done"]
    ratio = f"{r['p99'] / base['p99']:.2f}x" if base["p99"] else "-"
    ratio_rest = f"{r['p99'] / rest['p99']:.2f}x" if rest["p99"] else "-"
    print(f"| {scenario} | {throttle_text} | {rate} | {secs} | {migrated} | {r['ops']:.1f} | {r['p50']:.1f} "
          f"| {r['p99']:.1f} | {r['put_p99']} | {ratio} | {ratio_rest} | {r['errors']} |")
print()
print("p50/p99: GET latency of the client load. migration s: how long the migration ran (the load ran for "
      "SECS seconds from the moment of the policy change). migration MiB/s: bytes_total / migration s, where "
      "bytes_total also counts objects the load overwrote meanwhile (done without being read).")
EOF
