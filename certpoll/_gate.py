"""The upstream gate: every request a connector sends passes through it.

This first version only carries the shared cooldown; rate limiting per credential arrives
with ``poll_many``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

__all__ = ["UpstreamGate"]


class UpstreamGate:
    """Admits the requests of one connector (one credential) to the CA."""

    def __init__(self, *, rate_limits: Sequence[tuple[int, float]] = ()) -> None:
        self.rate_limits = tuple(rate_limits)
        self._not_before = 0.0

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Wait until a request may be sent, then send it inside the block."""
        loop = asyncio.get_running_loop()
        delay = self._not_before - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield

    def hold(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (a 429 or a ``Retry-After`` was seen)."""
        loop = asyncio.get_running_loop()
        self._not_before = max(self._not_before, loop.time() + seconds)
