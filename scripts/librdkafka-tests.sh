#!/usr/bin/env bash
# librdkafka's own integration tests against a three-node loopback mesh (issue #17).
#
# librdkafka's source, tests/ included, ships inside the `rdkafka-sys` crate: the script
# takes it from cargo's registry (fetching it with a throwaway cargo project if absent;
# crates.io is the one download that works everywhere we build), builds the library and
# the test runner once per version under target/librdkafka/VERSION (about 7-10 min on 2
# cores; later runs reuse it), starts three `meshlog node`s with their Kafka listeners
# on loopback, writes the suite's test.conf, and runs the tests of the allowlist one at
# a time, each within PER_TEST_S seconds. Prints one line per test and the counts; exits
# non-zero if any listed test fails.
#
# Usage: scripts/librdkafka-tests.sh [--ci] [--build-only] [TEST...]
#   (no TEST)  every test of tests/kafka/librdkafka-allowlist
#   --ci       only the allowlist's lines tagged `ci` (what .ci/run runs)
#   TEST...    these test numbers (e.g. 0030 0090), listed or not: to try candidates
# Env: BIN (meshlog binary, default target/debug/meshlog, built if missing),
#      PER_TEST_S (default 180), KPORT (Kafka ports KPORT+1..3, default 29290),
#      PORT (mesh ports PORT+1..3, default 29190), PARTITIONS (auto-created topics'
#      partitions, default 4), KEEP=1 (keep the scratch directory with the nodes' and
#      tests' logs), LOG (the nodes' log level, default warn).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/librdkafka-source.sh # RDKAFKA_SYS, librdkafka_source
ALLOWLIST=$ROOT/tests/kafka/librdkafka-allowlist
PER_TEST_S=${PER_TEST_S:-180}
KPORT=${KPORT:-29290}
PORT=${PORT:-29190}
PARTITIONS=${PARTITIONS:-4}
CACHE=$ROOT/target/librdkafka/$RDKAFKA_SYS

ci=0 build_only=0 wanted=()
for a in "$@"; do
  case $a in
    --ci) ci=1 ;;
    --build-only) build_only=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) wanted+=("$a") ;;
  esac
done

# Build once per version; a build cut short is started again from scratch.
build_suite() {
  [ -e "$CACHE/.built" ] && return
  local src start
  src=$(librdkafka_source)
  rm -rf "$CACHE" && mkdir -p "$(dirname "$CACHE")" && cp -r "$src" "$CACHE"
  start=$(date +%s)
  echo "building librdkafka $RDKAFKA_SYS and its test runner in $CACHE (log: $CACHE/build.log)"
  (cd "$CACHE" && ./configure --disable-ssl --disable-sasl --disable-curl --disable-gssapi \
    && make -j"$(nproc)" libs && make -j"$(nproc)" -C tests build) > "$CACHE/build.log" 2>&1 \
    || { tail -30 "$CACHE/build.log" >&2; echo "librdkafka build failed" >&2; exit 1; }
  touch "$CACHE/.built"
  echo "built in $(( $(date +%s) - start )) s"
}

