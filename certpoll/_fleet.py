"""Many orders at once: :func:`poll_many`, its :class:`OrderStream` and progress.

One scheduler per :func:`poll_many` call, no task per order: a heap of next-poll times and
at most ``concurrency`` attempts in flight, each one a short-lived task. A pending order costs
one small record in the heap, so 100,000 of them fit in one event loop. Every request still
goes through the connector's :class:`~certpoll._gate.UpstreamGate` (rate limits, shared
cooldown). Each order follows the Poller's schedule rules exactly: first attempt at once,
jittered growing waits, ``Retry-After`` as a floor, a last attempt at the deadline (the
schedule is :meth:`Poller.next_wait`, the attempt :meth:`Poller.run_attempt`), on the
Poller's clock and sleep.

No answer the CA gave is ever dropped: when the stream stops, for any reason (a refused
credential, the consumer cancelled, :meth:`OrderStream.aclose`), every attempt that finished
is settled; :meth:`OrderStream.undelivered` hands over the final answers not yet yielded and
:meth:`OrderStream.pending` every order still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

from ._closing import AsyncClosing
from ._connectors._base import Connector
from ._errors import (
    AuthenticationError,
    CertpollError,
    ConfigError,
    EndpointNotFound,
    RateLimited,
)
from ._handles import PendingOrder, handle_at, utcnow
from ._instrumentation import AttemptOutcome, new_poll_id, reads_attempt
from ._models import OrderState, OrderStatus
from ._outcomes import Done, Failed, Pending, StillPending
from ._poller import CLOCK_SLACK, report_attempt
from ._settings import CASettings

if TYPE_CHECKING:
    from ._backends.store import OrderStore
    from ._claimed import StoredOrderStream

__all__ = ["OrderStream", "Progress", "poll_many"]

S = TypeVar("S", bound=CASettings)

#: Without a finished order, progress is reported at most this often (seconds).
_HEARTBEAT = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """Where a :func:`poll_many` stands, handed to its ``on_progress`` callback.

    ``pending`` orders are still being watched; ``issued``, ``failed`` and ``still_pending``
    (PollMaxWait passed) are done with. ``requests_sent`` and ``rate_limited`` (429 answers)
    count what the connector's gate saw since the call started, including requests of other
    callers that share the connector.
    """

    pending: int
    issued: int
    failed: int
    still_pending: int
    requests_sent: int
    rate_limited: int

    @property
    def total(self) -> int:
        """All orders of the call."""
        return self.pending + self.issued + self.failed + self.still_pending


class _Order:
    """One watched order: where it is in its schedule, and the heap's entry for it.

    100,000 of them may wait at once, so each holds only what is its own: an order is given
    its record at its first look (until then it is its id in the stream's queue of fresh
    orders), fresh orders share one deadline object, and the CA's pending message is kept
    as its shape around the order id, shared by every order with the same status
    (:func:`_pack_detail`).
    """

    __slots__ = (
        "attempts",
        "deadline",
        "detail",
        "due",
        "last_error",
        "order_id",
        "poll_id",
        "wait_index",
    )

    def __init__(self, order_id: str, *, attempts: int, due: float, deadline: float) -> None:
        self.order_id = order_id
        self.attempts = attempts
        self.wait_index = attempts
        self.due = due
        self.deadline = deadline
        self.last_error: Exception | None = None
        self.detail: str | tuple[str, str] | None = None
        #: The hook records' poll id of this order's schedule in this stream, taken at the
        #: first record a hook reads (0: none yet, and no int of its own).
        self.poll_id = 0

    def __lt__(self, other: _Order) -> bool:
        # The heap's order: the next one due first (no tuple per heap entry).
        return self.due < other.due


#: At most this many message shapes are shared per stream (beyond, each order keeps its own).
_MAX_SHAPES = 1024


def _pack_detail(
    order_id: str, detail: str, shapes: dict[tuple[str, str], tuple[str, str]]
) -> str | tuple[str, str]:
    """``detail`` as the text around the first ``order_id`` in it, shared through ``shapes``.

    "order 7 is needs_approval" and "order 8 is needs_approval" share one
    ``("order ", " is needs_approval")``: a pending order keeps no message text of its own.
    """
    before, found, after = detail.partition(order_id)
    if not found:
        return detail
    shape = (before, after)
    if len(shapes) < _MAX_SHAPES:
        return shapes.setdefault(shape, shape)
    return shapes.get(shape, shape)


def _unpack_detail(order: _Order) -> str | None:
    """The message :func:`_pack_detail` packed."""
    detail = order.detail
    if detail is None or isinstance(detail, str):
        return detail
    before, after = detail
    return f"{before}{order.order_id}{after}"


class _Inbox:
    """Finished attempt tasks, and the driver's wake-up; held by the tasks, not the stream."""

    __slots__ = ("done", "waiter")

    def __init__(self) -> None:
        self.done: deque[asyncio.Task[Done[OrderStatus] | Pending | Failed]] = deque()
        self.waiter: asyncio.Future[None] | None = None

    def push(self, task: asyncio.Task[Done[OrderStatus] | Pending | Failed]) -> None:
        self.done.append(task)
        self.wake()

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def wake_after(self, _: asyncio.Future[None]) -> None:
        """:meth:`wake`, as a future's done callback."""
        self.wake()

    async def wait(
        self, delay: float | None, sleep: Callable[[float], Awaitable[object]] | None
    ) -> None:
        """Until a task finishes or ``delay`` has passed: through ``sleep`` when the Poller
        was given one, else on the loop's own timer (no task per wait).
        """
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        timer: asyncio.TimerHandle | asyncio.Task[None] | None = None
        if delay is not None:
            if sleep is None:
                timer = loop.call_later(delay, self.wake)
            else:
                timer = loop.create_task(_call_after(sleep, delay, self.wake))
        try:
            await self.waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()


