"""What one poll attempt reports, and what a whole poll returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

__all__ = ["AttemptResult", "Done", "Failed", "Pending", "StillPending"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Done(Generic[T]):
    """The attempt found a final answer.

    A CA that rejected an order is a final answer too: the rejection is the *value*.
    """

    value: T


@dataclass(frozen=True, slots=True)
class Pending:
    """Not finished yet: the Poller waits and tries again.

    ``error`` is set when the attempt hit a transient problem (5xx, 429, network); ``detail``
    is the CA's own words for the pending state; ``retry_after`` is the server's requested
    wait in seconds, which the Poller treats as a floor for the next wait.
    """

    error: Exception | None = None
    retry_after: float | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """A permanent failure: the Poller raises ``error`` at once."""

    error: Exception


AttemptResult: TypeAlias = Done[T] | Pending | Failed


@dataclass(frozen=True, slots=True, kw_only=True)
class StillPending:
    """The deadline came (or the server asked for a wait past it) before a final answer.

    This is a value, not an error: the order may still be issued later.
    """

    #: How many attempts ran.
    attempts: int
    #: Seconds from the start of the poll to its end, on the Poller's clock.
    elapsed: float
    #: The transient error of the latest attempt (the exception object), if it had one.
    last_error: Exception | None = None
    #: The latest pending message the CA gave.
    detail: str | None = None
    #: Seconds the server asked to wait when that wait would not fit before the deadline.
    retry_after: float | None = None
