"""The shared gate: many processes on one DigiCert credential, and one admission's cost.

``python -m bench.shared_gate [--processes 4] [--orders 500] [--admissions 2000]`` starts a
PostgreSQL and a Redis server as the test suite does (tests/realservers.py), and prints two
Markdown tables:

1. **Processes.** The simulated CA served on 127.0.0.1 enforces DigiCert's documented
   limits (100 / 5 s, 1,000 / 3 min per API key), its time running ``SPEED`` times faster
   than the wall clock so that a run takes seconds rather than minutes (loopback's ~1 ms
   becomes ~10 ms of CA time; the gate's limits and margin are scaled alike).
   ``--processes`` worker processes each ``poll_many``
   their share of ``--orders`` issued orders (a status look and a download each) through
   their own connector, at the documented limits, with the gate on each backend; and,
   for contrast, with a gate per process (``memory://``, today's default). Measured: the
   429s the simulator sent (goal 0), the most requests in any rolling 5 s and 3 min window
   as the simulator counted them ÷ the limit (goal ≤ 1), and the time from the first
   request to the last ÷ the least the limits allow (goal ≤ 1.1).
2. **Cost.** ``admit`` + ``report`` (one request's two steps) on each backend, one after
   another on one key with room in its windows: median and p99, in milliseconds. The
   goal: one round trip on Redis (one ``EVALSHA``), one transaction on PostgreSQL.

Part of ``make bench`` (section 6 of docs/benchmarks.md, with the servers started as above);
``python -m bench.shared_gate`` prints that section alone.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from certpoll import (
    Admitted,
    Answer,
    DigiCert,
    GateRules,
    OrderState,
    UpstreamGate,
    gate_key,
    open_gate_backend,
    poll_many,
)
from certpoll.testing import DIGICERT, SimulatedCA, serve
from tests.realservers import running_postgres, running_redis

from ._common import digicert_settings, seed_orders
from .ratelimit import minimum_drain

#: DigiCert's documented windows, with room: every admission is let through.
RULES = GateRules(limits=((100_000, 5.0), (1_000_000, 180.0)), pace=False)
KEY = gate_key("digicert", "bench-shared-gate")


async def _cost(url: str, admissions: int) -> tuple[list[float], list[float]]:
    """Seconds per ``admit`` and per ``report``."""
    backend = open_gate_backend(url)
    admits: list[float] = []
    reports: list[float] = []
    try:
        for _ in range(admissions + 20):  # the first 20 warm up connections and scripts
            started = time.perf_counter()
            decision = await backend.admit(KEY, RULES)
            admitted = time.perf_counter()
            assert isinstance(decision, Admitted)
            await backend.report(KEY, RULES, Answer(decision.ticket))
            admits.append(admitted - started)
            reports.append(time.perf_counter() - admitted)
    finally:
        await backend.aclose()
    return admits[20:], reports[20:]


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def run(admissions: int = 2000) -> list[tuple[str, float, float, float, float]]:
    """Per backend: name, admit median and p99, report median and p99 (milliseconds)."""
    rows = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        urls = {
            "memory": "memory://",
            "sqlite": f"sqlite:///{folder}/gate.db",
            "redis": stack.enter_context(running_redis()),
            "postgresql": stack.enter_context(running_postgres()),
        }
        for name, url in urls.items():
            admits, reports = asyncio.run(_cost(url, admissions))
            rows.append(
                (
                    name,
                    statistics.median(admits) * 1e3,
                    _p99(admits) * 1e3,
                    statistics.median(reports) * 1e3,
                    _p99(reports) * 1e3,
                )
            )
    return rows


# -- many processes on one credential ---------------------------------------------------------

#: Simulated seconds per wall-clock second.
SPEED = 10.0
#: Wall-clock seconds for the worker processes to start, before they all begin at once.
START_AFTER = 5.0


# The ASGI types, as the simulator spells them.
Message = dict[str, object]
Scope = dict[str, object]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class CountingCA(SimulatedCA):
    """The simulated CA, noting the (simulated) time of every request it receives."""

    def __init__(self, speed: float) -> None:
        super().__init__(speed=speed)
        self.arrivals: list[float] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.arrivals.append(self.now())
        await super().__call__(scope, receive, send)


def _scaled(limits: tuple[tuple[int, float], ...], speed: float) -> tuple[tuple[int, float], ...]:
    return tuple((requests, seconds / speed) for requests, seconds in limits)


async def _poll_share(
    base_url: str, gate_url: str, orders: list[str], start: float, speed: float
) -> None:
    # Every process starts at one instant, not as each finishes spawning.
    await asyncio.sleep(max(0.0, start - time.time()))
    limits = _scaled(DIGICERT.RATE_LIMITS, speed)
    settings = digicert_settings(base_url, rate_limits=limits, max_wait=24 * 3600.0)
    gate = UpstreamGate(
        rate_limits=limits,
        backend=open_gate_backend(gate_url),
        key=gate_key("digicert", settings.api_key.get_secret_value()),
        margin=GateRules().margin / speed,
    )
    async with DigiCert(settings, gate=gate) as dc, poll_many(dc, orders) as stream:
        async for status in stream:
            assert status.state is OrderState.ISSUED, status
    await gate.aclose()


def _worker(base_url: str, gate_url: str, orders: list[str], start: float, speed: float) -> None:
    asyncio.run(_poll_share(base_url, gate_url, orders, start, speed))


def busiest(times: list[float], seconds: float) -> int:
    """The most arrivals in any window of ``seconds``, as the CA counts them."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - seconds:  # the simulator's window: open at its edge
            start += 1
        best = max(best, end - start + 1)
    return best


