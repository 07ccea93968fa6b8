"""Workload 3: a 429 storm, certpoll's shared gate vs per-order backoff (and the peers).

A fake CertCentral (an ``httpx.MockTransport``, cheap enough for 10,000 orders) answers
every request from ``STORM[0]`` to ``STORM[1]`` with ``429 Retry-After: RETRY_AFTER``; its
orders are issued at ``READY_AT``, during the storm, so that they all can finish once it is
over. Each answer takes ``LATENCY``. Virtual time (looptime): an hour of storm in seconds.

* **certpoll**: ``poll_many`` through one connector, whose gate shares the cooldown
  (rate limits off: this isolates the shared cooldown; workload 4 covers rate limits);
* **per-order backoff**: what the reference implementation does, every order its own
  ``certpoll.Poller`` loop (``get_order_status``, one task each) through a gate with
  ``share_cooldown=False``: each order discovers the 429 and honours ``Retry-After`` alone;
* **tenacity** (peer): an ``AsyncRetrying`` loop per order (see :mod:`bench.peers`).

Measured: the requests the CA saw during the storm, and the time from the storm's end until
the last order is issued (drain). At the thread peer's size, every variant also goes through
the storm without ``Retry-After``, the storm's end moves between repeats (``DRAIN_PHASE``), and
certpoll's drain is set against the least drain of any variant in the same repeat.
``docs/_scripts/storm_timeline.py`` draws its figure with :func:`simulate`.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import httpx

import certpoll
from certpoll.testing import TestPKI

from ._common import Stats, run_virtual, summarize
from .peers import Routes, poll_tenacity, poll_thread

STORM = (60.0, 660.0)
RETRY_AFTER = 60
READY_AT = 120.0
LATENCY = 0.05
CONCURRENCY = 50
MAX_WAIT = 3 * 3600.0
BASE_URL = "https://dc.invalid/services/v2"
API_KEY = "bench-storm"

#: The storms the drain is compared in: the CA's ``Retry-After`` in each.
DRAIN_CASES: dict[str, int | None] = {
    f"Retry-After: {RETRY_AFTER}": RETRY_AFTER,
    "no Retry-After": None,
}

#: How far the storm's end moves from one repeat to the next, in the drain comparison.
DRAIN_PHASE = 23.0


def _storm(repeat: int) -> tuple[float, float]:
    """The storm of the drain comparison's ``repeat``-th run."""
    return STORM[0], STORM[1] + repeat * DRAIN_PHASE


Mode = Literal["certpoll", "per-order", "tenacity"]
MODES: tuple[Mode, ...] = ("certpoll", "per-order", "tenacity")


def _bundle() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pki = TestPKI()
    leaf = pki.issue(
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
        common_name="storm.bench.example",
        dns_names=(),
        serial=1,
    )
    return leaf.public_bytes(serialization.Encoding.PEM) + pki.chain_pem.encode()


@dataclass(slots=True)
class FakeCA:
    """A CertCentral that answers 429 in ``storm``, and issues every order at ``ready_at``.

    ``clock`` is the CA's clock (default: the running loop's). ``seen`` records
    ``(time, status)`` of every request.
    """

    storm: tuple[float, float] = STORM
    retry_after: int | None = RETRY_AFTER
    ready_at: float = READY_AT
    latency: float = LATENCY
    clock: Callable[[], float] | None = None
    seen: list[tuple[float, int]] = field(default_factory=list)
    bundle: bytes = field(default_factory=_bundle)

    def now(self) -> float:
        return asyncio.get_running_loop().time() if self.clock is None else self.clock()

    def answer(self, request: httpx.Request) -> httpx.Response:
        t = self.now()
        if self.storm[0] <= t < self.storm[1]:
            self.seen.append((t, 429))
            headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
            return httpx.Response(429, headers=headers)
        self.seen.append((t, 200))
        parts = request.url.path.split("/")
        if parts[-2] == "format":
            return httpx.Response(200, content=self.bundle)
        order = int(parts[-1])
        if t < self.ready_at:
            return httpx.Response(200, json={"id": order, "status": "pending"})
        return httpx.Response(
            200, json={"id": order, "status": "issued", "certificate": {"id": order}}
        )

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        return self.answer(request)

    def requests_in_storm(self) -> int:
        return sum(1 for t, _ in self.seen if self.storm[0] <= t < self.storm[1])


