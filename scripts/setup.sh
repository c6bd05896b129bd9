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
PACKAGES=(build-essential pkg-config cmake libopus-dev espeak-ng sox opus-tools python3 redis-server postgresql curl ca-certificates)

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
