#!/usr/bin/env bash
# meshlog's standard benchmark set on this machine, printed as one table.
#
# Starts what it needs (a release build, nodes on loopback in a scratch dir), runs:
#   raw store  : the same batches written straight into a segment log + fsync (the ceiling)
#   produce    : 1 KiB and 100 B records, acks=all (ack after the node's fsync), one node
#   consume    : the 1 KiB topic read back from the beginning
#   3 nodes    : three nodes, replication factor 3, 1 KiB and 100 B, acks=all (ack once
#                every in-sync replica has fsynced and a majority holds it); and 1 KiB
#                with the client's buffer at one batch (latency without client queueing),
#                also with 4 x 128 KiB, 6 x 128 KiB and 3 x 256 KiB requests in flight
#   kafka door : the 3-node 1 KiB row again through the nodes' Kafka listeners, with
#                librdkafka's own load generator (rdkafka_performance, scripts/rdkafka-perf.sh):
#                the same records, partitions, batch size and linger, acks=all, 5 requests
#                in flight per connection, without and with enable.idempotence; and one
#                partition, native and Kafka door (the single-stream comparison with NATS)
#   group      : three members (one per node) of a consumer group read a rf=3 topic,
#                committing after each poll: records/s, commit latency p50/p99, and the
#                rebalance time when a member joins and when one is killed (GROUP_ROUNDS)
#   scale      : idle cost of partitions (scripts/bench-scale.sh): three nodes, a topic of
#                100 and 1,000 partitions rf=3 (SCALE_PARTITIONS), the time to elect them
#                all with full ISRs, then each node's idle CPU (% of a core) and RSS
#   failover   : kill -9 of the leader KILLS times under an acks=all load (the
#                replication fault test run against the release binary): from each kill
#                until a write is acknowledged again, p50/p99
# and reports records/s, MB/s, ack latency p50/p99/p999 and the node's resident memory
# idle and at its peak under load. Every run is bounded by --max-secs and `timeout`.
#
# Env knobs: RECORDS (200000), REPS (3), IN_FLIGHT (16), PARTITIONS (16),
#            BATCH (65536), SCRATCH (/tmp/meshlog-bench), OUT (results file),
#            KILLS (20; 0 skips the failover row), CLUSTER (1; 0 skips the 3-node rows),
#            GROUP_ROUNDS (10), KAFKA (1; 0 skips the Kafka door and 1-partition rows),
#            KAFKA_PORT (19590: the nodes' Kafka listeners on +1..+3),
#            SINGLE (1; 0 skips the raw store and one-node rows), GROUP (1; 0 skips the group row),
#            SCALE (1; 0 skips the scale row; SCALE_PARTITIONS, WINDOW_S: see bench-scale.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-200000}
REPS=${REPS:-3}
IN_FLIGHT=${IN_FLIGHT:-16}
PARTITIONS=${PARTITIONS:-16}
BATCH=${BATCH:-65536}
SCRATCH=${SCRATCH:-/tmp/meshlog-bench}
OUT=${OUT:-$SCRATCH/results-$(date +%Y%m%d-%H%M%S).jsonl}
PORT=${PORT:-19494}
KILLS=${KILLS:-20}
GROUP_ROUNDS=${GROUP_ROUNDS:-10}
CLUSTER=${CLUSTER:-1}
KAFKA=${KAFKA:-1}
SINGLE=${SINGLE:-1}
GROUP=${GROUP:-1}
SCALE=${SCALE:-1}

# BIN_UNDER_TEST: an already built binary to measure instead of building the release one.
if [ -n "${BIN_UNDER_TEST:-}" ]; then BIN=$BIN_UNDER_TEST; else
  cargo build --release --locked --bin meshlog >&2
  BIN=target/release/meshlog
fi
rm -rf "$SCRATCH"; mkdir -p "$SCRATCH"
: > "$OUT"

