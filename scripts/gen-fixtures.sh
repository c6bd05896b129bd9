#!/usr/bin/env bash
# Regenerates every audio fixture of voxbridge-audio, deterministically.
#
#   scripts/gen-fixtures.sh            # writes tests/data/*.wav, *.labels, tts_sample.opus
#
# Needs: espeak-ng, sox, opus-tools (opusenc), python3 with `audioop` (CPython <= 3.12).
# Tests only read the committed outputs; nothing here runs at test time.
#
# Determinism: sox runs with -R (fixed seeds for its noise generators) and -D (no dither);
# opusenc gets a fixed --serial. espeak-ng output is deterministic for a given espeak-ng
# version (these files were made with the version in Debian bookworm, 1.51).
#
# Files (all 16-bit mono PCM WAV unless noted):
#   speech_clean_8k.wav    8 kHz. 0.8 s silence, sentence A, 1.2 s silence, sentence B, 1.2 s
#                          silence, sentence C, 0.8 s silence. Speech peaks at -6 dBFS.
#   speech_clean_8k.labels Ground truth: one line per speech region, "start_sample end_sample"
#                          (8 kHz samples, end exclusive). A region is one espeak sentence with
#                          its leading/trailing audio below -50 dBFS trimmed, so it includes the
#                          short pauses espeak puts at commas.
#   speech_noisy_8k.wav    speech_clean_8k.wav + white noise at 12 dB SNR (relative to the RMS
#                          of the speech regions) + 60 Hz mains hum with a 180 Hz harmonic at
#                          -30 dBFS. Same labels as the clean file.
#   noise_only_8k.wav      8 kHz, 4 s of line noise without speech: pink noise at about
#                          -35 dBFS RMS, 50 Hz hum at -30 dBFS and high-passed hiss.
#   cough_8k.wav           8 kHz, 3 s: white noise floor at about -50 dBFS, a 120 ms cough-like
#                          burst of band-passed noise at 1.0 s and a 150 ms "mm"-like voiced
#                          burst (140 Hz sawtooth, low-passed) at 2.0 s. Both are shorter than
#                          the VAD's default 200 ms minimum speech time.
#   cough_8k.labels        Where the two bursts are, "start_sample end_sample".
#   speech_16k.wav         16 kHz. 0.8 s silence, sentence C, 1.2 s silence, sentence D, 0.8 s
#                          silence, with pink noise at 15 dB SNR.
#   speech_16k.labels      Ground truth in 16 kHz samples, as for the 8 kHz file.
#   tts_sample.opus        Ogg Opus (RFC 7845) made by opusenc from sentence C at 24 kHz, 24
#                          kbit/s, 20 ms frames: stands in for OpenAI's streamed Opus TTS.
#
# Also regenerated (by crates/audio/tests/data/gen_mulaw_ref.py, CPython's audioop):
#   crates/audio/tests/data/mulaw_encode_ref.bin  G.711 mu-law code of every i16 (65,536 bytes)
#   crates/audio/tests/data/mulaw_decode_ref.bin  linear value of every code (256 x i16 LE)
#
# Sentences: A "Yes, I am authorized to work in the United States."
#            B "I have five years of experience."
#            C "I can start next Monday."
#            D "Thank you."
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/tests/data"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

SOX=(sox -R -D)
A="Yes, I am authorized to work in the United States."
B="I have five years of experience."
C="I can start next Monday."
D="Thank you."

# say NAME RATE TEXT: espeak-ng -> mono 16-bit at RATE, silence trimmed at both ends,
# normalised to -6 dBFS peak.
say() {
  espeak-ng -v en-us -s 160 -w "$tmp/$1.raw.wav" "$3"
  "${SOX[@]}" "$tmp/$1.raw.wav" -r "$2" -c 1 -b 16 "$tmp/$1.wav" \
    silence 1 0.01 -50d reverse silence 1 0.01 -50d reverse gain -n -6
}

# silence NAME RATE SECONDS
silence() {
  "${SOX[@]}" -n -r "$2" -c 1 -b 16 "$tmp/$1.wav" trim 0 "$3"
}

samples() { soxi -s "$1"; }

# build OUT RATE LABELS PIECE...: concatenates pieces; pieces named s_* are speech, whose
# sample ranges are written to LABELS.
build() {
  local dst="$1" rate="$2" labels="$3"; shift 3
  local pos=0 files=()
  : > "$labels"
  for piece in "$@"; do
    local n; n=$(samples "$tmp/$piece.wav")
    if [[ "$piece" == s_* ]]; then echo "$pos $((pos + n))" >> "$labels"; fi
    pos=$((pos + n))
    files+=("$tmp/$piece.wav")
  done
  "${SOX[@]}" "${files[@]}" -r "$rate" -c 1 -b 16 "$dst"
}

# rms_db FILE: RMS level in dBFS.
rms_db() { "${SOX[@]}" "$1" -n stats 2>&1 | awk '/^RMS lev dB/ {print $4}'; }

