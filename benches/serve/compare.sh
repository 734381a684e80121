#!/usr/bin/env bash
# `portcullis serve` with the demo config under wrk, two builds in alternating rounds of the
# same run: requests/s and p99 latency of each.
#
#   benches/serve/compare.sh OLD_BIN NEW_BIN [ROUNDS] [DURATION]
#
# OLD_CONFIG names the old build's demo config when this checkout's has keys it does not know.
# Build the old binary from another checkout (`git worktree add ../old <commit>` and
# `cargo build --release -p portcullis-cli` there). wrk is Debian's.
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD="$1"; NEW="$2"; ROUNDS="${3:-3}"; DURATION="${4:-5s}"
OLD_CONFIG="${OLD_CONFIG:-examples/portcullis.toml}"
WORK="$(mktemp -d)"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
cat >"$WORK/keys.lua" <<'LUA'
local keys = { "bench-a", "bench-b", "bench-c", "bench-d" }
local n = 0
function request()
  n = n + 1
  return wrk.format("GET", "/api/v1/things", { ["Authorization"] = "Bearer " .. keys[(n % #keys) + 1] })
end
LUA
run() { # BIN LABEL ROUND CONFIG
  rm -rf "$WORK/data"
  "$1" serve --config "$4" --listen 127.0.0.1:0 --data "$WORK/data" >"$WORK/out.$2.$3" 2>&1 &
  PID=$!
  local addr=""
  for _ in $(seq 100); do
    addr="$(sed -n 's|^portcullis: listening on http://||p' "$WORK/out.$2.$3" | head -n1)"
    [ -n "$addr" ] && break
    sleep 0.1
  done
  if ! wrk -t1 -c32 -d"$DURATION" --latency -s "$WORK/keys.lua" "http://$addr/api/v1/things" >"$WORK/wrk"; then cat "$WORK/out.$2.$3" >&2; exit 1; fi
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  local rps p99
  rps="$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk")"
  p99="$(awk '$1 == "99%" {print $2}' "$WORK/wrk")"
  echo "$2 round $3: $rps req/s, p99 $p99"
}
for r in $(seq "$ROUNDS"); do
  run "$OLD" before "$r" "$OLD_CONFIG"
  run "$NEW" after "$r" examples/portcullis.toml
done
