"""Checks the layer rule of src/: each folder imports only the layers below it.

Layers, lowest first: core < store < limit, cors < config < gate < ffi. `limit` and `cors`
are siblings and never import each other. A path into the crate is any `crate::<module>`
in code (comments aside), including inside `use crate::{...}` groups. The crate root's
re-exports (`crate::Limiter`, `crate::{Decision, ...}`) are the public API: only the FFI uses
them, and the FFI uses nothing else but the public modules, unless a line says why with a
`// layer:` comment.

Exits 1 with one line per back-edge.
"""

import re
import sys
from pathlib import Path

ALLOWED = {
    "core": {"core"},
    "store": {"core", "store"},
    "limit": {"core", "store", "limit"},
    "cors": {"core", "cors"},
    "config": {"core", "store", "limit", "cors", "config"},
    "gate": {"core", "store", "limit", "cors", "config", "gate"},
    # The C ABI translates the public API: the public modules and the root's re-exports.
    "ffi": {"store", "cors", "config", "gate", "ffi", "<root>"},
    # The tower layer is a front end like the C ABI: the public API only.
    "tower": {"config", "gate", "tower", "<root>"},
}


def strip_comments(line: str) -> str:
    return line.split("//", 1)[0]


def targets(code: str):
    """The first segment of every `crate::` path in `code`, `<root>` for a re-export."""
    for m in re.finditer(r"\bcrate::", code):
        rest = code[m.end():]
        if rest.startswith("{"):
            depth, i = 0, 0
            for i, ch in enumerate(rest):
                depth += ch == "{"
                depth -= ch == "}"
                if depth == 0:
                    break
            inner = rest[1:i]
            # top-level items of the group
            depth, item, items = 0, "", []
            for ch in inner:
                if ch == "," and depth == 0:
                    items.append(item)
                    item = ""
                    continue
                depth += ch == "{"
                depth -= ch == "}"
                item += ch
            items.append(item)
            for it in items:
                it = it.strip()
                if it:
                    yield first_segment(it)
        else:
            yield first_segment(rest)


def first_segment(path: str) -> str:
    name = re.match(r"[A-Za-z_][A-Za-z0-9_]*", path)
    if not name:
        return "<root>"
    name = name.group(0)
    is_module = name[0].islower() and path[len(name):].startswith("::")
    return name if is_module else "<root>"


def main() -> int:
    src = Path(__file__).resolve().parent.parent / "src"
    errors = []
    for folder, allowed in ALLOWED.items():
        for path in sorted((src / folder).rglob("*.rs")):
            text = path.read_text()
            # Joined statements, so a `use crate::{...}` group over several lines is one.
            for lineno, line in enumerate(text.splitlines(), 1):
                if "// layer:" in line:
                    continue
                code = strip_comments(line)
                if "crate::" not in code:
                    continue
                if code.rstrip().endswith("{") and "use crate::" in code:
                    # A multi-line group: gather it.
                    rest = text.splitlines()[lineno:]
                    group = code
                    for more in rest:
                        group += strip_comments(more)
                        if "};" in more:
                            break
                    code = group
                for target in sorted(set(targets(code))):
                    if target not in allowed:
                        rel = path.relative_to(src.parent)
                        errors.append(f"{rel}:{lineno}: `{folder}` imports `{target}`: {line.strip()}")
    for e in errors:
        print(e)
    if errors:
        print(f"layers: {len(errors)} back-edge(s); see the rule at the top of ci/layers.py")
        return 1
    print("layers: no back-edges")
    return 0


if __name__ == "__main__":
    sys.exit(main())
