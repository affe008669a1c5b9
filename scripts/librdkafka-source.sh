# Sourced by scripts/librdkafka-tests.sh and scripts/rdkafka-perf.sh: which librdkafka
# they build, and where its source is. The source, tests/ and examples/ included, ships
# inside the `rdkafka-sys` crate; it is taken from cargo's registry, fetched with a
# throwaway cargo project if absent (crates.io is the one download that works everywhere
# we build). Needs ROOT (the repository).

RDKAFKA_SYS=4.10.0+2.12.1 # rdkafka-sys version: librdkafka 2.12.1

# Prints the path of the librdkafka source in cargo's registry, fetching it if absent.
librdkafka_source() {
  local src
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"rdkafka-sys-$RDKAFKA_SYS"/librdkafka 2>/dev/null | head -1)
  if [ -z "$src" ]; then
    local fetch=$ROOT/target/librdkafka/fetch
    mkdir -p "$fetch/src"
    printf '[package]\nname = "librdkafka-fetch"\nversion = "0.0.0"\nedition = "2021"\n[workspace]\n[dependencies]\nrdkafka-sys = "=%s"\n' \
      "${RDKAFKA_SYS%%+*}" > "$fetch/Cargo.toml"
    echo 'fn main() {}' > "$fetch/src/main.rs"
    (cd "$fetch" && cargo fetch -q) >&2
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"rdkafka-sys-$RDKAFKA_SYS"/librdkafka | head -1)
  fi
  echo "$src"
}