def settings(*, rate_limits: tuple[tuple[int, float], ...] = ()) -> certpoll.DigiCertSettings:
    """DigiCert settings pointing at the fake CA (never reached: the transport is mocked)."""
    return certpoll.DigiCertSettings(
        api_key=API_KEY,
        org_id=1,
        base_url=BASE_URL,
        rate_limits=rate_limits,
        poll_max_wait_seconds=MAX_WAIT,
    )


async def simulate(
    ca: FakeCA,
    *,
    orders: int,
    mode: Mode,
    rate_limits: tuple[tuple[int, float], ...] = (),
    max_wait: float = MAX_WAIT,
    seed: int = 1,
) -> list[float]:
    """Poll ``orders`` orders through ``ca`` in ``mode``; the loop time each one finished."""
    finished: list[float] = []
    loop = asyncio.get_running_loop()
    ids = [str(10_000 + i) for i in range(orders)]
    dc_settings = settings(rate_limits=rate_limits)
    async with httpx.AsyncClient(transport=httpx.MockTransport(ca.handle)) as http:
        if mode == "tenacity":
            routes = Routes(BASE_URL, API_KEY)

            async def one(order_id: str) -> None:
                if await poll_tenacity(http, routes, order_id):
                    finished.append(loop.time())

            await asyncio.gather(*(one(i) for i in ids))
            return finished
        gate = (
            certpoll.UpstreamGate(rate_limits=dc_settings.rate_limits)
            if mode == "certpoll"
            else certpoll.UpstreamGate(share_cooldown=False)
        )
        poller = dc_settings.make_poller(hooks=(), rng=random.Random(seed))
        connector = certpoll.DigiCert(dc_settings, http=http, poller=poller, gate=gate)
        if mode == "certpoll":
            async with certpoll.poll_many(
                connector, ids, concurrency=CONCURRENCY, max_wait=max_wait
            ) as stream:
                async for status in stream:
                    if status.state is certpoll.OrderState.ISSUED:
                        finished.append(loop.time())
            return finished

        async def single(order_id: str) -> None:
            status = await connector.get_order_status(order_id)
            if status.state is certpoll.OrderState.ISSUED:
                finished.append(loop.time())

        await asyncio.gather(*(single(i) for i in ids))
        return finished


@dataclass(frozen=True, slots=True)
class StormRun:
    """One run: requests during the storm, drain time after it, orders issued."""

    storm_requests: int
    drain: float
    issued: int


def run_once(
    orders: int,
    mode: Mode,
    *,
    seed: int = 1,
    retry_after: int | None = RETRY_AFTER,
    storm: tuple[float, float] = STORM,
) -> StormRun:
    """One virtual-time run of the storm."""
    ca = FakeCA(retry_after=retry_after, storm=storm)
    done = run_virtual(lambda: simulate(ca, orders=orders, mode=mode, seed=seed))
    drain = max(done) - ca.storm[1] if done else float("nan")
    return StormRun(ca.requests_in_storm(), drain, len(done))


@dataclass(frozen=True, slots=True)
class StormResult:
    """Per N and mode: storm requests, drain seconds; per N: the ratios to certpoll."""

    sizes: tuple[int, ...]
    requests: dict[int, dict[str, Stats]]
    drain: dict[int, dict[str, Stats]]
    #: per N: mode -> mode's storm requests / certpoll's, per repeat
    ratio: dict[int, dict[str, Stats]]
    all_issued: bool
    #: How many orders the drain comparison has (the thread peer's size).
    drain_orders: int = 0
    #: case ("Retry-After: 60", "no Retry-After") -> mode -> drain seconds
    drain_cases: dict[str, dict[str, Stats]] = field(default_factory=dict)
    #: case -> mode -> storm requests
    requests_cases: dict[str, dict[str, Stats]] = field(default_factory=dict)
    #: case -> certpoll's drain / the least drain of any variant in the same repeat
    drain_ratio: dict[str, Stats] = field(default_factory=dict)


