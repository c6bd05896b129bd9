#!/usr/bin/env bash
# The test command: installs what is missing, brings up and provisions local services, runs every
# test (unit, property, integration, and each benchmark once in test mode so benches never rot),
# then prints how many tests skipped and why. Every skip is counted (crates/testkit appends it to
# $VOXBRIDGE_SKIP_LOG); under CI=true a skip is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! scripts/services.sh >/dev/null; then
  [ "${CI:-}" = true ] && { echo "test: services are down (CI=true): failing" >&2; exit 1; }
  echo "test: some services are down; the tests that need them will skip (counted below)" >&2
fi
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"
export VOXBRIDGE_SKIP_LOG="$(cd "$target" && pwd)/test-skips.log"
: >"$VOXBRIDGE_SKIP_LOG"
status=0
cargo test --workspace --all-targets --locked "$@" || status=$?
skipped=$(grep -c . "$VOXBRIDGE_SKIP_LOG" || true)
echo "test: $skipped skipped" >&2
if ((skipped)); then
  sed 's/^/  /' "$VOXBRIDGE_SKIP_LOG" >&2
  [ "${CI:-}" = true ] && status=1
fi
exit "$status"
