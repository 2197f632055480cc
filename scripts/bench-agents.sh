#!/usr/bin/env bash
# How fast the agents react: a release gateway with six local backends (ec-2-1), a bucket whose
# intent says max_latency 100 ms under a mixed client load (mlsysops bench, 90 % GETs of
# 192 KiB objects), then one backend made 300 ms slow through the fault-injection API. Each
# round reports the seconds from the fault to the drain decision and to the end of the
# migration that moves the bucket off the backend.
#
#   BIN=target/release/mlsysops scripts/bench-agents.sh
#   ROUNDS=3 PERIOD=10 BIN=... scripts/bench-agents.sh
#
# The agents' overhead on throughput (agents on against off, one build, same run):
#   A=$BIN B=$BIN A_ARGS="--agents off --audit-interval-secs 0" scripts/bench-ab.sh
set -euo pipefail
bin=${BIN:?BIN=path of a release mlsysops binary}
rounds=${ROUNDS:-3}
period=${PERIOD:-10}
work=$(mktemp -d "${TMPDIR:-/tmp}/mlsysops-bench-agents.XXXXXX")
gw_pid= load_pid=
cleanup() {
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null || true
  [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export MLSYSOPS_ACCESS_KEY=benchaccess MLSYSOPS_SECRET_KEY=benchsecret-0123456789
export AWS_ACCESS_KEY_ID=$MLSYSOPS_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$MLSYSOPS_SECRET_KEY
export MLSYSOPS_ADMIN_TOKEN=bench-admin-token-0123456789 RUST_LOG=warn
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
api() { curl -sf -H "Authorization: Bearer $MLSYSOPS_ADMIN_TOKEN" "$@"; }

for r in $(seq "$rounds"); do
  dir=$work/$r
  mkdir -p "$dir"
  port=$(free_port)
  admin=$(free_port)
  A=http://127.0.0.1:$admin
  "$bin" serve --data-dir "$dir/data" --s3-addr "127.0.0.1:$port" --admin-addr "127.0.0.1:$admin" \
    --default-policy ec-2-1 --allow-fault-injection --agent-period-secs "$period" \
    --audit-interval-secs 1 --sweep-grace-secs 0 >"$dir/log" 2>&1 &
  gw_pid=$!
  for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$admin") 2>/dev/null && break; sleep 0.05; done
  api -X PUT -d '{"max_latency": 100, "redundancy": "one"}' "$A/api/v1/buckets/slo/intent" >/dev/null
  until api "$A/api/v1/buckets/slo/intent" | grep -q '"state":"applied"'; do sleep 0.2; done
  "$bin" bench --endpoint "http://127.0.0.1:$port" --quiet --bucket slo --workload mixed --read-ratio 0.9 \
    --size 192KiB --objects 64 --concurrency 8 --duration 240 >/dev/null &
  load_pid=$!
  # The load prepares its objects, then runs; 20 s of it before the fault.
  sleep 30
  t0=$(now)
  api -X PUT -d '{"latency_ms": 300}' "$A/api/v1/backends/local3/faults" >/dev/null
  epoch=
  while [ -z "$epoch" ]; do
    sleep 0.2
    epoch=$(api "$A/api/v1/decisions?bucket=slo" | python3 -c '
import json, sys
for d in json.load(sys.stdin)["decisions"]:
    b = d["command"].get("backends")
    if d["status"] in ("applied", "pending") and isinstance(b, list) and "local3" not in b:
        print(d["epoch"]); break')
  done
  t1=$(now)
  until api "$A/api/v1/buckets/slo/migration" | python3 -c '
import json, sys
m = json.load(sys.stdin)
sys.exit(0 if m["target_epoch"] >= '"$epoch"' and m["state"] == "done" and m["objects_remaining"] == 0 else 1)'; do
    sleep 0.2
  done
  t2=$(now)
  kill "$load_pid" 2>/dev/null || true
  wait "$load_pid" 2>/dev/null || true
  load_pid=
  kill "$gw_pid" && wait "$gw_pid" 2>/dev/null || true
  gw_pid=
  python3 -c "print(f'round $r: fault -> decision {$t1 - $t0:.1f} s, -> drained {$t2 - $t0:.1f} s (period $period s)')"
  rm -rf "$dir/data"
done
