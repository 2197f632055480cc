#!/usr/bin/env bash
# Detection quality on the labelled synthetic trace (anomaly/src/trace.rs, fixed seed 13):
# generates three days of 1-minute windows of 6 backends and 12 principals with injected
# malfunctions, attacks and tampering, runs them through the Extractor and the Detector, and
# prints precision and recall per class, time to detect per fault, and every false positive
# and miss. The same test asserts the floors in CI.
#
#   scripts/anomaly-trace.sh
#   CARGO_TARGET_DIR=/path/to/target scripts/anomaly-trace.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test -p anomaly --test quality -- --nocapture --test-threads 1
