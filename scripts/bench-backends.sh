#!/usr/bin/env bash
# PUT/GET throughput of one large object through the aws cli, with the gateway (release build)
# over six local directories vs. over six s3s-fs servers (release build) on loopback, all in the
# same run; then healer throughput: one backend's shards are wiped, a scrub finds them, and a
# timed heal pass rebuilds them.
#
#   SIZE_MIB=1024 scripts/bench-backends.sh
#
# Needs: cargo build --release --bin mlsysops; the aws cli in target/venv (real-clients.sh
# installs it); s3s-fs built in release mode:
#   cargo install s3s-fs --version 0.14.1 --features binary --locked \
#       --root target/tools-release --target-dir target/tools-build-release
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
size_mib=${SIZE_MIB:-1024}
bin=$root/target/release/mlsysops
s3sfs=${S3S_FS_RELEASE_BIN:-$root/target/tools-release/bin/s3s-fs}
aws_bin=${AWS_BIN:-$root/target/venv/bin/aws}
for f in "$bin" "$s3sfs" "$aws_bin"; do
  [ -x "$f" ] || { echo "missing $f (see the header of $0)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/mlsysops-bench-backends.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=benchaccess AWS_SECRET_ACCESS_KEY=benchsecret-0123456789 AWS_DEFAULT_REGION=us-east-1
token=bench-admin-token-0123456789
now() { date +%s.%N; }
rate() { awk -v mib="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.1f", mib / (b - a) }'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Six s3s-fs servers, one bucket each.
ports=()
for i in 0 1 2 3 4 5; do
  port=$(free_port)
  mkdir -p "$work/fs$i/shards"
  "$s3sfs" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
    --secret-key "$AWS_SECRET_ACCESS_KEY" "$work/fs$i" >"$work/fs$i.log" 2>&1 &
  pids+=($!)
  ports+=("$port")
done
for port in "${ports[@]}"; do
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
done
{
  for i in 0 1 2 3 4 5; do
    cat <<EOF
[[backend]]
id = "fs$i"
kind = "s3"
endpoint = "http://127.0.0.1:${ports[$i]}"
bucket = "shards"
access_key = "$AWS_ACCESS_KEY_ID"
secret_key = "$AWS_SECRET_ACCESS_KEY"

EOF
  done
} >"$work/s3sfs.toml"

# start NAME [extra serve args...]: sets $endpoint, $admin and $gw_pid
start() {
  local name=$1; shift
  MLSYSOPS_ACCESS_KEY=$AWS_ACCESS_KEY_ID MLSYSOPS_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
    MLSYSOPS_ADMIN_TOKEN=$token RUST_LOG=warn \
    "$bin" serve --data-dir "$work/$name" --s3-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 \
    --heal-interval-secs 86400 --heal-rate-mib 0 "$@" >"$work/$name.out" 2>"$work/$name.err" &
  gw_pid=$!
  pids+=("$gw_pid")
  for _ in $(seq 200); do grep -q '^admin endpoint: ' "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
  endpoint=$(sed -n 's/^S3 endpoint: //p' "$work/$name.out")
  admin=$(sed -n 's/^admin endpoint: //p' "$work/$name.out")
  [ -n "$admin" ] || { cat "$work/$name.err" >&2; exit 1; }
}
api() { curl -sf -X "$1" -H "Authorization: Bearer $token" "$admin$2"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }

head -c $((size_mib << 20)) /dev/urandom >"$work/src"
t0=$(now); cp "$work/src" "$work/copy"; sync "$work/copy"; t1=$(now); rm -f "$work/copy"
echo "object: ${size_mib} MiB, ec-4-2, aws s3 cp defaults (8 MiB parts, 10 threads)"
echo "baseline cp on this disk: $(rate "$size_mib" "$t0" "$t1") MiB/s"
printf '%-34s %10s %10s %12s %14s\n' "backends" "PUT MiB/s" "GET MiB/s" "heal MiB/s" "shards healed"

# run LABEL WIPE_CMD [serve args...]: PUT, GET, wipe one backend's shards, scrub, timed heal.
run() {
  local label=$1 wipe=$2; shift 2
  start "gw-$RANDOM" "$@"
  aws() { "$aws_bin" --endpoint-url "$endpoint" "$@"; }
  aws s3 mb s3://bench >/dev/null
  local a b c
  a=$(now); aws s3 cp --only-show-errors "$work/src" s3://bench/big; b=$(now)
  aws s3 cp --only-show-errors s3://bench/big "$work/dst"; c=$(now)
  cmp "$work/src" "$work/dst" || { echo "$label: downloaded object differs" >&2; exit 1; }
  rm -f "$work/dst"
  eval "$wipe"
  api POST /api/v1/scrub >/dev/null
  local h0 h1 healed bytes
  h0=$(now); healed=$(api POST /api/v1/heal | json 'd["repaired"]'); h1=$(now)
  bytes=$(api GET /api/v1/redundancy | json 'd["healer"]["bytes_written"]')
  printf '%-34s %10s %10s %12s %14s\n' "$label" "$(rate "$size_mib" "$a" "$b")" "$(rate "$size_mib" "$b" "$c")" \
    "$(awk -v by="$bytes" -v a="$h0" -v b="$h1" 'BEGIN { printf "%.1f", by / 1048576 / (b - a) }')" "$healed"
  kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true
}

run "6 local dirs" 'rm -rf "$work"/gw-*/backends/local0/shards/*' --encryption off
run "6 s3s-fs servers" 'rm -rf "$work"/fs0/shards/shards/*' --config "$work/s3sfs.toml" --encryption off
run "6 s3s-fs servers, encrypted" 'rm -rf "$work"/fs0/shards/shards/*' --config "$work/s3sfs.toml" --encryption on
echo "(heal MiB/s: shard bytes rebuilt and written per second of a heal pass, after one backend lost all its shards)"
