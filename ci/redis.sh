#!/usr/bin/env bash
# The Redis store against a real redis-server (Debian's package, installed when missing):
# starts one on a free port of 127.0.0.1 with no persistence in a temporary folder, exports
# PORTCULLIS_REDIS_URL, runs the Redis tests (built with the feature redis-server-tests; a plain
# `cargo test` does not build them), then the TLS test with the feature redis-tls, and stops
# the server on exit.
# Tests that kill, pause or reconfigure Redis start their own servers from the same binary
# (PORTCULLIS_REDIS_SERVER).
set -euo pipefail
cd "$(dirname "$0")/.."

. ci/redis-server.sh
if ! command -v openssl >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openssl >/dev/null
fi

dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$PORTCULLIS_REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$dir" --daemonize no >"$dir/redis.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 200); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.05
done
export PORTCULLIS_REDIS_URL="redis://127.0.0.1:$port/0"
echo "redis-server $("$PORTCULLIS_REDIS_SERVER" --version | sed 's/.*v=\([^ ]*\).*/\1/') at $PORTCULLIS_REDIS_URL"

# The tests behind the feature are linted like the rest.
cargo clippy -p portcullis --all-targets --features redis-server-tests,redis-tls -- -D warnings
cargo test --release -p portcullis --features redis-server-tests \
  --test redis_model --test redis_hosts --test redis_faults --test redis_open --test redis_cluster
# rediss:// with the TLS feature (a private CA made with openssl, a TLS-only server).
cargo test --release -p portcullis --features redis-server-tests,redis-tls --test redis_tls
