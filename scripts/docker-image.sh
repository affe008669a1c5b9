#!/usr/bin/env bash
# Build the release image meshlog:VERSION FROM scratch: a statically linked release
# binary (glibc, +crt-static), stripped, and nothing else. No image is pulled.
#
#   scripts/docker-image.sh            # builds, tags meshlog:<version> and meshlog:latest
#   MESHLOG_IMAGE_TAG=x scripts/docker-image.sh
#
# The image's build is separate from the test build (profile dist: release with fat LTO
# in one codegen unit, which keeps the image under 20 MB; its own target triple
# directory), so it costs a full compile the first time (~30 minutes on 2 cores) and is
# not part of CI; the Docker tests use scripts/docker-test-image.sh, which wraps
# the dev binary the suite already built. Prints the tag and the image size.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
TAG=${MESHLOG_IMAGE_TAG:-meshlog:$VERSION}
TRIPLE=x86_64-unknown-linux-gnu

RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile dist --locked --target "$TRIPLE" --bin meshlog
BIN=${CARGO_TARGET_DIR:-target}/$TRIPLE/dist/meshlog
# A dynamic binary names its loader in a PT_INTERP header; a static(-pie) one has none.
# (`ldd` is no test: it exits 0 on a static-pie binary, saying "statically linked".)
if readelf -lW "$BIN" | grep -q 'INTERP'; then
  echo "docker-image.sh: $BIN is dynamically linked; expected a static binary" >&2
  exit 1
fi

CTX=$(mktemp -d "${TMPDIR:-/tmp}/meshlog-image.XXXXXX")
trap 'rm -rf "$CTX"' EXIT
strip -o "$CTX/meshlog" "$BIN"
# /tmp for anything that wants a temp dir, /data owned by the image's user (65532), and
# /etc/passwd so the user has a name.
mkdir -p "$CTX/rootfs/tmp" "$CTX/rootfs/data" "$CTX/rootfs/etc"
chmod 1777 "$CTX/rootfs/tmp"
echo 'meshlog:x:65532:65532:meshlog:/data:/meshlog' >"$CTX/rootfs/etc/passwd"
echo 'meshlog:x:65532:' >"$CTX/rootfs/etc/group"
cp deploy/Dockerfile "$CTX/Dockerfile"
# The legacy builder handles FROM scratch without buildx; chown in a tar-free way:
# the Dockerfile copies rootfs/ as root, so /data is made writable for 65532 here.
chmod 0777 "$CTX/rootfs/data"
DOCKER_BUILDKIT=0 docker build -q -t "$TAG" -t "${TAG%%:*}:latest" "$CTX" >/dev/null
echo "$TAG"
docker image inspect "$TAG" --format 'size: {{.Size}} bytes' >&2
