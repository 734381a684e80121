#!/usr/bin/env bash
# Runs the CORS browser test: headless Chromium against the engine, on 127.0.0.1 only.
# Installs Debian's chromium when it is missing; safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

find_chromium() {
  command -v chromium || command -v chromium-browser || true
}

if [ -z "$(find_chromium)" ]; then
  echo "cors-browser: chromium not found, installing it (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends chromium
fi

PORTCULLIS_CHROMIUM="$(find_chromium)"
export PORTCULLIS_CHROMIUM
echo "cors-browser: using $PORTCULLIS_CHROMIUM ($("$PORTCULLIS_CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"

# The release build of the test step is reused: the browser is found at run time.
cargo test --release -p portcullis --test cors_browser -- --ignored --nocapture
