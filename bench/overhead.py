"""Workload 1: CPU time per poll attempt, certpoll vs a bare httpx loop (and the peers).

Two transports, measured in the same process, interleaved:

* **in-process**: httpx's ``ASGITransport`` to a replaying ASGI mock (:class:`_Replay`): it
  asks the simulated CA once per URL and then answers from memory, so no socket and almost
  no server work hide certpoll's own share. The goal is held on this figure.
* **loopback**: the simulated CA served by uvicorn over plain HTTP on 127.0.0.1 in another
  process (:mod:`bench._simserver`), what a deployment sees minus TLS.

Only the client's work is on the clock: ``time.process_time()`` of this process, over the
same number of attempts for every variant. Two kinds of attempt:

* **issued**: ``get_order_status`` on an issued order, that is the status GET, the bundle GET
  and the PEM parse; the bare loop makes the same two requests, reads the JSON and parses the
  PEM with ``cryptography``.
* **pending**: ``get_order_status`` with a PollMaxWait shorter than one attempt, on an order
  awaiting approval: one status GET and its triage; the bare loop GETs and reads the JSON.

Plain HTTP, not TLS: with keep-alive both sides pay the same TLS record costs, which would
only dilute the ratio. Every variant runs ``CONCURRENCY`` attempts at a time (coroutines, or
threads for the thread peer, loopback only), in rotating order within each repeat.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography import x509

import certpoll
from certpoll.testing import OrderScript, SimulatedCA

from ._common import Stats, digicert_settings, make_csr, summarize
from ._simserver import PENDING_NAME
from .peers import Routes, attempt_async, attempt_sync, poll_stamina, poll_tenacity

CONCURRENCY = 10
VARIANTS = ("certpoll", "bare httpx", "tenacity", "stamina", "threads")
TRANSPORTS = ("in-process", "loopback")
KINDS = ("issued", "pending")
#: A pending attempt in-process, one layer of certpoll at a time: where its extra goes.
LAYERS = ("bare httpx", "Connector.poll_once", "Poller.run_attempt", "get_order_status")

# ASGI's message shapes, as httpx.ASGITransport types them.
_Message = MutableMapping[str, Any]


@dataclass(frozen=True, slots=True)
class OverheadResult:
    """CPU microseconds per attempt, per transport, kind and variant, and the ratios."""

    attempts: int
    repeats: int
    #: transport -> kind ("issued"/"pending") -> variant -> µs per attempt
    cpu_us: dict[str, dict[str, dict[str, Stats]]]
    #: transport -> kind -> variant -> that variant / bare httpx, per repeat
    ratio: dict[str, dict[str, dict[str, Stats]]]
    #: cProfile of certpoll's issued attempts in-process, top entries by own time
    profile: str
    #: µs to check one leaf's signature against its issuer (certpoll does, the peers do not)
    signature_us: Stats
    #: in-process issued: (certpoll less one signature check) / bare httpx, per repeat
    issued_less_signature: Stats
    #: in-process pending: CPU µs per attempt through each of :data:`LAYERS`
    layers: dict[str, Stats]
    #: in-process pending: each layer / bare httpx, per repeat
    layer_ratio: dict[str, Stats]


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


class _Replay:
    """An ASGI app that asks the simulator once per GET URL and then replays its answer.

    The answers are the simulator's own (status words, headers, the PEM bundle); replaying
    them costs the server side almost nothing, so the client's work is what is measured.
    Other methods (the set-up's orders) go to the simulator every time.
    """

    def __init__(self, sim: SimulatedCA) -> None:
        # The simulator types ASGI messages as plain dicts, httpx as mutable mappings.
        self.sim: Callable[..., Awaitable[None]] = sim
        self.answers: dict[str, tuple[_Message, _Message]] = {}

    async def __call__(
        self,
        scope: _Message,
        receive: Callable[[], Awaitable[_Message]],
        send: Callable[[_Message], Awaitable[None]],
    ) -> None:
        key = f"{scope['path']}?{scope['query_string']!r}"
        answer = self.answers.get(key) if scope["method"] == "GET" else None
        if answer is None:
            messages: list[_Message] = []

            async def record(message: _Message) -> None:
                messages.append(message)

            await self.sim(scope, receive, record)
            body = b"".join(m.get("body", b"") for m in messages[1:])
            answer = (messages[0], {"type": "http.response.body", "body": body})
            if scope["method"] == "GET":
                self.answers[key] = answer
        await send(answer[0])
        await send(answer[1])


@dataclass(frozen=True, slots=True)
class _Target:
    """Where one transport's variants send their requests."""

    url: str
    transport: Callable[[], httpx.AsyncBaseTransport | None]
    issued: list[str]
    pending: list[str]


async def _spread(count: int, one: Callable[[int], Awaitable[object]]) -> None:
    async def worker(start: int) -> None:
        for i in range(start, count, CONCURRENCY):
            await one(i)

    await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))


