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
# One socket per call on each side, plus headroom.
ulimit -n "$(( calls * 2 + 1024 > 65536 ? calls * 2 + 1024 : 65536 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --locked --bin voxbridge
bin="${CARGO_TARGET_DIR:-target}/release/voxbridge"
out="${CARGO_TARGET_DIR:-target}/loadtest"
mkdir -p "$out"
export TWILIO_AUTH_TOKEN="loadtest-token-$$"
VOXBRIDGE__MEDIA__LISTEN=127.0.0.1:18080 \
VOXBRIDGE__MEDIA__PUBLIC_URL=wss://127.0.0.1:18080 \
VOXBRIDGE__MEDIA__AUTH_TOKEN="$TWILIO_AUTH_TOKEN" \
RUST_LOG=warn taskset -c 0 "$bin" serve &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -fs http://127.0.0.1:18080/healthz >/dev/null 2>&1 && break
  sleep 0.1
done
RUST_LOG=warn taskset -c 1 "$bin" loadtest --mode media-echo \
  --url wss://127.0.0.1:18080/media --calls "$calls" --duration "$duration" --ramp-up "$ramp" \
  --server-pid "$server" --report "$out/echo-report.json" --histogram "$out/echo-histogram.svg"
