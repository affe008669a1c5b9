#!/usr/bin/env bash
# Build (or reuse) the Docker image the Docker tests run, from an already-built dynamic
# binary, and print its tag. Usage: scripts/docker-test-image.sh [BIN] (default
# target/debug/meshlog).
#
# No image can be pulled here, so the image is a rootfs made from BIN plus exactly the
# shared libraries `ldd` lists for it (each at its absolute path, symlinks resolved),
# imported with `docker import`. One build profile (dev) serves both the process tests
# and the Docker tests: nothing is rebuilt for Docker.
#
# The tag is `meshlog-test:<first 12 hex of sha256>` over BIN, its libraries and this
# script, so the image is rebuilt only when one of them changes. Concurrent callers (test
# processes run in parallel) are serialised by a lock so one tag is imported once. Only
# the newest $KEEP_IMAGES meshlog-test images are kept; older ones are removed unless a
# container still uses them.
set -euo pipefail

KEEP_IMAGES=${MESHLOG_DOCKER_KEEP_IMAGES:-3}
SELF=$(realpath "$0")
REPO=$(dirname "$(dirname "$SELF")")
BIN=${1:-${CARGO_TARGET_DIR:-$REPO/target}/debug/meshlog}
[[ -x "$BIN" ]] || { echo "docker-test-image.sh: $BIN is not an executable (build it: cargo build --bins)" >&2; exit 1; }

# The libraries ldd resolves, as absolute paths. `linux-vdso.so.1` has no file (the kernel
# maps it); "not found" is an error; a static binary has none ("not a dynamic executable").
libs() {
  local out
  if ! out=$(ldd "$BIN" 2>&1); then
    [[ "$out" == *"not a dynamic executable"* || "$out" == *"statically linked"* ]] && return 0
    echo "docker-test-image.sh: ldd $BIN failed: $out" >&2; return 1
  fi
  if grep -q "not found" <<<"$out"; then
    echo "docker-test-image.sh: ldd $BIN: missing libraries:" >&2; grep "not found" <<<"$out" >&2; return 1
  fi
  # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out" | sort -u
}
LIBS=$(libs)

# Content hash: the binary, the libraries' bytes (a libc upgrade must rebuild) and this
# script (a change of the recipe must rebuild).
# shellcheck disable=SC2086
HASH=$(cat "$BIN" $LIBS "$SELF" | sha256sum | cut -c1-12)
TAG="meshlog-test:$HASH"

# Serialise builders: without it two test processes may both import, leaving one
# untagged copy behind.
LOCK="${TMPDIR:-/tmp}/meshlog-docker-image.lock"
exec 9>"$LOCK"
flock -w 300 9 || { echo "docker-test-image.sh: could not lock $LOCK within 300 s" >&2; exit 1; }

if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG"
  exit 0
fi

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/meshlog-rootfs.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT
# /tmp for anything that wants a temp dir; /data for the node's store (the container's
# own file system, so it survives `docker kill` + `docker start`); /etc so Docker can
# bind-mount hosts, hostname and resolv.conf.
mkdir -p "$ROOT/tmp" "$ROOT/data" "$ROOT/etc"
chmod 1777 "$ROOT/tmp"
cp "$BIN" "$ROOT/meshlog"
for lib in $LIBS; do
  # -L: /lib64/ld-linux-x86-64.so.2 is a symlink to /lib/x86_64-linux-gnu/...; copy the
  # file itself to the path the binary names, so no link target has to exist.
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
done

# Root-owned entries whatever user builds the tarball; `docker import` reads it from stdin.
tar -C "$ROOT" --numeric-owner --owner=0 --group=0 -c . |
  docker import \
    --change 'ENTRYPOINT ["/meshlog"]' \
    --change 'WORKDIR /data' \
    --change 'LABEL meshlog-test=1' \
    --message "meshlog test image from $BIN" \
    - "$TAG" >/dev/null

# Keep only the newest images; `docker rmi` without -f refuses images in use.
docker image ls meshlog-test --format '{{.CreatedAt}}\t{{.Repository}}:{{.Tag}}' |
  sort -r | tail -n +"$((KEEP_IMAGES + 1))" | cut -f2 |
  while read -r old; do [[ "$old" == "$TAG" ]] || docker rmi "$old" >/dev/null 2>&1 || true; done

echo "$TAG"
