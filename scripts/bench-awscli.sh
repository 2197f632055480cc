#!/usr/bin/env bash
# Measures PUT and GET throughput of one large object through the aws cli against a release
# build of the gateway (default embedded setup: 6 local backends, ec-4-2), plus the gateway's
# peak RSS. Baseline in the same run: a plain `cp` of the same file on the same disk.
#
#   SIZE_MIB=1024 scripts/bench-awscli.sh          # aws s3 cp (multipart, 10 threads)
#   SIZE_MIB=5120 SINGLE=1 scripts/bench-awscli.sh # one PUT and one GET (s3api), the 5 GiB case
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
size_mib=${SIZE_MIB:-1024}
bin=$root/target/release/mlsysops
aws_bin=${AWS_BIN:-$root/target/venv/bin/aws}
[ -x "$bin" ] || { echo "build first: cargo build --release --bin mlsysops" >&2; exit 1; }
[ -x "$aws_bin" ] || { echo "aws cli not found at $aws_bin (scripts/real-clients.sh installs it)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/mlsysops-bench.XXXXXX")
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=benchaccess AWS_SECRET_ACCESS_KEY=benchsecret-0123456789 AWS_DEFAULT_REGION=us-east-1
MLSYSOPS_ACCESS_KEY=$AWS_ACCESS_KEY_ID MLSYSOPS_SECRET_KEY=$AWS_SECRET_ACCESS_KEY RUST_LOG=warn \
  "$bin" serve --data-dir "$work/data" --s3-addr 127.0.0.1:0 >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 100); do grep -q '^S3 endpoint: ' "$work/out" 2>/dev/null && break; sleep 0.1; done
endpoint=$(sed -n 's/^S3 endpoint: //p' "$work/out")
[ -n "$endpoint" ] || { cat "$work/err" >&2; exit 1; }
aws() { "$aws_bin" --endpoint-url "$endpoint" "$@"; }

head -c $((size_mib << 20)) /dev/urandom >"$work/src"
now() { date +%s.%N; }
rate() { awk -v mib="$size_mib" -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", mib / (b - a) }'; }

t0=$(now); cp "$work/src" "$work/copy"; sync "$work/copy"; t1=$(now); rm -f "$work/copy"
aws s3 mb s3://bench >/dev/null
if [ "${SINGLE:-0}" = 1 ]; then
  mode="single PUT / single GET (aws s3api)"
  t2=$(now); aws s3api put-object --bucket bench --key big --body "$work/src" >/dev/null; t3=$(now)
  aws s3api get-object --bucket bench --key big "$work/dst" >/dev/null; t4=$(now)
else
  mode="aws s3 cp defaults (8 MiB parts, 10 threads)"
  t2=$(now); aws s3 cp --only-show-errors "$work/src" s3://bench/big; t3=$(now)
  aws s3 cp --only-show-errors s3://bench/big "$work/dst"; t4=$(now)
fi
cmp "$work/src" "$work/dst" || { echo "downloaded object differs" >&2; exit 1; }
rss_kib=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")

echo "object: ${size_mib} MiB, policy ec-4-2 over 6 local backends, $mode"
echo "baseline cp:  $(rate "$t0" "$t1") MiB/s"
echo "PUT:  $(rate "$t2" "$t3") MiB/s"
echo "GET:  $(rate "$t3" "$t4") MiB/s"
echo "gateway peak RSS: $((rss_kib / 1024)) MiB"
