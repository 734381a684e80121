"""Eight threads share one Limiter (and one Gate): the allowed count is exact."""

from __future__ import annotations

import threading
from typing import Callable, List

import portcullis
from portcullis import Action
from conftest import T0

THREADS = 8
TRIES = 400
QUOTA = 1000

CONFIG = """\
[[policy]]
name = "api"
algorithm = "fixed_window"
limit = "1000/h"

[[route]]
match = "/api/"
limits = [{ policy = "api", key = "principal" }]
"""


def run(worker: Callable[[int], bool]) -> List[List[int]]:
    """Runs ``worker(i)`` TRIES times on each of THREADS threads started together."""
    barrier = threading.Barrier(THREADS)
    counts: List[List[int]] = [[0, 0, 0] for _ in range(THREADS)]  # allowed, denied, errors

    def body(t: int) -> None:
        barrier.wait()
        for i in range(TRIES):
            try:
                counts[t][0 if worker(i) else 1] += 1
            except Exception:
                counts[t][2] += 1

    threads = [threading.Thread(target=body, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return counts


def test_limiter_shared_by_eight_threads():
    with portcullis.Limiter.from_config(CONFIG) as lim:
        counts = run(lambda i: lim.check("api", "shared-key", now_ns=T0 + i).allowed)
        allowed = sum(c[0] for c in counts)
        denied = sum(c[1] for c in counts)
        errors = sum(c[2] for c in counts)
        assert errors == 0
        assert allowed == QUOTA
        assert denied == THREADS * TRIES - QUOTA
        stats = lim.stats()[0]
        assert (stats["allowed"], stats["denied"]) == (QUOTA, THREADS * TRIES - QUOTA)


def test_gate_shared_by_eight_threads():
    with portcullis.Gate.from_config(CONFIG) as gate:

        def decide(i: int) -> bool:
            o = gate.decide("GET", "/api/items", principal="key-123", now_ns=T0 + i)
            if o.action is Action.LIMITED:
                assert o.status == 429 and o.header("Retry-After") is not None
                return False
            assert o.action is Action.PASS
            return True

        counts = run(decide)
        assert sum(c[2] for c in counts) == 0
        assert sum(c[0] for c in counts) == QUOTA
        assert sum(c[1] for c in counts) == THREADS * TRIES - QUOTA
