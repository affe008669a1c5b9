# Sourced by the benchmark scripts: three meshlog nodes on loopback, the second and third
# joining through the first. Needs BIN (the meshlog binary), SCRATCH (data and logs go in
# $SCRATCH/c1..c3) and PORT (the nodes listen on PORT+1..PORT+3); MESH_WAIT_S (60) bounds
# the wait for the mesh to form. With KAFKA_PORT set, each node also runs its Kafka
# listener on 127.0.0.1:KAFKA_PORT+1..+3 (`kafka_brokers` lists them).

CLUSTER_PIDS=()

# The flags that turn off the optional listeners, as far as this BIN knows them: builds
# before the HTTP admin port or the Kafka listener refuse `--http-listen` and
# `--kafka-listen`, later ones need them (or bind their default ports), so ask the
# binary's own help which it takes. Prints one flag or value a line.
listener_off_flags() {
  local help flag
  help=$("$BIN" node --help 2>&1) || { echo "$BIN node --help failed" >&2; return 1; }
  for flag in --http-listen --kafka-listen; do
    grep -q -- "$flag" <<<"$help" && printf '%s\nnone\n' "$flag"
  done
  return 0
}

# Start the three nodes on fresh data directories and wait until each sees all three up;
# sets C_SERVER (the first node's address) and CLUSTER_PIDS.
start_cluster() {
  stop_cluster
  rm -rf "$SCRATCH"/c?
  local boot= i port args n off
  mapfile -t off < <(listener_off_flags)
  for i in 1 2 3; do
    port=$((PORT + i)) args=()
    [ -n "$boot" ] && args=(--bootstrap "$boot")
    [ -n "${KAFKA_PORT:-}" ] && off=(--http-listen none --kafka-listen "127.0.0.1:$((KAFKA_PORT + i))")
    "$BIN" node --data-dir "$SCRATCH/c$i" --listen "/ip4/127.0.0.1/tcp/$port" --no-mdns "${off[@]}" --log warn "${args[@]}" \
      > "$SCRATCH/c$i.out" 2> "$SCRATCH/c$i.err" &
    CLUSTER_PIDS+=($!)
    for _ in $(seq 1 100); do grep -q "listening on" "$SCRATCH/c$i.out" 2>/dev/null && break; sleep 0.1; done
    [ -z "$boot" ] && boot=$(sed -n 's/^listening on //p' "$SCRATCH/c1.out" | head -1)
  done
  C_SERVER=$boot
  # Under load (builds beside the benchmark) a mesh took over 20 s to form now and then.
  local wait_s=${MESH_WAIT_S:-60}
  for _ in $(seq 1 $((wait_s * 5))); do
    n=$("$BIN" cluster status --server "$C_SERVER" --json 2>/dev/null \
        | python3 -c 'import json,sys; print(sum(m["state"]=="up" for m in json.load(sys.stdin)["members"]))' 2>/dev/null || echo 0)
    [ "$n" = 3 ] && return
    sleep 0.2
  done
  echo "the three nodes did not form a mesh within ${wait_s} s" >&2; exit 1
}

# Every node's address, comma-separated.
cluster_servers() {
  for i in 1 2 3; do sed -n 's/^listening on //p' "$SCRATCH/c$i.out" | head -1; done | paste -sd,
}

# The three Kafka listeners (with KAFKA_PORT), as a bootstrap.servers list.
kafka_brokers() {
  printf '127.0.0.1:%s,127.0.0.1:%s,127.0.0.1:%s\n' $((KAFKA_PORT + 1)) $((KAFKA_PORT + 2)) $((KAFKA_PORT + 3))
}

# Create TOPIC with PARTITIONS partitions and replication factor 3, and wait (up to
# 30 s) until every partition has a leader and a full ISR, as `bench produce` does
# before its clock starts. Usage: create_ready_topic TOPIC PARTITIONS
create_ready_topic() {
  "$BIN" topic create "$1" --partitions "$2" --replication-factor 3 --server "$C_SERVER" > /dev/null
  local _
  for _ in $(seq 1 150); do
    "$BIN" topic describe "$1" --server "$C_SERVER" --json 2>/dev/null | python3 -c '
import json, sys
ps = json.load(sys.stdin)["partitions"]
sys.exit(0 if ps and all(p["online"] and p["epoch"] > 0 and len(p["isr"]) == len(p["replicas"]) for p in ps) else 1)' \
      && return
    sleep 0.2
  done
  echo "topic $1: not every partition had a leader and a full ISR within 30 s" >&2; return 1
}

# One rf=3 acks=all run of 1 KiB records on the cluster with IN_FLIGHT requests of BATCH
# bytes in flight (one partition each, the client's buffer cut to one batch), into a new
# topic TOPIC; prints the benchmark's JSON on one line. Needs RECORDS.
# Usage: produce_shape TOPIC IN_FLIGHT BATCH
produce_shape() {
  timeout 300 "$BIN" bench produce "$1" --server "$C_SERVER" --records "$RECORDS" --record-size 1024 \
    --batch-size "$3" --in-flight "$2" --partitions "$2" --replication-factor 3 \
    --buffer-bytes "$3" --acks all --max-secs 120 --json | tr -d '\n'
}

