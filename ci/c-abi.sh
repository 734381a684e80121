#!/usr/bin/env bash
# The C ABI from C and C++: the header is current, the tests in tests/c/ pass against the shared
# and the static library and through pkg-config, and valgrind finds no leak and no invalid access.
# Installs valgrind and pkg-config when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v gcc >/dev/null || missing+=(gcc)
command -v g++ >/dev/null || missing+=(g++)
if [ ${#missing[@]} -gt 0 ]; then
  echo "c-abi: installing ${missing[*]} (apt-get)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cargo build --release --lib
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  if ! git diff --exit-code -- include/; then
    echo "c-abi: include/portcullis.h is stale: build, then commit the regenerated header" >&2
    exit 1
  fi
fi

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
LIB="$PWD/target/release"
CFLAGS=(-std=c11 -Wall -Wextra -Wpedantic -Werror -O1 -g -Iinclude)
CXXFLAGS=(-std=c++17 -Wall -Wextra -Wpedantic -Werror -O1 -g -Iinclude)
STATIC_LIBS=(-lpthread -ldl -lm -lgcc_s -lutil -lrt)

tests=()
for src in tests/c/*.c; do
  name="$(basename "$src" .c)"
  gcc "${CFLAGS[@]}" "$src" -o "$OUT/$name" -L"$LIB" -Wl,-rpath,"$LIB" -lportcullis -lpthread
  gcc "${CFLAGS[@]}" "$src" -o "$OUT/$name-static" "$LIB/libportcullis.a" "${STATIC_LIBS[@]}"
  tests+=("$name" "$name-static")
done
g++ "${CXXFLAGS[@]}" tests/c/wrapper.cpp -o "$OUT/wrapper" -L"$LIB" -Wl,-rpath,"$LIB" -lportcullis
tests+=(wrapper)

echo "== run"
for t in "${tests[@]}"; do
  "$OUT/$t"
done

echo "== valgrind"
for t in gate limiter errors threads wrapper; do
  valgrind --quiet --error-exitcode=99 --leak-check=full --suppressions=tests/c/valgrind.supp \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
    "$OUT/$t" >/dev/null
  echo "$t: no leaks, no invalid accesses"
done

echo "== pkg-config"
scripts/install.sh "$OUT/prefix" >/dev/null
export PKG_CONFIG_PATH="$OUT/prefix/lib/pkgconfig"
# shellcheck disable=SC2046
gcc -std=c11 -Wall -Werror tests/c/gate.c -o "$OUT/gate-pc" $(pkg-config --cflags --libs portcullis)
"$OUT/gate-pc"
echo "c-abi: all passed"
