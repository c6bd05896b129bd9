#!/usr/bin/env bash
# Shared by scripts/loadtest-*.sh (sourced): raises the fd limit, builds release, starts
# `voxbridge serve` pinned to core $SERVER_CORE (default 0; SERVER_CORE= for no pinning) on
# $port and waits for /healthz. Sets $bin, $out, $server.
#   start_server PORT CALLS [WRAPPER...]     # e.g. valgrind --tool=callgrind ...
start_server() {
  local port="$1" calls="$2"
  shift 2
  # One socket per call on each side, plus headroom.
  ulimit -n "$(( calls * 2 + 1024 > 65536 ? calls * 2 + 1024 : 65536 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  cargo build --release --locked --bin voxbridge
  bin="${CARGO_TARGET_DIR:-target}/release/voxbridge"
  out="${CARGO_TARGET_DIR:-target}/loadtest"
  mkdir -p "$out"
  export TWILIO_AUTH_TOKEN="loadtest-token-$$"
  local pin=()
  [ -n "${SERVER_CORE-0}" ] && pin=(taskset -c "${SERVER_CORE-0}")
  VOXBRIDGE__MEDIA__LISTEN="127.0.0.1:$port" \
  VOXBRIDGE__MEDIA__PUBLIC_URL="wss://127.0.0.1:$port" \
  VOXBRIDGE__MEDIA__AUTH_TOKEN="$TWILIO_AUTH_TOKEN" \
  DATABASE_URL="sqlite://$(realpath "$out")/loadtest-$port.db" \
  RUST_LOG=warn "${pin[@]}" "$@" "$bin" serve &
  server=$!
  trap 'kill "$server" 2>/dev/null || true' EXIT
  for _ in $(seq 600); do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$server" 2>/dev/null || { echo "voxbridge serve exited during startup" >&2; exit 1; }
    sleep 0.1
  done
  echo "voxbridge serve not healthy on 127.0.0.1:$port after 60 s" >&2
  exit 1
}
