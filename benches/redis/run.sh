#!/usr/bin/env bash
# The Redis benchmark in one run: one loopback redis-server (installed when missing), then
# portcullis's criterion bench, the `limits` package's Redis storage (Python) and
# rate-limiter-flexible's RateLimiterRedis (Node) doing the same fixed-window check on 10,000
# keys from 1, 8 and 64 threads (calls in flight, for Node), and the same from Node through
# portcullis's addon (checkAsync on libuv's pool). Results go to stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
venv=target/redis-bench-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q "limits[redis]==5.8.0"
(cd benches/redis && npm install --no-audit --no-fund --silent)
cargo build --release -p portcullis --lib
[ -d bindings/node/node_modules ] || (cd bindings/node && npm ci --no-audit --no-fund --loglevel=error)

dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
url="redis://127.0.0.1:$port/0"
echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on $url, $(nproc) cores"

PORTCULLIS_REDIS_URL="$url" cargo bench -p portcullis-benches --bench redis
"$venv/bin/python" benches/redis/limits_driver.py "$url"
node benches/redis/flexible_driver.js "$url"
node benches/redis/addon_driver.js "$url"
UV_THREADPOOL_SIZE=16 node benches/redis/addon_driver.js "$url"
