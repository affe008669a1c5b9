# Sourced by the benchmark scripts: three meshlog nodes on loopback, the second and third
# joining through the first. Needs BIN (the meshlog binary), SCRATCH (data and logs go in
# $SCRATCH/c1..c3) and PORT (the nodes listen on PORT+1..PORT+3); MESH_WAIT_S (60) bounds
# the wait for the mesh to form.

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

# One rf=3 acks=all run of 1 KiB records on the cluster with IN_FLIGHT requests of BATCH
# bytes in flight (one partition each, the client's buffer cut to one batch), into a new
# topic TOPIC; prints the benchmark's JSON on one line. Needs RECORDS.
# Usage: produce_shape TOPIC IN_FLIGHT BATCH
produce_shape() {
  timeout 300 "$BIN" bench produce "$1" --server "$C_SERVER" --records "$RECORDS" --record-size 1024 \
    --batch-size "$3" --in-flight "$2" --partitions "$2" --replication-factor 3 \
    --buffer-bytes "$3" --acks all --max-secs 120 --json | tr -d '\n'
}

stop_cluster() {
  local p
  for p in "${CLUSTER_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
  CLUSTER_PIDS=()
}
