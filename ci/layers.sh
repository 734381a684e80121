#!/usr/bin/env bash
# The layer rule of src/ (see ci/layers.py): fails on any import from a higher layer.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 ci/layers.py
