#!/usr/bin/env bash
# ConversationRelay load test: N concurrent sessions against `voxbridge serve`'s /relay with the
# scripted screening agent; measures prompt -> first token.
#
#   scripts/loadtest-relay.sh [CALLS] [DURATION_S] [RAMP_S]     # defaults 1000 60 20
#
# The bridge runs on core 0, the generator on core 1 (`taskset`); the report goes to
# target/loadtest/relay-report.json and relay-histogram.svg. Sessions answer instantly (no
# simulated speaking time; THINK_MS (default 2500) between the bot finishing and the next
# answer spreads the prompts over the run) so the figure is the server's own latency.
set -euo pipefail
cd "$(dirname "$0")/.."
calls="${1:-1000}" duration="${2:-60}" ramp="${3:-20}"
# shellcheck source=scripts/loadtest-lib.sh
source scripts/loadtest-lib.sh
start_server 18081 "$calls"
RUST_LOG=warn taskset -c 1 "$bin" loadtest --mode relay \
  --url wss://127.0.0.1:18081/relay --calls "$calls" --duration "$duration" --ramp-up "$ramp" \
  --param screening=default --param firstName=Load --param candidateId=load \
  --answer "Yes, I am." --answer "Yes." --answer "About five years." --answer "Nights." \
  --answer "Next Monday." --answer "Yes." \
  --think-ms "${THINK_MS:-2500}" \
  --server-pid "$server" --report "$out/relay-report.json" --histogram "$out/relay-histogram.svg"
