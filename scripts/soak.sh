#!/usr/bin/env bash
# Soak: CALLS concurrent echo calls held for MINUTES against a release bridge on one core; checks
# that its RSS stays flat, that no session or connection outlives its call and that no frame is
# lost either way.
#
#   scripts/soak.sh [CALLS] [MINUTES]      # defaults 500 30; needs 2 cores, jq, sqlite3, curl
#
# The calls: `voxbridge loadtest --mode media-echo --duration MINUTES*60` (bridge under
# `taskset -c 0`, generator under `taskset -c 1`, as scripts/loadtest-echo.sh). Every call is
# started within the ramp-up (20 s, or a tenth of the run if that is shorter) and talks for the
# whole MINUTES; none is replaced. Then it waits for the bridge to settle and checks:
#
# - rss: the bridge's RSS (sampled every second from /proc by the generator) is flat: the median
#   over the last tenth of the talk time (minutes 27-30 of 30), all calls still up, is at most
#   5% above the median after warm-up (minutes 2-5 of 30: a fifteenth to a sixth of the run,
#   and not before the ramp-up + 10 s).
# - leaks: after the calls end, `GET /healthz` says `calls: 0` and `connections: 0`, and
#   `/metrics` has `voxbridge_calls_active` 0 for both transports and
#   `voxbridge_connections_open` 0 (within 30 s of the last hang-up).
# - frames: dropped = inbound lost + outbound lost + playout gaps, and must be 0:
#   inbound lost: caller frames the generator sent minus the bridge's `framesIn` summed over
#   the stored call records; outbound lost: the bridge's `framesOut` summed the same way minus
#   the `media` the generator received (it reads on after hanging up until the bridge's Close);
#   playout gaps: the generator's `dropped_frames` (20 ms of silence inside a bot turn, audio
#   that came too late). The bridge's own records must show no bad messages and every call
#   ended by the caller's `stop` (not `slow-peer`, a timeout, ...), one stored record per call,
#   and `voxbridge_records_not_stored_total` 0.
# - calls: every call connected and completed, no generator errors, no refused upgrade.
#
# Writes target/loadtest/soak-report.json (the figures, each check, the RSS every 10 s, the
# host's load before and after) beside the generator's soak-loadtest.json; exits 1 naming the
# checks that failed.
set -euo pipefail
cd "$(dirname "$0")/.."
calls="${1:-500}" minutes="${2:-30}"
[[ "$calls" =~ ^[1-9][0-9]*$ && "$minutes" =~ ^[1-9][0-9]*$ ]] || {
  echo "usage: scripts/soak.sh [CALLS] [MINUTES]" >&2
  exit 2
}
for tool in jq sqlite3 curl taskset; do
  command -v "$tool" >/dev/null || { echo "soak: needs $tool" >&2; exit 2; }
done
talk=$((minutes * 60))
ramp=$((talk / 10 < 20 ? talk / 10 : 20))
warm_from=$((talk / 15 > ramp + 10 ? talk / 15 : ramp + 10))
warm_to=$((talk / 6 > warm_from + 10 ? talk / 6 : warm_from + 10))
final_from=$((talk - talk / 10))
final_to=$((talk - 1))
port=18090
out="${CARGO_TARGET_DIR:-target}/loadtest"
mkdir -p "$out"
# A fresh store: the frame accounting sums its call records.
rm -f "$out/loadtest-$port.db" "$out/loadtest-$port.db-wal" "$out/loadtest-$port.db-shm"
# Build at low priority first (others share the machine); start_server's build is then a no-op.
nice -n 19 cargo build --release --locked --bin voxbridge
export VOXBRIDGE__MEDIA__MAX_CALLS="$calls"
# shellcheck source=scripts/loadtest-lib.sh
source scripts/loadtest-lib.sh
start_server "$port" "$calls"
base="http://127.0.0.1:$port"
load_before="$(uptime)"
echo "soak: $calls echo calls for $minutes min (ramp $ramp s); host: $load_before" >&2
RUST_LOG=warn taskset -c 1 "$bin" loadtest --mode media-echo \
  --url "wss://127.0.0.1:$port/media" --calls "$calls" --duration "$talk" --ramp-up "$ramp" \
  --server-pid "$server" --report "$out/soak-loadtest.json" --histogram "$out/soak-histogram.svg"
load_after="$(uptime)"

# Settle: sessions end when the bridge reads `stop`; give stragglers 30 s.
health='{}'
settled_s=null
for i in $(seq 0 300); do
  health="$(curl -fsS "$base/healthz" || echo '{}')"
  if jq -e '.calls == 0 and .connections == 0' <<<"$health" >/dev/null; then
    settled_s="$(awk "BEGIN { print $i / 10 }")"
    break
  fi
  sleep 0.1