def _client(target: _Target) -> httpx.AsyncClient:
    transport = target.transport()
    limits = httpx.Limits(max_connections=CONCURRENCY)
    if transport is None:
        return httpx.AsyncClient(limits=limits)
    return httpx.AsyncClient(transport=transport)


async def _orders(
    url: str, transport: Callable[[], httpx.AsyncBaseTransport | None], count: int
) -> tuple[list[str], list[str]]:
    settings = digicert_settings(url)
    csr = make_csr()
    issued: list[str] = []
    pending: list[str] = []
    target = _Target(url, transport, [], [])
    async with _client(target) as http, certpoll.DigiCert(settings, http=http) as dc:
        for i in range(count):
            order = await dc.issue(certpoll.CertificateRequest(common_name=f"o{i}.x", csr_pem=csr))
            issued.append(order.order_id)
            order = await dc.issue(
                certpoll.CertificateRequest(common_name=PENDING_NAME, csr_pem=csr)
            )
            pending.append(order.order_id)
    return issued, pending


def _measure_threads(target: _Target, ids: list[str], attempts: int, expect: bool) -> float:
    settings = digicert_settings(target.url)
    routes = Routes(settings.base_url, settings.api_key.get_secret_value())
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


def _measure(kind: str, variant: str, target: _Target, attempts: int) -> float:
    """CPU µs per attempt of one variant."""
    expect = kind == "issued"
    ids = target.issued if expect else target.pending
    if variant == "threads":
        return _measure_threads(target, ids, attempts, expect)
    settings = digicert_settings(target.url, max_wait=3600.0 if expect else 1e-6)
    routes = Routes(settings.base_url, settings.api_key.get_secret_value())

    async def run() -> float:
        async with _client(target) as http, certpoll.DigiCert(settings, http=http) as dc:

            async def one(i: int) -> None:
                order_id = ids[i % len(ids)]
                if variant == "certpoll":
                    status = await dc.get_order_status(order_id)
                    got = status.state is certpoll.OrderState.ISSUED
                elif variant == "bare httpx":
                    got = (await attempt_async(http, routes, order_id))[0] == "issued"
                elif variant == "tenacity":
                    got = await poll_tenacity(http, routes, order_id, max_attempts=1)
                else:
                    got = await poll_stamina(http, routes, order_id, max_attempts=1)
                assert got == expect

            await _spread(min(attempts, 4 * CONCURRENCY), one)  # warm: connections open
            start = time.process_time()
            await _spread(attempts, one)
            return (time.process_time() - start) / attempts * 1e6

    return asyncio.run(run())


def _measure_layer(layer: str, target: _Target, attempts: int) -> float:
    """CPU µs per pending attempt through one layer of certpoll (see :data:`LAYERS`)."""
    if layer in ("bare httpx", "get_order_status"):
        return _measure(
            "pending", "bare httpx" if layer == "bare httpx" else "certpoll", target, attempts
        )
    settings = digicert_settings(target.url, max_wait=1e-6)

    async def run() -> float:
        async with _client(target) as http, certpoll.DigiCert(settings, http=http) as dc:
            poller = dc.poller

            async def one(i: int) -> None:
                order_id = target.pending[i % len(target.pending)]
                if layer == "Connector.poll_once":
                    outcome = await dc.poll_once(order_id)
                else:
                    outcome = await poller.run_attempt(lambda: dc.poll_once(order_id))
                assert isinstance(outcome, certpoll.Pending)

            await _spread(min(attempts, 4 * CONCURRENCY), one)
            start = time.process_time()
            await _spread(attempts, one)
            return (time.process_time() - start) / attempts * 1e6

    return asyncio.run(run())


