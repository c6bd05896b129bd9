#!/usr/bin/env bash
# Generates the simulated candidate's recordings for the Media Streams scenarios
# (config/scenarios/*.toml `audio = ...`) with espeak-ng, deterministically.
#
#   scripts/gen-candidate-audio.sh        # writes tests/data/candidate/*.wav
#
# Needs: espeak-ng, sox. Tests and the demo only read the committed outputs.
# Each file: 8 kHz mono 16-bit PCM WAV (what a phone line carries), silence trimmed at both
# ends, normalised to -6 dBFS peak, a different voice than the bot's fixtures (en-us+m3,
# 150 words/min; the voice demo's candidate: en-us+f2, 145 words/min). Keep them short: the
# whole directory stays under 500 KB.
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
)

# The voice demo's candidate, Jane (config/scenarios/demo-voice.toml): another voice (en-us+f2,
# 145 words/min), one of those the embedded Whisper tiny.en hears best through the phone band
# (README, "Accuracy set": tiny.en mishears some espeak-ng voices, e.g. "Nights" from en-us+m3).
jane=(
  "jane_yes_authorized|Yes, I am."
  "jane_age|Yes, I'm twenty four."
  "jane_five_years|Five years."
  "jane_nights|Nights work best for me."
  "jane_start_monday|I can start next Monday."
)

speak() { # voice speed name text
  espeak-ng -v "$1" -s "$2" -w "$tmp/$3.raw.wav" "$4"
  sox -R -D "$tmp/$3.raw.wav" -r 8000 -c 1 -b 16 "$out/$3.wav" \
    silence 1 0.01 -50d reverse silence 1 0.01 -50d reverse gain -n -6
}

for entry in "${lines[@]}"; do
  speak en-us+m3 150 "${entry%%|*}" "${entry#*|}"
done
for entry in "${jane[@]}"; do
  speak en-us+f2 145 "${entry%%|*}" "${entry#*|}"
done
du -ch "$out"/*.wav | tail -1