done
connected="$(jq '.counters.calls_connected' "$out/soak-loadtest.json")"
# The records are written by a background task after each call: wait for all of them.
db="$out/loadtest-$port.db"
store_query="SELECT json_object(
  'records', count(*),
  'frames_in', coalesce(sum(json_extract(summary, '\$.framesIn')), 0),
  'frames_out', coalesce(sum(json_extract(summary, '\$.framesOut')), 0),
  'bad_messages', coalesce(sum(json_extract(summary, '\$.badMessages')), 0),
  'not_stopped', coalesce(sum(json_extract(summary, '\$.end') != 'stopped'), 0))
  FROM calls WHERE json_extract(summary, '\$.transport') = 'media';"
store='{}'
for _ in $(seq 300); do
  store="$(sqlite3 "$db" "$store_query")"
  [[ "$(jq '.records' <<<"$store")" -ge "$connected" ]] && break
  sleep 0.1
done
# The bridge's series: a sample's value summed over the series whose name and labels start
# with PREFIX (`prefix}` for one exact series).
scrape="$(curl -fsS "$base/metrics")"
metric() {
  awk -v prefix="$1" '!/^#/ && index($1, prefix) == 1 { sum += $NF } END { printf "%d\n", sum }' <<<"$scrape"
}
metrics="$(jq -n \
  --argjson calls_active_media "$(metric 'voxbridge_calls_active{transport="media"}')" \
  --argjson calls_active_relay "$(metric 'voxbridge_calls_active{transport="relay"}')" \
  --argjson connections_open "$(metric 'voxbridge_connections_open')" \
  --argjson calls_started_media "$(metric 'voxbridge_calls_started_total{transport="media"}')" \
  --argjson calls_ended_media "$(metric 'voxbridge_calls_ended_total{transport="media",')" \
  --argjson calls_ended_media_stopped "$(metric 'voxbridge_calls_ended_total{transport="media",reason="stopped"}')" \
  --argjson upgrades_rejected "$(metric 'voxbridge_upgrades_rejected_total')" \
  --argjson records_not_stored "$(metric 'voxbridge_records_not_stored_total')" \
  '$ARGS.named')"

jq -n --slurpfile loadtest "$out/soak-loadtest.json" \
  --argjson health "$health" --argjson metrics "$metrics" --argjson store "$store" \
  --argjson settled_s "$settled_s" --argjson calls "$calls" --argjson minutes "$minutes" \
  --argjson ramp "$ramp" --argjson warm_from "$warm_from" --argjson warm_to "$warm_to" \
  --argjson final_from "$final_from" --argjson final_to "$final_to" \
  --arg load_before "$load_before" --arg load_after "$load_after" \
  --arg command "scripts/soak.sh $calls $minutes" \
  --arg commit "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo '-dirty')" '
def median: sort | length as $n
  | if $n == 0 then null elif $n % 2 == 1 then .[($n - 1) / 2] else (.[$n / 2 - 1] + .[$n / 2]) / 2 end;
