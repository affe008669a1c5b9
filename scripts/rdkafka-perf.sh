#!/usr/bin/env bash
# librdkafka's own load generator, `rdkafka_performance` (examples/), as the Kafka door's
# reference client: a C producer that is not itself the bottleneck (a Python producer
# would be). Built once from the same librdkafka source as scripts/librdkafka-tests.sh
# (2.12.1, from the rdkafka-sys crate) under target/librdkafka/perf-VERSION (the library
# and this one example: a few minutes on 2 cores); prints the binary's path.
#
# Usage: scripts/rdkafka-perf.sh            # build if needed, print the path
#        "$(scripts/rdkafka-perf.sh)" -P -t T -b 127.0.0.1:9092 -s 1024 -c 100000 -X acks=all
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/librdkafka-source.sh # RDKAFKA_SYS, librdkafka_source
CACHE=$ROOT/target/librdkafka/perf-$RDKAFKA_SYS
BIN=$CACHE/examples/rdkafka_performance

if [ ! -e "$CACHE/.built" ]; then
  src=$(librdkafka_source)
  rm -rf "$CACHE" && mkdir -p "$(dirname "$CACHE")" && cp -r "$src" "$CACHE"
  start=$(date +%s)
  echo "building librdkafka $RDKAFKA_SYS's rdkafka_performance in $CACHE (log: $CACHE/build.log)" >&2
  (cd "$CACHE" && ./configure --disable-ssl --disable-sasl --disable-curl --disable-gssapi \
    && make -j"$(nproc)" libs && make -C examples rdkafka_performance) > "$CACHE/build.log" 2>&1 \
    || { tail -30 "$CACHE/build.log" >&2; echo "rdkafka_performance build failed" >&2; exit 1; }
  [ -x "$BIN" ] || { echo "no $BIN after the build" >&2; exit 1; }
  touch "$CACHE/.built"
  echo "built in $(( $(date +%s) - start )) s" >&2
fi
echo "$BIN"
