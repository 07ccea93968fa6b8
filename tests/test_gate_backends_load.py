"""Measured: 0 429s at DigiCert's documented limits, with 50 ms latency and jitter.

A CA model counts arrivals in DigiCert's rolling windows (100 / 5 s and 1000 / 3 min, closed
at the edge, the strict reading) and answers 429 past them. Requests reach it 50 ms after
admission, give or take 25 ms, and the answer takes as long again. Everything runs in
virtual time (``looptime``) on the memory backend, whose rules the shared backends share.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass, field

import pytest

from certpoll import Admitted, Answer, GateBackend, GateRules, Hold, gate_key
from certpoll._backends.gate_memory import MemoryGate

pytestmark = pytest.mark.looptime

DOCUMENTED = ((100, 5.0), (1000, 180.0))
KEY = gate_key("digicert", "load-test-key")


@dataclass
class StrictCA:
    """Counts every arrival in each rolling window; past a limit, the answer is a 429."""

    limits: tuple[tuple[int, float], ...]
    arrivals: list[float] = field(default_factory=list)
    rejected: int = 0
    _recent: deque[float] = field(default_factory=deque)

    def arrive(self, now: float) -> bool:
        longest = max(seconds for _, seconds in self.limits)
        while self._recent and self._recent[0] < now - longest:
            self._recent.popleft()
        for requests, seconds in self.limits:
            inside = sum(1 for t in self._recent if t >= now - seconds)
            if inside >= requests:
                self.rejected += 1
                return False
        self._recent.append(now)
        self.arrivals.append(now)
        return True

    def busiest(self, seconds: float) -> int:
        """The most arrivals in any closed window ``seconds`` long."""
        best = start = 0
        for end, t in enumerate(self.arrivals):
            while self.arrivals[start] < t - seconds:
                start += 1
            best = max(best, end - start + 1)
        return best


@dataclass
class Client:
    """One process: its requests ask the backend one at a time, in arrival order (as the
    gate's queue does), then travel to the CA and back."""

    backend: GateBackend
    ca: StrictCA
    rng: random.Random
    rules: GateRules = field(default_factory=lambda: GateRules(limits=DOCUMENTED))
    _turn: asyncio.Lock = field(default_factory=asyncio.Lock)

    def _latency(self) -> float:
        return 0.05 + self.rng.uniform(-0.025, 0.025)

    async def send(self) -> None:
        async with self._turn:
            while True:
                decision = await self.backend.admit(KEY, self.rules)
                if isinstance(decision, Admitted):
                    break
                await asyncio.sleep(decision.seconds)
        await asyncio.sleep(self._latency())
        accepted = self.ca.arrive(asyncio.get_running_loop().time())
        await asyncio.sleep(self._latency())
        await self.backend.report(
            KEY, self.rules, Answer(decision.ticket, hold=None if accepted else Hold(None))
        )


def minimum_drain(requests: int) -> float:
    """The least time ``requests`` can take under the documented windows, sent at t = 0."""
    return max(((requests - 1) // limit) * seconds for limit, seconds in DOCUMENTED)


async def test_a_burst_of_simultaneous_requests_gets_no_429() -> None:
    ca = StrictCA(DOCUMENTED)
    client = Client(MemoryGate(), ca, random.Random(1))
    requests = 2500
    await asyncio.gather(*(client.send() for _ in range(requests)))
    drain = asyncio.get_running_loop().time()
    assert ca.rejected == 0
    assert ca.busiest(5.0) <= 100
    assert ca.busiest(180.0) <= 1000
    assert drain / minimum_drain(requests) <= 1.1


async def test_one_task_per_order_polling_on_its_own_gets_no_429() -> None:
    """The FastAPI pattern: each order's task polls on its own schedule, and the tasks of
    several processes share the backend (here: three clients on one memory state)."""
    ca = StrictCA(DOCUMENTED)
    shared = MemoryGate()
    clients = [Client(shared, ca, random.Random(seed)) for seed in range(3)]
    schedule = random.Random(7)

    async def order(client: Client) -> None:
        await asyncio.sleep(schedule.uniform(0, 20))
        for _ in range(4):
            await client.send()
            await asyncio.sleep(schedule.uniform(5, 30))

    await asyncio.gather(*(order(clients[i % 3]) for i in range(600)))
    assert ca.rejected == 0
    assert ca.busiest(5.0) <= 100
    assert ca.busiest(180.0) <= 1000
    assert len(ca.arrivals) == 2400


async def test_without_the_answer_rule_the_same_burst_is_rate_limited() -> None:
    """The contrast that makes the tests above mean something: counting a request only at
    its admission, with no margin and no pacing (the old gate), lets the CA see too many."""
    ca = StrictCA(DOCUMENTED)
    old_rules = GateRules(limits=DOCUMENTED, margin=0.0, pace=False)
    client = Client(MemoryGate(), ca, random.Random(1), rules=old_rules)

    async def send_counting_admission_only() -> None:
        async with client._turn:
            while True:
                decision = await client.backend.admit(KEY, old_rules)
                if isinstance(decision, Admitted):
                    break
                await asyncio.sleep(decision.seconds)
            await client.backend.report(KEY, old_rules, Answer(decision.ticket))
        await asyncio.sleep(client._latency())
        client.ca.arrive(asyncio.get_running_loop().time())

    await asyncio.gather(*(send_counting_admission_only() for _ in range(600)))
    assert ca.rejected > 0