async def _fleet_run(
    processes: int, orders: int, gate_url: str, speed: float
) -> tuple[int, float, float, float]:
    """429s, busiest 5 s and 3 min windows ÷ limit, drain ÷ minimum."""
    sim = CountingCA(speed)
    ids = seed_orders(sim, orders)
    shares = [ids[i::processes] for i in range(processes)]
    context = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    async with serve(sim, tls=False) as served:
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            start = time.time() + START_AFTER
            url = served.base_urls.digicert
            runs = [
                loop.run_in_executor(pool, _worker, url, gate_url, share, start, speed)
                for share in shares
            ]
            await asyncio.gather(*runs)
    (short, short_s), (long, long_s) = DIGICERT.RATE_LIMITS
    drain = max(sim.arrivals) - min(sim.arrivals)
    least = minimum_drain(len(sim.arrivals) - sim.throttled, DIGICERT.RATE_LIMITS)
    return (
        sim.throttled,
        busiest(sim.arrivals, short_s) / short,
        busiest(sim.arrivals, long_s) / long,
        drain / least,
    )


def fleet(
    processes: int, orders: int, urls: dict[str, str], *, speed: float = SPEED
) -> list[tuple[str, ...]]:
    """One row per backend, and one with a gate per process."""
    rows: list[tuple[str, ...]] = []
    for name, url in [*urls.items(), ("a gate per process", "memory://")]:
        throttled, short, long, drain = asyncio.run(_fleet_run(processes, orders, url, speed))
        rows.append((name, str(throttled), f"{short:.2f}", f"{long:.2f}", f"{drain:.2f}"))
    return rows


@dataclass(frozen=True, slots=True)
class SharedGateResult:
    """Both tables: the fleet on each backend, and one admission's cost on each."""

    processes: int
    orders: int
    speed: float
    fleet: list[tuple[str, ...]]
    cost: list[tuple[str, float, float, float, float]]


def measure(
    *,
    processes: int = 4,
    orders: int = 500,
    admissions: int = 2000,
    speed: float = SPEED,
    servers: bool = True,
) -> SharedGateResult:
    """Both measurements; ``servers=False`` leaves out Redis and PostgreSQL (a smoke run)."""
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        shared = {"sqlite": f"sqlite:///{folder}/fleet.db"}
        if servers:
            shared["redis"] = stack.enter_context(running_redis())
            shared["postgresql"] = stack.enter_context(running_postgres())
        rows = fleet(processes, orders, shared, speed=speed)
    cost = run(admissions) if servers else []
    return SharedGateResult(processes, orders, speed, rows, cost)


def section(result: SharedGateResult, add: Callable[[str], object]) -> None:
    """The Markdown section of docs/benchmarks.md."""
    add("## 6. Many processes on one credential: the shared gate")
    add("")
    add(
        f"`bench/shared_gate.py`: {result.processes} worker processes each `poll_many` their "
        f"share of {result.orders:,} issued DigiCert orders (a status look and a download "
        "each) against the simulated CA served on 127.0.0.1, which enforces DigiCert's "
        "documented limits (100 / 5 s, 1,000 / 3 min) on a clock "
        f"{result.speed:g} times faster than the wall's (the gate's limits and margin are "
        "scaled alike). Goals: 0 429s, the "
        "busiest windows as the CA counted them ≤ 1, drain ÷ the least the limits allow "
        "≤ 1.1. The last row gives each process its own gate (`memory://`, the default)."
    )
    add("")
    add("| gate | 429s | busiest 5 s ÷ 100 | busiest 3 min ÷ 1000 | drain ÷ least |")
    add("|---|---|---|---|---|")
    for row in result.fleet:
        add(f"| {' | '.join(row)} |")
    add("")
    if result.cost:
        add(
            "One request's two steps on each backend, one after another on one key with room "
            "in its windows (milliseconds; Redis: one `EVALSHA`, PostgreSQL: one transaction):"
        )
        add("")
        add("| backend | admit median | admit p99 | report median | report p99 |")
        add("|---|---|---|---|---|")
        for name, admit, admit99, report, report99 in result.cost:
            add(f"| {name} | {admit:.3f} | {admit99:.3f} | {report:.3f} | {report99:.3f} |")
        add("")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shared_gate", description=__doc__)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--admissions", type=int, default=2000)
    parser.add_argument("--speed", type=float, default=SPEED, help="CA seconds per second")
    args = parser.parse_args(argv)
    result = measure(
        processes=args.processes, orders=args.orders, admissions=args.admissions, speed=args.speed
    )
    section(result, print)


if __name__ == "__main__":
    main()
