#!/usr/bin/env bash
# Run many seeds of the deterministic simulator (tests/tests/simulation.rs, the mixed
# run) and print how many passed, with every failing seed and how to replay it.
#
#   scripts/sim.sh [COUNT]        COUNT seeds (default 10000) from MESHLOG_SIM_START
#                                 (default 100000, past the seeds CI runs)
#
# Environment: SIM_RUN which run: mixed (default) or retention (the mix with retention
# deleting committed log heads, so followers fall behind and reset),
# SIM_JOBS parallel chunks (default 1: the machine is shared),
# SIM_PROFILE cargo profile (default test, the build `cargo nextest` makes: it keeps the
# core's debug assertions, and release is barely faster here),
# SIM_TIMEOUT_S bound on the whole run (default 1800).
set -euo pipefail
cd "$(dirname "$0")/.."

count=${1:-10000}
start=${MESHLOG_SIM_START:-100000}
jobs=${SIM_JOBS:-1}
profile=${SIM_PROFILE:-test}
timeout_s=${SIM_TIMEOUT_S:-1800}
case ${SIM_RUN:-mixed} in
  mixed) test_name=mixed_fault_seeds_keep_every_invariant ;;
  retention) test_name=with_retention_followers_left_behind_reset_and_every_invariant_holds ;;
  *) echo "SIM_RUN must be mixed or retention, not ${SIM_RUN}" >&2; exit 2 ;;
esac

bin=$(cargo test -p meshlog-tests --test simulation --profile "$profile" --no-run --message-format=json \
  | grep -o '"executable":"[^"]*simulation-[^"]*"' | tail -1 | cut -d'"' -f4)
[ -x "$bin" ] || { echo "could not build the simulation test binary" >&2; exit 2; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
chunk=$(( (count + jobs - 1) / jobs ))
started=$(date +%s)
for ((j = 0; j < jobs; j++)); do
  s=$(( start + j * chunk ))
  n=$(( count - j * chunk < chunk ? count - j * chunk : chunk ))
  [ "$n" -gt 0 ] || break
  MESHLOG_SIM_START=$s MESHLOG_SIM_SEEDS=$n timeout "$timeout_s" \
    "$bin" --exact "$test_name" --nocapture >"$out/$j.log" 2>&1 &
done
status=0
wait || status=$?

passed=0; ran=0
for f in "$out"/*.log; do
  line=$(grep -o 'seeds passed [0-9]*/[0-9]*' "$f" || true)
  if [ -z "$line" ]; then
    echo "a chunk produced no figure (timed out after ${timeout_s}s?):" >&2
    tail -5 "$f" >&2
    status=1
    continue
  fi
  p=${line#seeds passed }; passed=$(( passed + ${p%/*} )); ran=$(( ran + ${p#*/} ))
  grep -E '^seed [0-9]+ ' "$f" || true
  grep -E 'seeds failed: ' "$f" || true
  grep '^figure:' "$f"
done
echo "sim ${SIM_RUN:-mixed}: seeds passed ${passed}/${ran} (from ${start}, ${jobs} jobs, ${profile}, $(( $(date +%s) - started ))s)"
[ "$passed" -eq "$count" ] && [ "$status" -eq 0 ]