def profile_issued(target: _Target, attempts: int, *, top: int = 15) -> str:
    """cProfile of certpoll's issued attempts against ``target``, by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    _measure("issued", "certpoll", target, attempts)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    start = text.find("ncalls")
    return text[text.rfind("\n", 0, start) + 1 :].rstrip() if start >= 0 else text.strip()


async def _issued_pair(target: _Target) -> tuple[x509.Certificate, x509.Certificate]:
    """An issued leaf from ``target`` and its issuer (DigiCert sends the leaf first)."""
    settings = digicert_settings(target.url)
    routes = Routes(settings.base_url, settings.api_key.get_secret_value())
    async with _client(target) as http:
        status = await http.get(routes.status(target.issued[0]), headers=routes.headers)
        certificate_id = int(status.json()["certificate"]["id"])
        download = await http.get(routes.download(certificate_id), headers=routes.headers)
    leaf, issuer = x509.load_pem_x509_certificates(download.content)[:2]
    return leaf, issuer


def signature_check_us(pair: tuple[x509.Certificate, x509.Certificate], checks: int) -> float:
    """CPU µs per check of the leaf's signature by its issuer.

    certpoll makes this check on every download (the chain is rebuilt by signature); the
    bare loop and the peers only parse the PEM.
    """
    leaf, issuer = pair
    start = time.process_time()
    for _ in range(checks):
        leaf.verify_directly_issued_by(issuer)
    return (time.process_time() - start) / checks * 1e6


def in_process_target(orders: int = 10) -> _Target:
    """The replaying in-process mock, with ``orders`` issued and pending orders in it."""
    sim = SimulatedCA(digicert_rate_limits=())
    sim.script_common_name(PENDING_NAME, OrderScript(approval_for=1e9))
    replay = _Replay(sim)
    url = sim.base_urls().digicert

    def transport() -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=replay)

    issued, pending = asyncio.run(_orders(url, transport, orders))
    return _Target(url, transport, issued, pending)


def run(*, attempts: int = 150, repeats: int = 5) -> OverheadResult:
    """Measure every variant ``repeats`` times, ``attempts`` attempts each, both transports."""
    server = _Server()
    try:
        issued, pending = asyncio.run(_orders(server.url, lambda: None, 10))
        targets = {
            "in-process": in_process_target(),
            "loopback": _Target(server.url, lambda: None, issued, pending),
        }
        samples: dict[str, dict[str, dict[str, list[float]]]] = {
            t: {kind: {v: [] for v in _variants(t)} for kind in KINDS} for t in TRANSPORTS
        }
        ratios: dict[str, dict[str, dict[str, list[float]]]] = {
            t: {kind: {v: [] for v in _variants(t) if v != "bare httpx"} for kind in KINDS}
            for t in TRANSPORTS
        }
        pair = asyncio.run(_issued_pair(targets["in-process"]))
        signature: list[float] = []
        less: list[float] = []
        layers: dict[str, list[float]] = {layer: [] for layer in LAYERS}
        layer_ratio: dict[str, list[float]] = {layer: [] for layer in LAYERS}
        for r in range(repeats):
            turn = LAYERS[r % len(LAYERS) :] + LAYERS[: r % len(LAYERS)]
            got = {layer: _measure_layer(layer, targets["in-process"], attempts) for layer in turn}
            for layer in LAYERS:
                layers[layer].append(got[layer])
                layer_ratio[layer].append(got[layer] / got["bare httpx"])
            for transport, target in targets.items():
                variants = _variants(transport)
                order = variants[r % len(variants) :] + variants[: r % len(variants)]
                for kind in KINDS:
                    got = {v: _measure(kind, v, target, attempts) for v in order}
                    for v, us in got.items():
                        samples[transport][kind][v].append(us)
                        if v != "bare httpx":
                            ratios[transport][kind][v].append(us / got["bare httpx"])
                    if transport == "in-process" and kind == "issued":
                        # Side by side with the attempts it is compared with.
                        signature.append(signature_check_us(pair, attempts))
                        less.append((got["certpoll"] - signature[-1]) / got["bare httpx"])
        profile = profile_issued(targets["in-process"], attempts)
    finally:
        server.close()

    def summary(
        values: dict[str, dict[str, dict[str, list[float]]]],
    ) -> dict[str, dict[str, dict[str, Stats]]]:
        return {
            t: {k: {v: summarize(s) for v, s in d.items()} for k, d in by_kind.items()}
            for t, by_kind in values.items()
        }

    return OverheadResult(
        attempts=attempts,
        repeats=repeats,
        cpu_us=summary(samples),
        ratio=summary(ratios),
        profile=profile,
        signature_us=summarize(signature),
        issued_less_signature=summarize(less),
        layers={layer: summarize(us) for layer, us in layers.items()},
        layer_ratio={layer: summarize(r) for layer, r in layer_ratio.items()},
    )


def _variants(transport: str) -> tuple[str, ...]:
    """The thread peer needs sockets: synchronous httpx has no ASGI transport."""
    return VARIANTS if transport == "loopback" else tuple(v for v in VARIANTS if v != "threads")
