"""Soak test (not run in CI): 10,000 orders over 30 simulated minutes of a flaky CA.

``python -m bench.soak [--orders N] [--minutes M] [--seed S]``

The DigiCert simulator runs in-process on a virtual-time loop (looptime), so 30 minutes take
a minute or two of real time. Each order is issued after 0 to 25 simulated minutes, or
rejected (5 %), or waits for approval longer than the run (5 %). CA-wide, all run long: 3 % of
answers are 500, 2 % are 503, 1 % are 429, 1 % take 40 s (past the 30 s attempt timeout), and
every ten minutes a one-minute 429 burst with ``Retry-After: 20``.

It checks that every order is accounted for exactly once (issued + failed + still pending =
N, no id twice, none missing) and prints the memory certpoll holds (tracemalloc, certpoll
and httpx frames, the simulator excluded) every five simulated minutes: flat or falling,
never growing with time. Exit status 1 if an order is lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field

import looptime
from cryptography.hazmat.primitives.asymmetric import ec

import certpoll
from certpoll.testing import Fault, OrderScript, Profile, SimulatedCA


def _pick(rng: random.Random, ca: str) -> OrderScript:
    roll = rng.random()
    if roll < 0.05:
        return OrderScript(issue_after=rng.uniform(0, 1500), reject=True)
    if roll < 0.10:
        return OrderScript(approval_for=1e9)
    return OrderScript(issue_after=rng.uniform(0, 1500))


def _faults(minutes: float) -> tuple[Fault, ...]:
    bursts = tuple(
        Fault.rate_limit(start=start, duration=60, retry_after=20)
        for start in range(300, int(minutes * 60), 600)
    )
    return (
        Fault(status=500, probability=0.03),
        Fault(status=503, probability=0.02),
        Fault(status=429, probability=0.01),
        Fault(latency=40.0, probability=0.01),
        *bursts,
    )


@dataclass
class Report:
    orders: int
    states: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    missing: int = 0
    requests: int = 0
    responses: dict[int, int] = field(default_factory=dict)
    #: (simulated minute, certpoll+httpx traced KiB, all traced KiB)
    memory: list[tuple[float, float, float]] = field(default_factory=list)
    real_seconds: float = 0.0

    @property
    def accounted(self) -> bool:
        return (
            sum(self.states.values()) == self.orders and self.duplicates == 0 and self.missing == 0
        )


def _traced_kib() -> tuple[float, float]:
    snapshot = tracemalloc.take_snapshot()
    ours = snapshot.filter_traces(
        [
            tracemalloc.Filter(True, "*certpoll/_*.py"),
            tracemalloc.Filter(True, "*httpx/*"),
            tracemalloc.Filter(True, "*httpcore/*"),
        ]
    )
    return (
        sum(s.size for s in ours.statistics("filename")) / 1024,
        sum(s.size for s in snapshot.statistics("filename")) / 1024,
    )


async def soak(orders: int, minutes: float, seed: int) -> Report:
    sim = SimulatedCA(
        profile=Profile(pick=_pick, faults=_faults(minutes), seed=seed),
        digicert_rate_limits=(),
    )
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    ids = [
        # Made without a request: what is soaked is the polling (submits are never retried).
        sim._new_order(
            "digicert", common_name=f"o{i}.soak.example", dns_names=(), public_key=public_key
        ).order_id
        for i in range(orders)
    ]
    settings = certpoll.DigiCertSettings(
        api_key=sim.credentials.digicert_api_key,
        org_id=sim.credentials.digicert_org_id,
        base_url=sim.base_urls().digicert,
        poll_max_wait_seconds=minutes * 60,
    )
    report = Report(orders)
    seen: set[str] = set()
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def sample() -> None:
        while True:
            gc.collect()
            ours, total = _traced_kib()
            report.memory.append(((loop.time() - start) / 60, ours, total))
            await asyncio.sleep(300)

    tracemalloc.start(1)
    sampler = asyncio.create_task(sample())
    async with (
        sim.client() as http,
        certpoll.DigiCert(settings, http=http) as dc,
        certpoll.poll_many(dc, ids, concurrency=50) as stream,
    ):
        async for status in stream:
            if status.order_id in seen:
                report.duplicates += 1
            seen.add(status.order_id)
            report.states[status.state.value] += 1
        # The stream keeps a handle per still-pending order, for resume(): drop it too.
        del stream
    sampler.cancel()
    gc.collect()
    ours, total = _traced_kib()
    report.memory.append(((loop.time() - start) / 60, ours, total))
    tracemalloc.stop()
    report.missing = len(set(ids) - seen)
    report.requests = sim.requests
    report.responses = dict(sorted(sim.responses_by_status.items()))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    loop = looptime.new_event_loop(start=0)
    try:
        report = loop.run_until_complete(soak(args.orders, args.minutes, args.seed))
    finally:
        loop.close()
    report.real_seconds = time.perf_counter() - started
    print(f"orders: {report.orders}, by final state: {dict(report.states)}")
    print(f"duplicates: {report.duplicates}, missing: {report.missing}")
    print(f"requests: {report.requests}, responses by status: {report.responses}")
    print(f"simulated time: {report.memory[-1][0]:.1f} min (PollMaxWait {args.minutes:g} min)")
    print("memory (simulated minute: certpoll+httpx KiB / all traced KiB):")
    for minute, ours, total in report.memory:
        print(f"  {minute:5.1f} min: {ours:9.0f} KiB / {total:9.0f} KiB")
    print(f"real time: {report.real_seconds:.1f} s")
    ok = report.accounted
    print("every order accounted for" if ok else "ORDERS LOST OR DUPLICATED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
