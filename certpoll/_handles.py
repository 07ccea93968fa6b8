"""Resumable handles: :class:`PendingOrder` (small, serialisable) and :func:`resume`.

A handle keeps an order's place in its schedule across processes, in wall-clock time:
:class:`~certpoll.OrderStream` hands them out, :func:`~certpoll.poll_many` and
:func:`resume` take them back. The schedule itself is the Poller's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar, get_args

from ._connectors._base import Connector
from ._errors import ConfigError
from ._models import CAName, OrderStatus
from ._settings import CASettings

__all__ = ["PendingOrder", "handle_at", "resume", "utcnow"]

S = TypeVar("S", bound=CASettings)

_CA_NAMES: Final = frozenset(get_args(CAName))
_HANDLE_FIELDS: Final = ("ca", "order_id", "attempts", "next_poll_at", "deadline")
#: A time this far away (about 3,000 years) is as far as a handle goes: datetimes end, and
#: neither a deadline of math.inf nor a huge Retry-After may overflow one.
_MAX_SECONDS: Final = 1e11


def utcnow() -> datetime:
    """The wall clock, read only to convert between handles and the loop's clock."""
    return datetime.now(UTC)


def _aware_utc(value: object, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise ConfigError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(f"{name} must be timezone-aware (UTC), not naive: {value!r}")
    return value.astimezone(UTC)


def _seconds(value: float) -> timedelta:
    """``value`` seconds from now as a timedelta, in [0, _MAX_SECONDS]."""
    return timedelta(seconds=min(max(0.0, value), _MAX_SECONDS))


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingOrder:
    """A pending order, small and serialisable, to persist and resume polling later.

    ``attempts`` counts the attempts made so far (the schedule continues after them);
    ``next_poll_at`` is when the next attempt is due and ``deadline`` when the poll gives up,
    both aware UTC datetimes. Get handles from :meth:`OrderStream.pending`, store them with
    :meth:`to_json`, and hand them back to :func:`poll_many` or :func:`resume`.
    """

    ca: CAName
    order_id: str
    attempts: int
    next_poll_at: datetime
    deadline: datetime

    def __post_init__(self) -> None:
        if self.ca not in _CA_NAMES:
            raise ConfigError(f"ca must be one of {sorted(_CA_NAMES)}, not {self.ca!r}")
        order_id: object = self.order_id
        if not isinstance(order_id, str) or not order_id:
            raise ConfigError(f"order_id must be a non-empty string, not {self.order_id!r}")
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ConfigError(f"attempts must be an integer, not {self.attempts!r}")
        if self.attempts < 0:
            raise ConfigError(f"attempts must be 0 or more, not {self.attempts}")
        object.__setattr__(self, "next_poll_at", _aware_utc(self.next_poll_at, "next_poll_at"))
        object.__setattr__(self, "deadline", _aware_utc(self.deadline, "deadline"))

    def to_json(self) -> str:
        """The handle as a JSON object; times in ISO 8601 with their UTC offset."""
        return json.dumps(
            {
                "ca": self.ca,
                "order_id": self.order_id,
                "attempts": self.attempts,
                "next_poll_at": self.next_poll_at.isoformat(),
                "deadline": self.deadline.isoformat(),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> PendingOrder:
        """A handle from :meth:`to_json`'s output; :class:`ConfigError` if it is not one.

        Keys other than the five of a handle are ignored.
        """
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError("a pending order handle must be JSON") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"a pending order handle is a JSON object, not {type(data).__name__}")
        missing = [key for key in _HANDLE_FIELDS if key not in data]
        if missing:
            raise ConfigError(f"the pending order handle lacks {', '.join(missing)}")
        times = {}
        for key in ("next_poll_at", "deadline"):
            value = data[key]
            if not isinstance(value, str):
                raise ConfigError(f"{key} must be an ISO 8601 string, not {value!r}")
            try:
                times[key] = datetime.fromisoformat(value)
            except ValueError as exc:
                raise ConfigError(f"{key} is not an ISO 8601 time: {value[:64]!r}") from exc
        return cls(
            ca=data["ca"],
            order_id=data["order_id"],
            attempts=data["attempts"],
            next_poll_at=times["next_poll_at"],
            deadline=times["deadline"],
        )


def handle_at(
    wall: datetime,
    *,
    ca: CAName,
    order_id: str,
    attempts: int,
    due_in: float,
    deadline_in: float,
) -> PendingOrder:
    """The handle of an order next due ``due_in`` seconds after ``wall``, ending
    ``deadline_in`` seconds after it (both clamped to what a datetime holds).
    """
    return PendingOrder(
        ca=ca,
        order_id=order_id,
        attempts=attempts,
        next_poll_at=wall + _seconds(due_in),
        deadline=wall + _seconds(deadline_in),
    )


async def resume(
    connector: Connector[S], handle: PendingOrder, *, max_wait: float | None = None
) -> OrderStatus:
    """Poll one order from its handle, continuing its schedule, like ``get_order_status``.

    The next attempt comes at ``handle.next_poll_at`` (at once if that has passed) and waits
    grow from where they stopped. The poll ends at ``handle.deadline``, or after ``max_wait``
    seconds when given, or after a fresh PollMaxWait when the deadline has already passed.
    For the Poller's hooks this is a new poll (a new :attr:`~certpoll.PollDetails.poll_id`)
    whose attempts keep counting from ``handle.attempts``.
    """
    if handle.ca != connector.ca:
        raise ConfigError(
            f"the handle of order {handle.order_id!r} is for {handle.ca}, not {connector.ca}"
        )
    order_id = connector.check_order_id(handle.order_id)
    poller = connector.poller
    wall = utcnow()
    left = (handle.deadline - wall).total_seconds()
    budget = max_wait if max_wait is not None else (left if left > 0 else poller.max_wait)
    outcome = await poller.poll(
        lambda: connector.poll_once(order_id),
        ca=connector.ca,
        order_id=order_id,
        prior_attempts=handle.attempts,
        first_wait=max(0.0, (handle.next_poll_at - wall).total_seconds()),
        max_wait=budget,
    )
    return connector.final_status(order_id, outcome)
