"""Workload 1: CPU time per poll attempt, certpoll vs a bare httpx loop (and the peers).

The simulated CA is served by uvicorn over plain HTTP on 127.0.0.1 in another process
(:mod:`bench._simserver`), so only the client's work is on the clock: ``time.process_time()``
of this process, over the same number of attempts for every variant. Two kinds of attempt:

* **issued**: ``get_order_status`` on an issued order, that is the status GET, the bundle GET
  and the PEM parse; the bare loop makes the same two requests, reads the JSON and parses the
  PEM with ``cryptography``.
* **pending**: ``get_order_status`` with a PollMaxWait shorter than one attempt, on an order
  awaiting approval: one status GET and its triage; the bare loop GETs and reads the JSON.

Plain HTTP, not TLS: with keep-alive both sides pay the same TLS record costs, which would
only dilute the ratio. Every variant runs ``CONCURRENCY`` attempts at a time (coroutines, or
threads for the thread peer), in rotating order within each repeat.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

import certpoll

from ._common import Stats, digicert_settings, make_csr, summarize
from ._simserver import PENDING_NAME
from .peers import Routes, attempt_async, attempt_sync, poll_tenacity

CONCURRENCY = 10
VARIANTS = ("certpoll", "bare httpx", "tenacity", "threads")


@dataclass(frozen=True, slots=True)
class OverheadResult:
    """CPU microseconds per attempt, per kind and variant, and certpoll's ratios."""

    attempts: int
    repeats: int
    #: kind ("issued"/"pending") -> variant -> µs per attempt
    cpu_us: dict[str, dict[str, Stats]]
    #: kind -> variant -> that variant / bare httpx, per repeat
    ratio: dict[str, dict[str, Stats]]
    profile: str


class _Server:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(  # our own module
            [sys.executable, "-m", "bench._simserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1"):
            self.close()
            raise RuntimeError(f"the simulator did not start: {self.url!r}")

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.stdout.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def _spread(count: int, one: Callable[[int], Awaitable[object]]) -> None:
    async def worker(start: int) -> None:
        for i in range(start, count, CONCURRENCY):
            await one(i)

    await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))


async def _orders(url: str, count: int) -> tuple[list[str], list[str]]:
    settings = digicert_settings(url)
    csr = make_csr()
    issued: list[str] = []
    pending: list[str] = []
    async with certpoll.DigiCert(settings) as dc:
        for i in range(count):
            order = await dc.issue(certpoll.CertificateRequest(common_name=f"o{i}.x", csr_pem=csr))
            issued.append(order.order_id)
            order = await dc.issue(
                certpoll.CertificateRequest(common_name=PENDING_NAME, csr_pem=csr)
            )
            pending.append(order.order_id)
    return issued, pending


def _measure(kind: str, variant: str, url: str, ids: list[str], attempts: int) -> float:
    """CPU µs per attempt of one variant."""
    settings = digicert_settings(url)
    routes = Routes(settings.base_url, settings.api_key.get_secret_value())
    expect = kind == "issued"
    if variant == "threads":
        clients = [httpx.Client() for _ in range(CONCURRENCY)]

        def thread(w: int) -> None:
            for i in range(w, attempts, CONCURRENCY):
                got, _ = attempt_sync(clients[w], routes, ids[i % len(ids)])
                assert (got == "issued") == expect

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(thread, range(CONCURRENCY)))  # warm: connections open
            start = time.process_time()
            list(pool.map(thread, range(CONCURRENCY)))
            spent = time.process_time() - start
        for client in clients:
            client.close()
        return spent / attempts * 1e6

    async def run() -> float:
        max_wait = 3600.0 if expect else 1e-6
        async with (
            httpx.AsyncClient(limits=httpx.Limits(max_connections=CONCURRENCY)) as http,
            certpoll.DigiCert(digicert_settings(url, max_wait=max_wait), http=http) as dc,
        ):

            async def one(i: int) -> None:
                order_id = ids[i % len(ids)]
                if variant == "certpoll":
                    status = await dc.get_order_status(order_id)
                    got = status.state is certpoll.OrderState.ISSUED
                elif variant == "bare httpx":
                    got = (await attempt_async(http, routes, order_id))[0] == "issued"
                else:
                    got = await poll_tenacity(http, routes, order_id, max_attempts=1)
                assert got == expect

            await _spread(min(attempts, 4 * CONCURRENCY), one)  # warm: connections open
            start = time.process_time()
            await _spread(attempts, one)
            return (time.process_time() - start) / attempts * 1e6

    return asyncio.run(run())


def _profile(url: str, ids: list[str], attempts: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    _measure("issued", "certpoll", url, ids, attempts)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    text = out.getvalue()
    start = text.find("ncalls")
    return text[text.rfind("\n", 0, start) + 1 :].rstrip() if start >= 0 else text.strip()


def run(*, attempts: int = 150, repeats: int = 3) -> OverheadResult:
    """Measure every variant ``repeats`` times, ``attempts`` attempts each."""
    server = _Server()
    try:
        issued, pending = asyncio.run(_orders(server.url, 10))
        samples: dict[str, dict[str, list[float]]] = {
            kind: {v: [] for v in VARIANTS} for kind in ("issued", "pending")
        }
        ratios: dict[str, dict[str, list[float]]] = {
            kind: {v: [] for v in VARIANTS if v != "bare httpx"} for kind in samples
        }
        for r in range(repeats):
            for kind, ids in (("issued", issued), ("pending", pending)):
                order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
                got = {v: _measure(kind, v, server.url, ids, attempts) for v in order}
                for v, us in got.items():
                    samples[kind][v].append(us)
                    if v != "bare httpx":
                        ratios[kind][v].append(us / got["bare httpx"])
        profile = _profile(server.url, issued, attempts)
    finally:
        server.close()
    return OverheadResult(
        attempts=attempts,
        repeats=repeats,
        cpu_us={k: {v: summarize(s) for v, s in d.items()} for k, d in samples.items()},
        ratio={k: {v: summarize(s) for v, s in d.items()} for k, d in ratios.items()},
        profile=profile,
    )
