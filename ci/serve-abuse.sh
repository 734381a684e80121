#!/usr/bin/env bash
# `portcullis serve` under slowloris, pipelining clients that never read, a 100 MiB header,
# request smuggling and descriptor exhaustion, on loopback (see ci/serve-abuse.py).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin portcullis
BIN="${CARGO_TARGET_DIR:-target}/release/portcullis"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
python3 ci/serve-abuse.py "$BIN" examples/portcullis.toml "$WORK"
