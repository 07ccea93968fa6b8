"""The Poller: runs one attempt after another until done, failed, or out of time.

It knows nothing of HTTP. Its rules (each is tested):

1. Base waits grow multiplicatively on the un-jittered base and are capped:
   5, 15, 45, 135, 300, 300, ... seconds with the default :class:`BackoffPolicy`.
2. Every wait is ``base × (1 + u)`` with ``u`` uniform in ``[-jitter, +jitter]``.
3. The first attempt runs at once; a wait is clamped to end at the deadline, where one last
   attempt runs; then :class:`StillPending`.
4. No attempt starts after the deadline, and each attempt is cut off after
   ``attempt_timeout`` (it then counts as pending with an :class:`AttemptTimeout`), so a poll
   returns no later than ``max_wait + attempt_timeout``.
5. A server's ``Retry-After`` is a floor for the next wait, with a little jitter on top; a
   floor that would end past the deadline ends the poll early with ``StillPending.retry_after``.
6. Cancellation (``task.cancel()``, ``asyncio.timeout()``) is never caught.
7. Clock, sleep and random source are injectable; by default time is the event loop's clock.
8. Time an attempt spends queued at the upstream gate (rate limit, shared cooldown) does not
   count against ``attempt_timeout``: the gate pauses the attempt's clock while it waits
   (:func:`attempt_clock_paused`).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar, final

from ._errors import AttemptTimeout, ConfigError
from ._instrumentation import AttemptOutcome, PollDetails, PollHook, get_poll_hooks
from ._outcomes import Done, Failed, Pending, StillPending

__all__ = ["BackoffPolicy", "Poller", "attempt_clock_paused"]

T = TypeVar("T")

#: The default PollMaxWait: ten minutes.
DEFAULT_MAX_WAIT = 600.0
#: The default bound on one attempt (all its requests together).
DEFAULT_ATTEMPT_TIMEOUT = 30.0


#: The attempt timeout of the attempt running in this task, so the gate can pause it.
_running_attempt: contextvars.ContextVar[tuple[asyncio.Task[object], asyncio.Timeout] | None] = (
    contextvars.ContextVar("certpoll_running_attempt", default=None)
)


@contextmanager
def attempt_clock_paused() -> Iterator[None]:
    """Stop the running attempt's ``attempt_timeout`` clock inside the block.

    For waits that are not the CA's doing (a request queued behind a rate limit or a shared
    cooldown): without this, orders queued behind many others would all time out. Outside an
    attempt, or in a task the attempt did not start, it does nothing.
    """
    running = _running_attempt.get()
    if running is None or running[0] is not asyncio.current_task():
        yield
        return
    timeout = running[1]
    when = timeout.when()
    if when is None or timeout.expired():
        yield
        return
    loop = asyncio.get_running_loop()
    left = when - loop.time()
    timeout.reschedule(None)
    try:
        yield
    finally:
        if not timeout.expired():
            timeout.reschedule(loop.time() + left)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffPolicy:
    """How long to wait between attempts.

    The *n*-th wait (counting from 0) has the base ``initial_wait × multiplier**n``, capped at
    ``max_backoff``; growth is computed on the base, so jitter never compounds. Each wait is
    the base times ``1 + u``, ``u`` drawn uniformly from ``[-jitter, +jitter]``; ``jitter=0``
    means none.
    """

    initial_wait: float = 5.0
    multiplier: float = 3.0
    max_backoff: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        _require(
            math.isfinite(self.initial_wait) and self.initial_wait > 0,
            f"initial_wait must be a positive number of seconds, not {self.initial_wait!r}",
        )
        _require(
            math.isfinite(self.multiplier) and self.multiplier >= 1,
            f"multiplier must be at least 1, not {self.multiplier!r}",
        )
        _require(
            math.isfinite(self.max_backoff) and self.max_backoff >= self.initial_wait,
            f"max_backoff must be a number of seconds no smaller than initial_wait "
            f"({self.initial_wait!r}), not {self.max_backoff!r}",
        )
        _require(
            math.isfinite(self.jitter) and 0 <= self.jitter < 1,
            f"jitter must be a fraction in [0, 1), not {self.jitter!r}",
        )

    def base_wait(self, index: int) -> float:
        """The un-jittered wait after attempt ``index + 1`` (``index`` counts from 0)."""
        if index < 0:
            raise ValueError(f"index must be 0 or more, not {index}")
        wait = self.initial_wait
        for _ in range(index):
            if wait >= self.max_backoff:
                break
            wait *= self.multiplier
        return min(wait, self.max_backoff)

    def jittered(self, base: float, rng: random.Random) -> float:
        """``base`` spread by ±``jitter``."""
        if self.jitter == 0:
            return base
        return base * (1 + rng.uniform(-self.jitter, self.jitter))


def _check_seconds(name: str, value: float) -> float:
    _require(
        not math.isnan(value) and value > 0,
        f"{name} must be a positive number of seconds (math.inf for no limit), not {value!r}",
    )
    return float(value)


@final
class Poller:
    """Polls an attempt function until it reports a final answer or the deadline passes.

    >>> poller = Poller(BackoffPolicy(), max_wait=600.0, attempt_timeout=30.0)
    >>> outcome = await poller.poll(check)  # doctest: +SKIP

    ``max_wait`` (PollMaxWait) and ``attempt_timeout`` are seconds; ``math.inf`` spells out
    "no limit". ``clock`` returns seconds on a monotonic scale (default: the running event
    loop's ``time()``), ``sleep`` waits (default ``asyncio.sleep``), ``rng`` draws the jitter.
    ``hooks`` replaces the process-wide hooks of :func:`certpoll.set_poll_hooks` for this
    Poller.
    """

    __slots__ = ("_attempt_timeout", "_clock", "_hooks", "_max_wait", "_rng", "_sleep", "policy")

    def __init__(
        self,
        policy: BackoffPolicy | None = None,
        /,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
        rng: random.Random | None = None,
        hooks: Sequence[PollHook] | None = None,
    ) -> None:
        self.policy = BackoffPolicy() if policy is None else policy
        self._max_wait = _check_seconds("max_wait", max_wait)
        self._attempt_timeout = _check_seconds("attempt_timeout", attempt_timeout)
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random() if rng is None else rng
        self._hooks = None if hooks is None else tuple(hooks)

    @property
    def max_wait(self) -> float:
        """PollMaxWait in seconds."""
        return self._max_wait

    @property
    def attempt_timeout(self) -> float:
        """The bound on one attempt, in seconds."""
        return self._attempt_timeout

    def __repr__(self) -> str:
        return (
            f"Poller({self.policy!r}, max_wait={self._max_wait!r}, "
            f"attempt_timeout={self._attempt_timeout!r})"
        )

    def now(self) -> float:
        """The Poller's clock: the injected one, or the running loop's ``time()``."""
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    async def poll(
        self,
        attempt: Callable[[], Awaitable[Done[T] | Pending | Failed]],
        *,
        ca: str | None = None,
        order_id: str | None = None,
        prior_attempts: int = 0,
        first_wait: float = 0.0,
        max_wait: float | None = None,
    ) -> Done[T] | StillPending:
        """Run ``attempt`` until it returns :class:`Done`, raise on :class:`Failed`.

        Returns :class:`Done` or, once the deadline has passed, :class:`StillPending`.
        ``ca`` and ``order_id`` label the hook records. To resume an interrupted schedule,
        pass the number of attempts already made as ``prior_attempts`` (the next wait is
        then the one that follows them), the time until the next attempt was due as
        ``first_wait``, and the time left of the original deadline as ``max_wait``.
        """
        if prior_attempts < 0:
            raise ConfigError(f"prior_attempts must be 0 or more, not {prior_attempts}")
        budget = self._max_wait if max_wait is None else _check_seconds("max_wait", max_wait)
        _require(
            not math.isnan(first_wait) and first_wait >= 0,
            f"first_wait must be 0 or more seconds, not {first_wait!r}",
        )
        sleep = asyncio.sleep if self._sleep is None else self._sleep
        hooks = get_poll_hooks() if self._hooks is None else self._hooks
        start = self.now()
        deadline = start + budget
        if first_wait > 0:
            await sleep(min(first_wait, budget))

        wait_index = prior_attempts
        attempt_number = prior_attempts
        last_error: Exception | None = None
        detail: str | None = None
        while True:
            attempt_number += 1
            result = await self._run_attempt(attempt, ca=ca, order_id=order_id)
            now = self.now()
            report = _Reporter(hooks=hooks, ca=ca, order_id=order_id, attempt=attempt_number)

            if isinstance(result, Done):
                report("done", error=None, detail=detail, elapsed=now - start, next_wait=None)
                return result
            if isinstance(result, Failed):
                report("failed", error=result.error, detail=detail, elapsed=now - start)
                raise result.error
            if not isinstance(result, Pending):
                raise TypeError(
                    f"a poll attempt must return Done, Pending or Failed, not {type(result)!r}"
                )

            last_error = result.error
            if result.detail is not None:
                detail = result.detail
            remaining = deadline - now
            retry_after = None if result.retry_after is None else max(0.0, result.retry_after)
            if remaining <= 0 or (retry_after is not None and retry_after > remaining):
                report("pending", error=last_error, detail=detail, elapsed=now - start)
                return StillPending(
                    attempts=attempt_number - prior_attempts,
                    elapsed=now - start,
                    last_error=last_error,
                    detail=detail,
                    retry_after=retry_after,
                )

            wait = self.policy.jittered(self.policy.base_wait(wait_index), self._rng)
            wait_index += 1
            if retry_after is not None:
                # A floor, never shortened; the jitter on top keeps many orders told the
                # same Retry-After from coming back in the same instant.
                wait = max(wait, retry_after * (1 + self._rng.uniform(0, self.policy.jitter / 2)))
            wait = min(wait, remaining)
            report("pending", error=last_error, detail=detail, elapsed=now - start, next_wait=wait)
            await sleep(wait)

    async def _run_attempt(
        self,
        attempt: Callable[[], Awaitable[Done[T] | Pending | Failed]],
        *,
        ca: str | None,
        order_id: str | None,
    ) -> Done[T] | Pending | Failed:
        limit = None if math.isinf(self._attempt_timeout) else self._attempt_timeout
        timeout = asyncio.timeout(limit)
        task = asyncio.current_task()
        try:
            async with timeout:
                token = _running_attempt.set(None if task is None else (task, timeout))
                try:
                    return await attempt()
                finally:
                    _running_attempt.reset(token)
        except TimeoutError as exc:
            if not timeout.expired():
                raise
            error = AttemptTimeout(
                f"poll attempt took longer than attempt_timeout ({self._attempt_timeout:g} s)",
                ca=ca,
                order_id=order_id,
            )
            error.__cause__ = exc
            return Pending(error=error)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Reporter:
    """Hands one attempt's :class:`PollDetails` to every hook."""

    hooks: tuple[PollHook, ...]
    ca: str | None
    order_id: str | None
    attempt: int

    def __call__(
        self,
        outcome: AttemptOutcome,
        *,
        error: Exception | None,
        detail: str | None,
        elapsed: float,
        next_wait: float | None = None,
    ) -> None:
        details = PollDetails(
            ca=self.ca,
            order_id=self.order_id,
            attempt=self.attempt,
            outcome=outcome,
            status_code=getattr(error, "status_code", None),
            waited_so_far=elapsed,
            next_wait=next_wait,
            error=error,
            detail=detail,
        )
        for hook in self.hooks:
            hook(details)
