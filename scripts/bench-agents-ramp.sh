#!/usr/bin/env bash
# What `ml` mode buys: a backend that slows down gradually. A release gateway with six local
# backends (ec-2-1), a bucket whose intent says max_latency 100 ms under a mixed client load,
# then one backend's injected latency raised by STEP ms every period until it passes 100 ms
# and beyond. Rounds alternate heuristic and ml mode. Each reports when the drain decision came
# relative to the moment the injected latency passed max_latency (negative: before the backend
# missed its target; the SLO keeper in ml mode drains on the latency forecast).
#
#   BIN=target/release/mlsysops scripts/bench-agents-ramp.sh
#   ROUNDS=4 PERIOD=5 STEP=15 BIN=... scripts/bench-agents-ramp.sh
set -euo pipefail
bin=${BIN:?BIN=path of a release mlsysops binary}
rounds=${ROUNDS:-4}
period=${PERIOD:-5}
step=${STEP:-15}
work=$(mktemp -d "${TMPDIR:-/tmp}/mlsysops-bench-ramp.XXXXXX")
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
# The SLO keeper's first applied or pending decision that took local3 out of the bucket, as
# "<at_ms> <policy>" (the load makes the bucket hot, so hot/cold may move it too: not counted).
drained() {
  api "$A/api/v1/decisions?bucket=slo" | python3 -c '
import json, sys
for d in reversed(json.load(sys.stdin)["decisions"]):
    b = d["command"].get("backends")
    if d["policy"] == "slo_keeper" and d["status"] in ("applied", "pending") and isinstance(b, list) and "local3" not in b:
        print(d["at_ms"], d["policy"]); break'
}

for r in $(seq "$rounds"); do
  mode=$([ $((r % 2)) -eq 1 ] && echo heuristic || echo ml)
  dir=$work/$r
  mkdir -p "$dir"
  port=$(free_port)
  admin=$(free_port)
  A=http://127.0.0.1:$admin
  # The load would make the bucket hot, and hot/cold move it to the fastest backends, maybe
  # off local3 before the SLO keeper has anything to say: this measures the keeper alone.
  printf '[agents.policies.hotcold]\nhot_reads_per_s = 1000000.0\nhot_exit_reads_per_s = 1000000.0\n' >"$dir/config.toml"
  "$bin" serve --config "$dir/config.toml" --data-dir "$dir/data" --s3-addr "127.0.0.1:$port" \
    --admin-addr "127.0.0.1:$admin" --default-policy ec-2-1 --allow-fault-injection \
    --agent-period-secs "$period" --audit-interval-secs 1 --sweep-grace-secs 0 >"$dir/log" 2>&1 &
  gw_pid=$!
  for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$admin") 2>/dev/null && break; sleep 0.05; done
  api -X PUT -d "{\"mode\": \"$mode\"}" "$A/api/v1/agents/mode" >/dev/null
  api -X PUT -d '{"max_latency": 100, "redundancy": "one"}' "$A/api/v1/buckets/slo/intent" >/dev/null
  until api "$A/api/v1/buckets/slo/intent" | grep -q '"state":"applied"'; do sleep 0.2; done
  "$bin" bench --endpoint "http://127.0.0.1:$port" --quiet --bucket slo --workload mixed --read-ratio 0.9 \
    --size 192KiB --objects 64 --concurrency 8 --duration 300 >/dev/null &
  load_pid=$!
  sleep 30
  t0=$(now)
  decided=
  latency=0
  step_no=0
  while [ -z "$decided" ] && [ "$latency" -lt 600 ]; do
    latency=$((latency + step))
    api -X PUT -d "{\"latency_ms\": $latency}" "$A/api/v1/backends/local3/faults" >/dev/null
    # Step n (from 0) starts at t0 + n * period: poll for the decision until the next one.
    step_no=$((step_no + 1))
    next=$(python3 -c "print($t0 + $step_no * $period)")
    while [ -z "$decided" ] && python3 -c "import sys, time; sys.exit(0 if time.time() < $next else 1)"; do
      decided=$(drained || true)
      sleep 0.3
    done
  done
  kill "$load_pid" 2>/dev/null || true
  wait "$load_pid" 2>/dev/null || true
  load_pid=
  kill "$gw_pid" && wait "$gw_pid" 2>/dev/null || true
  gw_pid=
  if [ -z "$decided" ]; then
    echo "round $r ($mode): no drain decision by $latency ms"
  else
    read -r at_ms policy <<<"$decided"
    # The injected latency passes 100 ms at step floor(100 / step) (0-based), which starts then.
    python3 -c "
crossed = $t0 + (100 // $step) * $period
at = $at_ms / 1000
print(f'round $r ($mode, $policy): drain decision {at - crossed:+.1f} s from the injected latency passing max_latency (latency then $latency ms)')"
  fi
  rm -rf "$dir/data"
done
