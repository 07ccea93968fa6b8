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
   (:func:`attempt_clock_paused`). It never moves the deadline: the gate admits a request
   only before its poll's deadline (:func:`attempt_deadline`), so the bound of rule 4 holds.
9. Deadline checks have a slack of :data:`CLOCK_SLACK`: a budget that is not a whole number
   of clock ticks still ends with exactly one last look.

The schedule itself (rules 1, 2, 3 and 5) is computed in one place, :meth:`Poller.next_wait`,
which :func:`~certpoll.poll_many` follows too.
"""

from __future__ import annotations

import asyncio
import math
import random
import types
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar, final

from ._errors import AttemptTimeout, ConfigError
from ._instrumentation import (
    AttemptOutcome,
    PollDetails,
    PollHook,
    get_poll_hooks,
    new_poll_id,
    reads_attempt,
)
from ._outcomes import Done, Failed, Pending, StillPending

__all__ = [
    "CLOCK_SLACK",
    "BackoffPolicy",
    "Poller",
    "attempt_clock_paused",
    "attempt_deadline",
    "report_attempt",
]

T = TypeVar("T")

#: The default PollMaxWait: ten minutes.
DEFAULT_MAX_WAIT = 600.0
#: The default bound on one attempt (all its requests together).
DEFAULT_ATTEMPT_TIMEOUT = 30.0


#: A time this close to a deadline is the deadline. Event loops fire timers up to their clock
#: resolution early, and a budget such as ``0.1 + 0.2`` is not a whole number of clock ticks:
#: without this slack a virtual-time loop would run look after look a hair before the end.
CLOCK_SLACK = 1e-3


@final
class _Attempt:
    """One attempt running in its task: its poll's deadline and its ``attempt_timeout``.

    A sync context manager around ``await attempt()``: a cut-off cancels the task, and the
    block then ends with :attr:`cut_off` set instead of the cancellation (a cancellation from
    anyone else goes through), as ``asyncio.timeout`` does, but without a timer of its own:
    the attempts of one Poller start in the order they expire, so a :class:`_Watchdog` cuts
    them all off with one timer. The gate pauses the clock while the attempt waits there
    (:func:`attempt_clock_paused`); a resumed attempt then has a timer of its own.
    """

    __slots__ = (
        "_cancelling",
        "_handle",
        "_outer",
        "cut_off",
        "deadline",
        "expired",
        "expires",
        "task",
        "watchdog",
    )

    def __init__(
        self,
        task: asyncio.Task[object],
        deadline: float | None,
        expires: float | None,
        watchdog: _Watchdog | None,
    ) -> None:
        self.task = task
        #: The poll's deadline (the gate admits the attempt's requests only before it).
        self.deadline = deadline
        #: When the attempt is cut off, on the loop's clock (None: never; or paused).
        self.expires = expires
        #: True once the attempt was cut off (the task was cancelled for it).
        self.expired = False
        #: The cancellation that cut the attempt off, once the block swallowed it.
        self.cut_off: asyncio.CancelledError | None = None
        #: What cuts the attempt off while its clock runs from the start (None: its own timer).
        self.watchdog = watchdog
        self._handle: asyncio.TimerHandle | None = None
        self._cancelling = task.cancelling()
        self._outer: _Attempt | None = None

    def __enter__(self) -> _Attempt:
        self._outer = _attempts.get(self.task)
        _attempts[self.task] = self
        if self.watchdog is not None:
            self.watchdog.watch(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> bool:
        self._stop_clock()
        if self._outer is None:
            del _attempts[self.task]
        else:
            _attempts[self.task] = self._outer
        if not self.expired:
            return False
        # The task was cancelled for the cut-off: take that back, and swallow the
        # cancellation only if nobody else asked for one meanwhile.
        if self.task.uncancel() <= self._cancelling and isinstance(exc, asyncio.CancelledError):
            self.cut_off = exc
            return True
        return False

    def expire(self) -> None:
        """The attempt's time is up: cancel its task."""
        self.expires = None
        self.watchdog = None
        self._handle = None
        self.expired = True
        self.task.cancel()

    def pause(self) -> float | None:
        """Stop the clock; the seconds that were left (None: no clock, or already up)."""
        if self.expires is None or self.expired:
            return None
        left = self.expires - self.task.get_loop().time()
        self._stop_clock()
        return left

    def resume(self, left: float) -> None:
        """Start the clock again with ``left`` seconds to go, on a timer of its own."""
        if not self.expired:
            loop = self.task.get_loop()
            self.expires = loop.time() + left
            self._handle = loop.call_at(self.expires, self.expire)

    def _stop_clock(self) -> None:
        self.expires = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        watchdog, self.watchdog = self.watchdog, None
        if watchdog is not None:
            watchdog.forget()


