"""The shared gate: many processes on one DigiCert credential, and one admission's cost.

``python -m bench.shared_gate [--processes 4] [--orders 10000] [--speed 60]`` starts a
PostgreSQL and a Redis server as the test suite does (tests/realservers.py), and prints
three Markdown tables:

1. **Processes.** The simulated CA served on 127.0.0.1 enforces DigiCert's documented
   limits (100 / 5 s, 1,000 / 3 min per API key), its clock ``SPEED`` times faster than the
   wall's: 4 × 2,500 issued orders (a status look and a download each: 20,000 requests)
   need at least 3,465 s of the CA's time, 58 s on the wall. The gate's limits, margin and
   cooldown and the orders' backoff are scaled alike. ``--processes`` worker processes each
   ``poll_many`` their share through their own connector, at the documented limits, with
   the gate on each backend; then with a gate per process (``memory://``, the default) for
   contrast; then on Redis and PostgreSQL with one process's clock ``SKEW`` ahead and
   another's behind. Measured: the 429s the simulator sent (goal 0), the most requests in
   any rolling 5 s and 3 min window as the simulator counted them ÷ the limit (goal ≤ 1),
   and the time from the first request to the last ÷ the least the limits allow (goal
   ≤ 1.1). That ratio needs the machine to keep up: 1,000 requests in a burst take 50 s of
   the CA's time at the limit, under a second on the wall, so a loaded machine spreads the
   bursts and the drain measures the machine, not the gate.
2. **A 429 storm.** Every request for ``STORM`` seconds of the CA's time (clock
   ``STORM_SPEED`` times the wall's) is answered 429 without ``Retry-After``: the requests
   that reach the CA meanwhile, for 1 and ``--processes`` processes and two numbers of
   orders on one SQLite gate, and with a gate per process.
3. **Cost.** ``admit`` + ``report`` (one request's two steps) on each backend, one after
   another on one key with room in its windows: median and p99, in milliseconds. The
   goal: one round trip on Redis (one ``EVALSHA``) and on PostgreSQL (one function call).

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
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from certpoll import (
    Admitted,
    Answer,
    BackoffPolicy,
    DigiCert,
    GateRules,
    OrderState,
    UpstreamGate,
    gate_key,
    open_gate_backend,
    poll_many,
)
from certpoll.testing import DIGICERT, Fault, Profile, SimulatedCA, serve
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

#: Simulated seconds per wall-clock second in the fleet runs: 4 × 2,500 orders (20,000
#: requests) take at least 3,465 s of the CA's time, 58 s on the wall.
SPEED = 60.0
#: The same for the 429 storms: ten minutes of storm in five seconds, then the drain.
STORM_SPEED = 120.0
#: Wall-clock seconds from a run's set-up until its workers all begin at once.
START_AFTER = 3.0
#: How far one process's clock is off in the skewed runs (wall seconds: 30 s of CA time at
#: ``SPEED``, harsher than the issue's 0.5 s).
SKEW = 0.5
#: The 429 storm: every request in these many CA seconds after the workers begin is
#: answered 429 without ``Retry-After``.
STORM = 600.0
#: The documented limits, as the simulator enforces them.
LIMITS = DIGICERT.RATE_LIMITS


# The ASGI types, as the simulator spells them.
Message = dict[str, object]
Scope = dict[str, object]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class CountingCA(SimulatedCA):
    """The simulated CA, noting the (simulated) time of every request it receives."""

    def __init__(self, speed: float, faults: tuple[Fault, ...] = ()) -> None:
        super().__init__(speed=speed, profile=Profile(faults=faults))
        self.arrivals: list[float] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.arrivals.append(self.now())
        await super().__call__(scope, receive, send)


@dataclass(frozen=True, slots=True)
class _Share:
    """One worker process's part of a run (pickled to it)."""

    base_url: str
    gate_url: str
    orders: list[str]
    #: The wall-clock time at which every worker begins.
    start: float
    speed: float
    #: Seconds this process's clock is off.
    skew: float = 0.0


def _scaled(seconds: float, speed: float) -> float:
    return seconds / speed


async def _poll_share(share: _Share) -> None:
    """Poll ``share``'s orders to the end through one connector, everything scaled by speed."""
    await asyncio.sleep(max(0.0, share.start - time.time()))
    speed = share.speed
    limits = tuple((requests, _scaled(seconds, speed)) for requests, seconds in LIMITS)
    settings = digicert_settings(share.base_url, rate_limits=limits, max_wait=24 * 3600.0)
    settings = settings.model_copy(
        update={
            "poll_initial_wait_seconds": _scaled(settings.poll_initial_wait_seconds, speed),
            "poll_max_backoff_seconds": _scaled(settings.poll_max_backoff_seconds, speed),
        }
    )
    loop = asyncio.get_running_loop()

    def clock() -> float:
        return loop.time() + share.skew

    gate = UpstreamGate(
        rate_limits=limits,
        cooldown=BackoffPolicy(
            initial_wait=_scaled(5.0, speed),
            multiplier=3.0,
            max_backoff=_scaled(300.0, speed),
            jitter=0.0,
        ),
        clock=clock,
        backend=open_gate_backend(share.gate_url, clock=clock),
        key=gate_key("digicert", settings.api_key.get_secret_value()),
        margin=_scaled(GateRules().margin, speed),
    )
    poller = settings.make_poller(clock=clock)
    async with (
        DigiCert(settings, gate=gate, poller=poller) as dc,
        poll_many(dc, share.orders) as stream,
    ):
        async for status in stream:
            assert status.state is OrderState.ISSUED, status
    await gate.aclose()


