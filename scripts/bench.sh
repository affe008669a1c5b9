#!/usr/bin/env bash
# meshlog's standard benchmark set on this machine, printed as one table.
#
# Starts what it needs (a release build, one node on loopback in a scratch dir), runs:
#   raw store  : the same batches written straight into sled + fsync (the ceiling)
#   produce    : 1 KiB and 100 B records, acks=all (ack after the node's fsync)
#   consume    : the 1 KiB topic read back from the beginning
# and reports records/s, MB/s, ack latency p50/p99/p999 and the node's resident memory
# idle and at its peak under load. Every run is bounded by --max-secs and `timeout`.
#
# Env knobs: RECORDS (200000), REPS (3), IN_FLIGHT (16), PARTITIONS (16),
#            BATCH (65536), SCRATCH (/tmp/meshlog-bench), OUT (results file)
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

cargo build --release --locked --bin meshlog >&2
BIN=target/release/meshlog
rm -rf "$SCRATCH"; mkdir -p "$SCRATCH"
: > "$OUT"

NODE_PID=
cleanup() { [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

start_node() {
  "$BIN" node --data-dir "$SCRATCH/node" --listen "/ip4/127.0.0.1/tcp/$PORT" --log warn \
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
  rm -rf "$SCRATCH/raw"
  j=$(timeout 300 "$BIN" bench raw-store --dir "$SCRATCH/raw" --records "$RECORDS" --record-size 1024 \
      --batch-size "$BATCH" --batches-per-flush "$IN_FLIGHT" --json | tr -d '\n')
  row "raw sled+fsync, 1 KiB, $IN_FLIGHT batches/flush" "$j"

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

python3 - "$OUT" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows: by.setdefault(r["label"], []).append(r)
def med(rs, k):
    v = [r[k] for r in rs if r.get(k) is not None]
    return statistics.median(v) if v else None
raw = med(by.get([l for l in by if l.startswith("raw")][0], []), "mb_per_sec") if any(l.startswith("raw") for l in by) else None
print(f"{'benchmark (median of reps)':44} {'records/s':>10} {'MB/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p999 ms':>8} {'vs raw':>7}")
for label, rs in by.items():
    if label == "node memory":
        continue
    mb = med(rs, "mb_per_sec")
    f = lambda v: "-" if v is None else f"{v:.2f}"
    ratio = f"{mb/raw:.0%}" if raw and "produce" in label and "1024" in label else "-"
    print(f"{label:44} {med(rs,'records_per_sec'):>10.0f} {mb:>8.1f} {f(med(rs,'p50_ms')):>8} {f(med(rs,'p99_ms')):>8} {f(med(rs,'p999_ms')):>8} {ratio:>7}")
    if len(rs) > 1:
        rps = sorted(r["records_per_sec"] for r in rs)
        print(f"{'':44} range {rps[0]:.0f}..{rps[-1]:.0f} records/s over {len(rs)} reps")
mem = by.get("node memory", [])
if mem:
    print(f"node resident memory: idle {med(mem,'idle_rss_mb'):.0f} MiB, peak under load {med(mem,'peak_rss_mb'):.0f} MiB")
print(f"raw results: {sys.argv[1]}")
PY
