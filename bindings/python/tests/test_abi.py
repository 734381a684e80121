"""The binding's declarations of the C ABI match include/portcullis.h, value for value.

Everything compared here is read from the header itself: its enums, numeric defines, structs
and function prototypes are parsed from the text, and a small C program generated from what was
parsed, compiled with the header, prints what the C compiler makes of them (enum values,
``sizeof`` of each struct, ``offsetof`` and ``sizeof`` of each field, size and signedness of
each scalar type). A constant, field, struct or function added to the header, or changed in it,
fails these tests until ``portcullis/_native.py`` declares it the same way.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

import portcullis
from portcullis import _native, errors

HEADER = Path(__file__).resolve().parents[3] / "include" / "portcullis.h"


# -- reading the header ---------------------------------------------------------------------


@dataclass
class Function:
    name: str
    returns: str
    params: List[str]
    doc: str


@dataclass
class Header:
    #: C enum name -> its constants, in order.
    enums: Dict[str, List[str]] = field(default_factory=dict)
    #: Numeric ``#define PORTCULLIS_*`` names.
    defines: List[str] = field(default_factory=list)
    #: String ``#define PORTCULLIS_*`` -> value.
    strings: Dict[str, str] = field(default_factory=dict)
    #: Struct typedef name -> field names, in order.
    structs: Dict[str, List[str]] = field(default_factory=dict)
    #: Opaque struct typedef names.
    opaque: List[str] = field(default_factory=list)
    functions: Dict[str, Function] = field(default_factory=dict)


def _blank(match: "re.Match[str]") -> str:
    """The match with every character but newlines turned to spaces (offsets are kept)."""
    return re.sub(r"[^\n]", " ", match.group(0))


def parse_header(text: str) -> Header:
    h = Header()
    for m in re.finditer(r"^#define\s+(PORTCULLIS_\w+)\s+(-?\d+)\s*$", text, re.M):
        h.defines.append(m.group(1))
    for m in re.finditer(r'^#define\s+(PORTCULLIS_\w+)\s+"([^"]*)"\s*$', text, re.M):
        h.strings[m.group(1)] = m.group(2)
    comments = [(m.start(), m.end(), m.group(0)) for m in re.finditer(r"/\*.*?\*/", text, re.S)]
    code = re.sub(r"/\*.*?\*/", _blank, text, flags=re.S)
    code = re.sub(r"//[^\n]*", _blank, code)
    code = re.sub(r"^[ \t]*#[^\n]*", _blank, code, flags=re.M)

    for m in re.finditer(r"\benum\s+(\w+)[^{;]*\{(.*?)\}", code, re.S):
        names = []
        for item in m.group(2).split(","):
            ident = re.match(r"\s*([A-Za-z_]\w*)", item)
            if ident:
                names.append(ident.group(1))
        h.enums[m.group(1)] = names
    for m in re.finditer(r"\btypedef\s+struct\s*(?:\w+\s*)?\{(.*?)\}\s*(\w+)\s*;", code, re.S):
        names = []
        for decl in m.group(1).split(";"):
            ident = re.search(r"([A-Za-z_]\w*)\s*(?:\[[^\]]*\])?\s*$", decl.strip())
            if decl.strip() and ident:
                names.append(ident.group(1))
        h.structs[m.group(2)] = names
    for m in re.finditer(r"\btypedef\s+struct\s+(\w+)\s+(\w+)\s*;", code):
        h.opaque.append(m.group(2))

    for m in re.finditer(r"([A-Za-z_][\w \t\n*]*?)\b(portcullis_\w+)\s*\(([^()]*)\)\s*;", code):
        returns = " ".join(m.group(1).split())
        params_text = " ".join(m.group(3).split())
        params: List[str] = []
        if params_text not in ("", "void"):
            for p in params_text.split(","):
                typ = re.match(r"(.*?)\s*\b[A-Za-z_]\w*\s*$", p.strip())
                params.append(typ.group(1) if typ and typ.group(1) else p.strip())
        before = [c for c in comments if c[1] <= m.start(2)]
        doc = before[-1][2] if before else ""
        h.functions[m.group(2)] = Function(m.group(2), returns, params, doc)
    # Every call-like name in the code must have been read as a prototype.
    called = set(re.findall(r"\b(portcullis_\w+)\s*\(", code))
    assert called == set(h.functions), f"prototypes not understood: {called ^ set(h.functions)}"
    return h


def split_type(c_type: str) -> Tuple[str, int]:
    """``const uint8_t *`` -> (``uint8_t``, 1)."""
    depth = c_type.count("*")
    base = " ".join(w for w in c_type.replace("*", " ").split() if w != "const")
    return base, depth


# -- what the C compiler says ---------------------------------------------------------------


@dataclass
class Truth:
    values: Dict[str, int] = field(default_factory=dict)
    struct_size: Dict[str, int] = field(default_factory=dict)
    #: (struct, field) -> (offset, size)
    fields: Dict[Tuple[str, str], Tuple[int, int]] = field(default_factory=dict)
    #: scalar type -> (size, unsigned)
    scalars: Dict[str, Tuple[int, bool]] = field(default_factory=dict)


def c_program(h: Header) -> str:
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        '#include "portcullis.h"',
        "int main(void) {",
    ]
    for name in h.defines:
        lines.append(f'  printf("value {name} %lld\\n", (long long)({name}));')
    for consts in h.enums.values():
        for name in consts:
            lines.append(f'  printf("value {name} %lld\\n", (long long)({name}));')
    for struct, names in h.structs.items():
        lines.append(f'  printf("struct {struct} %zu\\n", sizeof({struct}));')
        for f in names:
            lines.append(
                f'  printf("field {struct} {f} %zu %zu\\n", offsetof({struct}, {f}), '
                f"sizeof((({struct} *)0)->{f}));"
            )
    scalars = set()
    for fn in h.functions.values():
        for c_type in [fn.returns, *fn.params]:
            base, _ = split_type(c_type)
            if base not in h.structs and base not in h.opaque and base not in ("void", "char"):
                scalars.add(base)
    for base in sorted(scalars):
        lines.append(
            f'  printf("scalar {base} %zu %d\\n", sizeof({base}), (int)(({base})-1 > 0));'
        )
    lines += ["  return 0;", "}", ""]
    return "\n".join(lines)


def compiler() -> Optional[str]:
    for candidate in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def c_truth(h: Header, workdir: Path) -> Truth:
    cc = compiler()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc, clang or $CC) to read the header's layouts with")
    src = workdir / "abi.c"
    exe = workdir / "abi"
    src.write_text(c_program(h))
    build = subprocess.run(
        [cc, "-std=c11", "-Wall", "-Werror", "-I", str(HEADER.parent), "-o", str(exe), str(src)],
        capture_output=True, text=True, timeout=120,
    )
    assert build.returncode == 0, f"{cc} failed on the generated program:\n{build.stderr}"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=True)
    t = Truth()
    for line in run.stdout.splitlines():
        kind, *rest = line.split()
        if kind == "value":
            t.values[rest[0]] = int(rest[1])
        elif kind == "struct":
            t.struct_size[rest[0]] = int(rest[1])
        elif kind == "field":
            t.fields[(rest[0], rest[1])] = (int(rest[2]), int(rest[3]))
        elif kind == "scalar":
            t.scalars[rest[0]] = (int(rest[1]), rest[2] == "1")
    return t


# -- the comparison -------------------------------------------------------------------------


def camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


_INTS = [
    ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_size_t,
    ctypes.c_int8, ctypes.c_int16, ctypes.c_int32, ctypes.c_int64,
]


def _scalar_problem(base: str, py: object, truth: Truth) -> Optional[str]:
    if base == "bool":
        return None if py is ctypes.c_bool else "bool must be ctypes.c_bool"
    if py not in _INTS:
        return f"{base} must be a ctypes integer type"
    size, unsigned = truth.scalars[base]
    py_size = ctypes.sizeof(py)  # type: ignore[arg-type]
    py_unsigned = py(-1).value > 0  # type: ignore[operator]
    if (py_size, py_unsigned) != (size, unsigned):
        return (f"{base} is {size} bytes {'unsigned' if unsigned else 'signed'}, "
                f"ctypes has {py_size} bytes {'unsigned' if py_unsigned else 'signed'}")
    return None


def type_problem(c_type: str, py: object, h: Header, truth: Truth,
                 structs: Dict[str, Tuple[type, ...]]) -> Optional[str]:
    """Why ctypes type ``py`` cannot stand for C type ``c_type`` (None: it can)."""
    base, depth = split_type(c_type)
    pointer = ctypes._Pointer  # type: ignore[attr-defined]
    if depth == 0:
        if base == "void":
            return None if py is None else "void must be None"
        if base in h.structs or base in h.opaque:
            return f"{c_type} by value is not supported by the binding"
        return _scalar_problem(base, py, truth)
    if base in h.opaque:
        if depth == 1:
            return None if py is ctypes.c_void_p else f"{c_type} must be c_void_p"
        if depth == 2:
            ok = isinstance(py, type) and issubclass(py, pointer) and py._type_ is ctypes.c_void_p
            return None if ok else f"{c_type} must be POINTER(c_void_p)"
    if depth != 1:
        return f"{c_type}: no rule for this pointer depth"
    if base in h.structs:
        ok = isinstance(py, type) and issubclass(py, pointer) and py._type_ in structs.get(base, ())
        return None if ok else f"{c_type} must be POINTER() of a class of STRUCTS[{base!r}]"
    if base == "char":
        return None if py is ctypes.c_char_p else f"{c_type} must be c_char_p"
    if base == "uint8_t" and py is ctypes.c_char_p:
        return None  # bytes in, no copy
    if isinstance(py, type) and issubclass(py, pointer):
        if base == "uint8_t" and py._type_ is ctypes.c_char:
            return None
        problem = _scalar_problem(base, py._type_, truth)
        return None if problem is None else f"{c_type}: pointee: {problem}"
    return f"{c_type} must be a ctypes pointer"


def drift(native: object, h: Header, truth: Truth) -> List[str]:
    """Every difference between the declarations of ``native`` (the module ``_native`` or a
    stand-in) and the header; empty when they agree."""
    problems: List[str] = []

    # Numeric defines: PORTCULLIS_X is native.X; the library's version is the package's.
    for name in h.defines:
        if name.startswith("PORTCULLIS_VERSION_"):
            continue
        attr = name[len("PORTCULLIS_"):]
        if getattr(native, attr, None) != truth.values[name]:
            problems.append(f"#define {name} {truth.values[name]}: "
                            f"_native.{attr} is {getattr(native, attr, None)!r}")
    version = h.strings.get("PORTCULLIS_VERSION")
    if version is not None and version != portcullis.__version__:
        problems.append(f"PORTCULLIS_VERSION {version!r}: the package is "
                        f"{portcullis.__version__!r}")

    # Enums: PORTCULLIS_RESULT_X is native.X; PORTCULLIS_<E>_X is native.<Camel E>.X.
    for enum_name, consts in h.enums.items():
        short = enum_name[len("portcullis_"):]
        prefix = f"PORTCULLIS_{short.upper()}_"
        if short == "result":
            where = "_native"
            declared: Dict[str, int] = {}
            for c in consts:
                value = getattr(native, c[len(prefix):], None)
                if isinstance(value, int):
                    declared[c[len(prefix):]] = value
        else:
            py_enum = getattr(native, camel(short), None)
            where = f"_native.{camel(short)}"
            if py_enum is None:
                problems.append(f"enum {enum_name}: {where} is missing")
                continue
            declared = {m.name: int(m.value) for m in py_enum}
            c_names = {c[len(prefix):] for c in consts if c.startswith(prefix)}
            for extra in sorted(set(declared) - c_names):
                problems.append(f"{where}.{extra} is not in enum {enum_name}")
        for c in consts:
            if not c.startswith(prefix):
                problems.append(f"enum {enum_name}: {c} does not start with {prefix}")
                continue
            member = c[len(prefix):]
            if declared.get(member) != truth.values[c]:
                problems.append(f"{c} = {truth.values[c]}: {where} has "
                                f"{member} = {declared.get(member)!r}")

    # Structs: every one declared, with the same size, fields, offsets and field sizes.
    structs: Dict[str, Tuple[type, ...]] = getattr(native, "STRUCTS", {})
    for name in sorted(set(structs) - set(h.structs)):
        problems.append(f"STRUCTS[{name!r}] is not a struct of the header")
    for name, c_fields in h.structs.items():
        classes = structs.get(name)
        if not classes:
            problems.append(f"struct {name}: not in _native.STRUCTS")
            continue
        for cls in classes:
            where = f"{cls.__name__} ({name})"
            size = ctypes.sizeof(cls)
            if size != truth.struct_size[name]:
                problems.append(f"{where}: sizeof is {truth.struct_size[name]}, ctypes {size}")
            py_fields = [f[0] for f in cls._fields_]  # type: ignore[attr-defined]
            if py_fields != c_fields:
                problems.append(f"{where}: fields are {c_fields}, ctypes {py_fields}")
            for f in c_fields:
                descriptor = getattr(cls, f, None)
                if descriptor is None:
                    continue
                offset, fsize = truth.fields[(name, f)]
                if (descriptor.offset, descriptor.size) != (offset, fsize):
                    problems.append(
                        f"{where}.{f}: offset {offset} size {fsize}, ctypes offset "
                        f"{descriptor.offset} size {descriptor.size}"
                    )

    # Functions: every one declared, with as many arguments, each of a fitting type.
    signatures = getattr(native, "SIGNATURES", {})
    for name in sorted(set(signatures) - set(h.functions)):
        problems.append(f"SIGNATURES[{name!r}] is not a function of the header")
    for name, fn in h.functions.items():
        if name not in signatures:
            problems.append(f"{name}: not in _native.SIGNATURES")
            continue
        restype, argtypes = signatures[name]
        if len(argtypes) != len(fn.params):
            problems.append(f"{name}: takes {len(fn.params)} arguments, SIGNATURES declares "
                            f"{len(argtypes)}")
            continue
        problem = type_problem(fn.returns, restype, h, truth, structs)
        if problem:
            problems.append(f"{name}: returns {problem}")
        for i, (c_type, py) in enumerate(zip(fn.params, argtypes)):
            problem = type_problem(c_type, py, h, truth, structs)
            if problem:
                problems.append(f"{name}: argument {i + 1}: {problem}")
    return problems


# -- the tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def header() -> Header:
    if not HEADER.is_file():
        pytest.skip(f"not in a checkout of the repository: {HEADER} is missing")
    return parse_header(HEADER.read_text())


@pytest.fixture(scope="module")
def truth(header: Header, tmp_path_factory: pytest.TempPathFactory) -> Truth:
    return c_truth(header, tmp_path_factory.mktemp("abi"))


def test_the_header_was_read(header: Header, truth: Truth):
    # A parser that found nothing would compare nothing: the header has all of these.
    assert "portcullis_result" in header.enums and "portcullis_action" in header.enums
    assert header.enums["portcullis_action"] == [
        "PORTCULLIS_ACTION_PASS", "PORTCULLIS_ACTION_PREFLIGHT",
        "PORTCULLIS_ACTION_FORBIDDEN", "PORTCULLIS_ACTION_LIMITED",
    ]
    assert header.structs["portcullis_outcome_info"][:2] == ["action", "status"]
    assert "portcullis_gate" in header.opaque
    assert header.functions["portcullis_limiter_check"].params == [
        "const portcullis_limiter *", "uint32_t", "const uint8_t *", "size_t", "uint32_t",
        "portcullis_decision *",
    ]
    assert header.functions["portcullis_abi_version"].params == []
    assert len(header.functions) >= 50
    assert truth.values["PORTCULLIS_RESULT_STORE_IO"] == 304
    assert truth.struct_size["portcullis_str"] == ctypes.sizeof(ctypes.c_void_p) * 2


def test_native_declares_the_header_exactly(header: Header, truth: Truth):
    problems = drift(_native, header, truth)
    assert not problems, "_native.py differs from include/portcullis.h:\n" + "\n".join(problems)


def test_every_structure_of_native_is_checked():
    declared = {
        v for v in vars(_native).values()
        if isinstance(v, type) and issubclass(v, ctypes.Structure) and v is not ctypes.Structure
    }
    checked = {cls for classes in _native.STRUCTS.values() for cls in classes}
    assert declared == checked


def test_every_result_code_has_its_exception(header: Header, truth: Truth):
    for name in header.enums["portcullis_result"]:
        code = truth.values[name]
        if code == 0:
            continue
        assert code in errors._BY_CODE, f"{name} ({code}) has no exception class"
        lib = _native.load()
        assert _native.result_name(lib, code) == name


def test_a_drifted_binding_is_caught(header: Header, truth: Truth):
    # The comparison must fail on a binding that differs: a changed result code, a renamed
    # and a resized field, a missing enum member, a function with an argument less, a
    # function missing, a function the header does not have.
    class OutcomeInfo(ctypes.Structure):
        _fields_ = [(n if n != "action" else "verdict", t)
                    for n, t in _native.OutcomeInfo._fields_]

    class NativeDecision(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint32 if n == "at_ns" else t)
                    for n, t in _native.NativeDecision._fields_]

    import enum

    class Action(enum.IntEnum):
        PASS = 0
        PREFLIGHT = 1
        FORBIDDEN = 2

    fake = types.SimpleNamespace(**vars(_native))
    fake.CLOSED = 999
    fake.Action = Action
    fake.STRUCTS = dict(_native.STRUCTS, portcullis_outcome_info=(OutcomeInfo,),
                        portcullis_decision=(NativeDecision,))
    fake.SIGNATURES = dict(_native.SIGNATURES)
    restype, argtypes = fake.SIGNATURES["portcullis_gate_reset"]
    fake.SIGNATURES["portcullis_gate_reset"] = (restype, argtypes[:-1])
    restype, argtypes = fake.SIGNATURES["portcullis_limiter_check_at"]
    fake.SIGNATURES["portcullis_limiter_check_at"] = (
        restype, [*argtypes[:5], ctypes.c_uint32, argtypes[6]]
    )
    del fake.SIGNATURES["portcullis_outcome_limited_by"]
    fake.SIGNATURES["portcullis_gate_flush"] = (ctypes.c_uint32, [ctypes.c_void_p])
    problems = "\n".join(drift(fake, header, truth))
    assert "PORTCULLIS_RESULT_CLOSED = 105: _native has CLOSED = 999" in problems
    assert "OutcomeInfo (portcullis_outcome_info): fields are ['action'," in problems
    assert "NativeDecision (portcullis_decision).at_ns: offset 48 size 8, ctypes offset 48 " \
           "size 4" in problems
    assert "PORTCULLIS_ACTION_LIMITED = 3: _native.Action has LIMITED = None" in problems
    assert "portcullis_gate_reset: takes 7 arguments, SIGNATURES declares 6" in problems
    assert ("portcullis_limiter_check_at: argument 6: uint64_t is 8 bytes unsigned, ctypes "
            "has 4 bytes unsigned") in problems
    assert "portcullis_outcome_limited_by: not in _native.SIGNATURES" in problems
    assert "SIGNATURES['portcullis_gate_flush'] is not a function of the header" in problems


def test_calls_that_can_wait_on_the_disk_release_the_gil(header: Header):
    # The header says which calls touch the store: each of them must be BLOCKING.
    touching = {
        name for name, fn in header.functions.items()
        if re.search(r"\b(store|durable|disk|fsync|flush)", fn.doc)
    }
    assert touching, "no function of the header mentions the store"
    assert touching <= _native.BLOCKING, touching - _native.BLOCKING
    assert _native.BLOCKING | _native.DURABLE <= set(_native.SIGNATURES)
    assert not _native.BLOCKING & _native.DURABLE


def test_each_function_holds_or_releases_the_gil_as_the_rule_says():
    fast, durable = _native.load(), _native.load(durable=True)
    assert not fast.durable and durable.durable
    for name in _native.SIGNATURES:
        assert fast.holds_gil(name) is (name not in _native.BLOCKING), name
        assert durable.holds_gil(name) is (
            name not in _native.BLOCKING and name not in _native.DURABLE
        ), name
        assert fast.raw(name)._flags_ == getattr(fast, name)._flags_
    # Both come from one loaded library: the same addresses.
    for name in ("portcullis_limiter_check", "portcullis_gate_open"):
        assert ctypes.cast(getattr(fast, name), ctypes.c_void_p).value == ctypes.cast(
            getattr(durable, name), ctypes.c_void_p).value