@final
class _Watchdog:
    """Cuts off the attempts of one Poller on one event loop, with one timer.

    Every attempt gets the same ``attempt_timeout``, so they expire in the order they start:
    a queue and a timer for its head replace a timer per attempt. An attempt leaves the
    queue (lazily) when it ends or its clock is paused.
    """

    __slots__ = ("_armed_at", "_handle", "_queue", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._queue: deque[_Attempt] = deque()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = -math.inf

    def watch(self, attempt: _Attempt) -> None:
        """Cut ``attempt`` off at its ``expires``, no earlier than any attempt watched before."""
        self._queue.append(attempt)
        if self._handle is None and attempt.expires is not None:
            self._arm(attempt.expires)

    def forget(self) -> None:
        """An attempt left: drop the attempts no longer watched from the head of the queue."""
        queue = self._queue
        while queue and queue[0].watchdog is not self:
            queue.popleft()

    def _arm(self, when: float) -> None:
        self._armed_at = when
        self._handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        # Up to what this timer was set for: timers may fire a clock tick early.
        now = max(self.loop.time(), self._armed_at)
        self._handle = None
        queue = self._queue
        while queue:
            attempt = queue[0]
            if attempt.watchdog is self and attempt.expires is not None:
                if attempt.expires > now:
                    self._arm(attempt.expires)
                    return
                attempt.expire()
            queue.popleft()


#: The attempt running in each task, so the gate can pause its clock and honour its deadline.
#: Keyed by task: a task the attempt starts is not in it.
_attempts: dict[asyncio.Task[object], _Attempt] = {}


def _current_attempt() -> _Attempt | None:
    task = asyncio.current_task()
    return None if task is None else _attempts.get(task)


def attempt_deadline() -> float | None:
    """The deadline of the poll whose attempt runs in this task (on the Poller's clock).

    The gate admits a request of that attempt only before it; None outside an attempt.
    """
    running = _current_attempt()
    return None if running is None else running.deadline


@contextmanager
def attempt_clock_paused() -> Iterator[None]:
    """Stop the running attempt's ``attempt_timeout`` clock inside the block.

    For waits that are not the CA's doing (a request queued behind a rate limit or a shared
    cooldown): without this, orders queued behind many others would all time out. Outside an
    attempt, or in a task the attempt did not start, it does nothing.
    """
    running = _current_attempt()
    left = None if running is None else running.pause()
    if running is None or left is None:
        yield
        return
    try:
        yield
    finally:
        running.resume(left)


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

    __slots__ = (
        "_attempt_timeout",
        "_clock",
        "_hooks",
        "_max_wait",
        "_rng",
        "_sleep",
        "_watchdog",
        "policy",
    )

    #: The backoff schedule (initial wait, multiplier, cap, jitter).
    policy: BackoffPolicy

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
        self._watchdog: _Watchdog | None = None

    @property
    def max_wait(self) -> float:
        """PollMaxWait in seconds."""
        return self._max_wait

    @property
    def attempt_timeout(self) -> float:
        """The bound on one attempt, in seconds."""
        return self._attempt_timeout

    @property
    def clock(self) -> Callable[[], float] | None:
        """The injected clock, or None for the running event loop's ``time()``."""
        return self._clock

    @property
    def sleep(self) -> Callable[[float], Awaitable[object]]:
        """How this Poller (and the gate and ``poll_many`` of its connector) waits."""
        return asyncio.sleep if self._sleep is None else self._sleep

    @property
    def rng(self) -> random.Random:
        """The random source of the jitter."""
        return self._rng

    @property
    def hooks(self) -> tuple[PollHook, ...]:
        """The hooks called after every attempt: this Poller's own, else the process-wide ones."""
        return get_poll_hooks() if self._hooks is None else self._hooks

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

    def next_wait(
        self, *, wait_index: int, remaining: float, retry_after: float | None
    ) -> float | None:
        """The wait before the next attempt, or None when the poll ends here.

        ``wait_index`` counts the waits already made, ``remaining`` is the time left before
        the deadline and ``retry_after`` the server's floor, if any. The poll ends when the
        deadline has come (within :data:`CLOCK_SLACK`) or when the floor would end past it;
        otherwise the jittered schedule wait, raised to the floor (with a little jitter on
        top), is clamped to end at the deadline.
        """
        if remaining <= CLOCK_SLACK or (retry_after is not None and retry_after > remaining):
            return None
        wait = self.policy.jittered(self.policy.base_wait(wait_index), self._rng)
        if retry_after is not None:
            # A floor, never shortened; the jitter on top keeps many orders told the same
            # Retry-After from coming back in the same instant.
            wait = max(wait, retry_after * (1 + self._rng.uniform(0, self.policy.jitter / 2)))
        return min(wait, remaining)

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
        ``ca`` and ``order_id`` label the hook records; every record of this call carries one
        :attr:`PollDetails.poll_id` of its own, so polls at once of one order, or without an
        order id, are told apart. To resume an interrupted schedule, pass the number of
        attempts already made as ``prior_attempts`` (the next wait is then the one that
        follows them), the time until the next attempt was due as ``first_wait``, and the
        time left of the original deadline as ``max_wait``.
        """
        if prior_attempts < 0:
            raise ConfigError(f"prior_attempts must be 0 or more, not {prior_attempts}")
        budget = self._max_wait if max_wait is None else _check_seconds("max_wait", max_wait)
        if math.isnan(first_wait) or first_wait < 0:
            raise ConfigError(f"first_wait must be 0 or more seconds, not {first_wait!r}")
        sleep = self.sleep
        hooks = self.hooks
        start = self.now()
        deadline = start + budget
        if first_wait > 0:
            await sleep(min(first_wait, budget))

        wait_index = prior_attempts
        attempt_number = prior_attempts
        last_error: Exception | None = None
        detail: str | None = None
        # This poll's PollDetails.poll_id, taken when a hook first reads a record (0: not yet).
        poll_id = 0

        def report(
            outcome: AttemptOutcome,
            *,
            error: Exception | None,
            elapsed: float,
            next_wait: float | None = None,
        ) -> None:
            nonlocal poll_id
            if reads_attempt(hooks, outcome, error):
                if not poll_id:
                    poll_id = new_poll_id()
                report_attempt(
                    hooks,
                    outcome,
                    poll_id=poll_id,
                    ca=ca,
                    order_id=order_id,
                    attempt=attempt_number,
                    error=error,
                    detail=detail,
                    elapsed=elapsed,
                    next_wait=next_wait,
                )

        while True:
            attempt_number += 1
            # run_attempt, without a coroutine of its own.
            with self._attempt(deadline) as running:
                result = await attempt()
            if running.cut_off is not None:
                result = self._cut_off(running, ca=ca, order_id=order_id)
            now = self.now()
            if isinstance(result, Done):
                report("done", error=None, elapsed=now - start)
                return result
            if isinstance(result, Failed):
                report("failed", error=result.error, elapsed=now - start)
                raise result.error
            if not isinstance(result, Pending):
                raise TypeError(
                    f"a poll attempt must return Done, Pending or Failed, not {type(result)!r}"
                )

            last_error = result.error
            if result.detail is not None:
                detail = result.detail
            retry_after = None if result.retry_after is None else max(0.0, result.retry_after)
            wait = self.next_wait(
                wait_index=wait_index, remaining=deadline - now, retry_after=retry_after
            )
            report("pending", error=last_error, elapsed=now - start, next_wait=wait)
            if wait is None:
                return StillPending(
                    attempts=attempt_number - prior_attempts,
                    elapsed=now - start,
                    last_error=last_error,
                    detail=detail,
                    retry_after=retry_after,
                )
            wait_index += 1
            await sleep(wait)

    async def run_attempt(
        self,
        attempt: Callable[[], Awaitable[Done[T] | Pending | Failed]],
        *,
        deadline: float | None = None,
        cut_off_after: float | None = None,
        ca: str | None = None,
        order_id: str | None = None,
    ) -> Done[T] | Pending | Failed:
        """Run one attempt, cut off after ``attempt_timeout`` (then ``Pending(AttemptTimeout)``).

        ``deadline`` is the poll's deadline on this Poller's clock: the gate admits the
        attempt's requests only before it (:func:`attempt_deadline`). ``cut_off_after``
        (seconds), when shorter than ``attempt_timeout``, cuts the attempt off sooner: an
        attempt that started late still answers by its poll's deadline plus
        ``attempt_timeout``. No hook is called: the caller reports its series of attempts as
        one poll, with one ``poll_id`` (as :func:`~certpoll.poll_many` does for each order).
        """
        with self._attempt(deadline, cut_off_after) as running:
            return await attempt()
        return self._cut_off(running, ca=ca, order_id=order_id, cut_off_after=cut_off_after)

    def _attempt(self, deadline: float | None, cut_off_after: float | None = None) -> _Attempt:
        """The scope of one attempt in the running task (``with``, around its ``await``)."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a poll attempt runs in an asyncio task")
        if cut_off_after is not None and cut_off_after < self._attempt_timeout:
            # It expires out of the start order the watchdog relies on: a timer of its own.
            running = _Attempt(task, deadline, None, None)
            running.resume(cut_off_after)
            return running
        if math.isinf(self._attempt_timeout):
            return _Attempt(task, deadline, None, None)
        loop = task.get_loop()
        watchdog = self._watchdog
        if watchdog is None or watchdog.loop is not loop:
            watchdog = self._watchdog = _Watchdog(loop)
        return _Attempt(task, deadline, loop.time() + self._attempt_timeout, watchdog)

    def _cut_off(
        self,
        running: _Attempt,
        *,
        ca: str | None,
        order_id: str | None,
        cut_off_after: float | None = None,
    ) -> Pending:
        """The outcome of an attempt cut off (after ``attempt_timeout``, or sooner)."""
        if cut_off_after is not None and cut_off_after < self._attempt_timeout:
            why = f"the {cut_off_after:g} s left of its poll's deadline plus attempt_timeout"
        else:
            why = f"attempt_timeout ({self._attempt_timeout:g} s)"
        error = AttemptTimeout(
            f"poll attempt took longer than {why}",
            ca=ca,
            order_id=order_id,
        )
        cause = TimeoutError()
        cause.__cause__ = running.cut_off
        error.__cause__ = cause
        return Pending(error=error)


def report_attempt(
    hooks: Sequence[PollHook],
    outcome: AttemptOutcome,
    *,
    poll_id: int,
    ca: str | None,
    order_id: str | None,
    attempt: int,
    error: Exception | None,
    detail: str | None,
    elapsed: float,
    next_wait: float | None = None,
) -> None:
    """Hand one attempt's :class:`PollDetails` to every hook (the Poller and ``poll_many``).

    Callers first ask :func:`~certpoll._instrumentation.reads_attempt`: no record is built
    for hooks that would discard it (the default, quiet logger). ``poll_id`` is the poll's
    own, from :func:`~certpoll._instrumentation.new_poll_id` at its first record read.
    """
    details = PollDetails(
        poll_id=poll_id,
        ca=ca,
        order_id=order_id,
        attempt=attempt,
        outcome=outcome,
        status_code=getattr(error, "status_code", None),
        waited_so_far=elapsed,
        next_wait=next_wait,
        error=error,
        detail=detail,
    )
    for hook in hooks:
        hook(details)
