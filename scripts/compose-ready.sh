#!/usr/bin/env bash
# Time `docker-compose up` of deploy/docker-compose.yml to a ready three-node mesh: from
# the `up` command (fresh volumes, the image already built) until every node's /readyz
# answers 200 on its published HTTP port. Prints one figure line, then brings the
# project down with its volumes (MESHLOG_KEEP=1 leaves it running).
#
#   scripts/docker-image.sh                 # the release image meshlog:<version>
#   scripts/compose-ready.sh                # or MESHLOG_IMAGE=meshlog-test:... for another
#
# The HTTP ports are the compose file's (9644-9646) unless MESHLOG_NODE<N>_HTTP_PORT
# moves them; MESHLOG_READY_BUDGET_S (default 120) bounds the wait.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
export MESHLOG_IMAGE=${MESHLOG_IMAGE:-meshlog:$VERSION}
BUDGET_S=${MESHLOG_READY_BUDGET_S:-120}
PROJECT=${MESHLOG_COMPOSE_PROJECT:-meshlogready}
PORTS=("${MESHLOG_NODE1_HTTP_PORT:-9644}" "${MESHLOG_NODE2_HTTP_PORT:-9645}" "${MESHLOG_NODE3_HTTP_PORT:-9646}")
compose() { docker-compose -p "$PROJECT" -f deploy/docker-compose.yml "$@"; }

docker image inspect "$MESHLOG_IMAGE" >/dev/null 2>&1 ||
  { echo "compose-ready.sh: no image $MESHLOG_IMAGE (build it: scripts/docker-image.sh)" >&2; exit 1; }
compose down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
[[ "${MESHLOG_KEEP:-0}" == 1 ]] || trap 'compose down -v --remove-orphans -t 5 >/dev/null 2>&1' EXIT

ready() {
  local p
  for p in "${PORTS[@]}"; do
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$p/readyz" || return 1
  done
}

start=$(date +%s%N)
compose up -d >/dev/null 2>&1 || { compose up -d; exit 1; }
up_done=$(date +%s%N)
deadline=$((start + BUDGET_S * 1000000000))
until ready; do
  if (($(date +%s%N) > deadline)); then
    echo "compose-ready.sh: not every node ready within ${BUDGET_S} s" >&2
    compose ps >&2
    exit 1
  fi
  sleep 0.05
done
end=$(date +%s%N)
# Ready needs no peer (no --bootstrap); the mesh is formed once node1 counts three up.
# grep reads the whole scrape (no -q): quitting early would break curl's pipe.
meshed() { curl -fsS --max-time 1 "http://127.0.0.1:${PORTS[0]}/metrics" | grep -c '^meshlog_mesh_members{state="up"} 3$' >/dev/null; }
until meshed; do
  (($(date +%s%N) > deadline)) && { echo "compose-ready.sh: node1 never saw three members up" >&2; exit 1; }
  sleep 0.05
done
meshed_at=$(date +%s%N)
size=$(docker image inspect "$MESHLOG_IMAGE" --format '{{.Size}}')
ms() { echo "$((($1 - start) / 1000000))e-3"; }
printf 'FIGURE compose-ready: %s: 3 nodes /readyz 200 in %.2f s after `up` (the command itself %.2f s), node1 sees 3 members up at %.2f s; image %.1f MB\n' \
  "$MESHLOG_IMAGE" "$(ms "$end")" "$(ms "$up_done")" "$(ms "$meshed_at")" "$((size / 1000))e-3"