NODE_PID=
source scripts/cluster.sh
cleanup() {
  [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null
  stop_cluster
  wait 2>/dev/null || true
}
trap cleanup EXIT

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

start_node() {
  "$BIN" node --data-dir "$SCRATCH/node" --listen "/ip4/127.0.0.1/tcp/$PORT" --http-listen none --kafka-listen none --log warn \
    > "$SCRATCH/node.out" 2> "$SCRATCH/node.err" &
  NODE_PID=$!
  for _ in $(seq 1 100); do grep -q "listening on" "$SCRATCH/node.out" 2>/dev/null && return; sleep 0.1; done
  echo "node did not start" >&2; cat "$SCRATCH/node.err" >&2; exit 1
}

SERVER="/ip4/127.0.0.1/tcp/$PORT"
row() { # label json
  python3 -c 'import json,sys; d=json.loads(sys.argv[2]); d["label"]=sys.argv[1]; print(json.dumps(d))' "$1" "$2" >> "$OUT"
}

for rep in $(seq 1 "$REPS"); do
  [ "$SINGLE" = 1 ] || break
  rm -rf "$SCRATCH/raw"
  j=$(timeout 300 "$BIN" bench raw-store --dir "$SCRATCH/raw" --records "$RECORDS" --record-size 1024 \
      --batch-size "$BATCH" --batches-per-flush "$IN_FLIGHT" --json | tr -d '\n')
  row "raw segment log+fsync, 1 KiB, $IN_FLIGHT batches/flush" "$j"

  rm -rf "$SCRATCH/node"; start_node
  sleep 1; IDLE_KB=$(rss_kb "$NODE_PID")
  for size in 1024 100; do
    j=$(timeout 300 "$BIN" bench produce "p$size" --server "$SERVER" --records "$RECORDS" --record-size "$size" \
        --batch-size "$BATCH" --in-flight "$IN_FLIGHT" --partitions "$PARTITIONS" --acks all --max-secs 120 --json | tr -d '\n')
    row "node produce acks=all, $size B" "$j"
  done
  j=$(timeout 300 "$BIN" bench consume p1024 --server "$SERVER" --records "$RECORDS" --max-secs 120 --json | tr -d '\n')
  row "node consume, 1 KiB" "$j"
  PEAK_KB=$(hwm_kb "$NODE_PID")
  python3 -c 'import json,sys; print(json.dumps({"label":"node memory","idle_rss_mb":int(sys.argv[1])/1024,"peak_rss_mb":int(sys.argv[2])/1024}))' "$IDLE_KB" "$PEAK_KB" >> "$OUT"
  kill "$NODE_PID"; wait "$NODE_PID" 2>/dev/null || true; NODE_PID=
done

if [ "$CLUSTER" = 1 ]; then
  if [ "$KAFKA" = 1 ]; then
    RDPERF=$(scripts/rdkafka-perf.sh)
    export KAFKA_PORT=${KAFKA_PORT:-19590}
  fi
  for rep in $(seq 1 "$REPS"); do
    start_cluster
    for size in 1024 100; do
      j=$(timeout 300 "$BIN" bench produce "r$size" --server "$C_SERVER" --records "$RECORDS" --record-size "$size" \
          --batch-size "$BATCH" --in-flight "$IN_FLIGHT" --partitions "$PARTITIONS" --replication-factor 3 \
          --acks all --max-secs 120 --json | tr -d '\n')
      row "3 nodes rf=3 produce acks=all, $size B" "$j"
    done
    if [ "$KAFKA" = 1 ]; then
      # The native 1 KiB row's load through the Kafka door, in the same cluster.
      row "kafka door 3 nodes rf=3 acks=all, 1024 B" "$(kafka_produce "k$rep" "$PARTITIONS" false)"
      row "kafka door 3 nodes rf=3 acks=all, 1024 B, idempotent" "$(kafka_produce "ki$rep" "$PARTITIONS" true)"
      # One partition (NATS JetStream's single stream is the peer figure).
      j=$(timeout 300 "$BIN" bench produce "one$rep" --server "$C_SERVER" --records "$RECORDS" --record-size 1024 \
          --batch-size "$BATCH" --in-flight "$IN_FLIGHT" --partitions 1 --replication-factor 3 \
          --acks all --max-secs 120 --json | tr -d '\n')
      row "3 nodes rf=3 acks=all, 1024 B, 1 partition" "$j"
      row "kafka door 3 nodes rf=3 acks=all, 1024 B, 1 partition, idempotent" "$(kafka_produce "kone$rep" 1 true)"
    fi
    # The same with the client's buffer cut to one batch: latency from the moment a
    # record is sealed into a batch that is sent at once (as jsbench measures a publish
    # in its window), not from a deep client queue; throughput is the same.
    j=$(timeout 300 "$BIN" bench produce "q1024" --server "$C_SERVER" --records "$RECORDS" --record-size 1024 \
        --batch-size "$BATCH" --in-flight "$IN_FLIGHT" --partitions "$PARTITIONS" --replication-factor 3 \
        --buffer-bytes "$BATCH" --acks all --max-secs 120 --json | tr -d '\n')
    row "3 nodes rf=3 acks=all, 1024 B, 1-batch buffer" "$j"
    # The latency/throughput trade: a few large requests in flight. Fewer in flight cut
    # the p99 (the nodes are CPU-bound, so latency is bytes in flight over throughput);
    # larger requests cut the cost per record. 4 x 128 KiB keeps the p99 under the
    # peer's, 6 x 128 KiB and 3 x 256 KiB move the most records per second near it.
    for shape in "4 131072" "6 131072" "3 262144"; do
      set -- $shape
      j=$(produce_shape "s$1x$2" "$1" "$2")
      row "3 nodes rf=3 acks=all, 1024 B, $1 x $(($2 / 1024)) KiB in flight" "$j"
    done
    # A group of three members, one per node, reads the 100 B topic's worth of records
    # again from its own rf=3 topic, committing after each poll; then members join and
    # are killed GROUP_ROUNDS times.
    if [ "$GROUP" = 1 ]; then
      servers=$(cluster_servers)
      j=$(timeout 900 "$BIN" bench group --server "$servers" --records "$RECORDS" --record-size 100 --partitions 6 \
          --replication-factor 3 --members 3 --rounds "$GROUP_ROUNDS" --json | tr -d '\n')
      row "3 nodes group of 3 consume+commit, 100 B" "$j"
    fi
    stop_cluster
  done
fi

if [ "$SCALE" = 1 ]; then
  # Its own table; its JSON lines join this run's results.
  BIN_UNDER_TEST=$BIN OUT=$SCRATCH/scale.jsonl SCRATCH=$SCRATCH/scale PORT=$((PORT + 300)) scripts/bench-scale.sh >&2
  python3 - "$SCRATCH/scale.jsonl" >> "$OUT" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    print(json.dumps(dict(r, label=f"scale {r['partitions']} partitions")))
PY
fi

if [ "$KILLS" -gt 0 ]; then
  # The fault test measures failover from inside its writer; run it on the release binary.
  fig=$(MESHLOG_BIN="$PWD/$BIN" MESHLOG_KILLS="$KILLS" timeout 1200 cargo nextest run --locked -p meshlog-tests \
        --test replication killing --no-capture 2>&1 | grep '^figure:' || true)
  echo "$fig" >&2
  python3 -c '
import json, re, sys
m = re.search(r"failover p50 (\d+) ms p99 (\d+) ms", sys.argv[1])
k = re.search(r"leader (\d+) times", sys.argv[1])
if m: print(json.dumps({"label": "failover", "kills": int(k.group(1)), "p50_ms": int(m.group(1)), "p99_ms": int(m.group(2))}))
' "$fig" >> "$OUT"
fi

python3 - "$OUT" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows: by.setdefault(r["label"], []).append(r)
def med(rs, k):
    v = [r[k] for r in rs if r.get(k) is not None]
    return statistics.median(v) if v else None
raw = med(by.get([l for l in by if l.startswith("raw")][0], []), "mb_per_sec") if any(l.startswith("raw") for l in by) else None
print(f"{'benchmark (median of reps)':52} {'records/s':>10} {'MB/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p999 ms':>8} {'vs raw':>7}")
for label, rs in by.items():
    if label in ("node memory", "failover") or label.startswith("scale "):
        continue
    mb = med(rs, "mb_per_sec")
    f = lambda v: "-" if v is None else f"{v:.2f}"
    ratio = f"{mb/raw:.0%}" if raw and "produce" in label and "1024" in label else "-"
    print(f"{label:52} {med(rs,'records_per_sec'):>10.0f} {mb:>8.1f} {f(med(rs,'p50_ms')):>8} {f(med(rs,'p99_ms')):>8} {f(med(rs,'p999_ms')):>8} {ratio:>7}")
    if len(rs) > 1:
        rps = sorted(r["records_per_sec"] for r in rs)
        print(f"{'':52} range {rps[0]:.0f}..{rps[-1]:.0f} records/s over {len(rs)} reps")
# The Kafka door against the native client, rep by rep (the same cluster, one after the other).
for label, base in [("kafka door 3 nodes rf=3 acks=all, 1024 B", "3 nodes rf=3 produce acks=all, 1024 B"),
                    ("kafka door 3 nodes rf=3 acks=all, 1024 B, idempotent", "3 nodes rf=3 produce acks=all, 1024 B"),
                    ("kafka door 3 nodes rf=3 acks=all, 1024 B, 1 partition, idempotent", "3 nodes rf=3 acks=all, 1024 B, 1 partition")]:
    pairs = list(zip(by.get(label, []), by.get(base, [])))
    if pairs:
        r = sorted(k["records_per_sec"] / n["records_per_sec"] for k, n in pairs)
        print(f"{label} / native: median {statistics.median(r):.2f} (range {r[0]:.2f}..{r[-1]:.2f}, {len(r)} reps)")
fo = by.get("failover", [])
if fo:
    print(f"failover after kill -9 of the leader ({fo[-1]['kills']} kills): p50 {fo[-1]['p50_ms']} ms, p99 {fo[-1]['p99_ms']} ms")
for r in [r for rs in by.values() for r in rs if "join_rebalance_p50_ms" in r][-1:]:
    print(f"consumer group of {r['members']}: commit latency p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms ({r['commits']} commits); "
          f"rebalance when a member joins p50 {r['join_rebalance_p50_ms']} ms p99 {r['join_rebalance_p99_ms']} ms, "
          f"when one is killed p50 {r['kill_rebalance_p50_ms']} ms p99 {r['kill_rebalance_p99_ms']} ms "
          f"(session timeout 3000 ms, {r['rounds']} rounds)")
for label, rs in by.items():
    if label.startswith("scale "):
        r = rs[-1]
        elect = "not all elected in time" if r["elect_s"] is None else f"elected in {r['elect_s']} s"
        print(f"{label} rf=3, 3 nodes, idle: {elect}; CPU % of a core per node "
              f"{' '.join(str(c) for c in r['cpu_pct'])}; RSS MiB {' '.join(str(m) for m in r['rss_mb'])}")
mem = by.get("node memory", [])
if mem:
    print(f"node resident memory: idle {med(mem,'idle_rss_mb'):.0f} MiB, peak under load {med(mem,'peak_rss_mb'):.0f} MiB")
print(f"raw results: {sys.argv[1]}")
PY
