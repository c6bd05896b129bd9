#!/usr/bin/env bash
# The run command: installs what is missing, builds voxbridge in release mode and runs the
# main job on embedded defaults (no account, no network): `voxbridge demo`, a whole recruiter
# screening call (bridge + API + SQLite + simulated Twilio and candidate in one process).
# Extra arguments go to the binary instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --bin voxbridge
if (($#)); then
  exec target/release/voxbridge "$@"
fi
exec target/release/voxbridge demo
