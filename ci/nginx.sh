#!/usr/bin/env bash
# The nginx module (bindings/nginx) in Debian's nginx: builds it (bindings/nginx/build.sh), then
# runs nginx with 4 workers on 127.0.0.1 (free ports, a prefix in a temporary folder, the shared
# store in /dev/shm) in front of an nginx upstream and a slow python3 one, and checks with curl:
# one quota across the workers, host-wide metrics from any worker (portcullis_metrics),
# preflights, 429s with CORS headers, headers on proxied 2xx/4xx/5xx and static responses, a concurrency limit with aborted clients, shaping on a timer, reload and
# kill -9 keeping the counters, config errors at `nginx -t`, hostile input, the Redis store on
# nginx's thread pool (two nginx hosts on one redis-server), a short wrk load, and a run under
# valgrind. Standalone and idempotent; run as root on Debian 12 (installs nginx,
# nginx-dev, curl, wrk, python3, valgrind, procps and redis-server when missing). Prints "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

missing=()
[ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -f /usr/share/nginx/src/conf_flags ] || missing+=(nginx-dev)
command -v curl >/dev/null || missing+=(curl)
command -v wrk >/dev/null || missing+=(wrk)
command -v python3 >/dev/null || missing+=(python3)
command -v valgrind >/dev/null || missing+=(valgrind)
command -v ps >/dev/null || missing+=(procps)
if [ ${#missing[@]} -gt 0 ]; then
  echo "nginx: installing ${missing[*]} (apt-get)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

step "build the module"
module="$(bash bindings/nginx/build.sh | tail -n 1)"
echo "module: $module"
[ -f "$module" ]

T="$(mktemp -d /tmp/portcullis-nginx.XXXXXX)"
chmod 755 "$T" # the workers run as nobody and serve $T/html
SHM="/dev/shm/portcullis-nginx-ci-$$"
NGINX=/usr/sbin/nginx
pids_to_kill=()

stop_nginx() { # prefix
  local pidfile="$1/logs/nginx.pid" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  [ -n "$pid" ] || return 0
  kill -QUIT "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
  kill -TERM "$pid" 2>/dev/null || true
}

cleanup() {
  set +e
  for prefix in "$T/main" "$T/one" "$T/ra" "$T/rb"; do stop_nginx "$prefix"; done
  for pid in "${pids_to_kill[@]}"; do kill "$pid" 2>/dev/null; done
  rm -rf "$T" "$SHM"
}
trap cleanup EXIT

read -r PORT UP SLOW ONE VG H2 < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
)
ORIGIN="https://app.example"
M="http://127.0.0.1:$PORT"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "  ok: $*"; }
ko() { failed=$((failed + 1)); echo "  FAILED: $*"; }
expect() { # description, command...
  local what="$1"
  shift
  if "$@"; then ok "$what"; else ko "$what"; fi
}

# ---------------------------------------------------------------------------------------------
# Configuration

write_toml() { # extra TOML appended
  cat >"$T/main/conf/portcullis.toml" <<EOF
header_style = "both"

[store]
kind = "shared"
path = "$SHM"
capacity = 4096

[[policy]]
name = "quota"
limit = "20/m"
burst = 20

[[policy]]
name = "hold"
limit = "20/h"
burst = 20

[[policy]]
name = "api"
limit = "50/m"
burst = 50

[[policy]]
name = "conc"
algorithm = "concurrency"
limit = 2
lease_timeout = "30s"

[[policy]]
name = "shape"
algorithm = "leaky_bucket"
limit = "5/s"
burst = 1
max_delay = "3s"

[[policy]]
name = "pair"
limit = "2/h"
burst = 2

[[policy]]
name = "free"
limit = "10/h"
burst = 10

[[policy]]
name = "pro"
limit = "1000/h"
burst = 1000

[[policy]]
name = "site"
limit = "1000000/s"
burst = 1000000

[[route]]
match = "/quota/"
limits = [{ policy = "quota", key = "principal" }]

[[route]]
match = "/hold/"
limits = [{ policy = "hold", key = "principal" }]

[[route]]
match = "/api/"
limits = [{ policy = "api", key = "principal" }]

[[route]]
match = "/slow/"
limits = [{ policy = "conc", key = "global" }]

[[route]]
match = "/realip/"
limits = [{ policy = "pair", key = "ip" }]

[[route]]
match = "/tier/"
limits = [{ tiers = { free = "free", pro = "pro" }, default_tier = "free", key = "principal" }]

[[route]]
match = "/shape/"
limits = [{ policy = "shape", key = "principal" }]
$1
[[route]]
match = "/"
limits = [{ policy = "site", key = "ip" }]

[cors]
allowed_origins = ["$ORIGIN"]
allowed_methods = ["PUT", "DELETE"]
allowed_headers = ["Content-Type", "X-Api-Key"]
allow_credentials = true
max_age = "10m"
EOF
}

http_common() { # prefix
  cat <<EOF
    log_format portcullis '\$remote_addr "\$request" \$status \$portcullis_status '
                          '\$portcullis_policy \$portcullis_remaining "\$portcullis_reason" '
                          '\$request_time';
    access_log logs/access.log portcullis;
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi;
    scgi_temp_path $1/tmp/scgi;
EOF
}