# --- 8 kHz speech -------------------------------------------------------------------------
say s_a 8000 "$A"; say s_b 8000 "$B"; say s_c 8000 "$C"
silence z08 8000 0.8; silence z12 8000 1.2
build "$out/speech_clean_8k.wav" 8000 "$out/speech_clean_8k.labels" z08 s_a z12 s_b z12 s_c z08

speech_rms=$("${SOX[@]}" "$tmp/s_a.wav" "$tmp/s_b.wav" "$tmp/s_c.wav" -n stats 2>&1 \
  | awk '/^RMS lev dB/ {print $4}')
len8=$(samples "$out/speech_clean_8k.wav")
# White noise at 12 dB below the speech RMS. sox's whitenoise is uniform, RMS = peak/sqrt(3):
# normalise the generated noise's RMS explicitly instead of trusting that.
"${SOX[@]}" -n -r 8000 -c 1 -b 16 "$tmp/white.wav" synth "${len8}s" whitenoise
noise_gain=$(python3 -c "print(round($speech_rms - 12 - $(rms_db "$tmp/white.wav"), 2))")
"${SOX[@]}" "$tmp/white.wav" "$tmp/white_scaled.wav" gain "$noise_gain"
"${SOX[@]}" -n -r 8000 -c 1 -b 16 "$tmp/hum60.wav" synth "${len8}s" sine 60 sine 180 \
  remix - gain -n -30
"${SOX[@]}" -m -v 1 "$out/speech_clean_8k.wav" -v 1 "$tmp/white_scaled.wav" -v 1 "$tmp/hum60.wav" \
  "$out/speech_noisy_8k.wav"

# --- 8 kHz noise only ---------------------------------------------------------------------
"${SOX[@]}" -n -r 8000 -c 1 -b 16 "$tmp/pink.wav" synth 4 pinknoise
"${SOX[@]}" "$tmp/pink.wav" "$tmp/pink_scaled.wav" gain "$(python3 -c "print(round(-35 - $(rms_db "$tmp/pink.wav"), 2))")"
"${SOX[@]}" -n -r 8000 -c 1 -b 16 "$tmp/hum50.wav" synth 4 sine 50 gain -n -30
"${SOX[@]}" -n -r 8000 -c 1 -b 16 "$tmp/hiss.wav" synth 4 whitenoise gain -12 highpass 2500 gain -n -42
"${SOX[@]}" -m -v 1 "$tmp/pink_scaled.wav" -v 1 "$tmp/hum50.wav" -v 1 "$tmp/hiss.wav" \
  "$out/noise_only_8k.wav"

# --- 8 kHz short bursts -------------------------------------------------------------------
"${SOX[@]}" -n -r 8000 -c 1 -b 16 "$tmp/floor.wav" synth 3 whitenoise gain -n -45
"${SOX[@]}" -n -r 8000 -c 1 -b 16 "$tmp/s_cough.wav" synth 0.12 pinknoise \
  sinc 300-2500 fade q 0.01 0.12 0.04 gain -n -8
"${SOX[@]}" -n -r 8000 -c 1 -b 16 "$tmp/s_mm.wav" synth 0.15 sawtooth 140 \
  lowpass 600 fade q 0.02 0.15 0.04 gain -n -10
silence zb1 8000 1.0
silence zb2 8000 0.88
silence zb3 8000 0.85
build "$tmp/bursts.wav" 8000 "$out/cough_8k.labels" zb1 s_cough zb2 s_mm zb3
"${SOX[@]}" -m -v 1 "$tmp/floor.wav" -v 1 "$tmp/bursts.wav" "$out/cough_8k.wav" trim 0 3

# --- 16 kHz speech ------------------------------------------------------------------------
say s_c16 16000 "$C"; say s_d16 16000 "$D"
silence y08 16000 0.8; silence y12 16000 1.2
build "$tmp/clean16.wav" 16000 "$out/speech_16k.labels" y08 s_c16 y12 s_d16 y08
speech16_rms=$("${SOX[@]}" "$tmp/s_c16.wav" "$tmp/s_d16.wav" -n stats 2>&1 | awk '/^RMS lev dB/ {print $4}')
len16=$(samples "$tmp/clean16.wav")
"${SOX[@]}" -n -r 16000 -c 1 -b 16 "$tmp/pink16.wav" synth "${len16}s" pinknoise
g16=$(python3 -c "print(round($speech16_rms - 15 - $(rms_db "$tmp/pink16.wav"), 2))")
"${SOX[@]}" "$tmp/pink16.wav" "$tmp/pink16_scaled.wav" gain "$g16"
"${SOX[@]}" -m -v 1 "$tmp/clean16.wav" -v 1 "$tmp/pink16_scaled.wav" "$out/speech_16k.wav"

# --- Ogg Opus TTS stand-in ----------------------------------------------------------------
say s_c24 24000 "$C"
opusenc --quiet --serial 1234 --bitrate 24 --framesize 20 --comp 10 \
  "$tmp/s_c24.wav" "$out/tts_sample.opus"

python3 "$root/crates/audio/tests/data/gen_mulaw_ref.py"

ls -l "$out"
