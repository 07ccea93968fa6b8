"""Observing polls: one :class:`PollDetails` record per attempt, handed to hooks.

By default the only hook is :func:`logging_hook`, which logs on the ``certpoll`` logger with
namespaced ``extra`` keys (``certpoll_ca``, ``certpoll_order_id``, ...). Hooks can be set for
the whole process with :func:`set_poll_hooks` or per Poller / connector with ``hooks=``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "AttemptOutcome",
    "PollDetails",
    "PollHook",
    "get_poll_hooks",
    "logging_hook",
    "set_poll_hooks",
]

logger = logging.getLogger("certpoll")
# A library logs; the application decides where it goes. Without this, Python's last-resort
# handler would print every WARNING to stderr of a program that configured no logging.
logger.addHandler(logging.NullHandler())

AttemptOutcome = Literal["done", "pending", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PollDetails:
    """What happened in one poll attempt, and what the Poller does next.

    ``poll_id`` tells polls apart: two polls of one order at once, or polls with no order id
    at all, have the same ``ca`` and ``order_id`` but never the same ``poll_id``.
    """

    #: The CA the poll talks to, when the Poller was told (connectors always tell it).
    ca: str | None
    #: The order being polled, when the Poller was told.
    order_id: str | None
    #: 1 for the first attempt of this poll (resumed polls keep counting).
    attempt: int
    #: ``"done"``, ``"pending"`` or ``"failed"``.
    outcome: AttemptOutcome
    #: The HTTP status code behind the outcome, when the error carries one.
    status_code: int | None
    #: Seconds since the poll started, on the Poller's clock.
    waited_so_far: float
    #: Seconds the Poller will wait before the next attempt; None when the poll ends here.
    next_wait: float | None
    #: The error of this attempt (transient for pending, permanent for failed), if any.
    error: Exception | None
    #: The CA's words for a pending state, if any.
    detail: str | None = None
    #: Which poll the attempt belongs to: a number unique in the process to each
    #: :meth:`Poller.poll` call (a :func:`~certpoll.resume` too, which is a poll of its own)
    #: and to each order of each :func:`~certpoll.poll_many` call; 0 in a record that
    #: certpoll did not make.
    poll_id: int = 0


class PollHook(Protocol):
    """Anything called with a :class:`PollDetails` after every attempt.

    A hook runs inside the poll: it must be quick and must not raise.
    """

    def __call__(self, details: PollDetails, /) -> None: ...


def logging_hook(details: PollDetails, /) -> None:
    """Log one attempt on the ``certpoll`` logger.

    Pending and done attempts log at DEBUG, a transient error at INFO, a failure at WARNING.
    The error is logged by type and message only: certpoll messages never hold a credential.
    """
    level = _level(details.outcome, details.error)
    if not logger.isEnabledFor(level):
        return
    error = None if details.error is None else f"{type(details.error).__name__}: {details.error}"
    logger.log(
        level,
        "certpoll.attempt ca=%s order_id=%s attempt=%d outcome=%s next_wait=%s error=%s",
        details.ca,
        details.order_id,
        details.attempt,
        details.outcome,
        None if details.next_wait is None else round(details.next_wait, 3),
        error,
        extra={
            "certpoll_poll_id": details.poll_id,
            "certpoll_ca": details.ca,
            "certpoll_order_id": details.order_id,
            "certpoll_attempt": details.attempt,
            "certpoll_outcome": details.outcome,
            "certpoll_status_code": details.status_code,
            "certpoll_waited_so_far": details.waited_so_far,
            "certpoll_next_wait": details.next_wait,
            "certpoll_error": error,
        },
    )


def _level(outcome: AttemptOutcome, error: Exception | None) -> int:
    if outcome == "failed":
        return logging.WARNING
    return logging.DEBUG if error is None else logging.INFO


def reads_attempt(
    hooks: Sequence[PollHook], outcome: AttemptOutcome, error: Exception | None
) -> bool:
    """Whether any of ``hooks`` would look at this attempt's :class:`PollDetails`.

    Not when there is no hook, nor when the only one is :func:`logging_hook` and the
    ``certpoll`` logger discards the attempt's level: then the record need not be built.
    """
    if not hooks:
        return False
    if len(hooks) == 1 and hooks[0] is logging_hook:
        return logger.isEnabledFor(_level(outcome, error))
    return True


#: Poll ids, from 1: ``next`` on it is one step, so polls in threads never share one.
_poll_ids = itertools.count(1)


def new_poll_id() -> int:
    """A :attr:`PollDetails.poll_id` no poll in this process has had yet.

    Taken at a poll's first record a hook reads, so a poll nobody observes takes none.
    """
    return next(_poll_ids)


_DEFAULT_HOOKS: tuple[PollHook, ...] = (logging_hook,)
_global_hooks: tuple[PollHook, ...] = _DEFAULT_HOOKS


def set_poll_hooks(hooks: Sequence[PollHook] | None) -> None:
    """Set the hooks of every Poller that was not given its own.

    ``None`` restores the default (logging only); an empty sequence turns instrumentation off.
    """
    global _global_hooks
    _global_hooks = _DEFAULT_HOOKS if hooks is None else tuple(hooks)


def get_poll_hooks() -> tuple[PollHook, ...]:
    """The hooks that Pollers without their own hooks call."""
    return _global_hooks
