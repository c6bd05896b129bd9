#!/usr/bin/env bash
# The test command: installs what is missing, brings up local services, runs every test
# (unit, property, integration, and each benchmark once in test mode so benches never rot).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/services.sh
exec cargo test --workspace --all-targets --locked "$@"
