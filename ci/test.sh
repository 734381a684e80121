#!/usr/bin/env bash
# Every test, on a fresh Debian machine: formatting, lints, the layer rule, unit/integration/doc
# tests, the loom models, the C ABI from C and C++ under valgrind, the Python bindings (gunicorn
# and uvicorn workers on the shared store, a pip install outside the checkout), the CORS browser
# test (installs Chromium when missing), the nginx module in a real nginx (installs nginx and
# nginx-dev), the Node.js addon (npm packages from the registry), the metrics and alert rules
# (installs prometheus for promtool), the Redis store against a real redis-server (installs it
# when missing), serve under attack, and a wrk load test against the demo server (installs wrk
# when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "layers: each folder of src/ imports only the layers below it"
bash ci/layers.sh

step "cargo test (all targets, release: the property tests run many cases)"
# The browser test is ignored here (cargo lists it as ignored): it runs once, below, after
# Chromium is installed.
cargo test --release --workspace --all-targets

step "doctests (crate docs and README)"
cargo test --release --workspace --doc

step "loom models"
bash ci/loom.sh

step "C ABI: header current, C/C++ tests on .so, .a and pkg-config, valgrind"
bash ci/c-abi.sh

step "Python bindings: pytest (FastAPI under uvicorn, Flask, threads, restart)"
bash ci/python.sh

if [ -x ci/cors-browser.sh ] || [ -f ci/cors-browser.sh ]; then
  step "CORS in a real browser"
  bash ci/cors-browser.sh
fi

step "nginx: the dynamic module in a real nginx with 4 workers (installs nginx, nginx-dev)"
bash ci/nginx.sh

step "Node.js: the N-API addon, Express and Fastify middleware, cluster (npm test)"
bash ci/node.sh

step "metrics: promtool and prometheus_client parse the exposition; alert rules and their tests"
bash ci/metrics.sh

step "serve under attack: slowloris, pipeliners, a 100 MiB header, smuggling, fd exhaustion"
bash ci/serve-abuse.sh

step "Redis store: model, two hosts, faults, bad input (installs redis-server when missing)"
bash ci/redis.sh

step "load: wrk against the demo server"
bash ci/load.sh

echo
echo "all checks passed"
