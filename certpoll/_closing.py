"""``async with`` for anything that has an ``aclose``: :class:`AsyncClosing`."""

from __future__ import annotations

import abc
import types
from typing import Self

__all__ = ["AsyncClosing"]


class AsyncClosing(abc.ABC):
    """A mixin: ``async with obj:`` returns ``obj`` and calls :meth:`aclose` on the way out,
    however the block ends (an exception or a cancellation goes on after the close).
    """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release what this object holds."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.aclose()