gate_server() { # listen address, another listen (optional)
  cat <<EOF
    server {
        listen $1;
        ${2:+listen $2;}
        portcullis on;
        portcullis_principal \$http_x_api_key;
        add_header X-Worker \$pid always;

        location / {
            proxy_pass http://127.0.0.1:$UP;
        }
        location /slow/ {
            proxy_pass http://127.0.0.1:$SLOW;
            proxy_read_timeout 30s;
        }
        location /static/ {
            root html;
        }
        location = /metrics {
            portcullis_metrics;
        }
        location /off/ {
            portcullis off;
            proxy_pass http://127.0.0.1:$UP;
        }
        location /hold/custom/ {
            portcullis_status_code 503;
            proxy_pass http://127.0.0.1:$UP;
        }
        location /realip/ {
            # realip in a location runs in preaccess too: the gate must come after it.
            set_real_ip_from 127.0.0.1;
            real_ip_header X-Real-IP;
            proxy_pass http://127.0.0.1:$UP;
        }
        location /hold/ep/ {
            error_page 429 = @limited;
            proxy_pass http://127.0.0.1:$UP;
        }
        location @limited {
            return 429 "slow down\n";
        }
        location /tier/ {
            portcullis_tier \$http_x_tier;
            proxy_pass http://127.0.0.1:$UP;
        }
    }
EOF
}

mkdir -p "$T/main/conf" "$T/main/logs" "$T/main/tmp" "$T/main/html/static"
echo "static file" >"$T/main/html/static/file.txt"
write_toml ""
cat >"$T/main/conf/nginx.conf" <<EOF
load_module $module;
worker_processes 4;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
$(http_common "$T/main")
    portcullis_config portcullis.toml;

    # The upstream: its own CORS and Vary headers, and 2xx, 4xx and 5xx answers.
    server {
        listen 127.0.0.1:$UP;
        access_log logs/upstream.log portcullis;
        location / {
            add_header Access-Control-Allow-Origin "*";
            add_header Vary "Accept-Encoding";
            return 200 "upstream\n";
        }
        location /api/missing { return 404 "missing\n"; }
        location /api/broken { return 500 "broken\n"; }
    }

$(gate_server "127.0.0.1:$PORT reuseport" "127.0.0.1:$H2 http2")
}
EOF

workers() { # prefix: the worker pids
  local master
  master="$(cat "$1/logs/nginx.pid" 2>/dev/null || true)"
  [ -n "$master" ] || return 0
  ps --ppid "$master" -o pid= -o args= | awk '/worker process/ && !/shutting down/ {print $1}' | sort
}

wait_workers() { # prefix, count, pids that must be gone
  local prefix="$1" n="$2" gone="${3:-}"
  for _ in $(seq 200); do
    local now
    now="$(workers "$prefix")"
    if [ "$(echo "$now" | grep -c .)" -eq "$n" ]; then
      local stale=0
      for p in $gone; do
        if echo "$now" | grep -qx "$p" || kill -0 "$p" 2>/dev/null; then stale=1; fi
      done
      [ $stale -eq 0 ] && return 0
    fi
    sleep 0.05
  done
  return 1
}

code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
header() { # name, curl args...: the header's value (last one), without CR
  local name="$1"
  shift
  curl -s -D - -o /dev/null "$@" | tr -d '\r' | awk -v n="$(echo "$name" | tr '[:upper:]' '[:lower:]')" \
    'BEGIN{FS=": "} tolower($1)==n {v=substr($0, length($1)+3)} END{print v}'
}
count_header() { # name, curl args...: how many times it appears
  local name="$1"
  shift
  curl -s -D - -o /dev/null "$@" | tr -d '\r' | grep -ci "^$name:" || true
}

