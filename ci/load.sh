#!/usr/bin/env bash
# A bounded load test of `portcullis serve`, on a fresh Debian machine: installs wrk when
# missing, starts the demo server on a free loopback port with a fresh store, runs wrk for a
# few seconds over four API keys on a rate-limited route, then checks that every response was
# 2xx or 429, that the limit was reached, and that no key was allowed more than its policy can
# allow over the server's uptime.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${LOAD_DURATION:-5s}"
THREADS="${LOAD_THREADS:-2}"
CONNECTIONS="${LOAD_CONNECTIONS:-8}"
CONFIG="examples/portcullis.toml"
ROUTE="/api/v1/things"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nload test FAILED: %s\n' "$*" >&2; exit 1; }

step "wrk"
if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk
fi
command -v wrk >/dev/null 2>&1 || fail "wrk is not installed"
command -v python3 >/dev/null 2>&1 || fail "python3 is not installed"

step "cargo build --release --bin portcullis"
cargo build --release --bin portcullis
BIN="${CARGO_TARGET_DIR:-target}/release/portcullis"
[ -x "$BIN" ] || fail "no binary at $BIN"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "portcullis serve (127.0.0.1, port 0, fresh store)"
export PORTCULLIS_ADMIN_TOKEN="load-test-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
"$BIN" serve --config "$CONFIG" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data "$WORK/data" \
  >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
ADDR=""
ADMIN=""
for _ in $(seq 100); do
  ADDR="$(sed -n 's|^portcullis: listening on http://\(127\.0\.0\.1:[0-9]*\)$|\1|p' "$WORK/server.out" | head -n1)"
  ADMIN="$(sed -n 's|^portcullis: admin API on http://\(127\.0\.0\.1:[0-9]*\)$|\1|p' "$WORK/server.out" | head -n1)"
  [ -n "$ADDR" ] && [ -n "$ADMIN" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$ADDR" ]; then
  cat "$WORK/server.out" "$WORK/server.err" >&2 || true
  fail "the server did not print its address"
fi
echo "listening on $ADDR"

# Four API keys, round robin per thread; statuses counted per thread, summed in `done`.
cat >"$WORK/load.lua" <<EOF
local keys = { "load-a", "load-b", "load-c", "load-d" }
local threads = {}
local n = 0
statuses = {}

function setup(thread)
  table.insert(threads, thread)
end

function request()
  n = n + 1
  local key = keys[(n % #keys) + 1]
  return wrk.format("GET", "$ROUTE", { ["Authorization"] = "Bearer " .. key })
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    for code, count in pairs(s) do
      total[code] = (total[code] or 0) + count
    end
  end
  for code, count in pairs(total) do
    io.write(string.format("status %d %d\n", code, count))
  end
end
EOF

step "wrk -t$THREADS -c$CONNECTIONS -d$DURATION http://$ADDR$ROUTE (4 keys)"
timeout 60 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$WORK/load.lua" \
  "http://$ADDR$ROUTE" | tee "$WORK/wrk.out" || fail "wrk failed"

step "checks"
STATS_URL="http://$ADMIN/_portcullis/stats" python3 - "$WORK/wrk.out" <<'PY'
import json, math, os, re, sys, urllib.request

def fail(msg):
    print(f"load test FAILED: {msg}", file=sys.stderr)
    sys.exit(1)

statuses = {}
with open(sys.argv[1]) as f:
    for line in f:
        m = re.match(r"^status (\d+) (\d+)$", line.strip())
        if m:
            statuses[int(m.group(1))] = statuses.get(int(m.group(1)), 0) + int(m.group(2))
total = sum(statuses.values())
if total == 0:
    fail("wrk counted no responses")
ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
limited = statuses.get(429, 0)
other = {s: n for s, n in statuses.items() if not (200 <= s < 300 or s == 429)}
if other:
    fail(f"statuses other than 2xx and 429: {other}")
if limited == 0:
    fail(f"no 429 in {total} responses: the test never reached a limit")

stats_request = urllib.request.Request(
    os.environ["STATS_URL"],
    headers={"Authorization": "Bearer " + os.environ["PORTCULLIS_ADMIN_TOKEN"]},
)
with urllib.request.urlopen(stats_request, timeout=10) as r:
    stats = json.load(r)
uptime_ms = stats["uptime_ms"]
policies = {p["name"]: p for p in stats["gate"]["policies"]}
rows = stats["allowed_by_key"]
if not rows:
    fail("the stats endpoint lists no allowed keys")
over = []
lines = []
for row in sorted(rows, key=lambda r: (r["policy"], r["key"])):
    p = policies.get(row["policy"])
    if p is None:
        fail(f"policy {row['policy']!r} of key {row['key']!r} is not in the stats")
    if p["algorithm"] == "concurrency":
        lines.append(f"  {row['policy']:<12} {row['key']:<22} allowed {row['allowed']:>6} (concurrency: not a rate)")
        continue
    bound = math.ceil(p["burst"] + p["count"] * uptime_ms / p["window_ms"]) + 1
    if p["algorithm"] == "fixed_window":
        bound += p["count"]  # a window boundary may fall inside the run
    lines.append(f"  {row['policy']:<12} {row['key']:<22} allowed {row['allowed']:>6} <= {bound}")
    if row["allowed"] > bound:
        over.append(f"{row['policy']}/{row['key']}: allowed {row['allowed']}, at most {bound} "
                    f"(burst {p['burst']} + {p['count']} per {p['window_ms']} ms over {uptime_ms} ms, +1)")

print("\nload test summary")
print(f"  responses {total}: 2xx {ok}, 429 {limited}")
print(f"  server uptime {uptime_ms} ms")
print("\n".join(lines))
if over:
    fail("keys allowed more than their quota:\n  " + "\n  ".join(over))
print("load test passed")
PY
