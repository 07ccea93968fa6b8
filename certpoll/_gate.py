"""The upstream gate: every request a connector sends passes through it.

One gate per connector, that is per credential, shared by every order polled through it:

* **Rate limits.** Every ``(requests, seconds)`` pair is a sliding window, all enforced at
  once: a request is admitted only when, for each pair, fewer than ``requests`` were admitted
  in the last ``seconds``. Waiting requests are admitted strictly in arrival order.
* **Shared cooldown.** A 429, or a ``Retry-After`` on a transient error, seen by any request
  holds *every* request on the gate until it has passed (a 429 without ``Retry-After`` holds
  for a growing cooldown: 5 s, 15 s, 45 s, ... capped at 5 min). Then exactly one request, the
  probe, tests the water; the rest wait for its answer. A probe that is rate limited again
  extends the hold; one that is not lets everyone through, still under the rate limits.

* **Deadlines.** A request may carry a deadline (a poll's, or "now" for the first look of
  ``issue()``): if the gate cannot admit it by then, it leaves the queue with
  :class:`~certpoll.GateClosed`, whose ``retry_after`` says when the gate opens. Nothing
  queues past its poll's deadline, so the hold of one order never stalls another's poll.

So during a 429 storm the CA sees one probe per cooldown, however many orders are pending.
Waiting costs no task: only the request at the head of the queue sleeps; the others wait on
a future each. The time a request spends queued here does not count against the Poller's
``attempt_timeout`` (:func:`~certpoll._poller.attempt_clock_paused`).

When a request may go is decided in one place, :meth:`UpstreamGate._delay` (the windows and
the hold); the rest is queueing.
"""

from __future__ import annotations

import asyncio
import math
import types
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import cast, final

from ._errors import ConfigError, GateClosed, RateLimited
from ._outcomes import Failed, Pending
from ._poller import CLOCK_SLACK, BackoffPolicy, attempt_clock_paused

__all__ = ["DEFAULT_COOLDOWN", "Admission", "UpstreamGate"]

#: How long a 429 without ``Retry-After`` holds the gate: 5 s, then 15, 45, 135, 300, 300...
DEFAULT_COOLDOWN = BackoffPolicy(initial_wait=5.0, multiplier=3.0, max_backoff=300.0, jitter=0.0)


def _check_limits(rate_limits: Sequence[tuple[int, float]]) -> tuple[tuple[int, float], ...]:
    limits = []
    for pair in rate_limits:
        try:
            # Typed as pairs, but settings and callers may hand anything: check for real.
            requests, seconds = cast("tuple[object, object]", pair)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"a rate limit is a (requests, seconds) pair, not {pair!r}") from exc
        if (
            isinstance(requests, bool)
            or not isinstance(requests, int)
            or requests < 1
            or not isinstance(seconds, int | float)
            or not (math.isfinite(seconds) and seconds > 0)
        ):
            raise ConfigError(
                f"a rate limit needs at least 1 request per a positive number of seconds, "
                f"not {pair!r}"
            )
        limits.append((requests, float(seconds)))
    return tuple(limits)


@final
class Admission:
    """One request let through the gate; ``async with gate.admit() as admission:``.

    Inside the block, report what the CA answered with :meth:`observe` (or :meth:`hold`), so
    that a 429 holds every request on the gate and a probe's answer is known.
    """

    __slots__ = ("_deadline", "_gate", "held", "probe")

    def __init__(self, gate: UpstreamGate, deadline: float | None) -> None:
        self._gate = gate
        self._deadline = deadline
        #: True when this request is the one probe sent after a cooldown.
        self.probe = False
        #: True once this request asked the gate to hold.
        self.held = False

    async def __aenter__(self) -> Admission:
        await self._gate._acquire(self, self._deadline)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        if self.probe:
            self._gate._probe_finished(conclusive=exc_type is None, held=self.held)

    def hold(self, seconds: float | None, *, rate_limited: bool = False) -> None:
        """Hold every request on the gate for ``seconds`` (None: the growing cooldown)."""
        self.held = True
        self._gate._hold(seconds, probe=self.probe, rate_limited=rate_limited)

    def observe(self, outcome: Pending | Failed | None) -> None:
        """Hold the gate if the triaged answer asks for it.

        A 429 holds (for its ``Retry-After``, or the growing cooldown without one); another
        transient error holds only when it carries a ``Retry-After``. A pending answer that
        is not an error (an order "still working, come back in N s") concerns that order
        only, and so does not hold anyone else.
        """
        if not isinstance(outcome, Pending) or outcome.error is None:
            return
        if isinstance(outcome.error, RateLimited):
            self.hold(outcome.retry_after, rate_limited=True)
        elif outcome.retry_after is not None:
            self.hold(outcome.retry_after)


