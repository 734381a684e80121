"""Rate-limit decisions of portcullis through ctypes versus the ``limits`` package's in-memory
storage, same workloads, same run.

    python bench/bench_limits.py [--decisions 200000] [--keys 10000] [--repeat 3]
                                 [--threads 1,4]

First table: microseconds per decision on one thread, both at 1000 requests per minute per
key, on the system clock:

- ``round-robin``: ``--keys`` distinct keys in turn (every decision allowed);
- ``hot key``: one key (the first 1000 allowed, then denied).

portcullis runs ``Limiter.check(name, key)`` with a str key and the policy by name (the
ordinary call), and, as a second column, with bytes keys and the policy id (the floor of the
binding); its policy is ``sliding_window``, the closest to a moving window. ``limits`` runs
``MovingWindowRateLimiter(MemoryStorage()).hit(item, key)``.

Second table: decisions per second on one hot key of one shared limiter, by each of
``--threads`` threads at once (``--decisions`` in all, split evenly, the threads started
together): portcullis' ``sliding_window`` against ``limits``' moving window, and its
``fixed_window`` against ``limits``' ``FixedWindowRateLimiter``, both on ``MemoryStorage``.
``ours/limits`` is portcullis' rate divided by ``limits``' (above 1: portcullis decides more
per second).

Each cell is the best of ``--repeat`` runs on fresh limiters; the runs of the libraries
compared in a row alternate, so that a burst of load from elsewhere on the machine does not
fall on one of them only.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import threading
import time
from typing import Callable, List, Sequence

import portcullis

try:
    from limits import parse
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
except ImportError:  # pragma: no cover
    sys.exit("bench_limits needs the `limits` package: pip install limits")

CONFIG = """\
[store]
capacity = 65536

[[policy]]
name = "api"
algorithm = "sliding_window"
limit = "1000/1m"

[[policy]]
name = "fixed"
algorithm = "fixed_window"
limit = "1000/1m"
"""

HOT_KEY = "client-hot"


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


def best(factories: Sequence[Callable[[Sequence[str], int], Callable[[], None]]],
         keys: Sequence[str], decisions: int, repeat: int) -> List[float]:
    """The best µs per decision of each factory's runs, the runs taken in turn."""
    results: List[List[float]] = [[] for _ in factories]
    for _ in range(repeat):
        for i, factory in enumerate(factories):
            results[i].append(timed(factory(keys, decisions), decisions))
    return [min(r) for r in results]


def threaded(decide: Callable[[], object], threads: int, decisions: int) -> float:
    """Decisions per second of ``threads`` threads calling ``decide`` at once,
    ``decisions // threads`` times each."""
    each = decisions // threads
    start = threading.Barrier(threads + 1)

    def body() -> None:
        start.wait()
        for _ in range(each):
            decide()

    workers = [threading.Thread(target=body) for _ in range(threads)]
    for w in workers:
        w.start()
    gc.collect()
    gc.disable()
    try:
        start.wait()
        t0 = time.perf_counter_ns()
        for w in workers:
            w.join()
        elapsed = time.perf_counter_ns() - t0
    finally:
        gc.enable()
    return each * threads / (elapsed / 1e9)


def portcullis_hot(policy: str) -> Callable[[], object]:
    check = portcullis.Limiter.from_config(CONFIG).check
    return lambda: check(policy, HOT_KEY)


def limits_hot(strategy: type) -> Callable[[], object]:
    hit = strategy(MemoryStorage()).hit
    item = parse("1000/minute")
    return lambda: hit(item, HOT_KEY)


def best_rate(factories: Sequence[Callable[[], Callable[[], object]]], threads: int,
              decisions: int, repeat: int) -> List[float]:
    """The best decisions per second of each factory's runs, the runs taken in turn."""
    results: List[List[float]] = [[] for _ in factories]
    for _ in range(repeat):
        for i, factory in enumerate(factories):
            results[i].append(threaded(factory(), threads, decisions))
    return [max(r) for r in results]


def rule(header: str) -> str:
    return "|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|"


def main(argv: List[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--decisions", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", default="1,4",
                    help="thread counts of the hot-key table, comma-separated (default 1,4)")
    args = ap.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]

    workloads = {
        f"round-robin, {args.keys} keys": [f"client-{i}" for i in range(args.keys)],
        "hot key": [HOT_KEY],
    }
    print(f"portcullis {portcullis.library_version()} ({portcullis.load_library()})")
    print(f"Python {platform.python_version()} on {platform.machine()}, "
          f"{args.decisions} decisions per run, best of {args.repeat}")
    print()
    header = (f"| {'workload':<26} | {'portcullis µs':>13} | {'portcullis (bytes, id) µs':>25} "
              f"| {'limits µs':>9} | {'ours/limits':>11} |")
    print(header)
    print(rule(header))
    for name, keys in workloads.items():
        ours, floor, theirs = best([portcullis_str, portcullis_bytes, limits_moving_window],
                                   keys, args.decisions, args.repeat)
        print(f"| {name:<26} | {ours:>13.2f} | {floor:>25.2f} | {theirs:>9.2f} "
              f"| {ours / theirs:>11.2f} |")

    pairs = [
        ("sliding_window vs moving", lambda: portcullis_hot("api"),
         lambda: limits_hot(MovingWindowRateLimiter)),
        ("fixed_window vs fixed", lambda: portcullis_hot("fixed"),
         lambda: limits_hot(FixedWindowRateLimiter)),
    ]
    print()
    header = (f"| {'hot key, shared limiter':<24} | {'threads':>7} | "
              f"{'portcullis checks/s':>19} | {'limits checks/s':>15} | {'ours/limits':>11} |")
    print(header)
    print(rule(header))
    for name, ours_factory, theirs_factory in pairs:
        for threads in thread_counts:
            ours, theirs = best_rate([ours_factory, theirs_factory], threads, args.decisions,
                                     args.repeat)
            print(f"| {name:<24} | {threads:>7} | {ours:>19,.0f} | {theirs:>15,.0f} "
                  f"| {ours / theirs:>11.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
