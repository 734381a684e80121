#!/usr/bin/env bash
# The Python bindings (bindings/python):
# 1. builds the library, installs the package (editable) and its test dependencies into a venv
#    under target/python-venv (reused when present), and runs the pytest suite;
# 2. proves the one-step install: a fresh venv in a temporary folder outside the checkout,
#    `pip install ./bindings/python` (its build finds the library step 1 built: cargo has
#    nothing to do), and a script run from that folder that makes real decisions with the
#    library the package bundles;
# 3. `pip wheel ./bindings/python` gives a platform wheel (not none-any) carrying the library.
# Needs python3 (>= 3.9) with pip; installs Debian's venv package when the venv module is
# missing, and redis-server for the Redis tests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

PYTHON="${PYTHON:-python3}"
VENV=target/python-venv

cargo build --release --lib -p portcullis

# The Redis tests (tests/test_workers.py) start their own redis-server from Debian's package.
. ci/redis-server.sh

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

# (Re)install when the venv is new or the packaging changed; the install is editable, so
# changes to the package's code need none.
stamp="$VENV/.portcullis-python-stamp"
want="$(cat bindings/python/pyproject.toml bindings/python/setup.py | sha256sum | cut -d' ' -f1) $PWD"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$PY" -m pip install -q --disable-pip-version-check -e "bindings/python[test]"
  echo "$want" >"$stamp"
fi

# The editable package finds target/release/libportcullis.so by walking up from its folder: the
# tests check that it does, so a PORTCULLIS_LIBRARY from the environment must not interfere.
unset PORTCULLIS_LIBRARY
(cd bindings/python && "$PY" -m pytest -q -p no:cacheprovider tests)

# -- the one-step install, outside the checkout ----------------------------------------------
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
"$PYTHON" -m venv "$OUT/venv"
echo "python: pip install ./bindings/python (fresh venv in $OUT)"
"$OUT/venv/bin/python" -m pip install -q --disable-pip-version-check ./bindings/python
cd "$OUT"
"$OUT/venv/bin/python" - "$ROOT" <<'EOF'
import sys
from pathlib import Path

import portcullis

root = Path(sys.argv[1]).resolve()
package = Path(portcullis.__file__).resolve().parent
library = portcullis.load_library().resolve()
assert root not in package.parents, f"imported the checkout's package: {package}"
assert library == package / "libportcullis.so", f"not the bundled library: {library}"

limiter = portcullis.Limiter.from_config('[[policy]]\nname = "api"\nlimit = "2/m"\n')
decisions = [limiter.check("api", "ci") for _ in range(3)]
assert [d.allowed for d in decisions] == [True, True, False], decisions
assert decisions[2].retry_after_secs > 0, decisions[2]
limiter.close()
print(f"python: installed package decides with {library} "
      f"(library {portcullis.library_version()}): allowed, allowed, "
      f"denied with Retry-After {decisions[2].retry_after_secs}")
EOF
cd "$ROOT"

echo "python: pip wheel ./bindings/python"
"$OUT/venv/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps \
  -w "$OUT/wheels" ./bindings/python
"$OUT/venv/bin/python" - "$OUT/wheels" <<'EOF'
import sys
import zipfile
from pathlib import Path

wheels = sorted(Path(sys.argv[1]).glob("portcullis-*.whl"))
assert len(wheels) == 1, wheels
wheel = wheels[0]
tag = wheel.name[: -len(".whl")].split("-", 2)[2]
assert not tag.endswith("none-any"), f"{wheel.name}: a pure wheel cannot carry the library"
assert tag.startswith("py3-none-"), f"{wheel.name}: ctypes needs no Python ABI tag"
names = zipfile.ZipFile(wheel).namelist()
assert "portcullis/libportcullis.so" in names, f"{wheel.name} lacks the library: {names}"
print(f"python: {wheel.name} carries portcullis/libportcullis.so")
EOF