@final
class UpstreamGate:
    """Admits the requests of one connector (one credential) to the CA.

    ``rate_limits`` are ``(requests, seconds)`` pairs, all enforced as sliding windows.
    ``cooldown`` is the hold after a 429 without ``Retry-After`` (the *n*-th in a row waits
    ``cooldown.base_wait(n)``; jitter is not used). ``share_cooldown=False`` turns the shared
    cooldown off (each order then only backs off on its own, as without a gate): for
    comparisons, or when something else throttles. ``clock`` and ``sleep`` default to the
    running event loop's ``time()`` and :func:`asyncio.sleep`.
    """

    __slots__ = (
        "_clock",
        "_cooldown",
        "_cooling",
        "_head_taken",
        "_not_before",
        "_probe_out",
        "_probe_waiter",
        "_queue",
        "_share",
        "_sleep",
        "_strikes",
        "_windows",
        "holds",
        "rate_limited",
        "rate_limits",
        "requests_sent",
    )

    def __init__(
        self,
        *,
        rate_limits: Sequence[tuple[int, float]] = (),
        cooldown: BackoffPolicy = DEFAULT_COOLDOWN,
        share_cooldown: bool = True,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        self.rate_limits = _check_limits(rate_limits)
        self._windows = tuple(
            (seconds, deque[float](maxlen=requests)) for requests, seconds in self.rate_limits
        )
        self._cooldown = cooldown
        self._share = share_cooldown
        self._clock = clock
        self._sleep = sleep
        self._queue: deque[asyncio.Future[None]] = deque()
        self._head_taken = False
        self._cooling = False
        self._not_before = -math.inf
        self._strikes = 0
        self._probe_out = False
        self._probe_waiter: asyncio.Future[None] | None = None
        #: Requests admitted so far.
        self.requests_sent = 0
        #: Answers reported as rate limited (429) so far.
        self.rate_limited = 0
        #: Holds so far (429s and other answers with ``Retry-After``).
        self.holds = 0

    def __repr__(self) -> str:
        return f"UpstreamGate(rate_limits={self.rate_limits!r})"

    @property
    def cooling_down(self) -> bool:
        """True from a hold until a probe gets through."""
        return self._cooling

    @property
    def waiting(self) -> int:
        """Requests queued at the gate (an upper bound: cancelled ones leave lazily)."""
        return len(self._queue) + self._head_taken

    def admit(self, *, deadline: float | None = None) -> Admission:
        """Wait until a request may be sent, then send it inside the block.

        ``async with gate.admit() as admission:`` send the request, then pass the triaged
        answer to ``admission.observe(...)`` before leaving the block. With a ``deadline``
        (on the gate's clock), a request that cannot be admitted by then raises
        :class:`~certpoll.GateClosed` as soon as that is known, and at the latest at the
        deadline; a deadline already past admits only a request the gate lets through at once.
        """
        return Admission(self, deadline)

    def now(self) -> float:
        """The gate's clock: the injected one, or the running loop's ``time()``."""
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    def opens_in(self) -> float:
        """Seconds until the gate would admit a request, as far as is known now.

        0 when it is open, or when it waits for a probe's answer (not known in advance).
        """
        now = self.now()
        return max(0.0, self._opens_at(now) - now)

    def hold(self, seconds: float | None = None) -> None:
        """Hold every request for ``seconds`` (None: the growing cooldown), then probe."""
        self._hold(seconds, probe=False, rate_limited=False)

    # -- the machinery --------------------------------------------------------------------

    def _delay(self, now: float) -> float | None:
        """Seconds until a request may go; None while the probe's answer is awaited.

        The admission rule, in full: a hold lasts until ``_not_before``, then one probe goes
        alone; outside a hold, every sliding window must have room.
        """
        if self._cooling:
            if now < self._not_before - CLOCK_SLACK:
                return self._not_before - now
            if self._probe_out:
                return None
        delay = 0.0
        for seconds, sent in self._windows:
            if len(sent) == sent.maxlen:
                delay = max(delay, sent[0] + seconds - now)
        return 0.0 if delay < CLOCK_SLACK else delay

    def _opens_at(self, now: float) -> float:
        """The earliest time :meth:`_delay` could admit a request (a probe's answer: now)."""
        delay = self._delay(now)
        return now + (delay or 0.0)

    def _closed(self, now: float, deadline: float | None) -> GateClosed:
        opens_in = max(0.0, self._opens_at(now) - now)
        when = "now" if deadline is None or deadline <= now else f"in {deadline - now:.3f} s"
        return GateClosed(
            f"the connector's gate (rate limits, a CA's Retry-After) cannot admit a request "
            f"before its deadline ({when}); it opens in about {opens_in:.3f} s",
            retry_after=opens_in,
        )

    def _grant(self, admission: Admission, now: float) -> None:
        for _, sent in self._windows:
            sent.append(now)
        self.requests_sent += 1
        if self._cooling:
            admission.probe = True
            self._probe_out = True

    async def _acquire(self, admission: Admission, deadline: float | None) -> None:
        now = self.now()
        if not self._queue and not self._head_taken and self._delay(now) == 0:
            self._grant(admission, now)
            return
        if deadline is not None and self._opens_at(now) > deadline + CLOCK_SLACK:
            # Known already: queueing would only hold the caller past its deadline.
            raise self._closed(now, deadline)
        with attempt_clock_paused():
            await self._wait_turn(deadline)
            try:
                await self._wait_clear(deadline)
                self._grant(admission, self.now())
            finally:
                self._head_taken = False
                self._promote()

    def _timer(self, deadline: float | None) -> asyncio.Timeout:
        """An ``asyncio.timeout`` that fires at ``deadline`` on the gate's clock (None: never)."""
        if deadline is None or math.isinf(deadline):
            return asyncio.timeout(None)
        return asyncio.timeout(max(0.0, deadline - self.now() + CLOCK_SLACK))

    async def _wait_turn(self, deadline: float | None) -> None:
        """Queue up; return as the head of the queue, or raise GateClosed at ``deadline``."""
        waiter = asyncio.get_running_loop().create_future()
        self._queue.append(waiter)
        if not self._head_taken:
            self._promote()
        try:
            async with self._timer(deadline):
                await waiter
        except asyncio.CancelledError:
            self._pass_turn(waiter)
            raise
        except TimeoutError as exc:
            self._pass_turn(waiter)
            raise self._closed(self.now(), deadline) from exc

    def _pass_turn(self, waiter: asyncio.Future[None]) -> None:
        """A waiter leaves the queue: if it had just been made head, the next one is."""
        if waiter.done() and not waiter.cancelled():
            self._head_taken = False
            self._promote()
        else:
            waiter.cancel()

    async def _wait_clear(self, deadline: float | None) -> None:
        """As the head: wait until the gate admits, or raise GateClosed if not by ``deadline``."""
        while True:
            now = self.now()
            delay = self._delay(now)
            if delay == 0:
                return
            if delay is None:
                if self._probe_waiter is None:
                    self._probe_waiter = asyncio.get_running_loop().create_future()
                try:
                    async with self._timer(deadline):
                        await asyncio.shield(self._probe_waiter)
                except TimeoutError as exc:
                    raise self._closed(self.now(), deadline) from exc
            elif deadline is not None and now + delay > deadline + CLOCK_SLACK:
                raise self._closed(now, deadline)
            else:
                await self._sleep_for(delay)

    async def _sleep_for(self, seconds: float) -> None:
        sleep = asyncio.sleep if self._sleep is None else self._sleep
        await sleep(seconds)

    def _promote(self) -> None:
        """Make the first live waiter the head."""
        while self._queue:
            waiter = self._queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._head_taken = True
                return

    def _hold(self, seconds: float | None, *, probe: bool, rate_limited: bool) -> None:
        if seconds is not None and (math.isnan(seconds) or seconds < 0):
            seconds = 0.0
        self.holds += 1
        if rate_limited:
            self.rate_limited += 1
        if not self._share:
            return
        now = self.now()
        if probe:
            self._strikes += 1
        elif not self._cooling:
            self._cooling = True
            self._strikes = 0
            self._not_before = now
        delay = self._cooldown.base_wait(self._strikes) if seconds is None else seconds
        self._not_before = max(self._not_before, now + delay)

    def _probe_finished(self, *, conclusive: bool, held: bool) -> None:
        self._probe_out = False
        if conclusive and not held:
            # The strikes and the hold's end are read only while cooling, and set afresh when
            # the next hold starts one.
            self._cooling = False
        waiter, self._probe_waiter = self._probe_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