def _worker(share: _Share) -> None:
    asyncio.run(_poll_share(share))


def busiest(times: list[float], seconds: float) -> int:
    """The most arrivals in any window of ``seconds``, as the CA counts them."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - seconds:  # the simulator's window: open at its edge
            start += 1
        best = max(best, end - start + 1)
    return best


async def _served_run(
    pool: Executor,
    orders: int,
    gate_urls: list[str],
    *,
    speed: float,
    skews: tuple[float, ...] = (),
    storm: float = 0.0,
) -> CountingCA:
    """One run: ``orders`` split among one worker per gate URL; the simulator that served it.

    ``skews`` are the first workers' clock errors; ``storm`` CA seconds of 429s from the start.
    """
    begun = time.time()
    faults = (Fault.rate_limit(start=START_AFTER * speed, duration=storm),) if storm else ()
    sim = CountingCA(speed, faults)
    sim.now()  # CA time 0 is now: the workers begin at START_AFTER * speed
    ids = seed_orders(sim, orders)
    start = begun + START_AFTER
    processes = len(gate_urls)
    loop = asyncio.get_running_loop()
    async with serve(sim, tls=False) as served:
        url = served.base_urls.digicert
        if time.time() > start:
            raise RuntimeError("the run's set-up took longer than START_AFTER")
        shares = [
            _Share(url, gate, ids[i::processes], start, speed, (*skews, *[0.0] * processes)[i])
            for i, gate in enumerate(gate_urls)
        ]
        await asyncio.gather(*(loop.run_in_executor(pool, _worker, share) for share in shares))
    return sim


@dataclass(frozen=True, slots=True)
class FleetRow:
    """One fleet run, as the simulator counted it."""

    gate: str
    throttled: int
    #: The busiest rolling 5 s and 3 min windows ÷ their limits.
    short: float
    long: float
    #: From the first request to the last ÷ the least the limits allow.
    drain: float


def _fleet_row(name: str, sim: CountingCA) -> FleetRow:
    (short, short_s), (long, long_s) = LIMITS
    drain = max(sim.arrivals) - min(sim.arrivals)
    least = minimum_drain(len(sim.arrivals) - sim.throttled, LIMITS)
    return FleetRow(
        name,
        sim.throttled,
        busiest(sim.arrivals, short_s) / short,
        busiest(sim.arrivals, long_s) / long,
        drain / least,
    )


def fleet(
    pool: Executor,
    processes: int,
    orders: int,
    urls: dict[str, str],
    *,
    speed: float = SPEED,
    skewed: tuple[str, ...] = (),
) -> list[FleetRow]:
    """One row per backend, one with a gate per process, and the ``skewed`` backends again
    with one process's clock ``SKEW`` ahead and another's behind."""
    runs: list[tuple[str, str, tuple[float, ...]]] = [(n, url, ()) for n, url in urls.items()]
    runs.append(("a gate per process", "memory://", ()))
    runs += [(f"{name}, clocks ±{SKEW:g} s", urls[name], (SKEW, -SKEW)) for name in skewed]
    rows = []
    for name, url, skews in runs:
        sim = asyncio.run(_served_run(pool, orders, [url] * processes, speed=speed, skews=skews))
        rows.append(_fleet_row(name, sim))
    return rows


@dataclass(frozen=True, slots=True)
class StormRow:
    """One 429 storm: the requests the CA saw while it lasted."""

    gate: str
    processes: int
    orders: int
    during: int


def storm(
    pool: Executor, url: str, sizes: tuple[int, ...], processes: tuple[int, ...], *, speed: float
) -> list[StormRow]:
    """Requests during a ``STORM`` of 429s: on the shared gate at ``url`` for every number
    of processes and orders; with a gate per process at the most of both, for contrast."""
    runs = [("shared", url, n, size) for n in processes for size in sizes]
    runs.append(("a gate per process", "memory://", max(processes), max(sizes)))
    rows = []
    for name, gate, n, size in runs:
        sim = asyncio.run(_served_run(pool, size, [gate] * n, speed=speed, storm=STORM))
        begins = START_AFTER * speed
        during = sum(1 for t in sim.arrivals if begins <= t < begins + STORM)
        rows.append(StormRow(name, n, size, during))
    return rows


@dataclass(frozen=True, slots=True)
class SharedGateResult:
    """The tables: the fleet on each backend, a 429 storm, one admission's cost on each."""

    processes: int
    orders: int
    speed: float
    storm_speed: float
    fleet: list[FleetRow]
    storm: list[StormRow]
    cost: list[tuple[str, float, float, float, float]]
    #: Wall-clock seconds the whole measurement took.
    seconds: float


