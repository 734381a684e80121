#!/usr/bin/env bash
# Model-checks the lock-free core with loom. A separate target dir keeps the normal build intact.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="--cfg loom -C debug-assertions" \
LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}" \
LOOM_MAX_BRANCHES="${LOOM_MAX_BRANCHES:-10000}" \
CARGO_TARGET_DIR=target/loom \
  timeout 900 cargo test --release -p portcullis --test 'loom_*'
