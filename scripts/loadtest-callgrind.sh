#!/usr/bin/env bash
# The bridge's work for an echo load, counted in instructions by callgrind: repeatable on a
# shared, noisy machine where CPU seconds are not (same binary and load -> same count within
# ~0.6%). Use it to compare two builds of the bridge; wall-clock figures come from
# scripts/loadtest-echo.sh.
#
#   scripts/loadtest-callgrind.sh [CALLS] [DURATION_S]      # defaults 10 20
#
# Runs `voxbridge serve` under `valgrind --tool=callgrind` on core 0 (about 50x slower, so keep
# CALLS small: 10 calls use ~0.5 of the core under valgrind), the load generator on core 1, then
# prints the total and per-frame instruction counts. Output: target/loadtest/callgrind.out
# (open with callgrind_annotate or kcachegrind).
set -euo pipefail
cd "$(dirname "$0")/.."
calls="${1:-10}" duration="${2:-20}"
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install -y valgrind)" >&2; exit 1; }
# shellcheck source=scripts/loadtest-lib.sh
source scripts/loadtest-lib.sh
cg_out="$(realpath -m "${CARGO_TARGET_DIR:-target}/loadtest/callgrind.out")"
mkdir -p "$(dirname "$cg_out")"
start_server 18081 "$calls" valgrind --tool=callgrind --callgrind-out-file="$cg_out" \
  --log-file="$cg_out.log" --dump-instr=no
RUST_LOG=warn taskset -c 1 "$bin" loadtest --mode media-echo \
  --url wss://127.0.0.1:18081/media --calls "$calls" --duration "$duration" --ramp-up 2 \
  --report "$out/callgrind-report.json" --histogram "$out/callgrind-histogram.svg" | tail -n 16
kill -INT "$server"
wait "$server" || true
total=$(callgrind_annotate "$cg_out" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
[[ -n "$total" ]] || { echo "no PROGRAM TOTALS in $cg_out (see $cg_out.log)" >&2; exit 1; }
python3 - "$total" "$out/callgrind-report.json" <<'PY'
import json, sys
total = int(sys.argv[1])
counters = json.load(open(sys.argv[2]))["counters"]
frames_in, frames_out = counters["frames_sent"], counters["media_received"]
print(f"bridge instructions: {total:,} for {frames_in:,} caller frames and {frames_out:,} bot frames "
      f"= {total / frames_in:,.0f} per caller frame (startup and teardown included)")
PY
