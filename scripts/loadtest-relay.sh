#!/usr/bin/env bash
# ConversationRelay load test: N concurrent sessions against `voxbridge serve`'s /relay with the
# scripted screening agent; measures prompt -> first token.
#
#   scripts/loadtest-relay.sh [CALLS] [DURATION_S] [RAMP_S]     # defaults 1000 60 20
#
# The bridge runs on core 0, the generator on core 1 (`taskset`); the report goes to
# target/loadtest/relay-report.json and relay-histogram.svg. Sessions answer instantly (no
# simulated speaking time) so the figure is the server's own latency.
set -euo pipefail
cd "$(dirname "$0")/.."
calls="${1:-1000}" duration="${2:-60}" ramp="${3:-20}"
ulimit -n "$(( calls * 2 + 1024 > 65536 ? calls * 2 + 1024 : 65536 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --locked --bin voxbridge
bin="${CARGO_TARGET_DIR:-target}/release/voxbridge"
out="${CARGO_TARGET_DIR:-target}/loadtest"
mkdir -p "$out"
export TWILIO_AUTH_TOKEN="loadtest-token-$$"
VOXBRIDGE__MEDIA__LISTEN=127.0.0.1:18081 \
VOXBRIDGE__MEDIA__PUBLIC_URL=wss://127.0.0.1:18081 \
VOXBRIDGE__MEDIA__AUTH_TOKEN="$TWILIO_AUTH_TOKEN" \
RUST_LOG=warn taskset -c 0 "$bin" serve &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -fs http://127.0.0.1:18081/healthz >/dev/null 2>&1 && break
  sleep 0.1
done
RUST_LOG=warn taskset -c 1 "$bin" loadtest --mode relay \
  --url wss://127.0.0.1:18081/relay --calls "$calls" --duration "$duration" --ramp-up "$ramp" \
  --param screening=default --param firstName=Load --param candidateId=load \
  --answer "Yes, I am." --answer "Yes." --answer "About five years." --answer "Nights." \
  --answer "Next Monday." --answer "Yes." \
  --server-pid "$server" --report "$out/relay-report.json" --histogram "$out/relay-histogram.svg"
