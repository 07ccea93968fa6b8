"""Workload 2: 1,000 to 100,000 orders pending at once in one event loop.

Each size runs in its own process (so its peak RSS is its own), on a virtual-time loop with
the simulator in-process (DigiCert's limits off: this measures the client, not throttling).
Every order waits for approval; ``poll_many`` watches all N from the start.

* **memory per pending order**: tracemalloc is started after the baseline (the simulator
  holding N orders, the N ids); once ``MEMORY_ATTEMPTS`` looks (N/4 for small N) are done
  and all N orders sit in ``poll_many``'s heap, the memory traced since, divided by N.
* **CPU per attempt**: ``time.process_time()`` over the next ``cpu_attempts`` first looks,
  with tracemalloc off, client and in-process simulator together.
* **peak RSS**: ``ru_maxrss`` of the process at the end.
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass

import certpoll

from ._common import Stats, digicert_settings, pending_sim, run_virtual, seed_orders, summarize

MEMORY_ATTEMPTS = 1000


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """Per N: bytes per pending order, CPU µs per attempt, peak RSS MiB."""

    sizes: tuple[int, ...]
    bytes_per_order: dict[int, Stats]
    cpu_us: dict[int, Stats]
    peak_rss_mib: dict[int, Stats]
    baseline_rss_mib: dict[int, Stats]
    #: CPU per attempt at the largest N / at the smallest, per repeat
    cpu_ratio: Stats


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


async def _child(n: int, cpu_attempts: int) -> dict[str, float]:
    sim = pending_sim(digicert_rate_limits=())
    ids = seed_orders(sim, n)
    seen = 0
    marks: dict[str, float] = {}
    done = asyncio.Event()
    # Both windows hold first looks only, for every N: later looks come one at a time
    # after a virtual sleep and cost more loop work each, which would blur the comparison.
    memory_at = max(1, min(MEMORY_ATTEMPTS, n // 4))
    cpu_attempts = max(1, min(cpu_attempts, n - memory_at - 1))

    def hook(details: certpoll.PollDetails) -> None:
        nonlocal seen
        seen += 1
        if seen == memory_at:
            marks["traced"] = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            marks["cpu0"] = time.process_time()
        elif seen == memory_at + cpu_attempts:
            marks["cpu1"] = time.process_time()
            done.set()

    settings = digicert_settings(sim, max_wait=1e7)
    # What the first look imports (the connectors and poll_many, loaded on first use, and
    # httpx's ASGI helpers) is loaded once per process, not per order: load it untraced.
    async with sim.client() as http:
        await certpoll.DigiCert(settings, http=http).poll_once(ids[0])
    start_polling = certpoll.poll_many
    gc.collect()
    baseline = _rss_mib()
    tracemalloc.start()
    async with sim.client() as http:
        connector = certpoll.DigiCert(
            settings, http=http, poller=settings.make_poller(hooks=(hook,))
        )
        stream = start_polling(connector, ids, concurrency=10)

        async def consume() -> None:
            async for _ in stream:
                pass

        task = asyncio.create_task(consume())
        await done.wait()
        await stream.aclose()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return {
        "bytes_per_order": marks["traced"] / n,
        "cpu_us": (marks["cpu1"] - marks["cpu0"]) / cpu_attempts * 1e6,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "baseline_rss_mib": baseline,
    }


def _spawn(n: int, cpu_attempts: int) -> dict[str, float]:
    out = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "bench.scale", str(n), str(cpu_attempts)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def run(
    *, sizes: tuple[int, ...] = (1_000, 10_000, 100_000), cpu_attempts: int = 3000, repeats: int = 3
) -> ScaleResult:
    """One process per size and repeat."""
    rows: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
    for _ in range(repeats):
        for n in sizes:
            rows[n].append(_spawn(n, cpu_attempts))

    def stat(key: str) -> dict[int, Stats]:
        return {n: summarize(r[key] for r in rows[n]) for n in sizes}

    return ScaleResult(
        sizes=sizes,
        bytes_per_order=stat("bytes_per_order"),
        cpu_us=stat("cpu_us"),
        peak_rss_mib=stat("peak_rss_mib"),
        baseline_rss_mib=stat("baseline_rss_mib"),
        cpu_ratio=summarize(
            big["cpu_us"] / small["cpu_us"]
            for big, small in zip(rows[max(sizes)], rows[min(sizes)], strict=True)
        ),
    )


if __name__ == "__main__":
    size, attempts = int(sys.argv[1]), int(sys.argv[2])
    print(json.dumps(run_virtual(lambda: _child(size, attempts))))
