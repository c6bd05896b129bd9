#!/usr/bin/env bash
# The message-queue figure in README: 10,000 messages queued through POST /api/messages for a
# short code (100/s), a toll-free number (3/s) and a long code (1/s), drained to the simulator's
# Messages API with the service killed (tasks aborted mid-send) and restarted partway. Prints
# each sender's achieved rate, the gap percentiles and what the restart cost. About 2 minutes
# once built. Usage: scripts/bench-messages.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
VOXBRIDGE_DRAIN_MESSAGES="${1:-10000}" \
  cargo test --workspace --locked --test message_drain -- --nocapture