# librdkafka's rdkafka_performance (RDPERF, scripts/rdkafka-perf.sh) through the Kafka
# listeners (KAFKA_PORT): RECORDS records of 1 KiB, acks=all, into a new rf=3 topic TOPIC
# of PARTS partitions (one: all to partition 0, else librdkafka's partitioner), with the
# native client's batch (BATCH bytes) and linger (5 ms), 5 requests in flight per
# connection (Kafka's default), idempotence IDEMPOTENT (true/false). As the native
# client's, records are spread over the partitions (each to a random one: librdkafka's
# sticky partitioner would put the whole burst rdkafka_performance enqueues at once into
# one partition). The client's queue is librdkafka's default (KAFKA_BUFFER_KB, 1 GiB),
# so the latency, from produce() to the delivery report, includes queueing in the
# client: bounded near the native client's buffer (3072), librdkafka 2.12's idempotent
# producer used 7 s of CPU per 100,000 records here, on the cores the nodes need (0.2 s
# without idempotence). Unbounded it still uses 1.4-2.6 s (0.8 s with max.in.flight=1),
# which is why the idempotent rows trail the others. That is the client's own doing
# (librdkafka 2.12.1 and its master of 2026-07, src/rdkafka_broker.c,
# rd_kafka_toppar_producer_serve): an idempotent partition may send
# RD_KAFKA_IDEMP_MAX_INFLIGHT (5) minus its *messages* in flight more requests, so a
# batch of 5 records or more holds the partition to one batch in flight until it is
# answered, whatever max.in.flight says (upstream PR #4989, open); and the batch waiting
# behind it is ready, so the broker thread's wakeup is already set to "now" when the cap
# says no: it polls without sleeping for the whole round trip (the CPU above, mostly
# sys). The door sees one produce per partition at a time and answers it as soon as
# acks=all allows; only a shorter round trip (the fsyncs) raises these rows. An
# idempotent run also includes librdkafka's 500 ms wait before it asks for a producer
# id. Prints one JSON line shaped like `bench produce --json`.
# Usage: kafka_produce TOPIC PARTS IDEMPOTENT
kafka_produce() {
  create_ready_topic "$1" "$2" || return 1
  local lat=$SCRATCH/latency-$1.txt part=() out
  [ "$2" = 1 ] && part=(-p 0)
  out=$(timeout 300 "$RDPERF" -P -t "$1" -b "$(kafka_brokers)" -s 1024 -c "$RECORDS" "${part[@]}" -l -A "$lat" \
        -X acks=all -X linger.ms=5 -X batch.size="$BATCH" -X max.in.flight=5 -X enable.idempotence="$3" \
        -X sticky.partitioning.linger.ms=0 -X queue.buffering.max.kbytes="${KAFKA_BUFFER_KB:-1048576}" 2>&1) \
    || { echo "rdkafka_performance failed: $out" >&2; return 1; }
  python3 - "$out" "$lat" <<'PY'
import json, re, sys
m = re.findall(r"(\d+) delivered \(offset -?\d+, (\d+) failed\) in (\d+)ms: (\d+) msgs/s and ([\d.]+) MB/s", sys.argv[1])
if not m:
    sys.exit("no summary line in rdkafka_performance's output:\n" + sys.argv[1][-2000:])
ok, failed, ms, rate, mb = m[-1]
if int(failed):
    sys.exit(f"rdkafka_performance: {failed} records failed:\n" + sys.argv[1][-2000:])
lat = sorted(int(l) for l in open(sys.argv[2]) if l.strip())
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000 if lat else None
print(json.dumps({"records": int(ok), "secs": int(ms) / 1000, "records_per_sec": float(rate), "mb_per_sec": float(mb),
                  "p50_ms": q(0.5), "p99_ms": q(0.99), "p999_ms": q(0.999)}))
PY
}

# As produce_shape, all into one partition of a new rf=3 topic TOPIC, with IN_FLIGHT
# (at most 5) requests of BATCH bytes in flight on it (an idempotent producer pipelines a
# partition's batches). Usage: produce_one TOPIC IN_FLIGHT BATCH
produce_one() {
  timeout 300 "$BIN" bench produce "$1" --server "$C_SERVER" --records "$RECORDS" --record-size 1024 \
    --batch-size "$3" --in-flight "$2" --in-flight-per-partition "$2" --partitions 1 --replication-factor 3 \
    --buffer-bytes "$3" --acks all --max-secs 120 --json | tr -d '\n'
}

stop_cluster() {
  local p
  for p in "${CLUSTER_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
  CLUSTER_PIDS=()
}
