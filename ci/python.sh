#!/usr/bin/env bash
# The Python bindings (bindings/python): builds the library, installs the package (editable) and
# its test dependencies into a venv under target/python-venv (reused when present), and runs the
# pytest suite. Needs python3 (>= 3.9) with pip; installs Debian's venv package when the venv
# module is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=target/python-venv

cargo build --release --lib

if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    echo "python: installing python${version}-venv (apt-get)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "python${version}-venv" \
      || $SUDO apt-get install -y -qq --no-install-recommends python3-venv
    "$PYTHON" -m venv "$VENV"
  fi
fi
PY="$PWD/$VENV/bin/python"

# (Re)install when the venv is new or pyproject.toml changed; the install is editable, so
# changes to the package's code need none.
stamp="$VENV/.portcullis-python-stamp"
want="$(cat bindings/python/pyproject.toml | sha256sum | cut -d' ' -f1) $PWD"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$PY" -m pip install -q --disable-pip-version-check -e "bindings/python[test]"
  echo "$want" >"$stamp"
fi

# The editable package finds target/release/libportcullis.so by walking up from its folder: the
# tests check that it does, so a PORTCULLIS_LIBRARY from the environment must not interfere.
unset PORTCULLIS_LIBRARY
cd bindings/python
"$PY" -m pytest -q -p no:cacheprovider tests