# Runs N requests at once, each on its own connection (reuseport spreads them over the
# workers); prints "code retry-after worker" per request.
burst() { # n, url, curl args...
  local n="$1" url="$2"
  shift 2
  local cfg="$T/burst.cfg"
  : >"$cfg"
  for _ in $(seq "$n"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url" >>"$cfg"; done
  curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max 25 -K "$cfg" \
    -H 'Connection: close' "$@" \
    -w '%{http_code} %header{retry-after} %header{x-worker}\n'
}

# Spends a key's 20/h quota: 21 requests at once, then single ones until one is refused; prints
# how many were allowed. Workers' clocks may differ by a tick, so the last unit of a burst can be
# refused for a few milliseconds and allowed right after: it still counts once.
spend() { # url, key
  burst 21 "$1" -H "X-Api-Key: $2" >"$T/spend.out"
  local allowed c
  allowed="$(grep -c '^200 ' "$T/spend.out" || true)"
  for _ in 1 2 3 4 5; do
    c="$(code -H "X-Api-Key: $2" "$1")"
    if [ "$c" = 200 ]; then allowed=$((allowed + 1)); elif [ "$allowed" -ge 20 ]; then break; fi
    sleep 0.01
  done
  echo "$allowed"
}

summary() { # burst output: "N x CODE" per status code
  awk '{ n[$1]++ } END { for (c in n) printf "%s x %s  ", n[c], c }' "$1"
}

# ---------------------------------------------------------------------------------------------
step "start: nginx -t, 4 workers, the slow upstream"

expect "nginx -t accepts the config" $NGINX -p "$T/main" -c conf/nginx.conf -t -q
python3 bindings/nginx/t/slow_upstream.py "$SLOW" &
pids_to_kill+=($!)
$NGINX -p "$T/main" -c conf/nginx.conf
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$SLOW/stats" && curl -s -o /dev/null "$M/off/" && break
  sleep 0.05
done
expect "4 workers" wait_workers "$T/main" 4

# ---------------------------------------------------------------------------------------------
step "one quota across 4 workers: 100 requests against 20/minute"

start=$(date +%s%N)
burst 100 "$M/quota/one" -H 'X-Api-Key: quota-1' >"$T/quota.out"
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
allowed=$(grep -c '^200 ' "$T/quota.out" || true)
limited=$(grep -c '^429 ' "$T/quota.out" || true)
with_retry=$(grep -cE '^429 [0-9]+ ' "$T/quota.out" || true)
served_by=$(awk '{print $NF}' "$T/quota.out" | sort -u | grep -c . || true)
echo "  $allowed allowed, $limited limited, $with_retry with Retry-After, $served_by workers answered, in $elapsed_ms ms"
expect "exactly 20 allowed" [ "$allowed" -eq 20 ]
expect "80 answered 429" [ "$limited" -eq 80 ]
expect "every 429 has Retry-After" [ "$with_retry" -eq 80 ]
expect "more than one worker answered" [ "$served_by" -gt 1 ]

# ---------------------------------------------------------------------------------------------
step "metrics: a scrape answered by any worker reports the 4 workers' decisions"

metric() { # exposition file, series: its value
  awk -v s="$2" '$1 == s { print $2 }' "$1"
}
quota_counts() { # exposition file: "allowed limited" of the quota policy
  echo "$(metric "$1" 'portcullis_decisions_total{policy="quota",outcome="allowed"}')" \
    "$(metric "$1" 'portcullis_decisions_total{policy="quota",outcome="limited"}')"
}
# Each worker publishes its counters every second: wait for that (a deadline, not a guess),
# then every scrape, whichever worker answers it, must show exactly the burst's decisions.
counts=""
for _ in $(seq 100); do
  curl -s -o "$T/metrics.txt" "$M/metrics"
  counts="$(quota_counts "$T/metrics.txt")"
  [ "$counts" = "20 80" ] && break
  sleep 0.05
done
expect "a scrape counts the burst: 20 allowed, 80 limited (got: $counts)" [ "$counts" = "20 80" ]
: >"$T/scrapes.txt"
for i in $(seq 12); do
  curl -s -H 'Connection: close' -D "$T/scrape-$i.hdr" -o "$T/scrape-$i.txt" "$M/metrics"
  echo "$(tr -d '\r' <"$T/scrape-$i.hdr" | awk -F': ' 'tolower($1) == "x-worker" { print $2 }')" \
    "$(quota_counts "$T/scrape-$i.txt")" \
    "$(metric "$T/scrape-$i.txt" portcullis_metrics_processes)" >>"$T/scrapes.txt"
done
echo "  worker, allowed, limited, processes per scrape: $(sort -u "$T/scrapes.txt" | tr '\n' ';')"
expect "12 scrapes from more than one worker" [ "$(awk '{ print $1 }' "$T/scrapes.txt" | sort -u | grep -c .)" -gt 1 ]
expect "every scrape: 20 allowed, 80 limited, 4 processes" \
  [ "$(awk '$2 != 20 || $3 != 80 || $4 != 4' "$T/scrapes.txt" | grep -c .)" -eq 0 ]
expect "metrics: Content-Type of the text format 0.0.4" \
  [ "$(header Content-Type "$M/metrics")" = "text/plain; version=0.0.4; charset=utf-8" ]
expect "metrics: host-wide" [ "$(metric "$T/metrics.txt" portcullis_metrics_host_wide)" = 1 ]
expect "metrics: no client key in a label" [ "$(grep -c 'quota-1\|127.0.0.1' "$T/metrics.txt" || true)" -eq 0 ]
if command -v promtool >/dev/null; then
  expect "metrics: promtool check metrics" sh -c "promtool check metrics <'$T/metrics.txt'"
fi

# ---------------------------------------------------------------------------------------------
step "CORS: preflight answered 204 and never charged; a 429 keeps the CORS headers"

pf=(-X OPTIONS -H "Origin: $ORIGIN" -H 'Access-Control-Request-Method: PUT' -H 'X-Api-Key: pf')
expect "preflight: 204" [ "$(code "${pf[@]}" "$M/api/things")" = 204 ]
expect "preflight: Access-Control-Allow-Origin" \
  [ "$(header Access-Control-Allow-Origin "${pf[@]}" "$M/api/things")" = "$ORIGIN" ]
expect "preflight: Access-Control-Allow-Methods" \
  [ "$(header Access-Control-Allow-Methods "${pf[@]}" "$M/api/things")" = "PUT" ]
before=$(header X-RateLimit-Remaining -H 'X-Api-Key: pf' "$M/api/things")
for _ in 1 2 3 4 5; do code "${pf[@]}" "$M/api/things" >/dev/null; done
after=$(header X-RateLimit-Remaining -H 'X-Api-Key: pf' "$M/api/things")
expect "preflights uncharged (remaining $before, then $after after 5 preflights)" \
  [ "$after" -eq $((before - 1)) ]
expect "preflights never reach the upstream" [ "$(grep -c '"OPTIONS ' "$T/main/logs/upstream.log" || true)" -eq 0 ]
expect "preflight from a refused origin: 403" \
  [ "$(code -X OPTIONS -H 'Origin: https://evil.example' -H 'Access-Control-Request-Method: PUT' "$M/api/things")" = 403 ]

q=(-H 'X-Api-Key: quota-1' -H "Origin: $ORIGIN")
expect "429 once the quota is spent" [ "$(code "${q[@]}" "$M/quota/one")" = 429 ]
expect "429: Access-Control-Allow-Origin" [ "$(header Access-Control-Allow-Origin "${q[@]}" "$M/quota/one")" = "$ORIGIN" ]
expect "429: Access-Control-Expose-Headers" \
  [ -n "$(header Access-Control-Expose-Headers "${q[@]}" "$M/quota/one")" ]
expect "429: Retry-After" [ -n "$(header Retry-After "${q[@]}" "$M/quota/one")" ]
expect "429: X-RateLimit-Remaining 0" [ "$(header X-RateLimit-Remaining "${q[@]}" "$M/quota/one")" = 0 ]
expect "429: RateLimit" [ -n "$(header RateLimit "${q[@]}" "$M/quota/one")" ]
expect "429: Vary Origin" [ "$(header Vary "${q[@]}" "$M/quota/one")" = Origin ]
expect "429s never reach the upstream" [ "$(grep -c 'GET /quota/' "$T/main/logs/upstream.log" || true)" -eq 20 ]

# ---------------------------------------------------------------------------------------------
step "headers on proxied 2xx, 4xx, 5xx and static responses"

a=(-H 'X-Api-Key: hdr' -H "Origin: $ORIGIN")
expect "proxied 200" [ "$(code "${a[@]}" "$M/api/ok")" = 200 ]
expect "proxied 200: X-RateLimit-Limit 50" [ "$(header X-RateLimit-Limit "${a[@]}" "$M/api/ok")" = 50 ]
expect "proxied 200: the upstream's Access-Control-Allow-Origin replaced" \
  [ "$(header Access-Control-Allow-Origin "${a[@]}" "$M/api/ok")" = "$ORIGIN" ]
expect "proxied 200: one Access-Control-Allow-Origin" \
  [ "$(count_header Access-Control-Allow-Origin "${a[@]}" "$M/api/ok")" -eq 1 ]
expect "proxied 200: Vary merged into one header" \
  [ "$(header Vary "${a[@]}" "$M/api/ok")" = "Accept-Encoding, Origin" ]
expect "proxied 200: one Vary" [ "$(count_header Vary "${a[@]}" "$M/api/ok")" -eq 1 ]
expect "proxied 404" [ "$(code "${a[@]}" "$M/api/missing")" = 404 ]
expect "proxied 404: X-RateLimit-Remaining" [ -n "$(header X-RateLimit-Remaining "${a[@]}" "$M/api/missing")" ]
expect "proxied 404: Access-Control-Allow-Origin" \
  [ "$(header Access-Control-Allow-Origin "${a[@]}" "$M/api/missing")" = "$ORIGIN" ]
expect "proxied 500: RateLimit-Policy" [ -n "$(header RateLimit-Policy "${a[@]}" "$M/api/broken")" ]
expect "static file: 200 with X-RateLimit-Limit" \
  [ "$(header X-RateLimit-Limit "${a[@]}" "$M/static/file.txt")" = 1000000 ]
expect "nginx's own 404: headers too" \
  [ -n "$(header X-RateLimit-Limit "${a[@]}" "$M/static/nothing.txt")" ]
expect "portcullis off: no headers" [ -z "$(header X-RateLimit-Limit "${a[@]}" "$M/off/")" ]
expect "custom-1 spent its quota" [ "$(spend "$M/hold/custom/x" custom-1)" -eq 20 ]
expect "portcullis_status_code 503" [ "$(code -H 'X-Api-Key: custom-1' "$M/hold/custom/x")" = 503 ]
expect "...with Retry-After" [ -n "$(header Retry-After -H 'X-Api-Key: custom-1' "$M/hold/custom/x")" ]
r1="$(for _ in 1 2 3; do code -H 'X-Real-IP: 198.51.100.1' "$M/realip/x"; echo; done | tr '\n' ' ')"
r2="$(code -H 'X-Real-IP: 198.51.100.2' "$M/realip/x")"
expect "realip in a location: the client address keys the limit ($r1/ $r2)" [ "$r1" = "200 200 429 " -a "$r2" = 200 ]
expect "...as the log says" grep -q 'limited by policy pair for ip:198.51.100.1' "$T/main/logs/access.log"
expect "ep-1 spent its quota" [ "$(spend "$M/hold/ep/x" ep-1)" -eq 20 ]
ep=(-H 'X-Api-Key: ep-1' -H "Origin: $ORIGIN")
expect "error_page 429 = @named: its body" [ "$(curl -s "${ep[@]}" "$M/hold/ep/x")" = "slow down" ]
expect "...with the decision's headers" \
  [ -n "$(header Retry-After "${ep[@]}" "$M/hold/ep/x")" -a "$(header Access-Control-Allow-Origin "${ep[@]}" "$M/hold/ep/x")" = "$ORIGIN" ]
h2=(--http2-prior-knowledge -H 'X-Api-Key: h2' -H "Origin: $ORIGIN")
expect "HTTP/2: a proxied 200 with the headers" \
  [ "$(header X-RateLimit-Limit "${h2[@]}" "http://127.0.0.1:$H2/api/ok")" = 50 ]
expect "HTTP/2: a preflight" [ "$(code "${h2[@]}" -X OPTIONS -H 'Access-Control-Request-Method: PUT' "http://127.0.0.1:$H2/api/ok")" = 204 ]
expect "portcullis_tier: free" [ "$(header X-RateLimit-Limit -H 'X-Api-Key: t1' -H 'X-Tier: free' "$M/tier/")" = 10 ]
expect "portcullis_tier: pro" [ "$(header X-RateLimit-Limit -H 'X-Api-Key: t2' -H 'X-Tier: pro' "$M/tier/")" = 1000 ]
expect "portcullis_tier: none, the default tier" [ "$(header X-RateLimit-Limit -H 'X-Api-Key: t3' "$M/tier/")" = 10 ]
expect "log: \$portcullis_status, \$portcullis_remaining" \
  grep -q ' 200 PASSED - 49 ' "$T/main/logs/access.log"
expect "log: \$portcullis_policy, \$portcullis_reason" \
  grep -q ' 429 REJECTED quota 0 "limited by policy quota for principal:quota-1' "$T/main/logs/access.log"
expect "log: PREFLIGHT" grep -q '"OPTIONS /api/things HTTP/1.1" 204 PREFLIGHT' "$T/main/logs/access.log"

# ---------------------------------------------------------------------------------------------
step "concurrency limit 2 in front of a slow upstream; leases back after aborted clients"

curl -s -o /dev/null "http://127.0.0.1:$SLOW/reset"
burst 6 "$M/slow/x?ms=1500" >"$T/slow.out"
expect "6 at once: 2 served" [ "$(grep -c '^200 ' "$T/slow.out" || true)" -eq 2 ]
expect "6 at once: 4 answered 429" [ "$(grep -c '^429 ' "$T/slow.out" || true)" -eq 4 ]
stats="$(curl -s "http://127.0.0.1:$SLOW/stats")"
echo "  upstream: $stats"
expect "never more than 2 in flight at the upstream" \
  python3 -c 'import json,sys; s=json.loads(sys.argv[1]); sys.exit(0 if s["max"] <= 2 and s["served"] == 2 else 1)' "$stats"

# Two clients give up (curl --max-time) while holding both leases.
burst 2 "$M/slow/x?ms=5000" --max-time 0.5 >/dev/null || true
sleep 0.3
burst 2 "$M/slow/x?ms=100" >"$T/slow2.out"
expect "leases back after 2 aborted clients: the next 2 served" [ "$(grep -c '^200 ' "$T/slow2.out" || true)" -eq 2 ]
expect "aborted requests logged 499" [ "$(grep -c '"GET /slow/x?ms=5000 HTTP/1.1" 499 PASSED' "$T/main/logs/access.log" || true)" -eq 2 ]
stats="$(curl -s "http://127.0.0.1:$SLOW/stats")"
expect "the upstream saw the aborts" \
  python3 -c 'import json,sys; s=json.loads(sys.argv[1]); sys.exit(0 if s["max"] <= 2 and s["aborted"] == 2 else 1)' "$stats"

# ---------------------------------------------------------------------------------------------
step "shaping waits on a timer: one worker keeps serving while 5 requests are delayed"

mkdir -p "$T/one/conf" "$T/one/logs" "$T/one/tmp" "$T/one/html"
cp "$T/main/conf/portcullis.toml" "$T/one/conf/"
cat >"$T/one/conf/nginx.conf" <<EOF
load_module $module;
worker_processes 1;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
$(http_common "$T/one")
    portcullis_config portcullis.toml;
$(gate_server "127.0.0.1:$ONE")
}
EOF
$NGINX -p "$T/one" -c conf/nginx.conf
wait_workers "$T/one" 1 || true
O="http://127.0.0.1:$ONE"
shaped=()
for i in 1 2 3 4 5; do
  curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H 'X-Api-Key: shape-1' "$O/shape/$i" >>"$T/shape.out" &
  shaped+=($!)
done
sleep 0.1
quick="$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -H 'X-Api-Key: quick' "$O/api/quick")"
wait "${shaped[@]}"
echo "  shaped: $(sort -k2 -n "$T/shape.out" | tr '\n' ' ')"
echo "  meanwhile: $quick"
expect "5 shaped requests served" [ "$(grep -c '^200 ' "$T/shape.out")" -eq 5 ]
expect "the last one waited about 800 ms (5/s)" \
  awk '{ if ($2 > m) m = $2 } END { exit !(m >= 0.6 && m < 2.5) }' "$T/shape.out"
expect "a request during the delays answered at once" awk '{ exit !($1 == 200 && $2 < 0.3) }' <<<"$quick"
expect "log: DELAYED" grep -q '"GET /shape/[0-9] HTTP/1.1" 200 DELAYED' "$T/one/logs/access.log"
one_pid="$(workers "$T/one")"
for s in a b c; do
  curl -s -o /dev/null --max-time 0.1 -H 'X-Api-Key: shape-2' "$O/shape/$s" || true
done
sleep 0.6
expect "clients leaving during their delay: 499" \
  [ "$(grep -c '"GET /shape/[bc] HTTP/1.1" 499 DELAYED' "$T/one/logs/access.log" || true)" -eq 2 ]
expect "...and the worker goes on" \
  [ "$(code -H 'X-Api-Key: shape-3' "$O/shape/d")" = 200 -a "$(workers "$T/one")" = "$one_pid" ]
stop_nginx "$T/one"

# ---------------------------------------------------------------------------------------------
step "reload re-reads the TOML and keeps the counters"

expect "reload-1 spent its quota" [ "$(spend "$M/hold/r" reload-1)" -eq 20 ]
old="$(workers "$T/main")"
write_toml '
[[policy]]
name = "extra"
limit = "7/m"
burst = 7

[[route]]
match = "/extra/"
limits = [{ policy = "extra", key = "principal" }]
'
$NGINX -p "$T/main" -c conf/nginx.conf -s reload
expect "4 new workers after the reload" wait_workers "$T/main" 4 "$old"
burst 8 "$M/hold/r" -H 'X-Api-Key: reload-1' >"$T/reload2.out"
echo "  after the reload: $(summary "$T/reload2.out")"
expect "after the reload: still limited on every worker" [ "$(grep -c '^429 ' "$T/reload2.out")" -eq 8 ]
expect "after the reload: the new route" [ "$(header X-RateLimit-Limit -H 'X-Api-Key: x' "$M/extra/")" = 7 ]
# The old workers' counts stay in the host's metrics; the master, which opened the new gate,
# takes no slot: 4 processes once the new workers have published (their 1 s timer).
procs=""
for _ in $(seq 100); do
  curl -s -o "$T/metrics-reload.txt" "$M/metrics"
  procs="$(metric "$T/metrics-reload.txt" portcullis_metrics_processes)"
  [ "$procs" = 4 ] && break
  sleep 0.05
done
expect "after the reload: metrics from 4 processes (got $procs)" [ "$procs" = 4 ]
held="$(metric "$T/metrics-reload.txt" 'portcullis_decisions_total{policy="hold",outcome="allowed"}')"
expect "after the reload: the old workers' allowed decisions still counted ($held >= 20)" [ "${held:-0}" -ge 20 ]

# ---------------------------------------------------------------------------------------------
step "kill -9 of a worker keeps the counters"

expect "kill-1 spent its quota" [ "$(spend "$M/hold/k" kill-1)" -eq 20 ]
# The host's metrics count those 20 once every worker has published (its 1 s timer).
hold_allowed() {
  curl -s -o "$T/metrics-kill.txt" "$M/metrics"
  metric "$T/metrics-kill.txt" 'portcullis_decisions_total{policy="hold",outcome="allowed"}'
}
want=$((${held:-0} + 20))
got=""
for _ in $(seq 100); do
  got="$(hold_allowed)"
  [ "$got" = "$want" ] && break
  sleep 0.05
done
expect "metrics before kill -9: $want allowed on hold (got $got)" [ "$got" = "$want" ]
before="$(workers "$T/main")"
victim="$(echo "$before" | head -n 1)"
kill -9 "$victim"
expect "the master respawned the worker" wait_workers "$T/main" 4 "$victim"
fresh="$(comm -13 <(echo "$before") <(workers "$T/main") | tail -n 1)"
seen=0
bad=0
for _ in $(seq 60); do
  read -r c _ w < <(curl -s -o /dev/null -H 'Connection: close' -H 'X-Api-Key: kill-1' \
    -w '%{http_code} - %header{x-worker}\n' "$M/hold/k")
  [ "$c" = 429 ] || bad=$((bad + 1))
  if [ "$w" = "$fresh" ]; then seen=1; fi
done
expect "after kill -9: 60 requests, all limited" [ "$bad" -eq 0 ]
# The dead worker's counts stay on the board, and its slot's next owner retires them: no scrape
# counts fewer (or more) than before the kill.
odd=0
for _ in $(seq 20); do
  [ "$(hold_allowed)" = "$want" ] || odd=$((odd + 1))
done
expect "metrics after kill -9 and respawn: still exactly $want allowed on hold" [ "$odd" -eq 0 ]
if [ $seen -eq 1 ]; then ok "the respawned worker ($fresh) answered and saw the counters"; else
  echo "  (the respawned worker answered none of the 60; covered by the count above)"
fi

# ---------------------------------------------------------------------------------------------
step "config errors at nginx -t"

bad_config() { # toml text; prints nginx -t's output, returns its status
  printf '%s\n' "$1" >"$T/main/conf/bad.toml"
  sed 's/portcullis_config portcullis.toml;/portcullis_config bad.toml;/' "$T/main/conf/nginx.conf" \
    >"$T/main/conf/bad.conf"
  ! $NGINX -p "$T/main" -c conf/bad.conf -t 2>&1
}
out="$(bad_config "$(printf '[[policy]]\nname = "q"\nlimit = "20/fortnight"')")" && rc=0 || rc=1
echo "  $out" | head -n 1
expect "a bad quota fails nginx -t with file:line:column" \
  grep -q "bad.toml:3:9: policy \"q\": invalid quota" <<<"$out"
out="$(bad_config "$(printf '[store\nkind = "shared"')")" || true
expect "a TOML syntax error: file:line:column" grep -q "bad.toml:1:7" <<<"$out"
out="$(bad_config "$(printf '[store]\nkind = "shared"\npath = "%s"\n[[policy]]\nname = "q"\nlimit = "5/m"\ndurability = "immediate"' "$SHM")")" || true
expect "durability = \"immediate\" refused with file:line" \
  grep -q 'bad.toml:7: durability = "immediate" makes a decision wait' <<<"$out"
out="$(bad_config "$(printf '[store]\nkind = "sled"\npath = "%s/sled"' "$T")")" || true
expect "a sled store refused" grep -q 'bad.toml:2: \[store\] kind = "sled" belongs to one process' <<<"$out"
expect "...and never opened" [ ! -e "$T/sled" ]
# Port 1: nothing listens; the store is opened (and refused) at nginx -t, naming the URL.
out="$(bad_config "$(printf '[store]\nkind = "redis"\nurl = "redis://127.0.0.1:1/0"')")" || true
expect "an unreachable Redis fails nginx -t, naming the URL" \
  grep -q 'redis store redis://127.0.0.1:1/0: cannot connect' <<<"$out"
rm -f "$T/main/conf/bad.toml"
out="$(! $NGINX -p "$T/main" -c conf/bad.conf -t 2>&1)" || true
expect "a missing file" grep -q 'bad.toml" failed (2: No such file or directory)' <<<"$out"
out="$(bad_config "$(printf '[[policy]]\nname = "q"\nlimit = "5/m"')")" && rc=0 || rc=1
expect "a memory store with 4 workers: a warning, not an error" \
  [ "$rc" = 1 ] # bad_config returns 1 when nginx -t passes
expect "...which says to use the shared store" grep -q '\[warn\].*kind = "shared"' <<<"$out"
sed -e 's/portcullis_config portcullis.toml;//' "$T/main/conf/nginx.conf" >"$T/main/conf/bad.conf"
out="$(! $NGINX -p "$T/main" -c conf/bad.conf -t 2>&1)" || true
expect "portcullis on without portcullis_config" grep -q '"portcullis on" needs "portcullis_config"' <<<"$out"
sed -e 's/portcullis_config portcullis.toml;//' -e 's/portcullis on;//' "$T/main/conf/nginx.conf" >"$T/main/conf/bad.conf"
out="$(! $NGINX -p "$T/main" -c conf/bad.conf -t 2>&1)" || true
expect "portcullis_metrics without portcullis_config" \
  grep -q '"portcullis_metrics" needs "portcullis_config"' <<<"$out"

# ---------------------------------------------------------------------------------------------
step "hostile input: invalid UTF-8, huge and repeated headers, empty principal"

big="$(head -c 6000 /dev/zero | tr '\0' 'a')"
codes=""
codes+="$(code "$M/api/%FF%FE%C0%80")"
codes+=" $(code -H $'X-Api-Key: \xff\xfe\xc0' "$M/api/x")"
codes+=" $(code -H 'X-Api-Key:' "$M/api/x")"
codes+=" $(code -H $'Origin: https://\xffapp.example' "$M/api/x")"
codes+=" $(code -H "Origin: https://$big.example" "$M/api/x")"
codes+=" $(code -X OPTIONS -H "Origin: $ORIGIN" -H 'Access-Control-Request-Method: PUT' \
  -H "Access-Control-Request-Headers: $big" "$M/api/x")"
acrh=()
for i in $(seq 200); do acrh+=(-H "Access-Control-Request-Headers: x-h$i"); done
codes+=" $(code -X OPTIONS -H "Origin: $ORIGIN" -H 'Access-Control-Request-Method: PUT' "${acrh[@]}" "$M/api/x")"
codes+=" $(code -X OPTIONS -H "Origin: $ORIGIN" -H $'Access-Control-Request-Method: \xff' "$M/api/x")"
codes+=" $(code -X $'G\xffT' "$M/api/x")"
echo "  codes: $codes"
expect "no 5xx on hostile input" bash -c '! grep -qE "(^| )5[0-9][0-9]" <<<"$1"' _ "$codes"
pf2=(-X OPTIONS -H "Origin: $ORIGIN" -H 'Access-Control-Request-Method: PUT'
  -H 'Access-Control-Request-Headers: content-type' -H 'Access-Control-Request-Headers: x-api-key')
expect "repeated Access-Control-Request-Headers joined: 204" [ "$(code "${pf2[@]}" "$M/api/x")" = 204 ]
expect "...allowing both" \
  grep -qi 'content-type, *x-api-key' <<<"$(header Access-Control-Allow-Headers "${pf2[@]}" "$M/api/x")"
expect "invalid UTF-8 in the path still matched its route" \
  [ -n "$(header X-RateLimit-Limit "$M/api/%FF")" ]

# ---------------------------------------------------------------------------------------------
step "the Redis store: decisions on nginx's thread pool; one quota across two nginx hosts"

. ci/redis-server.sh
read -r RPORT RA RB < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
)
mkdir -p "$T/redis"
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$T/redis" \
  --daemonize no >"$T/redis/log" 2>&1 &
pids_to_kill+=($!)
for _ in $(seq 200); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
for host in ra rb; do
  mkdir -p "$T/$host/conf" "$T/$host/logs" "$T/$host/tmp"
  cat >"$T/$host/conf/portcullis.toml" <<EOF
[store]
kind = "redis"
url = "redis://127.0.0.1:$RPORT/0"
timeout = "2s"
deny_cache = false

[[policy]]
name = "quota"
limit = "10/h"
burst = 10

[[policy]]
name = "conc"
algorithm = "concurrency"
limit = 1
lease_timeout = "30s"

[[route]]
match = "/slow/"
limits = [{ policy = "conc", key = "global" }]

[[route]]
match = "/"
limits = [{ policy = "quota", key = "principal" }]
EOF
  if [ "$host" = ra ]; then port="$RA"; else port="$RB"; fi
  # One worker on host a: a request waiting for Redis must not hold up its others.
  if [ "$host" = ra ]; then nworkers=1; else nworkers=2; fi
  cat >"$T/$host/conf/nginx.conf" <<EOF
load_module $module;
worker_processes $nworkers;
error_log logs/error.log info;
pid logs/nginx.pid;
thread_pool default threads=4;
events { worker_connections 256; }
http {
$(http_common "$T/$host")
    portcullis_config portcullis.toml;
    server {
        listen 127.0.0.1:$port;
        portcullis on;
        portcullis_principal \$http_x_api_key;
        location / { proxy_pass http://127.0.0.1:$UP; }
        location /slow/ { proxy_pass http://127.0.0.1:$SLOW; }
        location /off/ { portcullis off; proxy_pass http://127.0.0.1:$UP; }
    }
}
EOF
done
expect "nginx -t accepts a Redis store (nginx has threads)" $NGINX -p "$T/ra" -c conf/nginx.conf -t -q
out="$($NGINX -p "$T/rb" -c conf/nginx.conf -t 2>&1)"
expect "...without the per-process warning of a memory store (2 workers)" \
  bash -c '! grep -q "each process" <<<"$1"' _ "$out"
$NGINX -p "$T/ra" -c conf/nginx.conf
$NGINX -p "$T/rb" -c conf/nginx.conf
RM="http://127.0.0.1:$RA"
RBM="http://127.0.0.1:$RB"
for _ in $(seq 100); do curl -s -o /dev/null "$RM/off/" && curl -s -o /dev/null "$RBM/off/" && break; sleep 0.05; done

codes=""
for _ in $(seq 12); do codes+="$(code -H 'X-Api-Key: k' "$RM/q") "; done
expect "host a: 10 of 12 allowed against 10/h ($codes)" \
  [ "$codes" = "200 200 200 200 200 200 200 200 200 200 429 429 " ]
expect "host b: the same key is spent (one quota on Redis)" [ "$(code -H 'X-Api-Key: k' "$RBM/q")" = 429 ]
expect "host b: another key is not" [ "$(code -H 'X-Api-Key: k2' "$RBM/q")" = 200 ]
expect "the 429 carries Retry-After" [ -n "$(header Retry-After -H 'X-Api-Key: k' "$RM/q")" ]

# Redis paused for 1.5 s: a gated request waits on the thread pool while the one worker
# answers another request at once.
redis-cli -p "$RPORT" client pause 1500 all >/dev/null
(
  curl -s -o /dev/null -H 'X-Api-Key: k3' "$RM/q"
  echo gated >>"$T/order"
) &
gated=$!
sleep 0.2
curl -s -o /dev/null "$RM/off/"
echo free >>"$T/order"
wait "$gated"
expect "the worker served another request while a decision waited for Redis" \
  [ "$(tr '\n' ' ' <"$T/order")" = "free gated " ]

# A client that leaves while its decision waits: the request ends once the decision is back.
redis-cli -p "$RPORT" client pause 1000 all >/dev/null
c="$(code --max-time 0.3 -H 'X-Api-Key: k5' "$RM/q" || true)"
for _ in $(seq 100); do [ "$(code -H 'X-Api-Key: k6' "$RM/q")" = 200 ] && break; sleep 0.05; done
expect "a client gone while its decision waited ($c): the worker decides on" \
  [ "$(code -H 'X-Api-Key: k7' "$RM/q")" = 200 ]
expect "...and logged it 499" grep -q '"GET /q HTTP/1.1" 499' "$T/ra/logs/access.log"

# A concurrency lease on Redis goes back on the thread pool once the response is done.
served=0
for _ in 1 2 3; do
  for _ in $(seq 100); do
    if [ "$(code "$RM/slow/x?ms=10")" = 200 ]; then
      served=$((served + 1))
      break
    fi
    sleep 0.02
  done
done
expect "3 requests in a row through a one-lease limit: the lease came back each time" [ "$served" = 3 ]

# Redis gone: fail_closed answers at once (no hang), and the workers live on.
redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true
t0="$(date +%s%N)"
c="$(code -H 'X-Api-Key: k4' "$RM/q")"
ms=$((($(date +%s%N) - t0) / 1000000))
expect "Redis down: fail_closed answers 429 ($c in $ms ms)" [ "$c" = 429 ]
expect "...within the store's timeout" [ "$ms" -lt 3000 ]
expect "host a: its worker still serves" [ "$(code "$RM/off/")" = 200 ]
crashes="$(grep -hE '\[(alert|crit|emerg)\]' "$T/ra/logs/error.log" "$T/rb/logs/error.log" || true)"
[ -z "$crashes" ] || echo "$crashes" | head -n 5
expect "Redis hosts' error logs: no alert, crit or emerg" [ -z "$crashes" ]
stop_nginx "$T/ra"
stop_nginx "$T/rb"

# ---------------------------------------------------------------------------------------------
step "a short load: wrk, 3 s"

wrk -t2 -c32 -d3s -H "Origin: $ORIGIN" "$M/static/file.txt" >"$T/wrk.out" 2>&1 || true
grep -E 'Requests/sec|Non-2xx|Socket errors' "$T/wrk.out" | sed 's/^/  /'
expect "wrk: served" grep -q 'Requests/sec' "$T/wrk.out"
expect "wrk: no errors, no 429 (limit 1000000/s)" bash -c "! grep -qE 'Non-2xx|Socket errors' '$T/wrk.out'"

expect "4 workers at the end" wait_workers "$T/main" 4
crashes="$(grep -E '\[(alert|crit|emerg)\]' "$T/main/logs/error.log" | grep -v "exited on signal 9" || true)"
[ -z "$crashes" ] || echo "$crashes" | head -n 5
expect "error log: no alert, crit or emerg (but the kill -9)" [ -z "$crashes" ]
failures="$(grep -E 'portcullis: (no decision|no headers|header [0-9]|releasing)' "$T/main/logs/error.log" || true)"
[ -z "$failures" ] || echo "$failures" | head -n 5
expect "error log: no failed decision" [ -z "$failures" ]
stop_nginx "$T/main"

# ---------------------------------------------------------------------------------------------
step "valgrind: nginx in one process (master_process off) loads the module and serves"

mkdir -p "$T/vg/conf" "$T/vg/logs" "$T/vg/tmp" "$T/vg/html/static"
echo "static file" >"$T/vg/html/static/file.txt"
cp "$T/main/conf/portcullis.toml" "$T/vg/conf/"
cat >"$T/vg/conf/nginx.conf" <<EOF
load_module $module;
master_process off;
daemon off;
worker_processes 1;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
$(http_common "$T/vg")
    portcullis_config portcullis.toml;
    server {
        listen 127.0.0.1:$UP;
        location / { add_header Vary "Accept-Encoding"; return 200 "upstream\n"; }
        location /api/missing { return 404 "missing\n"; }
    }
$(gate_server "127.0.0.1:$VG")
}
EOF
V="http://127.0.0.1:$VG"
valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
  --show-leak-kinds=definite --suppressions=tests/c/valgrind.supp \
  --suppressions=bindings/nginx/t/valgrind.supp --log-file="$T/vg/valgrind.log" \
  $NGINX -p "$T/vg" -c conf/nginx.conf &
vg_pid=$!
pids_to_kill+=("$vg_pid")
up=0
for _ in $(seq 600); do
  if curl -s -o /dev/null "$V/off/"; then up=1; break; fi
  sleep 0.1
done
if [ $up -eq 1 ]; then
  vg_codes="$(code -H "Origin: $ORIGIN" -H 'X-Api-Key: vg' "$V/api/ok")"
  vg_codes+=" $(code -X OPTIONS -H "Origin: $ORIGIN" -H 'Access-Control-Request-Method: PUT' "$V/api/ok")"
  vg_codes+=" $(code -H 'X-Api-Key: vg' "$V/api/missing")"
  vg_codes+=" $(code "$V/static/file.txt")"
  vg_codes+=" $(code -H $'X-Api-Key: \xff' "$V/api/%FF")"
  vg_codes+=" $(code -H 'X-Api-Key: kill-1' "$V/hold/x")"
  vg_codes+=" $(code --max-time 1 "$V/slow/x?ms=3000" || true)"
  vg_codes+=" $(code -H 'X-Api-Key: vg' "$V/shape/1") $(code -H 'X-Api-Key: vg' "$V/shape/2")"
  vg_codes+=" $(code "${pf2[@]}" "$V/api/x") $(code -H "Origin: https://$big.example" "$V/api/x")"
  echo "  codes under valgrind: $vg_codes"
  expect "served under valgrind" [ "$vg_codes" = "200 204 404 200 200 429 000 200 200 204 403" ]
  kill -QUIT $vg_pid
fi
vg_rc=0
wait $vg_pid || vg_rc=$?
expect "valgrind: started within 60 s" [ $up -eq 1 ]
[ ! -s "$T/vg/valgrind.log" ] || head -n 40 "$T/vg/valgrind.log"
expect "valgrind: no invalid access, no definite leak (exit $vg_rc)" [ $vg_rc -eq 0 ]

echo
echo "nginx: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
