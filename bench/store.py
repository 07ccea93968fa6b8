"""The order store: claims and writes per second at 100,000 stored orders, and the cost of
an attempt polled through a store (``Worker``) ÷ the same attempt polled in memory.

``python -m bench.store [--orders N] [--url URL ...]`` prints a Markdown table. Without
``--url`` it measures ``memory://``, a SQLite file in a temporary directory and a PostgreSQL
server started as the test suite does (tests/realservers.py); give ``postgresql://`` URLs
(empty databases) to measure others. ``make bench`` writes the table as section 7 of
docs/benchmarks.md.

* **claims/s**: orders claimed per second, in claims of 100, until 10,000 are held.
* **writes/s**: fenced writes per second on those claims (a reschedule, then the final
  answer), one transaction each.
* **store ÷ memory, per attempt**: CPU seconds of this process per request the simulated
  CA saw, for ``Worker`` over the store ÷ ``poll_many`` over the same orders in memory;
  each order needs a few attempts before it is issued. (PostgreSQL's own CPU is in its
  server process, not counted.)
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import certpoll
from certpoll.testing import OrderScript, Profile, SimulatedCA
from tests.realservers import running_postgres

from ._common import make_csr

#: Seeding goes through the public API in batches of this many concurrent submissions.
_SEED_BATCH = 500


@dataclass(frozen=True, slots=True)
class StoreResult:
    """One backend's figures."""

    url: str
    stored: int
    claims_per_second: float
    writes_per_second: float
    cpu_ratio: float


async def _seed(store: certpoll.OrderStore, count: int) -> None:
    async def one(index: int) -> None:
        intent, _ = await store.add_intent(
            key=f"k{index:06d}",
            ca="digicert",
            fingerprint=f"f{index}",
            common_name=f"o{index}.bench.example",
            owner="seed",
            lease=60,
        )
        await store.release(
            await store.record_submitted(intent, order_id=str(100001 + index), deadline_in=3600)
        )

    for start in range(0, count, _SEED_BATCH):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + _SEED_BATCH))))


async def _claims_and_writes(store: certpoll.OrderStore, stored: int) -> tuple[float, float]:
    held: list[certpoll.StoredOrder] = []
    started = time.perf_counter()
    while len(held) < min(10_000, stored):
        held += await store.claim(owner="bench", cas=["digicert"], limit=100, lease=600)
    claims = len(held) / (time.perf_counter() - started)
    final = certpoll.OrderStatus(
        ca="digicert", order_id="1", state=certpoll.OrderState.FAILED, message="bench"
    )
    sample = held[:2000]
    started = time.perf_counter()
    for record in sample:
        later = await store.reschedule(record, attempts=1, due_in=60, last_error=None)
        await store.complete(later, final, attempts=2)
    writes = 2 * len(sample) / (time.perf_counter() - started)
    return claims, writes


def _settings(sim: SimulatedCA) -> certpoll.DigiCertSettings:
    return certpoll.DigiCertSettings(
        api_key=sim.credentials.digicert_api_key,
        org_id=sim.credentials.digicert_org_id,
        base_url=sim.base_urls().digicert,
        poll_initial_wait_seconds=0.05,
        poll_max_backoff_seconds=0.2,
        rate_limits=(),  # no waiting at the gate: only CPU is compared
    )


def _sim() -> SimulatedCA:
    # Issued 1.5 s after submission: several attempts each, as real orders need.
    return SimulatedCA(
        profile=Profile.fixed(OrderScript(issue_after=1.5)), speed=1.0, digicert_rate_limits=()
    )


async def _submit(sim: SimulatedCA, orders: int) -> list[str]:
    async with sim.client() as http, certpoll.DigiCert(_settings(sim), http=http) as dc:
        csr = make_csr()
        return [
            (
                await dc.issue(
                    certpoll.CertificateRequest(common_name=f"o{i}.example", csr_pem=csr)
                )
            ).order_id
            for i in range(orders)
        ]


async def _in_memory(orders: int) -> float:
    sim = _sim()
    ids = await _submit(sim, orders)
    before_requests, before = sim.requests, time.process_time()
    async with (
        sim.client() as http,
        certpoll.DigiCert(_settings(sim), http=http) as dc,
        certpoll.poll_many(dc, ids) as stream,
    ):
        async for _ in stream:
            pass
    return (time.process_time() - before) / (sim.requests - before_requests)


