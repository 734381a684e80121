#!/usr/bin/env bash
# Builds the library and installs it for C and C++ builds:
#   PREFIX/lib/libportcullis.{so,a}, PREFIX/include/portcullis.h,
#   PREFIX/lib/pkgconfig/portcullis.pc (so `pkg-config --cflags --libs portcullis` works).
# Usage: scripts/install.sh [PREFIX]   (default /usr/local)
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX="$(realpath -m "${1:-/usr/local}")"
cargo build --release --lib
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
install -d "$PREFIX/lib/pkgconfig" "$PREFIX/include"
install -m 0755 target/release/libportcullis.so "$PREFIX/lib/"
install -m 0644 target/release/libportcullis.a "$PREFIX/lib/"
install -m 0644 include/portcullis.h "$PREFIX/include/"
sed -e "s|@PREFIX@|$PREFIX|" -e "s|@VERSION@|$VERSION|" portcullis.pc.in \
  > "$PREFIX/lib/pkgconfig/portcullis.pc"
echo "installed portcullis $VERSION into $PREFIX"
