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
  CA saw, for ``Worker.drain`` over the store (``poll_many`` over the store: claims, lease
  renewals, every answer written) ÷ ``poll_many`` over the same orders in memory; each
  order needs a few attempts before it is issued. Both run in each round, in alternating
  order, and the median of the rounds' ratios is shown. (PostgreSQL's own CPU is in its
  server process, not counted.)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
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


async def _cpu_per_attempt(sim: SimulatedCA, work: Callable[[], Awaitable[object]]) -> float:
    """CPU seconds of this process per request the simulated CA saw while ``work`` ran."""
    before_requests, before = sim.requests, time.process_time()
    await work()
    return (time.process_time() - before) / max(1, sim.requests - before_requests)


async def _cost(url: str, orders: int, *, through_store: bool) -> float:
    """CPU per attempt polling ``orders`` orders, through the store at ``url`` or in memory.

    Both ways submit the orders the same way first (through the store, intent first), so
    that their orders are as old, and need as many attempts, when polling starts.
    """
    sim = _sim()
    store = certpoll.open_store(url)
    try:
        async with sim.client() as http, certpoll.DigiCert(_settings(sim), http=http) as dc:
            csr = make_csr()
            ids = []
            for index in range(orders):
                request = certpoll.CertificateRequest(common_name=f"o{index}.example", csr_pem=csr)
                record = await certpoll.submit_order(dc, store, request, key=f"cost{index}")
                ids.append(record.order_id or "")
            if through_store:
                # The service's path: a worker drains the store (claims, polls, writes back).
                worker = certpoll.Worker(store, [dc], lease=10, batch=1000, max_held=1000)
                return await _cpu_per_attempt(sim, worker.drain)

            async def in_memory() -> None:
                async with certpoll.poll_many(dc, ids) as stream:
                    async for _ in stream:
                        pass

            return await _cpu_per_attempt(sim, in_memory)
    finally:
        await store.aclose()


async def _empty(url: str) -> None:
    """Remove every order from the PostgreSQL store at ``url`` (each round's simulated CA
    numbers its orders from the same first id, and a CA's order id is stored once)."""
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute("TRUNCATE certpoll_orders")
    finally:
        await connection.close()


async def _cost_ratio(url: str, orders: int, repeats: int) -> float:
    """The median, over ``repeats`` rounds, of CPU per attempt through the store ÷ in
    memory; in each round both run, one after the other, in alternating order."""
    ratios = []
    for round_ in range(repeats):
        costs = {}
        for through_store in (True, False) if round_ % 2 else (False, True):
            fresh = _fresh(url)
            if fresh.startswith("postgresql"):
                await _empty(fresh)
            costs[through_store] = await _cost(fresh, orders, through_store=through_store)
        ratios.append(costs[True] / costs[False])
    return statistics.median(ratios)


async def measure(url: str, *, stored: int, cost_orders: int, repeats: int = 5) -> StoreResult:
    """All figures for one store URL (an empty store)."""
    store = certpoll.open_store(url)
    try:
        await _seed(store, stored)
        claims, writes = await _claims_and_writes(store, stored)
    finally:
        await store.aclose()
    ratio = await _cost_ratio(url, cost_orders, repeats)
    return StoreResult(url, stored, claims, writes, ratio)


def _fresh(url: str) -> str:
    """An empty store beside ``url``: a new SQLite file, a new memory store, or the same
    PostgreSQL database (emptied by the caller)."""
    if url.startswith("sqlite"):
        return f"sqlite:///{tempfile.mkdtemp(prefix='certpoll-bench-')}/cost.db"
    return url


#: The goal of the issue: an attempt through a SQLite store costs at most this × in memory.
SQLITE_GOAL = 1.2


def run(
    *,
    orders: int = 100_000,
    cost_orders: int = 300,
    repeats: int = 5,
    urls: Sequence[str] | None = None,
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
        return [
            asyncio.run(measure(url, stored=orders, cost_orders=cost_orders, repeats=repeats))
            for url in urls
        ]


def section(results: Sequence[StoreResult], add: Callable[[str], object]) -> None:
    """The Markdown section of docs/benchmarks.md."""
    add("## 7. The order store")
    add("")
    add(
        "`bench/store.py`: claims per second (in claims of 100, until 10,000 are held) and "
        "fenced writes per second (a reschedule, then the final answer; one transaction each) "
        "with this many orders stored; and the CPU of this process per request the simulated "
        "CA saw for `Worker.drain` over the store ÷ `poll_many` over the same orders in memory "
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
    parser.add_argument("--repeats", type=int, default=5, help="rounds of the cost ratio")
    parser.add_argument("--url", action="append", help="a store URL (repeat)")
    args = parser.parse_args(argv)
    results = run(
        orders=args.orders, cost_orders=args.cost_orders, repeats=args.repeats, urls=args.url
    )
    section(results, print)


if __name__ == "__main__":
    main()
