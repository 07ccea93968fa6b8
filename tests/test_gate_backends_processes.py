"""Several real processes on one key: together they stay inside the limit.

Each process opens its own backend and sends its requests one after another through it,
as a ``uvicorn`` worker would; the requests' admissions, read on the host's clock (which the
SQLite file, the Redis and the PostgreSQL server here share), never crowd a window. These
run in real time: short windows, a few dozen requests.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from certpoll import Admitted, Answer, GateRules, gate_key, open_gate_backend

LIMIT, WINDOW = 5, 0.2
RULES = GateRules(limits=((LIMIT, WINDOW),), margin=0.05, lost_after=1.0)
KEY = gate_key("digicert", "processes-test-key")
PROCESSES, REQUESTS = 3, 10


async def _send(url: str, requests: int) -> list[float]:
    backend = open_gate_backend(url)
    sent: list[float] = []
    try:
        for _ in range(requests):
            while True:
                decision = await backend.admit(KEY, RULES)
                if isinstance(decision, Admitted):
                    break
                await asyncio.sleep(decision.seconds)
            sent.append(time.time())
            await asyncio.sleep(0.01)  # the round trip to the CA
            await backend.report(KEY, RULES, Answer(decision.ticket))
    finally:
        await backend.aclose()
    return sent


def worker(url: str, requests: int) -> list[float]:
    """One process's requests; returns the host time each was admitted at."""
    return asyncio.run(_send(url, requests))


def busiest(times: list[float], seconds: float) -> int:
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] < t - seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/gate.db"
    url: str = request.getfixturevalue(
        "redis_url" if request.param == "redis" else "fresh_postgres_url"
    )
    return url


def test_processes_sharing_a_backend_stay_inside_the_limit(shared_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
        runs = [pool.submit(worker, shared_url, REQUESTS) for _ in range(PROCESSES)]
        sent = [t for run in runs for t in run.result(timeout=60)]
    assert len(sent) == PROCESSES * REQUESTS
    assert busiest(sent, WINDOW) <= LIMIT
    # Not just safe but moving: the pace is one per WINDOW / LIMIT, plus the answer lag.
    assert max(sent) - min(sent) < PROCESSES * REQUESTS * (WINDOW + RULES.margin) / LIMIT * 2


def test_a_process_killed_after_admission_frees_its_places_after_lost_after(
    shared_url: str,
) -> None:
    context = multiprocessing.get_context("spawn")
    reader, writer = context.Pipe(duplex=False)
    victim = context.Process(target=_announce, args=(shared_url, writer))
    victim.start()
    assert reader.poll(30), "the victim never admitted"
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    started = time.monotonic()
    sent = worker(shared_url, 1)
    waited = time.monotonic() - started
    assert len(sent) == 1
    # Its five places count until admission + lost_after, then for the window and margin.
    assert RULES.lost_after * 0.8 < waited < RULES.lost_after + WINDOW + RULES.margin + 2.0


def _announce(url: str, writer: Connection) -> None:
    """Take every place in the window, say so, then hang until killed, never answering."""
    asyncio.run(_fill(url))
    writer.send(True)
    time.sleep(60)


async def _fill(url: str) -> None:
    backend = open_gate_backend(url)
    for _ in range(LIMIT):
        decision = await backend.admit(KEY, replace(RULES, pace=False))
        assert isinstance(decision, Admitted)
    await backend.aclose()
