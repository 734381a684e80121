"""Build hooks of the portcullis Python package: its wheel carries the shared library.

The metadata is in pyproject.toml; this file only adds two setuptools commands.

- ``build_py`` builds the Rust library, ``cargo build --release --lib -p portcullis`` at the
  root of the repository (two folders up from this one), and copies ``libportcullis.so``
  (``.dylib``, ``portcullis.dll``) next to the package's modules in the build folder, so that
  ``pip install ./bindings/python`` and ``pip wheel ./bindings/python`` give a package that
  works on its own. The library's path is read from cargo's own report of what it built, so
  ``CARGO_TARGET_DIR`` (and any cargo config) is honoured; ``CARGO`` names the cargo to run
  (default: ``cargo`` on the ``PATH``, then ``~/.cargo/bin/cargo``). An editable install
  (``pip install -e``) builds nothing: the package then loads the checkout's
  ``target/release`` build (see ``portcullis/_native.py``).
- ``bdist_wheel`` tags the wheel ``py3-none-<platform>`` (e.g. ``py3-none-linux_x86_64``):
  it holds a native library, so it is not pure, but ctypes loads it from any CPython 3, so it
  is tied to no Python ABI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
from setuptools.command.build_py import build_py as _build_py

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PACKAGE = "portcullis"
CRATE = "portcullis"


def library_filename() -> str:
    """The shared library's file name on this platform (as in portcullis/_native.py)."""
    if sys.platform == "darwin":
        return "libportcullis.dylib"
    if sys.platform == "win32":
        return "portcullis.dll"
    return "libportcullis.so"


class BuildError(Exception):
    """The Rust library could not be built; the message says why and what to do."""


def find_cargo() -> str:
    """The cargo to run: ``$CARGO``, else ``cargo`` on the PATH, else rustup's default."""
    explicit = os.environ.get("CARGO")
    if explicit:
        found = shutil.which(explicit)
        if not found:
            raise BuildError(f"CARGO is set to {explicit!r}, which is not an executable")
        return found
    found = shutil.which("cargo")
    if found:
        return found
    rustup = Path.home() / ".cargo" / "bin" / ("cargo.exe" if sys.platform == "win32" else "cargo")
    if rustup.is_file():
        return str(rustup)
    raise BuildError(
        "cargo not found: installing the portcullis Python package builds its Rust library. "
        "Install a Rust toolchain (https://rustup.rs), or set CARGO to the cargo executable."
    )


def build_library() -> Path:
    """Runs ``cargo build --release --lib -p portcullis`` at the repository's root and returns
    the path of the shared library it built."""
    manifest = REPO / "Cargo.toml"
    if not manifest.is_file():
        raise BuildError(
            f"{manifest} not found: the portcullis Python package is built from a checkout of "
            f"the portcullis repository (pip install ./bindings/python), where the Rust crate "
            f"is two folders above {HERE}."
        )
    cargo = find_cargo()
    command = [
        cargo, "build", "--release", "--lib", "-p", CRATE,
        "--message-format=json-render-diagnostics",
    ]
    print(f"portcullis: {' '.join(command)} (in {REPO})", file=sys.stderr, flush=True)
    # Diagnostics go to stderr as text; stdout is cargo's JSON report of what it built.
    done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise BuildError(f"`{' '.join(command)}` failed (exit status {done.returncode})")
    name = library_filename()
    built: List[Path] = []
    for line in done.stdout.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if message.get("reason") != "compiler-artifact":
            continue
        target = message.get("target", {})
        if target.get("name") != CRATE or "cdylib" not in target.get("kind", []):
            continue
        built += [Path(f) for f in message.get("filenames", []) if Path(f).name == name]
    if not built:
        raise BuildError(f"cargo built no {name} for the crate {CRATE} (is it a cdylib?)")
    return built[-1]


class build_py(_build_py):
    """build_py that also builds the Rust library and puts it into the package."""

    def run(self) -> None:
        editable = getattr(self, "editable_mode", False)
        if not editable:
            # The build folder outlives builds: start the package afresh, so that a module
            # since removed from src/ is not carried on.
            shutil.rmtree(Path(self.build_lib) / PACKAGE, ignore_errors=True)
        super().run()
        if editable:
            return  # the editable package loads the checkout's target/ build
        try:
            library = build_library()
        except BuildError as e:
            sys.exit(f"error: {e}")
        destination = Path(self.build_lib) / PACKAGE / library.name
        destination.parent.mkdir(parents=True, exist_ok=True)
        self.copy_file(str(library), str(destination))
        self._library: Optional[str] = str(destination)

    def get_outputs(self, include_bytecode: bool = True) -> List[str]:
        outputs = list(super().get_outputs(include_bytecode))
        library = getattr(self, "_library", None)
        if library and library not in outputs:
            outputs.append(library)
        return outputs


class BinaryDistribution(Distribution):
    """A distribution with a native part: installed as platform files (platlib), and its wheel
    is not pure."""

    def has_ext_modules(self) -> bool:
        return True


class bdist_wheel(_bdist_wheel):
    """A wheel tagged ``py3-none-<platform>``: it carries a native library, but no extension
    module, so any CPython 3 can load it."""

    def get_tag(self) -> "tuple[str, str, str]":
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    distclass=BinaryDistribution,
    cmdclass={"build_py": build_py, "bdist_wheel": bdist_wheel},
)
