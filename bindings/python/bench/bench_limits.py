"""Microseconds per rate-limit decision: portcullis through ctypes versus the ``limits``
package's in-memory moving window, same workloads, same run.

    python bench/bench_limits.py [--decisions 200000] [--keys 10000] [--repeat 3]

Workloads (both at 1000 requests per minute per key, on the system clock):

- ``round-robin``: ``--keys`` distinct keys in turn (every decision allowed);
- ``hot key``: one key (the first 1000 allowed, then denied).

portcullis runs ``Limiter.check(name, key)`` with a str key and the policy by name (the
ordinary call), and, as a second column, with bytes keys and the policy id (the floor of the
binding); its policy is ``sliding_window``, the closest to a moving window. ``limits`` runs
``MovingWindowRateLimiter(MemoryStorage()).hit(item, key)``. Each cell is the best of
``--repeat`` runs on fresh limiters.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
from typing import Callable, List, Sequence

import portcullis

try:
    from limits import parse
    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter
except ImportError:  # pragma: no cover
    sys.exit("bench_limits needs the `limits` package: pip install limits")

CONFIG = """\
[store]
capacity = 65536

[[policy]]
name = "api"
algorithm = "sliding_window"
limit = "1000/1m"
"""


def timed(run: Callable[[], None], decisions: int) -> float:
    """µs per decision of one run."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        run()
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / decisions / 1000


def portcullis_str(keys: Sequence[str], decisions: int) -> Callable[[], None]:
    limiter = portcullis.Limiter.from_config(CONFIG)
    check = limiter.check
    n = len(keys)

    def run() -> None:
        for i in range(decisions):
            check("api", keys[i % n])

    return run


def portcullis_bytes(keys: Sequence[str], decisions: int) -> Callable[[], None]:
    limiter = portcullis.Limiter.from_config(CONFIG)
    check = limiter.check
    policy = limiter.policy("api")
    raw = [k.encode() for k in keys]
    n = len(raw)

    def run() -> None:
        for i in range(decisions):
            check(policy, raw[i % n])

    return run


def limits_moving_window(keys: Sequence[str], decisions: int) -> Callable[[], None]:
    limiter = MovingWindowRateLimiter(MemoryStorage())
    item = parse("1000/minute")
    hit = limiter.hit
    n = len(keys)

    def run() -> None:
        for i in range(decisions):
            hit(item, keys[i % n])

    return run


def best(factory: Callable[[Sequence[str], int], Callable[[], None]], keys: Sequence[str],
         decisions: int, repeat: int) -> float:
    return min(timed(factory(keys, decisions), decisions) for _ in range(repeat))


def main(argv: List[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--decisions", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    workloads = {
        f"round-robin, {args.keys} keys": [f"client-{i}" for i in range(args.keys)],
        "hot key": ["client-hot"],
    }
    print(f"portcullis {portcullis.library_version()} ({portcullis.load_library()})")
    print(f"Python {platform.python_version()} on {platform.machine()}, "
          f"{args.decisions} decisions per run, best of {args.repeat}")
    print()
    header = (f"| {'workload':<26} | {'portcullis µs':>13} | {'portcullis (bytes, id) µs':>25} "
              f"| {'limits µs':>9} | {'ours/limits':>11} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, keys in workloads.items():
        ours = best(portcullis_str, keys, args.decisions, args.repeat)
        floor = best(portcullis_bytes, keys, args.decisions, args.repeat)
        theirs = best(limits_moving_window, keys, args.decisions, args.repeat)
        print(f"| {name:<26} | {ours:>13.2f} | {floor:>25.2f} | {theirs:>9.2f} "
              f"| {ours / theirs:>11.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
