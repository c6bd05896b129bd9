#!/usr/bin/env bash
# Generates the simulated candidate's recordings for the Media Streams scenarios
# (config/scenarios/*.toml `audio = ...`) with espeak-ng, deterministically.
#
#   scripts/gen-candidate-audio.sh        # writes tests/data/candidate/*.wav
#
# Needs: espeak-ng, sox. Tests and the demo only read the committed outputs.
# Each file: 8 kHz mono 16-bit PCM WAV (what a phone line carries), silence trimmed at both
# ends, normalised to -6 dBFS peak, a different voice than the bot's fixtures (en-us+m3,
# 150 words/min). Keep them short: the whole directory stays well under 300 KB.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/tests/data/candidate"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# name|text
lines=(
  "yes_authorized|Yes, I am."
  "five_years|About five years."
  "nights|Nights work best for me."
  "start_monday|I can start next Monday."
  "hold_on|Sorry, hold on a second, could you repeat that please?"
  "thanks_bye|Thank you, goodbye."
  "long_story|Well, let me tell you about my last job, I worked in a big warehouse downtown."
  "age_yes|Yes, I'm twenty four."
)

for entry in "${lines[@]}"; do
  name="${entry%%|*}"
  text="${entry#*|}"
  espeak-ng -v en-us+m3 -s 150 -w "$tmp/$name.raw.wav" "$text"
  sox -R -D "$tmp/$name.raw.wav" -r 8000 -c 1 -b 16 "$out/$name.wav" \
    silence 1 0.01 -50d reverse silence 1 0.01 -50d reverse gain -n -6
done
du -ch "$out"/*.wav | tail -1
