"""The upstream gate: every request a connector sends passes through it.

One gate per connector, that is per credential, shared by every order polled through it:

* **Rate limits.** Every ``(requests, seconds)`` pair is a sliding window, all enforced at
  once. A request counts in every window from its admission until its answer arrives, and
  for ``seconds + margin`` after that: the CA counts it from its arrival, somewhere in
  between, so latency never lands it past the CA's window. Admissions are paced at the
  fastest window's rate, not released a window at a time. Waiting requests are admitted
  strictly in arrival order.
* **Shared cooldown.** A 429, or a ``Retry-After`` on a transient error, seen by any request
  holds *every* request on the gate until it has passed (a 429 without ``Retry-After`` holds
  for a growing cooldown: 5 s, 15 s, 45 s, then 60 s each). Then exactly one request, the
  probe, tests the water; the rest wait for its answer. A probe that is rate limited again
  extends the hold; one that is not lets everyone through, still under the rate limits.

* **Deadlines.** A request may carry a deadline (a poll's, or "now" for the first look of
  ``issue()``): if the gate cannot admit it by then, it leaves the queue with
  :class:`~certpoll.GateClosed`, whose ``retry_after`` says when the gate opens. Nothing
  queues past its poll's deadline, so the hold of one order never stalls another's poll.

So during a 429 storm the CA sees one probe per cooldown, however many orders are pending.
Waiting costs no task: only the request at the head of the queue sleeps; the others wait on
a future each. Not waiting costs nothing either: on the ``memory://`` backend, a request
that finds nobody queued is admitted, and its answer reported, by plain calls (the
backend's :meth:`~certpoll._backends.gate_memory.MemoryGate.admit_now`), with no coroutine
and no task switch; the rules are the same, only the queueing is skipped.
The time a request spends queued here does not count against the Poller's
``attempt_timeout`` (:func:`~certpoll._poller.attempt_clock_paused`).

When a request may go is decided in one place, the gate's backend (:mod:`certpoll._backends.gate`:
``memory://`` by default, or a SQLite file, Redis or PostgreSQL shared by every process on
the credential), in one atomic step; this module is the queueing in front of it.
"""

from __future__ import annotations

import asyncio
import math
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import cast, final

from ._backends.gate import (
    DEFAULT_LOST_AFTER,
    DEFAULT_MARGIN,
    Admitted,
    Answer,
    GateBackend,
    GateRules,
    Hold,
    Wait,
    gate_key,
    open_gate_backend,
)
from ._backends.gate_memory import MemoryGate
from ._errors import ConfigError, GateClosed, RateLimited
from ._outcomes import Failed, Pending
from ._poller import CLOCK_SLACK, BackoffPolicy, attempt_clock_paused
from ._settings import CASettings

__all__ = ["DEFAULT_COOLDOWN", "Admission", "UpstreamGate", "connector_gate"]

#: Enough steps for any cooldown that grows to its cap (each at least ×1 a step).
_MAX_COOLDOWN_STEPS = 64

#: How long a 429 without ``Retry-After`` holds the gate: 5 s, then 15, 45, 60, 60... The cap
#: is how late the gate can learn that a storm is over: one probe a minute (what a CA's
#: ``Retry-After: 60`` asks for) finds its end within a minute, however many orders wait.
DEFAULT_COOLDOWN = BackoffPolicy(initial_wait=5.0, multiplier=3.0, max_backoff=60.0, jitter=0.0)


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


def _cooldowns(policy: BackoffPolicy) -> tuple[float, ...]:
    """The holds after the 1st, 2nd, ... 429 in a row, until they stop growing."""
    holds = [policy.base_wait(0)]
    while len(holds) < _MAX_COOLDOWN_STEPS and policy.base_wait(len(holds)) > holds[-1]:
        holds.append(policy.base_wait(len(holds)))
    return tuple(holds)


