"""The `limits` package's Redis storage doing the check portcullis's Redis bench does: a fixed
window of 16,000,000/hour on 10,000 keys, from 1, 8 and 64 threads (a connection pool as large),
printing checks per second and p50 / p99 latency per call in the bench's format.

    python benches/redis/limits_driver.py redis://127.0.0.1:6379/0
"""

import sys
import threading
import time

from limits import RateLimitItemPerHour
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

KEYS = 10_000


def run(url: str, threads: int) -> None:
    storage = storage_from_string(url, max_connections=threads)
    limiter = FixedWindowRateLimiter(storage)
    item = RateLimitItemPerHour(16_000_000)
    per_thread = max(40_000 // threads, 500)
    start = threading.Barrier(threads + 1)
    lats: list[list[float]] = [[] for _ in range(threads)]

    def work(t: int) -> None:
        lat = lats[t]
        start.wait()
        for i in range(per_thread):
            key = str((t * per_thread + i) % KEYS)
            at = time.perf_counter()
            limiter.hit(item, "limits-bench", key)
            lat.append(time.perf_counter() - at)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    all_lat = sorted(x for lat in lats for x in lat)
    n = len(all_lat)
    print(
        f"limits threads={threads} algorithm=fixed_window checks={n} "
        f"checks_per_s={n / elapsed:.0f} p50_us={all_lat[n // 2] * 1e6:.1f} "
        f"p99_us={all_lat[min(int(n * 0.99), n - 1)] * 1e6:.1f}"
    )


if __name__ == "__main__":
    for n in (1, 8, 64):
        run(sys.argv[1], n)