def measure(
    *,
    processes: int = 4,
    orders: int = 10_000,
    storm_orders: tuple[int, ...] = (100, 1_000),
    admissions: int = 2000,
    speed: float = SPEED,
    storm_speed: float = STORM_SPEED,
    servers: bool = True,
) -> SharedGateResult:
    """Every measurement; ``servers=False`` leaves out Redis and PostgreSQL (a smoke run)."""
    began = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        pool = stack.enter_context(ProcessPoolExecutor(processes, mp_context=context))
        shared = {"sqlite": f"sqlite:///{folder}/fleet.db"}
        if servers:
            shared["redis"] = stack.enter_context(running_redis())
            shared["postgresql"] = stack.enter_context(running_postgres())
        skewed = tuple(name for name in ("redis", "postgresql") if name in shared)
        rows = fleet(pool, processes, orders, shared, speed=speed, skewed=skewed)
        storms = storm(
            pool,
            f"sqlite:///{folder}/storm.db",
            storm_orders,
            tuple(sorted({1, processes})),
            speed=storm_speed,
        )
    cost = run(admissions) if servers else []
    return SharedGateResult(
        processes, orders, speed, storm_speed, rows, storms, cost, time.perf_counter() - began
    )


def quick() -> SharedGateResult:
    """A smoke run at tiny sizes, SQLite only: ``python -m bench --quick`` and its test."""
    return measure(
        processes=2,
        orders=60,
        storm_orders=(10, 30),
        speed=20.0,
        storm_speed=600.0,
        servers=False,
    )


def section(result: SharedGateResult, add: Callable[[str], object]) -> None:
    """The Markdown section of docs/benchmarks.md."""
    add("## 6. Many processes on one credential: the shared gate")
    add("")
    add(
        f"`bench/shared_gate.py`: {result.processes} worker processes each `poll_many` their "
        f"share of {result.orders:,} issued DigiCert orders (a status look and a download "
        "each) against the simulated CA served on 127.0.0.1, which enforces DigiCert's "
        "documented limits (100 / 5 s, 1,000 / 3 min), with the gate at those limits. The "
        f"CA's clock runs {result.speed:g} times faster than the wall's; the gate's limits, "
        "margin and cooldowns and the orders' backoff are scaled alike (loopback's "
        f"~1 ms is ~{result.speed:g} ms of the CA's time). Goals: 0 429s, the busiest "
        "windows as the CA counted them ≤ 1, drain ÷ the least the limits allow ≤ 1.1. "
        '"a gate per process" gives each process its own gate (`memory://`, the default); '
        f"\"clocks ±{SKEW:g} s\" sets one process's clock {SKEW:g} s ahead and another's "
        f"{SKEW:g} s behind (wall seconds: {SKEW * result.speed:g} s of the CA's time)."
    )
    add("")
    add("| gate | 429s | busiest 5 s ÷ 100 | busiest 3 min ÷ 1000 | drain ÷ least |")
    add("|---|---|---|---|---|")
    for row in result.fleet:
        add(
            f"| {row.gate} | {row.throttled} | {row.short:.2f} | {row.long:.2f} | {row.drain:.2f} |"
        )
    add("")
    add(
        f"A 429 storm: every request for {STORM:g} s of the CA's time is answered 429 "
        f"without `Retry-After` (the gate holds 5 s, 15 s, 45 s, ... then sends one probe; "
        f"the CA's clock {result.storm_speed:g} times the wall's), "
        "over the orders split among the processes on one SQLite gate; the last row gives "
        "each process its own gate. Goal: the requests during the storm flat in the orders "
        "and in the processes."
    )
    add("")
    add("| gate | processes | orders | requests during the storm |")
    add("|---|---|---|---|")
    for s in result.storm:
        add(f"| {s.gate} | {s.processes} | {s.orders:,} | {s.during} |")
    add("")
    if result.cost:
        add(
            "One request's two steps on each backend, one after another on one key with room "
            "in its windows (milliseconds; Redis: one `EVALSHA`, PostgreSQL: one statement):"
        )
        add("")
        add("| backend | admit median | admit p99 | report median | report p99 |")
        add("|---|---|---|---|---|")
        for name, admit, admit99, report, report99 in result.cost:
            add(f"| {name} | {admit:.3f} | {admit99:.3f} | {report:.3f} | {report99:.3f} |")
        add("")
    add(f"This section took {result.seconds:.0f} s.")
    add("")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shared_gate", description=__doc__)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--admissions", type=int, default=2000)
    parser.add_argument("--speed", type=float, default=SPEED, help="CA seconds per second")
    args = parser.parse_args(argv)
    result = measure(
        processes=args.processes, orders=args.orders, admissions=args.admissions, speed=args.speed
    )
    section(result, print)


if __name__ == "__main__":
    main()
