#!/usr/bin/env bash
# Voice screening under load: N concurrent Media Streams calls to `voxbridge serve` with the
# screening agent, the embedded recogniser (Whisper, installed by scripts/setup.sh) and
# espeak-ng. Each caller says a recorded answer ("Yes, I am authorized to work ...") after every
# bot turn has played. Reports the generator's turn latency (end of the caller's utterance ->
# first bot audio on the wire: voice-to-voice, hangover included) and the bridge's CPU per call,
# then the stage breakdown of the same turns as the bridge timed and stored them (endpointing,
# ASR left after the hangover, dialog, TTS first byte, first frame) and the local recogniser's
# queue wait and decode time from /metrics (scripts/voice-breakdown.py).
#
#   scripts/loadtest-voice.sh [CALLS] [DURATION_S] [RAMP_S]     # defaults 10 60 10
#
# Unlike the echo and relay load tests the bridge is not pinned to one core: recognition runs on
# its worker pool, which takes the machine's cores (the generator needs little). Release build;
# the report goes to target/loadtest/voice-<CALLS>-report.json.
set -euo pipefail
cd "$(dirname "$0")/.."
calls="${1:-10}" duration="${2:-60}" ramp="${3:-10}"
# shellcheck source=scripts/loadtest-lib.sh
source scripts/loadtest-lib.sh
export VOXBRIDGE__SPEECH__ASR=local
SERVER_CORE='' start_server 18082 "$calls"
started_ms=$(date +%s%3N)
RUST_LOG=warn "$bin" loadtest --mode media-pipeline --agent screening \
  --url wss://127.0.0.1:18082/media --calls "$calls" --duration "$duration" --ramp-up "$ramp" \
  --audio tests/data/candidate/yes_authorized.wav --think-ms "${THINK_MS:-500}" \
  --server-pid "$server" --report "$out/voice-$calls-report.json" \
  --histogram "$out/voice-$calls-histogram.svg"
# The bridge stores each call's turns as it ends: give the last ones a moment.
sleep 2
curl -fs http://127.0.0.1:18082/metrics > "$out/voice-$calls-metrics.txt"
python3 scripts/voice-breakdown.py "$out/loadtest-18082.db" "$started_ms" \
  "$out/voice-$calls-metrics.txt" "$out/voice-$calls-breakdown.json"
