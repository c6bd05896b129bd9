#!/usr/bin/env python3
"""Stage breakdown of the voice turns of a load test (scripts/loadtest-voice.sh).

Reads the turns the bridge stored (`turn_latencies` in its SQLite file: one row per reply to
caller speech, each stage timed by the bridge) recorded since START_MS, and the local
recogniser's queue-wait and decode histograms from the bridge's /metrics text, and prints the
percentiles of each stage:

  endpointing     the VAD's hangover: last speech -> utterance (speech.pipeline's turn starts)
  asr             utterance -> transcript (what is left of recognition after the hangover:
                  with speculative recognition it mostly finished during it), queue wait included
  dialog          transcript -> the dialog's first text
  first sentence  transcript -> the first whole sentence for TTS
  tts first byte  first sentence -> first TTS audio
  first frame     first TTS audio -> first media frame sent
  total           utterance -> first frame (the bridge's turn, hangover not included)

and, for every decode of the local recogniser (speculative ones included): queue wait and
decode time, estimated from the histogram buckets (linear within a bucket).

  voice-breakdown.py DB START_MS METRICS_FILE [JSON_OUT]
"""

import json
import math
import re
import sqlite3
import sys

STAGES = [
    ("endpointing", "hangover_ms", 1.0),
    ("asr", "asr_us", 1e-3),
    ("dialog", "dialog_first_text_us", 1e-3),
    ("first sentence", "first_sentence_us", 1e-3),
    ("tts first byte", "tts_first_byte_us", 1e-3),
    ("first frame", "first_frame_us", 1e-3),
    ("total (bridge)", "total_us", 1e-3),
]


def percentile(values, p):
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def histogram(text, name):
    """Cumulative buckets [(le, count)] and (sum, count) of a Prometheus histogram."""
    buckets, total, count = [], 0.0, 0
    for line in text.splitlines():
        m = re.match(rf'{name}_bucket\{{.*?le="([^"]+)".*?\}} (\S+)', line)
        if m:
            le = math.inf if m.group(1) == "+Inf" else float(m.group(1))
            buckets.append((le, float(m.group(2))))
            continue
        m = re.match(rf"{name}_sum(?:\{{.*?\}})? (\S+)", line)
        if m:
            total += float(m.group(1))
            continue
        m = re.match(rf"{name}_count(?:\{{.*?\}})? (\S+)", line)
        if m:
            count += int(float(m.group(1)))
    buckets.sort()
    return buckets, total, count


def bucket_quantile(buckets, q):
    """The q-quantile estimated from cumulative buckets, linear within the bucket (seconds)."""
    if not buckets or buckets[-1][1] == 0:
        return None
    target = q * buckets[-1][1]
    lower_le, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= target:
            if math.isinf(le):
                return lower_le
            width = count - lower_count
            share = (target - lower_count) / width if width else 1.0
            return lower_le + (le - lower_le) * share
        lower_le, lower_count = le, count
    return None


def fmt(ms):
    return "-" if ms is None else f"{ms:,.0f} ms"


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    db, start_ms, metrics_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    out = sys.argv[4] if len(sys.argv) > 4 else None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    columns = ", ".join(column for _, column, _ in STAGES)
    every = con.execute(
        f"SELECT {columns}, outcome FROM turn_latencies "
        "WHERE recorded_at >= ? AND total_us IS NOT NULL",
        (start_ms,),
    ).fetchall()
    outcomes = {}
    for row in every:
        outcomes[row[-1]] = outcomes.get(row[-1], 0) + 1
    # The stages of the replies to what the caller said; a turn whose recognition missed the
    # turn budget speaks the fallback line instead (counted, not in the stage percentiles).
    rows = [row for row in every if row[-1] == "spoken"]
    report = {"turns": len(every), "outcomes": outcomes, "stages": {}, "local_asr": {}}
    by_outcome = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
    print(
        f"stage breakdown of {len(rows)} spoken replies ({by_outcome}; bridge-side, "
        "from turn_latencies)"
    )
    print(f"| {'stage':<16} | {'p50':>9} | {'p95':>9} | {'p99':>9} |")
    print(f"|{'-' * 18}|{'-' * 11}|{'-' * 11}|{'-' * 11}|")
    for i, (stage, _, scale) in enumerate(STAGES):
        values = [row[i] * scale for row in rows if row[i] is not None]
        p = {k: percentile(values, k) for k in (50, 95, 99)}
        report["stages"][stage] = {f"p{k}_ms": v for k, v in p.items()}
        print(f"| {stage:<16} | {fmt(p[50]):>9} | {fmt(p[95]):>9} | {fmt(p[99]):>9} |")
    text = open(metrics_file, encoding="utf-8").read()
    print("local recogniser, every decode (from /metrics buckets):")
    for stage, name in (
        ("queue wait", "voxbridge_asr_local_queue_wait_seconds"),
        ("decode", "voxbridge_asr_local_decode_seconds"),
    ):
        buckets, total, count = histogram(text, name)
        if not count:
            print(f"  {stage}: no samples ({name} not in /metrics)")
            continue
        q = {k: bucket_quantile(buckets, k / 100) for k in (50, 95, 99)}
        entry = {"count": count, "mean_ms": total / count * 1000}
        entry.update({f"p{k}_ms": v * 1000 for k, v in q.items() if v is not None})
        report["local_asr"][stage] = entry
        print(
            f"  {stage}: {count} decodes, mean {fmt(entry['mean_ms'])}, "
            f"p50 ~{fmt(entry.get('p50_ms'))}, p95 ~{fmt(entry.get('p95_ms'))}, "
            f"p99 ~{fmt(entry.get('p99_ms'))}"
        )
    if out:
        with open(out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