# The tests to run: those named, or the allowlist's (its `ci` lines with --ci).
test_list() {
  if ((${#wanted[@]})); then printf '%s\n' "${wanted[@]}"; return; fi
  local filter='.'
  ((ci)) && filter='^[0-9]{4}[[:space:]]+ci\b'
  sed 's/[[:space:]]*$//' "$ALLOWLIST" | grep -E '^[0-9]{4}' | grep -E "$filter" | awk '{print $1}'
}

NODE_PIDS=()
stop_nodes() {
  local p
  for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
  NODE_PIDS=()
}

# Three nodes on fresh data directories, the second and third joining through the
# first; waits until each Kafka listener answers and the mesh has three members up.
start_nodes() {
  local boot='' i args n
  cat > "$SCRATCH/node.toml" <<EOF
kafka_auto_create_partitions = $PARTITIONS
group_initial_rebalance_delay_ms = 0
EOF
  for i in 1 2 3; do
    args=()
    [ -n "$boot" ] && args=(--bootstrap "$boot")
    "$BIN" node --config "$SCRATCH/node.toml" --data-dir "$SCRATCH/n$i" --listen "/ip4/127.0.0.1/tcp/$((PORT + i))" \
      --no-mdns --http-listen none --kafka-listen "127.0.0.1:$((KPORT + i))" --log "${LOG:-warn}" "${args[@]}" \
      > "$SCRATCH/n$i.out" 2> "$SCRATCH/n$i.err" &
    NODE_PIDS+=($!)
    for _ in $(seq 1 100); do grep -q "listening on" "$SCRATCH/n$i.out" 2>/dev/null && break; sleep 0.1; done
    [ -z "$boot" ] && boot=$(sed -n 's/^listening on //p' "$SCRATCH/n1.out" | head -1)
  done
  for _ in $(seq 1 150); do
    n=$("$BIN" cluster status --server "$boot" --json 2>/dev/null \
        | python3 -c 'import json,sys; print(sum(m["state"]=="up" for m in json.load(sys.stdin)["members"]))' 2>/dev/null || echo 0)
    [ "$n" = 3 ] && return
    sleep 0.2
  done
  echo "the three nodes did not form a mesh (logs in $SCRATCH)" >&2
  exit 1
}

build_suite
((build_only)) && exit 0
BIN=${BIN:-$ROOT/target/debug/meshlog}
[ -x "$BIN" ] || cargo build --bin meshlog --locked
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/librdkafka-mesh.XXXXXX")
cleanup() { stop_nodes; if [ "${KEEP:-0}" = 1 ]; then echo "kept $SCRATCH"; else rm -rf "$SCRATCH"; fi; }
trap cleanup EXIT
start_nodes
# The suite's config (RDKAFKA_TEST_CONF), one per run, so runs on other ports do not
# share it.
export RDKAFKA_TEST_CONF=$SCRATCH/test.conf
printf 'bootstrap.servers=127.0.0.1:%s,127.0.0.1:%s,127.0.0.1:%s\n' $((KPORT + 1)) $((KPORT + 2)) $((KPORT + 3)) \
  > "$RDKAFKA_TEST_CONF"

mapfile -t tests < <(test_list)
export LD_LIBRARY_PATH=$CACHE/src:$CACHE/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
pass=0 failed=() started=$(date +%s)
for t in "${tests[@]}"; do
  t0=$(date +%s)
  log=$SCRATCH/test-$t.log
  # -L: the local-only variants (mock cluster, no broker) are skipped; -E: no sockem;
  # no -Q: quick mode skips most sub-tests and reports the empty rest as passed. A test
  # counts as passed only if a variant that talks to the mesh passed and the run took
  # some time (a run of under 50 ms did nothing).
  rc=0
  (cd "$CACHE/tests" && TESTS=$t timeout -k 10 "$PER_TEST_S" ./test-runner -p1 -E -L) > "$log" 2>&1 || rc=$?
  ran=$(grep -Ec 'Test [^ ]+ PASSED' "$log" || true)
  ms=$(sed -n 's/.*ALL-TESTS: duration \([0-9]*\).*/\1/p' "$log" | head -1)
  if [ "$rc" = 0 ] && [ "$ran" -gt 0 ] && [ "${ms:-0}" -ge 50 ]; then
    pass=$((pass + 1)) verdict=PASS
  else
    failed+=("$t")
    verdict=FAIL
    [ "$rc" = 0 ] && verdict="FAIL (nothing ran against the mesh)"
    [ "$rc" = 124 ] && verdict="FAIL (timeout)"
    mkdir -p "$ROOT/target/librdkafka/logs" && cp "$log" "$ROOT/target/librdkafka/logs/"
  fi
  printf '%s %s %ds\n' "$t" "$verdict" $(( $(date +%s) - t0 ))
  for i in 1 2 3; do
    kill -0 "${NODE_PIDS[$((i - 1))]}" 2>/dev/null || { echo "node $i died during $t (log: $SCRATCH/n$i.err)" >&2; KEEP=1; exit 1; }
  done
done
echo "librdkafka $RDKAFKA_SYS: ${#tests[@]} tests, $pass passed, ${#failed[@]} failed${failed:+: ${failed[*]}} ($(( $(date +%s) - started )) s)"
((${#failed[@]} == 0))