async def _through_store(url: str, orders: int) -> float:
    sim = _sim()
    store = certpoll.open_store(url)
    try:
        async with sim.client() as http, certpoll.DigiCert(_settings(sim), http=http) as dc:
            csr = make_csr()
            for index in range(orders):
                request = certpoll.CertificateRequest(common_name=f"o{index}.example", csr_pem=csr)
                await certpoll.submit_order(dc, store, request, key=f"cost{index}")
            before_requests, before = sim.requests, time.process_time()
            done = asyncio.Event()
            settled = 0

            def count(event: certpoll.WorkerEvent) -> None:
                nonlocal settled
                settled += event.kind in ("issued", "failed")
                if settled == orders:
                    done.set()

            worker = certpoll.Worker(store, [dc], lease=10, claim_interval=0.01, on_event=count)
            running = asyncio.create_task(worker.run())
            await done.wait()
            worker.stop()
            await running
            return (time.process_time() - before) / (sim.requests - before_requests)
    finally:
        await store.aclose()


async def measure(url: str, *, stored: int, cost_orders: int) -> StoreResult:
    """All figures for one store URL (an empty store)."""
    store = certpoll.open_store(url)
    try:
        await _seed(store, stored)
        claims, writes = await _claims_and_writes(store, stored)
    finally:
        await store.aclose()
    cost_url = url if not url.startswith("memory") else "memory://"
    with_store = await _through_store(_fresh(cost_url), cost_orders)
    without = await _in_memory(cost_orders)
    return StoreResult(url, stored, claims, writes, with_store / without)


def _fresh(url: str) -> str:
    """Another empty store beside ``url`` (a new SQLite file; PostgreSQL: the same database,
    whose keys ``cost…`` do not clash with the seeded ones)."""
    if url.startswith("sqlite"):
        return f"sqlite:///{tempfile.mkdtemp(prefix='certpoll-bench-')}/cost.db"
    return url


#: The goal of the issue: an attempt through a SQLite store costs at most this × in memory.
SQLITE_GOAL = 1.2


def run(
    *, orders: int = 100_000, cost_orders: int = 300, urls: Sequence[str] | None = None
) -> list[StoreResult]:
    """Each store's figures; without ``urls``: memory, a SQLite file and a PostgreSQL server."""
    with ExitStack() as stack:
        if urls is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="certpoll-bench-"))
            urls = [
                "memory://",
                f"sqlite:///{folder}/orders.db",
                stack.enter_context(running_postgres()),
            ]
        return [asyncio.run(measure(url, stored=orders, cost_orders=cost_orders)) for url in urls]


def section(results: Sequence[StoreResult], add: Callable[[str], object]) -> None:
    """The Markdown section of docs/benchmarks.md."""
    add("## 7. The order store")
    add("")
    add(
        "`bench/store.py`: claims per second (in claims of 100, until 10,000 are held) and "
        "fenced writes per second (a reschedule, then the final answer; one transaction each) "
        "with this many orders stored; and the CPU of this process per request the simulated "
        "CA saw for `Worker` over the store ÷ `poll_many` over the same orders in memory "
        f"(goal on SQLite ≤ {SQLITE_GOAL}×; PostgreSQL's own CPU is in its server process, "
        "not counted)."
    )
    add("")
    add("| store | stored | claims/s | writes/s | CPU per attempt, store ÷ memory |")
    add("|---|---|---|---|---|")
    for result in results:
        scheme = result.url.split(":", 1)[0]
        add(
            f"| {scheme} | {result.stored:,} | {result.claims_per_second:,.0f} | "
            f"{result.writes_per_second:,.0f} | {result.cpu_ratio:.2f}× |"
        )
    add("")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__)
    parser.add_argument("--orders", type=int, default=100_000, help="orders stored")
    parser.add_argument("--cost-orders", type=int, default=300, help="orders polled")
    parser.add_argument("--url", action="append", help="a store URL (repeat)")
    args = parser.parse_args(argv)
    section(run(orders=args.orders, cost_orders=args.cost_orders, urls=args.url), print)


if __name__ == "__main__":
    main()
