#!/usr/bin/env bash
# The Node.js binding (bindings/node): builds the library, installs the package's locked
# dependencies with `npm ci` (whose install step builds the addon with node-gyp against the
# running node's own headers, so nothing is downloaded from nodejs.org), and runs `npm test`.
#
# Standalone and idempotent; meant for root on Debian 12 with Node >= 18 (and its headers, as
# the nodejs packages install them under <prefix>/include/node) and Rust. Installs what
# node-gyp needs (python3, make, a C compiler) and redis-server (for the Redis tests) with
# apt-get when one is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node: node and npm are needed (Node >= 18)" >&2
  exit 1
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 18 ]; then
  echo "node: Node >= 18 is needed, this is $(node --version)" >&2
  exit 1
fi

missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "node: installing ${missing[*]} (apt-get)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Redis tests (test/redis.test.js) start their own redis-server from Debian's package.
. ci/redis-server.sh

cargo build --release -p portcullis --lib

# Node's headers from the running node's install prefix when they are there.
prefix="$(node -p 'require("path").resolve(process.execPath, "..", "..")')"
if [ -z "${npm_config_nodedir:-}" ] && [ -f "$prefix/include/node/node_api.h" ]; then
  export npm_config_nodedir="$prefix"
fi

cd bindings/node
# npm ci starts from an empty node_modules each time; the install script rebuilds the addon.
npm ci --no-audit --no-fund --loglevel=error
npm test
