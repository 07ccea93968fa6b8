"""Workload 4: 10,000 orders against the simulated DigiCert enforcing its documented limits.

The in-process simulator enforces 100 requests per 5 s and 1,000 per 3 minutes per API key
(answering 429 ``request_limit_exceeded`` beyond them); every order is already issued, so
each needs its status look and its download: 2 × N requests. ``poll_many`` runs on a
virtual-time loop. Two client configurations:

* **default**: DigiCert's default ``rate_limits``, ``[(80, 5), (800, 180)]`` (20 % headroom
  for other tools sharing the key);
* **at the limit**: ``rate_limits=[(100, 5), (1000, 180)]``, the documented limits exactly.

Measured: the 429s the client caused (the simulator's count; goal 0), and the time until
the last order is issued vs :func:`minimum_drain`, the least the CA's limits allow.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

import certpoll
from certpoll.testing import DIGICERT, SimulatedCA

from ._common import Stats, digicert_settings, run_virtual, seed_orders, summarize

CONFIGS: dict[str, tuple[tuple[int, float], ...]] = {
    "default": certpoll.DigiCertSettings.model_fields["rate_limits"].default,
    "at the limit": ((100, 5.0), (1000, 180.0)),
}


def minimum_drain(requests: int, limits: tuple[tuple[int, float], ...]) -> float:
    """When the last of ``requests`` can go at the earliest, all sent as early as allowed.

    Sliding windows: request *k* (from 0) goes at the earliest ``seconds`` after request
    *k - n*, for every ``(n, seconds)``; sending each as early as that allows is optimal.
    """
    times: list[float] = []
    for k in range(requests):
        times.append(max([0.0, *(times[k - n] + s for n, s in limits if k >= n)]))
    return times[-1]


@dataclass(frozen=True, slots=True)
class RateRun:
    """One run: 429s, drain seconds, requests, issued orders."""

    throttled: int
    drain: float
    requests: int
    issued: int


async def _once(orders: int, limits: tuple[tuple[int, float], ...]) -> RateRun:
    sim = SimulatedCA()  # issues at once; DigiCert's documented limits on
    ids = seed_orders(sim, orders)
    settings = digicert_settings(sim, rate_limits=limits, max_wait=24 * 3600.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    last = start
    issued = 0
    async with (
        sim.client() as http,
        certpoll.DigiCert(settings, http=http) as dc,
        certpoll.poll_many(dc, ids, concurrency=10) as stream,
    ):
        async for status in stream:
            if status.state is certpoll.OrderState.ISSUED:
                issued += 1
                last = loop.time()
    return RateRun(sim.throttled, last - start, sim.requests, issued)


@dataclass(frozen=True, slots=True)
class RateResult:
    """Per configuration: 429s, drain, and drain / minimum."""

    orders: int
    minimum: float
    throttled: dict[str, Stats]
    drain: dict[str, Stats]
    ratio: dict[str, Stats]
    all_issued: bool


def run(*, orders: int = 10_000, repeats: int = 3) -> RateResult:
    """Both configurations, ``repeats`` times each, alternating."""
    minimum = minimum_drain(2 * orders, DIGICERT.RATE_LIMITS)
    runs: dict[str, list[RateRun]] = {name: [] for name in CONFIGS}
    for _ in range(repeats):
        for name, limits in CONFIGS.items():
            runs[name].append(run_virtual(functools.partial(_once, orders, limits)))
    return RateResult(
        orders=orders,
        minimum=minimum,
        throttled={n: summarize(r.throttled for r in rs) for n, rs in runs.items()},
        drain={n: summarize(r.drain for r in rs) for n, rs in runs.items()},
        ratio={n: summarize(r.drain / minimum for r in rs) for n, rs in runs.items()},
        all_issued=all(r.issued == orders for rs in runs.values() for r in rs),
    )