async def _call_after(
    sleep: Callable[[float], Awaitable[object]], delay: float, then: Callable[[], None]
) -> None:
    await sleep(delay)
    then()


class OrderStream(AsyncClosing):
    """The async iterator :func:`poll_many` returns: each :class:`OrderStatus` as it completes.

    Use it as ``async with poll_many(...) as stream: async for status in stream: ...`` (or
    call :meth:`aclose`) so that leaving early stops every poll at once. Statuses in state
    ``PENDING`` are orders still pending at their deadline; :meth:`handle` and
    :meth:`pending` give their resumable :class:`PendingOrder` handles. After the stream
    stopped, for whatever reason, :meth:`undelivered` hands over the answers settled but not
    yet yielded: with :meth:`pending`, every order is accounted for.

    Two keywords are for :class:`~certpoll.StoredOrderStream` only (not for
    :func:`poll_many`): ``before_attempt`` is called before each attempt starts and returns
    the time (on the Poller's clock) by which the gate must admit the attempt's requests
    (a request it cannot admit by then is not sent), or a future to hold every attempt back
    until it is done (then it is asked again); ``times_from`` is a reading of the Poller's
    clock and the wall time it stands for, from which the handles' times are counted (by
    default, both read when the stream starts).
    """

    def __init__(
        self,
        connector: Connector[Any],
        orders: Iterable[str | PendingOrder],
        *,
        concurrency: int,
        on_progress: Callable[[Progress], object] | None,
        max_wait: float | None,
        before_attempt: Callable[[], float | asyncio.Future[None]] | None = None,
        times_from: tuple[float, datetime] | None = None,
    ) -> None:
        given: object = concurrency
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise ConfigError(f"concurrency must be a positive integer, not {concurrency!r}")
        if max_wait is not None and (math.isnan(max_wait) or max_wait <= 0):
            raise ConfigError(
                f"max_wait must be a positive number of seconds (math.inf for no limit), "
                f"not {max_wait!r}"
            )
        if isinstance(orders, str | bytes):
            raise ConfigError("orders must be a collection of order ids, not one string")
        self._connector = connector
        self._concurrency = concurrency
        self._on_progress = on_progress
        self._max_wait = max_wait
        #: Every open order's record (None: not looked at yet, in ``_fresh``).
        self._orders: dict[str, _Order | None] = {}
        # Order ids not looked at yet, in the order given: all due at the start, with one
        # deadline, so their records are made at their first look. A set-up of 100,000
        # orders then allocates nothing the cyclic GC walks through, and passes over them
        # once.
        self._fresh: deque[str] = deque()
        #: The handles given, made records by _start.
        self._resumed: list[PendingOrder] = []
        for item in orders:
            if isinstance(item, PendingOrder):
                if item.ca != connector.ca:
                    raise ConfigError(
                        f"the handle of order {item.order_id!r} is for {item.ca}, "
                        f"not {connector.ca}"
                    )
                order_id = item.order_id
                self._resumed.append(item)
            else:
                order_id = item
                self._fresh.append(order_id)
            connector.check_order_id(order_id)
            known = len(self._orders)
            self._orders[order_id] = None
            if len(self._orders) == known:
                raise ConfigError(f"order {order_id!r} is listed twice")
        self._total = len(self._orders)
        self._started = False
        self._started_at = 0.0
        self._fresh_deadline = math.inf
        self._closed = False
        self._heap: list[_Order] = []
        self._shapes: dict[tuple[str, str], tuple[str, str]] = {}
        self._running: dict[asyncio.Task[Done[OrderStatus] | Pending | Failed], _Order] = {}
        self._inbox = _Inbox()
        self._ready: deque[OrderStatus] = deque()
        self._issued = self._failed = self._still_pending = 0
        self._gate_base = (connector.gate.requests_sent, connector.gate.rate_limited)
        self._last_report = -math.inf
        self._poller = connector.poller
        self._hooks = connector.poller.hooks
        injected = connector.poller.clock is not None or connector.poller.sleep is not asyncio.sleep
        self._injected_sleep = connector.poller.sleep if injected else None
        self._before_attempt = before_attempt
        #: What ``before_attempt`` holds every attempt back with, until it is done.
        self._held_back: asyncio.Future[None] | None = None
        self._times_from = times_from

    # -- the public surface ---------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> OrderStatus:
        if not self._ready and not self._closed:
            try:
                await self._run_until_ready()
            except BaseException:
                # A refused credential, a cancelled consumer, a bug: stop every poll, and
                # keep what the attempts that finished found, for undelivered().
                await self._shutdown()
                raise
        if self._ready:
            return self._ready.popleft()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop every poll now; the attempts in flight are cancelled and awaited.

        An attempt that had already finished is settled: its answer is kept for
        :meth:`undelivered` (or :meth:`pending`, if it was not final).
        """
        await self._shutdown()

    def undelivered(self) -> tuple[OrderStatus, ...]:
        """The answers settled but not yet yielded, handed over (each once) and forgotten.

        After the stream stopped (it raised, its consumer was cancelled, or :meth:`aclose`),
        these plus :meth:`pending` account for every order: an answer the CA gave is never
        dropped.
        """
        statuses = tuple(self._ready)
        self._ready.clear()
        return statuses

    def progress(self) -> Progress:
        """The counts right now."""
        gate = self._connector.gate
        return Progress(
            pending=self._total - self._issued - self._failed - self._still_pending,
            issued=self._issued,
            failed=self._failed,
            still_pending=self._still_pending,
            requests_sent=gate.requests_sent - self._gate_base[0],
            rate_limited=gate.rate_limited - self._gate_base[1],
        )

    def handle(self, order_id: str) -> PendingOrder | None:
        """The resumable handle of an order not issued or failed; None otherwise."""
        if not self._started:
            self._start()
        if order_id not in self._orders:
            return None
        return self._handles([order_id])[0]

    def pending(self) -> tuple[PendingOrder, ...]:
        """Handles of every order neither issued nor failed: still watched (or not yet
        started, or interrupted by :meth:`aclose`) and still pending at their deadline.
        """
        if not self._started:
            self._start()
        return self._handles(list(self._orders))

    def __del__(self) -> None:
        # Left without aclose (a ``break`` in a bare ``async for``): cancel what is in flight.
        for task in getattr(self, "_running", ()):
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                task.cancel()

    # -- the scheduler --------------------------------------------------------------------

    def _start(self) -> None:
        self._started = True
        now = self._started_at = self._poller.now()
        then, wall = (now, utcnow()) if self._times_from is None else self._times_from
        poller = self._connector.poller
        budget = poller.max_wait if self._max_wait is None else self._max_wait
        self._fresh_deadline = now + budget
        for item in self._resumed:
            deadline = then + (item.deadline - wall).total_seconds()
            if self._max_wait is not None or deadline <= now:
                deadline = self._fresh_deadline
            due = then + (item.next_poll_at - wall).total_seconds()
            order = _Order(
                item.order_id,
                attempts=item.attempts,
                due=min(max(due, now), deadline),
                deadline=deadline,
            )
            self._orders[order.order_id] = order
            self._heap.append(order)
        self._resumed = []
        heapq.heapify(self._heap)

    def _record(self, order_id: str) -> _Order:
        """The record of an open order: its own, or that of one not looked at yet."""
        order = self._orders[order_id]
        if order is not None:
            return order
        return _Order(order_id, attempts=0, due=self._started_at, deadline=self._fresh_deadline)

    def _next_due(self) -> float | None:
        """When the next order is due (None: every open order is being looked at)."""
        if self._fresh:
            return self._started_at
        return self._heap[0].due if self._heap else None

    def _next_order(self) -> _Order:
        """The order due first, off the queue: a fresh one gets its record now."""
        if not self._fresh:
            return heapq.heappop(self._heap)
        order = self._record(self._fresh.popleft())
        self._orders[order.order_id] = order
        return order

    def _push(self, order: _Order) -> None:
        heapq.heappush(self._heap, order)

    async def _run_until_ready(self) -> None:
        if not self._started:
            self._start()
        while not self._ready and not self._closed:
            fatal: BaseException | None = None
            while self._inbox.done:
                fatal = self._settle(self._inbox.done.popleft()) or fatal
            if fatal is not None:
                # Every order would get the same answer (or this is a bug): stop, having
                # settled every answer already in.
                raise fatal
            if self._ready:
                break
            if self._next_due() is None and not self._running:
                self._closed = True
                self._report(force=True)
                return
            now = self._poller.now()
            self._launch_due(now)
            if self._ready:  # orders that ran out of time waiting for a slot
                break
            timeout: float | None = None
            due = self._next_due()
            if due is not None and len(self._running) < self._concurrency and not self._holding():
                timeout = max(0.0, due - now)
            if not self._inbox.done:
                await self._inbox.wait(timeout, self._injected_sleep)

    def _holding(self) -> bool:
        """True while ``before_attempt`` holds the attempts back (its future not done)."""
        if self._held_back is not None and self._held_back.done():
            self._held_back = None
        return self._held_back is not None

    def _launch_due(self, now: float) -> None:
        connector = self._connector
        while len(self._running) < self._concurrency and not self._holding():
            due = self._next_due()
            if due is None or due > now + CLOCK_SLACK:
                return
            admit_by = math.inf
            if self._before_attempt is not None:
                allowed = self._before_attempt()
                if isinstance(allowed, asyncio.Future):
                    # Asked again once it is done: the driver wakes then, not before.
                    self._held_back = allowed
                    allowed.add_done_callback(self._inbox.wake_after)
                    return
                admit_by = allowed
            order = self._next_order()
            # A look that waited for a free slot past its order's deadline: like any poll,
            # its answer must still come by deadline + attempt_timeout, so the look gets only
            # what is left of that (none left: the order ends pending without it).
            left: float | None = None
            late = now - order.deadline
            if late > CLOCK_SLACK:
                left = self._poller.attempt_timeout - late
                if left <= CLOCK_SLACK:
                    self._out_of_time(order, now)
                    continue
            task = asyncio.get_running_loop().create_task(
                self._poller.run_attempt(
                    functools.partial(connector.poll_once, order.order_id),
                    deadline=min(order.deadline, admit_by),
                    cut_off_after=left,
                    ca=connector.ca,
                    order_id=order.order_id,
                ),
                name=f"certpoll.poll_many {connector.ca} {order.order_id}",
            )
            task.add_done_callback(self._inbox.push)
            self._running[task] = order

    def _out_of_time(self, order: _Order, now: float) -> None:
        """End ``order`` pending, unlooked at: its deadline and attempt_timeout passed while
        it waited for a free slot. Its handle is due at once."""
        order.due = now
        self._end_pending(order, elapsed=now - self._started_at, retry_after=None)

    def _end_pending(self, order: _Order, *, elapsed: float, retry_after: float | None) -> None:
        """End ``order`` pending at its deadline (its handle due at ``order.due``)."""
        self._finish(
            order,
            self._connector.final_status(
                order.order_id,
                StillPending(
                    attempts=order.attempts,
                    elapsed=elapsed,
                    last_error=order.last_error,
                    detail=_unpack_detail(order),
                    retry_after=retry_after,
                ),
            ),
        )

    def _settle(
        self, task: asyncio.Task[Done[OrderStatus] | Pending | Failed]
    ) -> BaseException | None:
        """Apply a finished attempt to its order; the error that must stop the stream, if any.

        Such an error (a refused credential, a wrong base URL, a bug) leaves its order open.
        """
        order = self._running.pop(task)
        if task.cancelled():
            # Cancelled by someone else (or by a stop): the attempt did not happen.
            self._push(order)
            return None
        error = task.exception()
        if error is not None and not isinstance(error, Exception):
            self._push(order)
            return error
        result = task.result() if error is None else Failed(error)
        if isinstance(result, Failed) and _stops_the_stream(result.error):
            self._push(order)
            return result.error
        loop_now = self._poller.now()
        order.attempts += 1
        elapsed = loop_now - self._started_at
        if isinstance(result, Done):
            self._report_attempt(order, "done", error=None, elapsed=elapsed)
            self._finish(order, result.value)
            return None
        if isinstance(result, Failed):
            self._report_attempt(order, "failed", error=result.error, elapsed=elapsed)
            self._finish(order, self._failed_status(order, result.error))
            return None
        if not isinstance(result, Pending):
            self._push(order)
            return TypeError(
                f"a poll attempt must return Done, Pending or Failed, not {type(result)!r}"
            )
        order.last_error = result.error
        if result.detail is not None:
            order.detail = _pack_detail(order.order_id, result.detail, self._shapes)
        retry_after = None if result.retry_after is None else max(0.0, result.retry_after)
        wait = self._poller.next_wait(
            wait_index=order.wait_index,
            remaining=order.deadline - loop_now,
            retry_after=retry_after,
        )
        gate = self._connector.gate
        held = isinstance(result.error, RateLimited) and gate.shares_cooldown
        if held and wait is not None:
            # This 429 holds every order at the gate, and the gate probes for them all: the
            # order whose request drew it keeps its place in its own schedule, and comes back
            # when the gate opens (not before the schedule's first wait: a Retry-After of 0
            # must not spin).
            wait = min(wait, max(gate.opens_in(), self._poller.policy.initial_wait))
        self._report_attempt(
            order, "pending", error=order.last_error, elapsed=elapsed, next_wait=wait
        )
        if wait is None:
            # When a resumed poll should look next: the server's wish, else the schedule.
            later = self._poller.policy.base_wait(order.wait_index)
            order.due = loop_now + (later if retry_after is None else retry_after)
            self._end_pending(order, elapsed=elapsed, retry_after=retry_after)
            return None
        if not held:
            order.wait_index += 1
        order.due = loop_now + wait
        self._push(order)
        self._report(force=False)
        return None

    def _report_attempt(
        self,
        order: _Order,
        outcome: AttemptOutcome,
        *,
        error: Exception | None,
        elapsed: float,
        next_wait: float | None = None,
    ) -> None:
        if reads_attempt(self._hooks, outcome, error):
            if not order.poll_id:
                order.poll_id = new_poll_id()
            report_attempt(
                self._hooks,
                outcome,
                poll_id=order.poll_id,
                ca=self._connector.ca,
                order_id=order.order_id,
                attempt=order.attempts,
                error=error,
                detail=_unpack_detail(order),
                elapsed=elapsed,
                next_wait=next_wait,
            )

    def _finish(self, order: _Order, status: OrderStatus) -> None:
        if status.state is OrderState.ISSUED:
            self._issued += 1
            del self._orders[order.order_id]
        elif status.state is OrderState.FAILED:
            self._failed += 1
            del self._orders[order.order_id]
        else:
            self._still_pending += 1
        self._ready.append(status)
        self._report(force=True)

    def _failed_status(self, order: _Order, error: Exception) -> OrderStatus:
        return OrderStatus(
            ca=self._connector.ca,
            order_id=order.order_id,
            state=OrderState.FAILED,
            message=str(error),
            last_error=error,
        )

    def _report(self, *, force: bool) -> None:
        if self._on_progress is None:
            return
        now = self._poller.now()
        if not force and now - self._last_report < _HEARTBEAT:
            return
        self._last_report = now
        self._on_progress(self.progress())

    async def _shutdown(self) -> None:
        self._closed = True
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for task in tasks:
            # An attempt that finished before it could be cancelled found an answer: keep it.
            # One that was interrupted does not count, and its order is due at once.
            if task in self._running:
                self._settle(task)
        self._inbox.done.clear()
        self._inbox.wake()  # a consumer waiting in another task sees the end

    def _handles(self, order_ids: list[str]) -> tuple[PendingOrder, ...]:
        now = self._poller.now()
        wall = utcnow()
        ca = self._connector.ca
        return tuple(
            handle_at(
                wall,
                ca=ca,
                order_id=order.order_id,
                attempts=order.attempts,
                due_in=order.due - now,
                deadline_in=order.deadline - now,
            )
            for order in map(self._record, order_ids)
        )


def _stops_the_stream(error: BaseException) -> bool:
    """True for an error every order would get the same way (a refused credential, a wrong
    base URL) or that certpoll does not know (a bug): it ends the whole stream.
    """
    return isinstance(error, AuthenticationError | EndpointNotFound) or not isinstance(
        error, CertpollError
    )


@overload
def poll_many(
    connector: Connector[S],
    orders: Iterable[str | PendingOrder],
    *,
    concurrency: int = 10,
    on_progress: Callable[[Progress], object] | None = None,
    max_wait: float | None = None,
) -> OrderStream: ...


@overload
def poll_many(
    connector: Connector[S],
    orders: Iterable[str | PendingOrder],
    *,
    store: OrderStore,
    lease: float = 30.0,
    concurrency: int = 10,
    on_progress: Callable[[Progress], object] | None = None,
    max_wait: float | None = None,
) -> StoredOrderStream: ...


def poll_many(
    connector: Connector[S],
    orders: Iterable[str | PendingOrder],
    *,
    store: OrderStore | None = None,
    lease: float = 30.0,
    concurrency: int = 10,
    on_progress: Callable[[Progress], object] | None = None,
    max_wait: float | None = None,
) -> OrderStream | StoredOrderStream:
    """Poll many orders through one connector; yields each :class:`OrderStatus` as it completes.

    ``orders`` are order ids (polled from their first attempt) or :class:`PendingOrder`
    handles (their schedule continues). ``concurrency`` bounds the requests in flight, not the
    orders watched. ``on_progress`` is called with a :class:`Progress` after every finished
    order and at most once a second otherwise. ``max_wait`` replaces PollMaxWait for every
    order; without it, new orders get the connector's PollMaxWait and handles keep their
    deadline (or get a fresh PollMaxWait if it has passed).

    Every order gets a first attempt and one last attempt at its deadline; a request the
    rate limits cannot admit before the order's deadline is not sent, and the order ends
    ``PENDING`` with :class:`~certpoll.GateClosed` as ``last_error``. An attempt that waited
    for a free slot past its order's deadline is cut off at the deadline plus
    ``attempt_timeout`` (and not made once that has passed), so every order's answer comes
    by then. A bad order (unknown,
    unreadable answer) comes back ``FAILED`` with the error in ``last_error``; a refused
    credential (:class:`~certpoll.AuthenticationError`) or a wrong base URL
    (:class:`~certpoll.EndpointNotFound`) is raised and stops everything, after which
    :meth:`OrderStream.undelivered` and :meth:`OrderStream.pending` account for every order.
    Bad arguments raise :class:`~certpoll.ConfigError` at once, before any request. The
    Poller's hooks see each order's attempts as one poll, with a
    :attr:`~certpoll.PollDetails.poll_id` of its own.

    With a ``store`` (see :func:`~certpoll.open_store`), the orders are taken in the store
    under a ``lease`` (seconds, renewed every third of it): recorded if the store does not
    hold them, claimed when free, polled by the same scheduler, and each answer written
    with the claim's fencing token before it is yielded; a
    :class:`~certpoll.StoredOrderStream` says what happens to orders final in the store
    or held by another owner, and what stopping early gives back.
    """
    if store is not None:
        from ._claimed import StoredOrderStream

        return StoredOrderStream(
            connector,
            orders,
            store=store,
            lease=lease,
            concurrency=concurrency,
            on_progress=on_progress,
            max_wait=max_wait,
        )
    return OrderStream(
        connector, orders, concurrency=concurrency, on_progress=on_progress, max_wait=max_wait
    )