def run_threads(
    orders: int,
    *,
    speed: float = 100.0,
    retry_after: int | None = RETRY_AFTER,
    storm: tuple[float, float] = STORM,
) -> StormRun:
    """The thread-per-order peer through the storm, on a clock ``speed`` times faster."""
    origin = time.monotonic()

    def clock() -> float:
        return (time.monotonic() - origin) * speed

    def sleep(seconds: float) -> None:
        time.sleep(seconds / speed)

    ca = FakeCA(clock=clock, latency=0.0, retry_after=retry_after, storm=storm)
    done: list[float] = []
    routes = Routes(BASE_URL, API_KEY)

    def one(order_id: str) -> None:
        with httpx.Client(transport=httpx.MockTransport(ca.answer)) as client:
            if poll_thread(client, routes, order_id, sleep=sleep):
                done.append(clock())

    threads = [threading.Thread(target=one, args=(str(10_000 + i),)) for i in range(orders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    drain = max(done) - ca.storm[1] if done else float("nan")
    return StormRun(ca.requests_in_storm(), drain, len(done))


def run(
    *,
    sizes: tuple[int, ...] = (100, 1_000, 10_000),
    repeats: int = 3,
    big: int = 10_000,
    big_repeats: int = 1,
    peer_max: int = 1_000,
    thread_orders: int = 100,
    thread_speed: float = 100.0,
) -> StormResult:
    """Every size and mode, ``repeats`` times (a different jitter seed each).

    Sizes of ``big`` or more run ``big_repeats`` times, without the tenacity peer (sizes
    above ``peer_max``): the per-order baseline alone sends about 30 requests per order.
    The thread peer runs at ``thread_orders`` (a size in ``sizes``) only; there every
    variant also runs through a storm without ``Retry-After``, and certpoll's drain is
    compared with the least drain of any variant in the same repeat. At that size the
    storm's end moves by ``DRAIN_PHASE`` from one repeat to the next: the drain depends on
    where the end falls between two probes.
    """
    requests: dict[int, dict[str, Stats]] = {}
    drain: dict[int, dict[str, Stats]] = {}
    ratio: dict[int, dict[str, Stats]] = {}
    drain_cases: dict[str, dict[str, Stats]] = {}
    requests_cases: dict[str, dict[str, Stats]] = {}
    drain_ratio: dict[str, Stats] = {}
    all_issued = True
    for n in sizes:
        times = repeats if n < big else big_repeats
        modes = [m for m in MODES if m != "tenacity" or n <= peer_max]
        cases = DRAIN_CASES if n == thread_orders else {"": RETRY_AFTER}
        for case, retry_after in cases.items():
            storms = [_storm(r) if n == thread_orders else STORM for r in range(times)]
            runs: dict[str, list[StormRun]] = {
                m: [
                    run_once(n, m, seed=r, retry_after=retry_after, storm=storms[r])
                    for r in range(times)
                ]
                for m in modes
            }
            if n == thread_orders:
                runs["threads"] = [
                    run_threads(n, speed=thread_speed, retry_after=retry_after, storm=storms[r])
                    for r in range(times)
                ]
                drain_cases[case] = {m: summarize(x.drain for x in rs) for m, rs in runs.items()}
                requests_cases[case] = {
                    m: summarize(x.storm_requests for x in rs) for m, rs in runs.items()
                }
                drain_ratio[case] = summarize(
                    runs["certpoll"][r].drain / min(rs[r].drain for rs in runs.values())
                    for r in range(times)
                )
            all_issued &= all(x.issued == n for rs in runs.values() for x in rs)
            if retry_after == RETRY_AFTER:
                by_mode = runs
        requests[n] = {m: summarize(x.storm_requests for x in rs) for m, rs in by_mode.items()}
        drain[n] = {m: summarize(x.drain for x in rs) for m, rs in by_mode.items()}
        ratio[n] = {
            m: summarize(
                x.storm_requests / max(1, c.storm_requests)
                for x, c in zip(by_mode[m], by_mode["certpoll"], strict=True)
            )
            for m in by_mode
            if m != "certpoll"
        }
    return StormResult(
        sizes,
        requests,
        drain,
        ratio,
        all_issued,
        drain_orders=thread_orders,
        drain_cases=drain_cases,
        requests_cases=requests_cases,
        drain_ratio=drain_ratio,
    )
