"""Virtual time for tests: polls that wait minutes run in no real time, reproducibly.

A :class:`VirtualClock` is a clock, a sleep that moves it instead of waiting, and a seeded
random source. Give them to a connector in one place, its Poller::

    clock = VirtualClock()
    connector = certpoll.DigiCert(settings, poller=clock.poller(max_wait=600.0))

and the Poller, the connector's gate (rate limits, cooldowns) and ``poll_many`` all run on
it. For many tasks sleeping at once, run the event loop itself in virtual time instead (the
``looptime`` pytest plugin): certpoll's default clock is the loop's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from .._instrumentation import PollHook
from .._poller import DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_MAX_WAIT, BackoffPolicy, Poller

__all__ = ["VirtualClock"]


@dataclass
class VirtualClock:
    """A clock that only moves when something sleeps on it.

    ``now`` is the time in seconds; ``sleeps`` records every wait asked for, in order;
    ``seed`` seeds the jitter of the Pollers it makes.
    """

    now: float = 0.0
    seed: int = 0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        """The current virtual time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, at once; let other tasks run a step meanwhile."""
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)

    def poller(
        self,
        policy: BackoffPolicy | None = None,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
        seed: int | None = None,
        hooks: Sequence[PollHook] | None = None,
    ) -> Poller:
        """A :class:`~certpoll.Poller` on this clock: the one place to give a connector time."""
        return Poller(
            policy,
            max_wait=max_wait,
            attempt_timeout=attempt_timeout,
            clock=self.clock,
            sleep=self.sleep,
            rng=random.Random(self.seed if seed is None else seed),
            hooks=hooks,
        )
