#!/usr/bin/env bash
# Throughput and p99 of one nginx worker serving a small static file, in the same run:
#   plain      nginx alone
#   limit_req  + limit_req (zone keyed by $binary_remote_addr, a rate too high to deny)
#   portcullis + this module (one GCRA policy keyed by ip, CORS on, the shared store)
# wrk on loopback, one connection pool per variant, the variants alternated over ROUNDS rounds;
# prints the median requests/s and p99 of each and the module's ratio to limit_req.
#
# Each round runs the three back to back, so the ratio of each round compares runs made under the
# same load of the machine; the median of those ratios is printed too. On a machine shared with
# other work, requests/s move with everything else that runs; the worker's CPU time per request
# (from /proc, all its threads) moves much less, and is printed beside them.
#
# Environment: DURATION (s per run, default 8), ROUNDS (default 5), CONNECTIONS (default 32).
# The worker is pinned to CPU 0 and wrk to CPU 1 when the machine has two or more.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
DURATION="${DURATION:-8}"
ROUNDS="${ROUNDS:-5}"
CONNECTIONS="${CONNECTIONS:-32}"

command -v wrk >/dev/null || {
  echo "bench: installing wrk (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2
}
module="$(bash "$here/build.sh" | tail -n 1)"

T="$(mktemp -d /tmp/portcullis-nginx-bench.XXXXXX)"
chmod 755 "$T"
SHM="/dev/shm/portcullis-nginx-bench-$$"
cleanup() {
  set +e
  [ -f "$T/logs/nginx.pid" ] && kill -QUIT "$(cat "$T/logs/nginx.pid")" 2>/dev/null && sleep 0.5
  rm -rf "$T" "$SHM"
}
trap cleanup EXIT

read -r P_PLAIN P_REQ P_GATE < <(python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

pin_nginx="" pin_wrk=""
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  pin_nginx="worker_cpu_affinity 01;"
  pin_wrk="taskset -c 1"
fi

mkdir -p "$T/conf" "$T/logs" "$T/tmp" "$T/html"
echo "hello from nginx" >"$T/html/index.html"
cat >"$T/conf/portcullis.toml" <<EOF
[store]
kind = "shared"
path = "$SHM"

[[policy]]
name = "ip"
limit = "1000000/s"
burst = 1000000

[[route]]
match = "/"
limits = [{ policy = "ip", key = "ip" }]

[cors]
allowed_origins = ["https://app.example"]
allowed_methods = ["PUT"]
EOF
cat >"$T/conf/nginx.conf" <<EOF
load_module $module;
worker_processes 1;
$pin_nginx
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    open_file_cache max=16;
    client_body_temp_path $T/tmp/body;
    proxy_temp_path $T/tmp/proxy;
    fastcgi_temp_path $T/tmp/fastcgi;
    uwsgi_temp_path $T/tmp/uwsgi;
    scgi_temp_path $T/tmp/scgi;
    root html;

    limit_req_zone \$binary_remote_addr zone=bench:10m rate=100000000r/s;
    portcullis_config portcullis.toml;

    server { listen 127.0.0.1:$P_PLAIN; }
    server { listen 127.0.0.1:$P_REQ; limit_req zone=bench burst=1000000 nodelay; }
    server { listen 127.0.0.1:$P_GATE; portcullis on; }
}
EOF
/usr/sbin/nginx -p "$T" -c conf/nginx.conf
sleep 0.5
for p in $P_PLAIN $P_REQ $P_GATE; do
  curl -sf -o /dev/null -H 'Origin: https://app.example' "http://127.0.0.1:$p/" || {
    echo "bench: port $p does not answer" >&2
    exit 1
  }
done
echo "check: $(curl -s -D - -o /dev/null -H 'Origin: https://app.example' "http://127.0.0.1:$P_GATE/" |
  tr -d '\r' | grep -ci -E '^(x-ratelimit|access-control-allow-origin)') portcullis headers on a response" >&2

worker="$(ps --ppid "$(cat "$T/logs/nginx.pid")" -o pid= | head -n 1 | tr -d ' ')"
cpu_ns() { # the worker's CPU time so far, all threads, in ns
  cat /proc/"$worker"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f", s }'
}

run() { # name port round
  local out rps p99 before after n
  before="$(cpu_ns)"
  out="$($pin_wrk wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
    -H 'Origin: https://app.example' "http://127.0.0.1:$2/")"
  after="$(cpu_ns)"
  if grep -q -E 'Non-2xx|Socket errors' <<<"$out"; then
    echo "bench: $1 had errors:" >&2
    echo "$out" >&2
    exit 1
  fi
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p99="$(awk '$1 == "99%" {v=$2; u=v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v);
    if (u == "us") v /= 1000; else if (u == "s") v *= 1000; printf "%.3f", v}' <<<"$out")"
  n="$(awk '/requests in/ {print $1}' <<<"$out")"
  cpu="$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN { printf "%.3f", (a - b) / n / 1000 }')"
  echo "$1 $rps $p99 $3 $cpu" >>"$T/results"
  printf '  round %s  %-10s %10.0f req/s  p99 %7s ms  worker CPU %6s us/request\n' \
    "$3" "$1" "$rps" "$p99" "$cpu" >&2
}

echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds, $(/usr/sbin/nginx -v 2>&1 | sed 's/.*: //')" >&2
# Warm-up.
$pin_wrk wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$P_GATE/" >/dev/null
for r in $(seq "$ROUNDS"); do
  case $((r % 3)) in
    1) order="plain limit_req portcullis" ;;
    2) order="limit_req portcullis plain" ;;
    0) order="portcullis plain limit_req" ;;
  esac
  for v in $order; do
    case $v in
      plain) run plain "$P_PLAIN" "$r" ;;
      limit_req) run limit_req "$P_REQ" "$r" ;;
      portcullis) run portcullis "$P_GATE" "$r" ;;
    esac
  done
done

python3 - "$T/results" <<'EOF'
import statistics
import sys

rows = {}
rounds = {}
cpu = {}
for line in open(sys.argv[1]):
    name, rps, p99, rnd, us = line.split()
    rows.setdefault(name, []).append((float(rps), float(p99)))
    rounds.setdefault(rnd, {})[name] = float(rps)
    cpu.setdefault(name, []).append(float(us))
med = {n: (statistics.median(r for r, _ in v), statistics.median(p for _, p in v)) for n, v in rows.items()}
print()
print(f"{'variant':<12}{'req/s (median)':>16}{'p99 ms (median)':>18}{'worker CPU us/req (median)':>28}")
for n in ("plain", "limit_req", "portcullis"):
    print(f"{n:<12}{med[n][0]:>16.0f}{med[n][1]:>18.3f}{statistics.median(cpu[n]):>28.3f}")
ratio = med["portcullis"][0] / med["limit_req"][0]
paired = statistics.median(r["portcullis"] / r["limit_req"] for r in rounds.values())
per_round = " ".join(f"{r['portcullis'] / r['limit_req']:.3f}" for r in rounds.values())
print(f"portcullis / limit_req throughput: {ratio:.3f} of the medians, {paired:.3f} median of the rounds ({per_round})")
capacity = statistics.median(cpu["limit_req"]) / statistics.median(cpu["portcullis"])
print(f"portcullis / limit_req requests per worker CPU second: {capacity:.3f}")
print(f"goal >= 0.9 (throughput): {'met' if min(ratio, paired) >= 0.9 else 'NOT met'}")
EOF
