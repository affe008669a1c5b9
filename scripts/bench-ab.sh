#!/usr/bin/env bash
# A/B of two meshlog builds on the replicated benchmark, interleaved so the machine's
# drift hits both alike: PAIRS times, a fresh 3-node cluster of binary A, then of B, each
# running the rf=3 acks=all 1 KiB produce of SHAPE. Prints each pair's records/s and
# p99, the medians and the median of the per-pair ratios B/A.
#
# SHAPE: `3x256` (default: 3 x 256 KiB in flight, three partitions), `one` (a single
# partition, one 256 KiB batch in flight), `kafka-one` (a single partition through the
# Kafka door: librdkafka's rdkafka_performance, idempotent, as bench-vs-peer.sh's row).
#
# Usage: scripts/bench-ab.sh A_BIN B_BIN
# Env knobs: PAIRS (5), RECORDS (200000), SCRATCH (/tmp/meshlog-ab), PORT (19694),
#            SHAPE (3x256), KAFKA_PORT (19790, for kafka-one), BATCH (262144, its batch.size)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 A_BIN B_BIN" >&2; exit 2; }
A=$1 B=$2
PAIRS=${PAIRS:-5}
RECORDS=${RECORDS:-200000}
SCRATCH=${SCRATCH:-/tmp/meshlog-ab}
PORT=${PORT:-19694}
SHAPE=${SHAPE:-3x256}
BATCH=${BATCH:-262144}
case "$SHAPE" in
  3x256 | one) ;;
  kafka-one) RDPERF=$(scripts/rdkafka-perf.sh); export KAFKA_PORT=${KAFKA_PORT:-19790} ;;
  *) echo "unknown SHAPE $SHAPE (3x256, one, kafka-one)" >&2; exit 2 ;;
esac
rm -rf "$SCRATCH"; mkdir -p "$SCRATCH"
source scripts/cluster.sh
trap stop_cluster EXIT
OUT=$SCRATCH/pairs.jsonl
: > "$OUT"
run() { # BIN LABEL PAIR
  BIN=$1
  start_cluster
  local j
  case "$SHAPE" in
    3x256) j=$(produce_shape "ab$3" 3 262144) ;;
    one) j=$(produce_one "ab$3" 1 262144) ;;
    kafka-one) j=$(kafka_produce "ab$3" 1 true) ;;
  esac
  stop_cluster
  echo "{\"side\":\"$2\",\"pair\":$3,\"result\":$j}" >> "$OUT"
}
for pair in $(seq 1 "$PAIRS"); do
  run "$A" A "$pair"
  run "$B" B "$pair"
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["pair"], {})[r["side"]] = r["result"]
ratios, a_rates, b_rates = [], [], []
print(f"{'pair':>4}  {'A rec/s':>10} {'A p99 ms':>9}  {'B rec/s':>10} {'B p99 ms':>9}  {'B/A':>6}")
for p in sorted(by):
    a, b = by[p]["A"], by[p]["B"]
    ra, rb = a["records_per_sec"], b["records_per_sec"]
    a_rates.append(ra); b_rates.append(rb); ratios.append(rb / ra)
    print(f"{p:>4}  {ra:>10.0f} {a['p99_ms'] or 0:>9.1f}  {rb:>10.0f} {b['p99_ms'] or 0:>9.1f}  {rb/ra:>6.3f}")
print(f"median A {statistics.median(a_rates):.0f} rec/s, B {statistics.median(b_rates):.0f} rec/s; "
      f"median per-pair ratio B/A {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})")
PY
