#!/usr/bin/env bash
# The scale row (issue #20): what partitions cost a mesh that does nothing. For each P in
# SCALE_PARTITIONS, a fresh mesh of three nodes on loopback, a topic of P partitions with
# replication factor 3, and:
#   elect_s : seconds from `topic create` to every partition led with a full ISR
#             (polled with `topic describe` every 0.5 s, bounded by READY_S; null if the
#             mesh did not get there, and the idle figures are then taken all the same)
#   cpu_pct : each node's CPU (user + system) over WINDOW_S seconds of idleness, after
#             SETTLE_S seconds, as % of one core, from /proc/PID/stat (no client is
#             connected while it is measured)
#   rss_mb  : each node's resident memory at the end of the window
# and the same idle figures for the mesh before the topic exists (P = 0). One JSON line per
# P goes to OUT; a table to stdout.
#
# Usage: scripts/bench-scale.sh   (BIN_UNDER_TEST: a built binary instead of the release one)
# Env knobs: SCALE_PARTITIONS ("100 1000"; add 10000 for the goal's row), WINDOW_S (10),
#            SETTLE_S (5), READY_S (180), SCRATCH (/tmp/meshlog-scale), PORT (19794),
#            OUT (results file)
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE_PARTITIONS=${SCALE_PARTITIONS:-100 1000}
WINDOW_S=${WINDOW_S:-10}
SETTLE_S=${SETTLE_S:-5}
READY_S=${READY_S:-180}
SCRATCH=${SCRATCH:-/tmp/meshlog-scale}
PORT=${PORT:-19794}
OUT=${OUT:-$SCRATCH/scale-$(date +%Y%m%d-%H%M%S).jsonl}

if [ -n "${BIN_UNDER_TEST:-}" ]; then BIN=$BIN_UNDER_TEST; else
  cargo build --release --locked --bin meshlog >&2
  BIN=target/release/meshlog
fi
mkdir -p "$SCRATCH"; : > "$OUT"
source scripts/cluster.sh
trap stop_cluster EXIT

# utime + stime of PID, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# Every node's CPU over WINDOW_S as % of a core, and its RSS in MiB: prints a JSON object.
idle_figures() {
  local hz before=() after=() rss=() p
  hz=$(getconf CLK_TCK)
  for p in "${CLUSTER_PIDS[@]}"; do before+=("$(cpu_ticks "$p")"); done
  sleep "$WINDOW_S"
  for p in "${CLUSTER_PIDS[@]}"; do after+=("$(cpu_ticks "$p")") rss+=("$(rss_kb "$p")"); done
  python3 - "$hz" "$WINDOW_S" "${before[*]}" "${after[*]}" "${rss[*]}" <<'PY'
import json, sys
hz, win = int(sys.argv[1]), float(sys.argv[2])
b, a, r = ([int(x) for x in s.split()] for s in sys.argv[3:6])
print(json.dumps({"cpu_pct": [round((y - x) / hz / win * 100, 1) for x, y in zip(b, a)],
                  "rss_mb": [round(k / 1024, 1) for k in r]}))
PY
}

# Seconds until every partition of TOPIC has a leader and a full ISR, or fail after READY_S.
# Usage: time_to_ready TOPIC T0 (T0: $EPOCHREALTIME before the topic was created)
time_to_ready() {
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "$READY_S" ]; do
    if timeout 60 "$BIN" topic describe "$1" --server "$C_SERVER" --json 2>/dev/null | python3 -c '
import json, sys
ps = json.load(sys.stdin)["partitions"]
sys.exit(0 if ps and all(p["online"] and p["epoch"] > 0 and len(p["isr"]) == len(p["replicas"]) for p in ps) else 1)'
    then python3 -c 'import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))' "$2" "$EPOCHREALTIME"; return; fi
    sleep 0.5
  done
  echo "topic $1: not every partition had a leader and a full ISR within $READY_S s" >&2; return 1
}

for parts in $SCALE_PARTITIONS; do
  start_cluster
  sleep "$SETTLE_S"
  row0=$(idle_figures)
  t0=$EPOCHREALTIME
  "$BIN" topic create "s$parts" --partitions "$parts" --replication-factor 3 --server "$C_SERVER" > /dev/null
  elect=$(time_to_ready "s$parts" "$t0") || elect=null
  sleep "$SETTLE_S"
  row=$(idle_figures)
  python3 -c 'import json,sys; d=json.loads(sys.argv[3]); d.update(partitions=int(sys.argv[1]), elect_s=json.loads(sys.argv[2]),
    before=json.loads(sys.argv[4]), window_s=int(sys.argv[5])); print(json.dumps(d))' \
    "$parts" "$elect" "$row" "$row0" "$WINDOW_S" | tee -a "$OUT"
  stop_cluster
done

python3 - "$OUT" <<'PY'
import json, sys
print(f"{'scale, 3 nodes, rf=3, idle':34} {'elect s':>8} {'CPU % of a core per node':>26} {'RSS MiB per node':>20}")
for l in open(sys.argv[1]):
    r = json.loads(l)
    cpu = " ".join(f"{c:.1f}" for c in r["cpu_pct"]); rss = " ".join(f"{m:.0f}" for m in r["rss_mb"])
    b = " ".join(f"{c:.1f}" for c in r["before"]["cpu_pct"])
    print(f"{str(r['partitions']) + ' partitions':34} {str(r['elect_s']):>8} {cpu:>26} {rss:>20}   (no topic: {b} %)")
print(f"raw results: {sys.argv[1]}")
PY
