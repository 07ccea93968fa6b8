"""Workload 2: 1,000 to 100,000 orders pending at once in one event loop.

Each size runs in processes of its own (so its peak RSS is its own), on a virtual-time loop
with the simulator in-process (DigiCert's limits off: this measures the client, not
throttling). Every order waits for approval; ``poll_many`` watches all N from the start.

* **memory per pending order** (a process of its own, once per size: the figure does not
  vary): tracemalloc is started after the baseline (the N ids, and a mock CertCentral that
  answers "needs_approval" and keeps nothing, so only the client's memory is traced, and
  100,000 looks under tracemalloc take a minute, not the simulator's five); once every
  order has had its first look and all N sit in ``poll_many``'s heap, the memory traced
  since, divided by N.
* **set-up per order**: ``time.process_time()`` of ``poll_many(...)`` and its start (the
  records and the heap, made by the first ``handle()``), divided by N.
* **CPU per attempt**: ``time.process_time()`` over ``cpu_attempts`` first looks after the
  first ``WARM_ATTEMPTS`` (N/4 for small N), client and in-process simulator together.
* **peak RSS**: ``ru_maxrss`` of the CPU process at the end.
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

import httpx

import certpoll

from ._common import Stats, digicert_settings, pending_sim, run_virtual, seed_orders, summarize

WARM_ATTEMPTS = 1000


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """Per N: bytes per pending order, set-up and CPU µs, peak RSS MiB."""

    sizes: tuple[int, ...]
    bytes_per_order: dict[int, Stats]
    setup_us: dict[int, Stats]
    cpu_us: dict[int, Stats]
    peak_rss_mib: dict[int, Stats]
    baseline_rss_mib: dict[int, Stats]
    #: CPU per attempt at the largest N / at the smallest, per repeat
    cpu_ratio: Stats
    #: set-up per order at the largest N / at the next smaller N, per repeat
    setup_ratio: Stats


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


async def _child(n: int, cpu_attempts: int, measure: str) -> dict[str, float]:
    """One process's figures: ``measure`` is "memory" or "cpu"."""
    sim = pending_sim(digicert_rate_limits=())
    tracing = measure == "memory"
    ids = [str(1000 + i) for i in range(n)] if tracing else seed_orders(sim, n)
    seen = 0
    marks: dict[str, float] = {}
    done = asyncio.Event()
    # The CPU window holds first looks only, for every N: later looks come one at a time
    # after a virtual sleep and cost more loop work each, which would blur the comparison.
    warm = max(1, min(WARM_ATTEMPTS, n // 4))
    cpu_attempts = max(1, min(cpu_attempts, n - warm - 1))

    def hook(details: certpoll.PollDetails) -> None:
        nonlocal seen
        seen += 1
        if tracing:
            if seen == n:  # every order has had its first look, and waits in the heap
                marks["traced"] = tracemalloc.get_traced_memory()[0]
                tracemalloc.stop()
                done.set()
        elif seen == warm:
            marks["cpu0"] = time.process_time()
        elif seen == warm + cpu_attempts:
            marks["cpu1"] = time.process_time()
            done.set()

    settings = digicert_settings(sim, max_wait=1e7)

    def client() -> httpx.AsyncClient:
        if tracing:
            return httpx.AsyncClient(transport=httpx.MockTransport(_needs_approval))
        return sim.client()

    # What the first look imports (the connectors and poll_many, loaded on first use, and
    # httpx's ASGI helpers) is loaded once per process, not per order: load it untraced.
    async with client() as http:
        await certpoll.DigiCert(settings, http=http).poll_once(ids[0])
    start_polling = certpoll.poll_many
    gc.collect()
    baseline = _rss_mib()
    if tracing:
        tracemalloc.start()
    async with client() as http:
        connector = certpoll.DigiCert(
            settings, http=http, poller=settings.make_poller(hooks=(hook,))
        )
        setup0 = time.process_time()
        stream = start_polling(connector, ids, concurrency=10)
        stream.handle(ids[0])  # starts the stream: every order's record, and the heap
        setup = time.process_time() - setup0

        async def consume() -> None:
            async for _ in stream:
                pass

        task = asyncio.create_task(consume())
        await done.wait()
        await stream.aclose()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    if tracing:
        return {"bytes_per_order": marks["traced"] / n}
    return {
        "setup_us": setup / n * 1e6,
        "cpu_us": (marks["cpu1"] - marks["cpu0"]) / cpu_attempts * 1e6,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "baseline_rss_mib": baseline,
    }


def _needs_approval(request: httpx.Request) -> httpx.Response:
    """CertCentral's answer about any order awaiting approval."""
    order_id = int(request.url.path.rsplit("/", 1)[1])
    return httpx.Response(200, json={"id": order_id, "status": "needs_approval"})


def _spawn(n: int, cpu_attempts: int, measure: str) -> dict[str, float]:
    out = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "bench.scale", str(n), str(cpu_attempts), measure],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def run(
    *, sizes: tuple[int, ...] = (1_000, 10_000, 100_000), cpu_attempts: int = 3000, repeats: int = 3
) -> ScaleResult:
    """One process per size and repeat for CPU and set-up; one per size for memory."""
    ordered = sorted(sizes)
    rows: dict[int, list[dict[str, float]]] = {n: [] for n in ordered}
    for _ in range(repeats):
        for n in ordered:
            rows[n].append(_spawn(n, cpu_attempts, "cpu"))
    memory = {n: _spawn(n, cpu_attempts, "memory")["bytes_per_order"] for n in ordered}

    def stat(key: str) -> dict[int, Stats]:
        return {n: summarize(r[key] for r in rows[n]) for n in ordered}

    def ratio(key: str, big: int, small: int) -> Stats:
        return summarize(b[key] / s[key] for b, s in zip(rows[big], rows[small], strict=True))

    return ScaleResult(
        sizes=tuple(ordered),
        bytes_per_order={n: summarize([memory[n]]) for n in ordered},
        setup_us=stat("setup_us"),
        cpu_us=stat("cpu_us"),
        peak_rss_mib=stat("peak_rss_mib"),
        baseline_rss_mib=stat("baseline_rss_mib"),
        cpu_ratio=ratio("cpu_us", ordered[-1], ordered[0]),
        setup_ratio=ratio("setup_us", ordered[-1], ordered[max(0, len(ordered) - 2)]),
    )


if __name__ == "__main__":
    size, attempts, what = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    print(json.dumps(run_virtual(lambda: _child(size, attempts, what))))
