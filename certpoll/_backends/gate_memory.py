"""``memory://``: the gate's state in this process, on the event loop's clock (or one given).

The default: one process, no server, and it runs on virtual time. Processes do not see each
other's requests; for more than one process on a credential, use a shared backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from .gate_state import GateState, SteppedGate

_T = TypeVar("_T")

__all__ = ["MemoryGate"]


class MemoryGate(SteppedGate):
    """Gate state per key in a dict; every step is atomic because nothing in it awaits."""

    name = "memory://"

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock
        self._states: dict[str, GateState] = {}

    def __repr__(self) -> str:
        return "MemoryGate()"

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    async def step(self, key: str, decide: Callable[[GateState, float], _T]) -> _T:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = GateState()
        return decide(state, self._now())

    async def aclose(self) -> None:
        return None
