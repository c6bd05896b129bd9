#!/usr/bin/env bash
# The run command: installs what is missing, builds voxbridge in release mode and runs the
# main job on embedded defaults (no account, no network). Extra arguments go to the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --bin voxbridge
if (($#)); then
  exec target/release/voxbridge "$@"
fi
exec target/release/voxbridge replay tests/data/speech_noisy_8k.wav