@final
class Admission:
    """One request let through the gate; ``async with gate.admit() as admission:``.

    Inside the block, report what the CA answered with :meth:`observe` (or :meth:`hold`);
    leaving the block tells the gate the answer arrived, so that the request stops counting
    from its admission, a 429 holds every request on the gate and a probe's answer is known.
    """

    __slots__ = ("_deadline", "_gate", "_hold", "held", "probe", "ticket")

    #: The backend's name for this request, once admitted.
    ticket: str | None
    #: True when this request is the one probe sent after a cooldown.
    probe: bool
    #: True once this request asked the gate to hold.
    held: bool

    def __init__(self, gate: UpstreamGate, deadline: float | None) -> None:
        self._gate = gate
        self._deadline = deadline
        self._hold: Hold | None = None
        self.ticket = None
        self.probe = False
        self.held = False

    async def __aenter__(self) -> Admission:
        waiting = self._gate._acquire(self, self._deadline)
        if waiting is not None:
            await waiting
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        reporting = self._gate._answered(self, conclusive=exc_type is None)
        if reporting is not None:
            await reporting

    def hold(self, seconds: float | None, *, rate_limited: bool = False) -> None:
        """Hold every request on the gate for ``seconds`` (None: the growing cooldown).

        The hold reaches the backend with the answer, as the block is left.
        """
        self.held = True
        self._hold = self._gate._count_hold(seconds, rate_limited=rate_limited)

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

    ``rate_limits`` are ``(requests, seconds)`` pairs, all enforced as sliding windows; a
    request counts from its admission until its answer, then ``seconds + margin``. A request
    whose answer never comes (its process was killed) counts as answered ``lost_after``
    after its admission, and a probe that never answers is given up then. ``pace=False``
    releases a free window at once instead of at the fastest window's rate.
    ``cooldown`` is the hold after a 429 without ``Retry-After`` (the *n*-th in a row waits
    ``cooldown.base_wait(n)``; jitter is not used). ``share_cooldown=False`` turns the shared
    cooldown off (each order then only backs off on its own, as without a gate): for
    comparisons, or when something else throttles. ``clock`` and ``sleep`` default to the
    running event loop's ``time()`` and :func:`asyncio.sleep`.

    ``backend`` holds the windows and the hold (default: this process's memory, on
    ``clock``; :func:`~certpoll.open_gate_backend` opens one from a ``gate_url``); every
    gate on the same backend and ``key`` (:func:`~certpoll.gate_key` of the credential)
    shares them, across processes and hosts for a shared backend. :meth:`aclose` closes it.
    """

    __slots__ = (
        "_backend",
        "_clock",
        "_cooling",
        "_head_taken",
        "_key",
        "_opens_at",
        "_probe_out",
        "_probe_waiter",
        "_queue",
        "_rules",
        "_share",
        "_sleep",
        "holds",
        "rate_limited",
        "rate_limits",
        "requests_sent",
    )

    #: The ``(requests, seconds)`` windows enforced, as checked.
    rate_limits: tuple[tuple[int, float], ...]
    #: Requests admitted so far.
    requests_sent: int
    #: Answers reported as rate limited (429) so far.
    rate_limited: int
    #: Holds so far (429s and other answers with ``Retry-After``).
    holds: int

    def __init__(
        self,
        *,
        rate_limits: Sequence[tuple[int, float]] = (),
        cooldown: BackoffPolicy = DEFAULT_COOLDOWN,
        share_cooldown: bool = True,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
        backend: GateBackend | None = None,
        key: str = "local",
        margin: float = DEFAULT_MARGIN,
        lost_after: float = DEFAULT_LOST_AFTER,
        pace: bool = True,
    ) -> None:
        self.rate_limits = _check_limits(rate_limits)
        self._rules = GateRules(
            limits=self.rate_limits,
            margin=margin,
            lost_after=lost_after,
            cooldowns=_cooldowns(cooldown),
            pace=pace,
        )
        self._share = share_cooldown
        self._clock = clock
        self._sleep = sleep
        self._backend: GateBackend = MemoryGate(clock=clock) if backend is None else backend
        self._key = key
        self._queue: deque[asyncio.Future[None]] = deque()
        self._head_taken = False
        # What this process knows of the shared state, from the backend's last answers.
        self._cooling = False
        self._opens_at = -math.inf
        self._probe_out = False
        self._probe_waiter: asyncio.Future[None] | None = None
        self.requests_sent = 0
        self.rate_limited = 0
        self.holds = 0

    def __repr__(self) -> str:
        return f"UpstreamGate(rate_limits={self.rate_limits!r}, backend={self._backend.name!r})"

    @property
    def backend(self) -> GateBackend:
        """Where the windows and the hold live."""
        return self._backend

    @property
    def shares_cooldown(self) -> bool:
        """True when a 429 (or a ``Retry-After``) holds every request on the gate."""
        return self._share

    @property
    def cooling_down(self) -> bool:
        """True from a hold until a probe gets through (as far as this process has seen)."""
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
        A shared backend that does not answer raises :class:`~certpoll.TransientError`.
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
        return max(0.0, self._opens_at - self.now())

    async def hold(self, seconds: float | None = None) -> None:
        """Hold every request for ``seconds`` (None: the growing cooldown), then probe."""
        hold = self._count_hold(seconds, rate_limited=False)
        if hold is not None:
            self._held_for(
                await self._backend.report(self._key, self._rules, Answer(None, hold=hold))
            )

    async def aclose(self) -> None:
        """Close the backend's connections (its shared state stays)."""
        await self._backend.aclose()

    # -- the machinery --------------------------------------------------------------------

    async def _ask(self, admission: Admission) -> Wait | None:
        """One atomic step at the backend: admit ``admission`` (None), or how long to wait."""
        return self._decided(admission, await self._backend.admit(self._key, self._rules))

    def _decided(self, admission: Admission, decision: Admitted | Wait) -> Wait | None:
        """Note the backend's ``decision`` on ``admission``: None if admitted, else the wait."""
        if isinstance(decision, Admitted):
            self.requests_sent += 1
            admission.ticket = decision.ticket
            admission.probe = decision.probe
            self._cooling = decision.probe
            self._probe_out = self._probe_out or decision.probe
            self._opens_at = -math.inf
            return None
        if decision.for_probe:
            self._cooling = True
        self._opens_at = self.now() + (0.0 if decision.for_probe else decision.seconds)
        return decision

    def _closed(self, now: float, deadline: float | None) -> GateClosed:
        opens_in = max(0.0, self._opens_at - now)
        when = "now" if deadline is None or deadline <= now else f"in {deadline - now:.3f} s"
        return GateClosed(
            f"the connector's gate (rate limits, a CA's Retry-After) cannot admit a request "
            f"before its deadline ({when}); it opens in about {opens_in:.3f} s",
            retry_after=opens_in,
        )

    def _acquire(
        self, admission: Admission, deadline: float | None
    ) -> Coroutine[object, object, None] | None:
        """Admit ``admission``: None when done at once, else the coroutine that waits for it."""
        if self._queue or self._head_taken:
            return self._queue_up(admission, deadline)
        backend = self._backend
        if not isinstance(backend, MemoryGate):
            return self._lead(admission, deadline, None)
        # Nobody waits and the state is in this process: one plain call decides.
        wait = self._decided(admission, backend.admit_now(self._key, self._rules))
        return None if wait is None else self._lead(admission, deadline, wait)

    async def _lead(self, admission: Admission, deadline: float | None, wait: Wait | None) -> None:
        """Nobody waits here: ``admission`` is the head at once, and waits until admitted.

        ``wait`` is the backend's answer already in hand (None: ask it first).
        """
        self._head_taken = True
        try:
            if wait is None:
                wait = await self._ask(admission)
            if wait is not None:
                with attempt_clock_paused():
                    await self._wait_clear(admission, deadline, wait)
        finally:
            self._head_taken = False
            self._promote()

    async def _queue_up(self, admission: Admission, deadline: float | None) -> None:
        """Others wait here: queue behind them, then wait as the head until admitted."""
        now = self.now()
        if deadline is not None and self._opens_at > deadline + CLOCK_SLACK:
            # Known already: queueing would only hold the caller past its deadline.
            raise self._closed(now, deadline)
        with attempt_clock_paused():
            await self._wait_turn(deadline)
            try:
                await self._wait_clear(admission, deadline, await self._ask(admission))
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

    async def _wait_clear(
        self, admission: Admission, deadline: float | None, wait: Wait | None
    ) -> None:
        """As the head: wait as the backend says until it admits ``admission``, or raise
        GateClosed as soon as it cannot be by ``deadline``."""
        while wait is not None:
            now = self.now()
            if wait.for_probe and self._probe_out:
                # The probe is ours: its answer, not a timer, says when to ask again.
                if self._probe_waiter is None:
                    self._probe_waiter = asyncio.get_running_loop().create_future()
                try:
                    async with self._timer(deadline):
                        await asyncio.shield(self._probe_waiter)
                except TimeoutError as exc:
                    raise self._closed(self.now(), deadline) from exc
            elif deadline is not None and now + wait.seconds > deadline + CLOCK_SLACK:
                if not wait.for_probe:
                    raise self._closed(now, deadline)
                # Another process's probe: look once more at the deadline.
                await self._sleep_for(max(0.0, deadline - now))
                wait = await self._ask(admission)
                if wait is not None:
                    raise self._closed(self.now(), deadline)
                return
            else:
                await self._sleep_for(wait.seconds)
            wait = await self._ask(admission)

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

    def _count_hold(self, seconds: float | None, *, rate_limited: bool) -> Hold | None:
        """Count a hold; the Hold to send to the backend (None: this gate shares none)."""
        self.holds += 1
        if rate_limited:
            self.rate_limited += 1
        if not self._share:
            return None
        self._cooling = True
        return Hold(seconds)

    def _answered(
        self, admission: Admission, *, conclusive: bool
    ) -> Coroutine[object, object, None] | None:
        """The answer to ``admission`` arrived (or it failed on our side): tell the backend.

        Done even when the block is left by cancellation, so that the request stops counting
        from its admission; a probe's waiters are woken whatever happens. Returns None when
        told at once (``memory://``), else the coroutine that tells it.
        """
        if admission.ticket is None:
            return None
        answer = Answer(admission.ticket, conclusive=conclusive, hold=admission._hold)
        backend = self._backend
        if not isinstance(backend, MemoryGate):
            return self._report(backend, answer, admission)
        try:
            self._held_for(backend.report_now(self._key, self._rules, answer))
        finally:
            self._reported(admission, conclusive=conclusive)
        return None

    async def _report(self, backend: GateBackend, answer: Answer, admission: Admission) -> None:
        report = backend.report(self._key, self._rules, answer)
        try:
            self._held_for(await report)
        finally:
            self._reported(admission, conclusive=answer.conclusive)

    def _reported(self, admission: Admission, *, conclusive: bool) -> None:
        """The backend knows the answer to ``admission`` (or could not be told)."""
        if admission.probe:
            self._probe_finished(conclusive=conclusive, held=admission._hold is not None)

    def _held_for(self, seconds: float) -> None:
        """The backend says the key is held ``seconds`` from now: so :meth:`opens_in` knows."""
        if seconds > 0:
            self._opens_at = self.now() + seconds

    def _probe_finished(self, *, conclusive: bool, held: bool) -> None:
        self._probe_out = False
        if conclusive and not held:
            self._cooling = False
        waiter, self._probe_waiter = self._probe_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def connector_gate(
    settings: CASettings,
    *,
    ca: str,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[object]] | None = None,
) -> UpstreamGate:
    """The gate a connector makes from its settings: its ``rate_limits``, on the backend
    ``gate_url`` names, under the key of the CA account (a keyed hash of the credential)."""
    backend = open_gate_backend(
        settings.gate_url, setting=settings.env_var("gate_url"), clock=clock
    )
    return UpstreamGate(
        rate_limits=settings.rate_limits,
        clock=clock,
        sleep=sleep,
        backend=backend,
        key=gate_key(ca, "\0".join(settings.secret_values())),
    )
