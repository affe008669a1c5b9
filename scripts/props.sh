#!/usr/bin/env bash
# Runs the protocol's property tests with millions of cases: every decoder against
# arbitrary bytes and hostile length prefixes (never a panic, never past its memory
# budget), messages of many tiny elements, frame and batch round trips. The normal
# suite runs a few hundred cases of each; this is the long run.
#
#   scripts/props.sh                 # about 4.5 million cases, at most PROPS_TIME_S per test
#   PROPS_SCALE=10 scripts/props.sh  # ten times as many (0.001 for a smoke run)
#
# Each property prints its case count and time; a failure prints the minimal input and
# the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE="${PROPS_SCALE:-1}"
TIME_S="${PROPS_TIME_S:-1800}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

# test binary, property filter, cases at scale 1 (sized by cost: ~50-100 us per cheap
# case, ~20 ms per many-tiny-elements case).
RUNS=(
  "decode_budget_props arbitrary_bytes_stay_within_budget 2000000"
  "decode_budget_props huge_claimed_lengths_stay_within_budget 2000000"
  "decode_budget_props many_tiny_elements_stay_within_budget 5000"
  "wire_props arbitrary_bytes_never_panic_or_overallocate 300000"
  "wire_props requests_round_trip 100000"
  "wire_props truncated_frames_are_errors 100000"
  "batch_props '' 50000"
  "kafka_hostile random_bytes_never_panic_or_over_allocate 500000"
  "kafka_hostile mutated_requests_never_panic_or_over_allocate 100000"
)

cargo test -p meshlog-protocol --tests --no-run >/dev/null 2>&1 || cargo test -p meshlog-protocol --tests --no-run
total=0
for run in "${RUNS[@]}"; do
  eval "set -- $run"
  test="$1" filter="$2" cases=$(awk -v n="$3" -v s="$SCALE" 'BEGIN { c = int(n * s); print (c < 1 ? 1 : c) }')
  start=$(date +%s)
  echo "== $test ${filter:-all}: $cases cases (time limit ${TIME_S}s)"
  PROPTEST_CASES="$cases" timeout "$TIME_S" \
    cargo test -q -p meshlog-protocol --test "$test" -- ${filter:+"$filter"} --test-threads 2 || {
    rc=$?
    [ "$rc" = 124 ] && echo "!! $test ${filter:-all}: time limit of ${TIME_S}s reached" >&2
    exit "$rc"
  }
  echo "   done in $(( $(date +%s) - start ))s"
  total=$(( total + cases ))
done
echo "props: $total cases per property run, all passed"
