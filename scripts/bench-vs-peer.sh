#!/usr/bin/env bash
# The replicated-throughput goal, measured as the brief asks on a shared machine: ratios
# from runs interleaved in one session, not figures from different minutes.
#
# PAIRS times: one run of the peer (../shared/bench: NATS JetStream, 3 nodes, R3, file
# storage, fsync on every write, 1 KiB messages, 256 publishes in flight), then meshlog
# on a fresh 3-node cluster (replication factor 3, acks=all, 1 KiB records) with
# 3 x 256 KiB and with 4 x 128 KiB requests in flight, and into a single partition (the
# peer's single stream) with 5 x 256 KiB in flight on it (and 1, the default),
# natively and (KAFKA=1) through
# the Kafka door with librdkafka's rdkafka_performance (idempotent, 5 in flight per
# connection). Each pair's ratio takes our best shape whose p99 is no worse than the
# peer's in that pair (none: the ratio is marked). Prints every pair, then the medians,
# the ratio of the medians and the median ratio, overall and per shape.
#
# Both sides send RECORDS records per run (the peer script's default count); our timed
# run starts once the new topic's partitions have leaders, as the peer's starts once its
# stream exists.
#
# Env knobs: PAIRS (5), RECORDS (200000), PEER_BENCH (../shared/bench/nats-jetstream-bench.sh),
#            SCRATCH (/tmp/meshlog-vs-peer), PORT (19594), OUT (results file),
#            KAFKA (1; 0 skips the Kafka door row), KAFKA_PORT (19690), BATCH (262144, the
#            Kafka door's batch.size)
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${PAIRS:-5}
RECORDS=${RECORDS:-200000}
PEER_BENCH=${PEER_BENCH:-../shared/bench/nats-jetstream-bench.sh}
SCRATCH=${SCRATCH:-/tmp/meshlog-vs-peer}
PORT=${PORT:-19594}
OUT=${OUT:-$SCRATCH/pairs-$(date +%Y%m%d-%H%M%S).jsonl}
[ -f "$PEER_BENCH" ] || { echo "no peer benchmark at $PEER_BENCH" >&2; exit 1; }

# BIN_UNDER_TEST: an already built binary to measure instead of building the release one.
if [ -n "${BIN_UNDER_TEST:-}" ]; then BIN=$BIN_UNDER_TEST; else
  cargo build --release --locked --bin meshlog >&2
  BIN=target/release/meshlog
fi
KAFKA=${KAFKA:-1}
BATCH=${BATCH:-262144}
if [ "$KAFKA" = 1 ]; then
  RDPERF=$(scripts/rdkafka-perf.sh)
  export KAFKA_PORT=${KAFKA_PORT:-19690}
fi
rm -rf "$SCRATCH"; mkdir -p "$SCRATCH"
: > "$OUT"
source scripts/cluster.sh
trap stop_cluster EXIT

for pair in $(seq 1 "$PAIRS"); do
  # The peer's script starts and stops its own cluster; its window=1 latency run is cut
  # short (SYNC_MSGS) since only the windowed run is compared. Its cluster sometimes
  # starts with a member missing ("no suitable peers for placement"): try again.
  peer=
  for attempt in 1 2 3; do
    peer=$(SYNCS=always SIZES=1024 REPS=1 SYNC_MSGS=500 MSGS="$RECORDS" OUT="$SCRATCH/peer-$pair-$attempt.txt" \
           timeout 600 bash "$PEER_BENCH" 2>>"$SCRATCH/peer.err" | grep '^RESULT.* window=256 .* errors=0 ' | head -1 || true)
    [ -n "$peer" ] && break
    echo "pair $pair: the peer's run $attempt failed (see $SCRATCH/peer-$pair-$attempt.txt)" >&2
  done
  [ -n "$peer" ] || { echo "pair $pair: the peer failed three times" >&2; exit 1; }
  python3 -c '
import json, re, sys
f = dict(re.findall(r"(\w+)=(\S+)", sys.argv[2]))
print(json.dumps({"pair": int(sys.argv[1]), "system": "nats", "shape": "256 in flight",
                  "records_per_sec": float(f["msgs_per_s"]), "p99_ms": int(f["p99"]) / 1000}))' "$pair" "$peer" >> "$OUT"
  start_cluster
  ours() { # SHAPE JSON
    python3 -c '
import json, sys
j = json.loads(sys.argv[3])
print(json.dumps({"pair": int(sys.argv[1]), "system": "meshlog", "shape": sys.argv[2],
                  "records_per_sec": j["records_per_sec"], "p99_ms": j["p99_ms"]}))' "$pair" "$1" "$2" >> "$OUT"
  }
  for shape in "3 262144" "4 131072"; do
    set -- $shape
    ours "$1 x $(($2 / 1024)) KiB" "$(produce_shape "v$pair-$1" "$1" "$2")"
  done
  ours "1 partition, 5 x 256 KiB" "$(produce_one "v$pair-one" 5 262144)"
  ours "1 partition, 1 x 256 KiB" "$(produce_one "v$pair-one1" 1 262144)"
  if [ "$KAFKA" = 1 ]; then
    ours "1 partition, Kafka door" "$(kafka_produce "v$pair-kafka" 1 true)"
  fi
  stop_cluster
done

python3 - "$OUT" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
pairs = sorted({r["pair"] for r in rows})
shapes = sorted({r["shape"] for r in rows if r["system"] == "meshlog"}, reverse=True)
print(f"{'pair':>4} {'NATS msg/s':>11} {'p99 ms':>7}" + "".join(f" {s + ' rec/s':>20} {'p99 ms':>7}" for s in shapes) + f" {'ratio':>7}")
ratios, peer_rps, ours_rps = [], [], {s: [] for s in shapes}
for p in pairs:
    peer = next(r for r in rows if r["pair"] == p and r["system"] == "nats")
    ours = {r["shape"]: r for r in rows if r["pair"] == p and r["system"] == "meshlog"}
    peer_rps.append(peer["records_per_sec"])
    for s in shapes:
        ours_rps[s].append(ours[s]["records_per_sec"])
    ok = [r["records_per_sec"] for r in ours.values() if r["p99_ms"] <= peer["p99_ms"]]
    best = max(ok) if ok else max(r["records_per_sec"] for r in ours.values())
    ratios.append(best / peer["records_per_sec"])
    mark = "" if ok else " (p99 above the peer's)"
    print(f"{p:>4} {peer['records_per_sec']:>11.0f} {peer['p99_ms']:>7.1f}"
          + "".join(f" {ours[s]['records_per_sec']:>20.0f} {ours[s]['p99_ms']:>7.1f}" for s in shapes)
          + f" {ratios[-1]:>6.2f}x{mark}")
med = statistics.median
print(f"median NATS {med(peer_rps):.0f} msg/s; "
      + "; ".join(f"median meshlog {s} {med(v):.0f} rec/s ({med(v) / med(peer_rps):.2f}x)" for s, v in ours_rps.items()))
print(f"median of the pairs' ratios: {med(ratios):.2f}x (range {min(ratios):.2f}x..{max(ratios):.2f}x over {len(ratios)} pairs)")
for s in shapes:
    r = []
    for p in pairs:
        peer = next(x for x in rows if x["pair"] == p and x["system"] == "nats")
        r += [x["records_per_sec"] / peer["records_per_sec"] for x in rows if x["pair"] == p and x.get("shape") == s]
    if r:
        print(f"  {s}: median ratio {med(r):.2f}x (range {min(r):.2f}x..{max(r):.2f}x over {len(r)} pairs)")
print(f"raw results: {sys.argv[1]}")
PY