def window($from; $to): map(select(.t_s >= $from and .t_s <= $to));
$loadtest[0] as $r
| ($r.timeline | map(select(.server_rss_kib != null))) as $tl
| ($tl | window($warm_from; $warm_to)) as $warm
| ($tl | window($final_from; $final_to)) as $final
| ($warm | map(.server_rss_kib) | median) as $warm_kib
| ($final | map(.server_rss_kib) | median) as $final_kib
| (if $warm_kib and $final_kib then 100 * ($final_kib - $warm_kib) / $warm_kib else null end) as $growth
| ($r.counters.frames_sent - $store.frames_in) as $inbound_lost
| ($store.frames_out - $r.counters.media_received) as $outbound_lost
| $r.counters.dropped_frames as $gaps
| {
    command: $command, commit: $commit, calls: $calls, minutes: $minutes, ramp_up_s: $ramp,
    wall_s: $r.wall_s,
    host_load: { before: $load_before, after: $load_after },
    rss: {
      warmup_window_s: [$warm_from, $warm_to], final_window_s: [$final_from, $final_to],
      warmup_median_kib: $warm_kib, final_median_kib: $final_kib, growth_percent: $growth,
      limit_percent: 5,
      start_kib: $r.server.rss_start_kib, peak_kib: $r.server.rss_peak_kib,
      min_live_calls_in_windows: ([$warm[], $final[]] | map(.live) | min),
      every_10_s: [$tl | to_entries[] | select(.key % 10 == 0) | .value | { t_s, kib: .server_rss_kib, live }]
    },
    leaks: {
      settled_after_s: $settled_s,
      healthz: $health,
      calls_active_media: $metrics.calls_active_media,
      calls_active_relay: $metrics.calls_active_relay,
      connections_open: $metrics.connections_open,
      leaked_sessions: (($health.calls // 1) + $metrics.calls_active_media + $metrics.calls_active_relay),
      leaked_connections: (($health.connections // 1) + $metrics.connections_open),
      calls_started_media: $metrics.calls_started_media,
      calls_ended_media: $metrics.calls_ended_media
    },
    frames: {
      sent_by_generator: $r.counters.frames_sent, processed_by_bridge: $store.frames_in,
      sent_by_bridge: $store.frames_out, received_by_generator: $r.counters.media_received,
      received_after_hangup: $r.counters.media_after_hangup,
      inbound_lost: $inbound_lost, outbound_lost: $outbound_lost, playout_gaps: $gaps,
      dropped_frames: ($inbound_lost + $outbound_lost + $gaps),
      frames_sent_late_by_generator: $r.counters.frames_sent_late,
      bridge_records: $store.records, bridge_bad_messages: $store.bad_messages,
      bridge_calls_not_ended_by_stop: $store.not_stopped,
      bridge_ended_not_stopped_metric: ($metrics.calls_ended_media - $metrics.calls_ended_media_stopped),
      records_not_stored: $metrics.records_not_stored
    },
    calls_check: {
      connected: $r.counters.calls_connected, completed: $r.counters.calls_completed,
      failed: $r.counters.calls_failed, errors: $r.errors,
      upgrades_rejected: $metrics.upgrades_rejected
    },
    server_cpu: {
      cores: $r.server.cpu_cores, percent_of_core: (100 * $r.server.cpu_cores),
      window_s: $r.server.cpu_window_s,
      busiest_second_cores: ([$r.timeline[] | .server_cpu_cores // 0] | max),
      worst_second_cpu_wait_ms: ([$r.timeline[] | .server_cpu_wait_ms // 0] | max)
    },
    generator_cpu_cores: $r.generator.cpu_cores,
    latency_ms: {
      turn: $r.latency_ms.turn_latency, playout_lateness: $r.latency_ms.playout_lateness,
      connect: $r.latency_ms.connect, send_lateness: $r.latency_ms.send_lateness
    }
  }
| .checks = {
    rss: ($growth != null and $growth <= 5),
    leaks: (.leaks.leaked_sessions == 0 and .leaks.leaked_connections == 0
      and .leaks.calls_started_media == .leaks.calls_ended_media),
    frames: (.frames.dropped_frames == 0 and $inbound_lost == 0 and $outbound_lost == 0
      and .frames.bridge_records == $calls and .frames.bridge_bad_messages == 0
      and .frames.bridge_calls_not_ended_by_stop == 0
      and .frames.bridge_ended_not_stopped_metric == 0 and .frames.records_not_stored == 0),
    calls: (.calls_check.connected == $calls and .calls_check.completed == $calls
      and .calls_check.failed == 0 and (.calls_check.errors | length) == 0
      and .calls_check.upgrades_rejected == 0)
  }
| .passed = (.checks | all)
' >"$out/soak-report.json"

jq -r '
  "soak \(.command) at \(.commit): \(if .passed then "PASSED" else "FAILED" end)",
  "  rss: \(.rss.warmup_median_kib) KiB (median, \(.rss.warmup_window_s[0])-\(.rss.warmup_window_s[1]) s) -> \(.rss.final_median_kib) KiB (\(.rss.final_window_s[0])-\(.rss.final_window_s[1]) s): \(.rss.growth_percent | if . == null then "n/a" else (. * 100 | round / 100 | tostring) + "%" end) (limit 5%); start \(.rss.start_kib), peak \(.rss.peak_kib) KiB",
  "  leaks: sessions \(.leaks.leaked_sessions), connections \(.leaks.leaked_connections) (settled after \(.leaks.settled_after_s // "-") s); healthz \(.leaks.healthz | tojson)",
  "  frames: dropped \(.frames.dropped_frames) = inbound lost \(.frames.inbound_lost) (\(.frames.sent_by_generator) sent, \(.frames.processed_by_bridge) processed) + outbound lost \(.frames.outbound_lost) (\(.frames.sent_by_bridge) sent, \(.frames.received_by_generator) received) + playout gaps \(.frames.playout_gaps); bad messages \(.frames.bridge_bad_messages), not ended by stop \(.frames.bridge_calls_not_ended_by_stop), records \(.frames.bridge_records)",
  "  calls: \(.calls_check.connected) connected, \(.calls_check.completed) completed, \(.calls_check.failed) failed, errors \(.calls_check.errors | tojson), upgrades rejected \(.calls_check.upgrades_rejected)",
  "  server CPU \(.server_cpu.cores) cores over \(.server_cpu.window_s) s; turn latency p50 \(.latency_ms.turn.p50) / p99 \(.latency_ms.turn.p99) ms; playout lateness p99 \(.latency_ms.playout_lateness.p99) ms",
  "  host load before: \(.host_load.before)",
  "  host load after:  \(.host_load.after)",
  (.checks | to_entries[] | select(.value | not) | "  FAILED: \(.key)")
' "$out/soak-report.json"
echo "report: $out/soak-report.json (generator: $out/soak-loadtest.json)"
jq -e '.passed' "$out/soak-report.json" >/dev/null
