#!/usr/bin/env bash
# Media Streams echo load test: the bridge pinned to one core, the load generator on another.
#
#   scripts/loadtest-echo.sh [CALLS] [DURATION_S] [RAMP_S]      # defaults 1000 60 20
#
# Builds release, starts `voxbridge serve` (echo agent) on 127.0.0.1:18080 under
# `taskset -c 0`, runs `voxbridge loadtest --mode media-echo` under `taskset -c 1` with the
# server's PID (its CPU and RSS are sampled from /proc), and writes
# target/loadtest/echo-report.json and echo-histogram.svg. Needs 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
calls="${1:-1000}" duration="${2:-60}" ramp="${3:-20}"
# shellcheck source=scripts/loadtest-lib.sh
source scripts/loadtest-lib.sh
start_server 18080 "$calls"
RUST_LOG=warn taskset -c 1 "$bin" loadtest --mode media-echo \
  --url wss://127.0.0.1:18080/media --calls "$calls" --duration "$duration" --ramp-up "$ramp" \
  --server-pid "$server" --report "$out/echo-report.json" --histogram "$out/echo-histogram.svg"
