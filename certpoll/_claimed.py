"""Orders polled through a store: ``poll_many(..., store=...)`` and each batch of a worker.

:class:`StoredOrderStream` takes its orders in the store under a lease (adopting those the
store does not hold yet, or handed a worker's claim), polls them with one
:class:`~certpoll.OrderStream` (the same schedule, deadline, gate and triage as in memory:
no second scheduler), and writes each answer with the claim's fencing token before it
yields it. It renews the leases every third of a lease and then writes each order's place
in its schedule, so a crash resumes it there. When it stops, for any reason, it writes the
answers found but not yet written and releases what it still holds.

Leases are counted on the connector's Poller's clock (the one a connector is given its time
by), from before the claim or renewal request was sent: a lease is known to last at least
that long, whenever the store's statement ran. No request goes to the CA in the last third
of a lease (:meth:`StoredOrderStream._before_attempt`): a process paused past that point
renews first, and polls again only if the store still names it the owner.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Self

from ._backends.store import (
    MAX_SECONDS,
    Adoption,
    OrderStore,
    StoredOrder,
    StoredState,
    check_lease,
)
from ._closing import AsyncClosing
from ._connectors._base import Connector
from ._errors import ConfigError, LeaseLost, TransientError
from ._fleet import OrderStream, Progress
from ._handles import PendingOrder
from ._models import CAName, OrderState, OrderStatus

__all__ = ["StoredOrderStream", "WorkerEvent", "owner_name", "poll_budget"]

logger = logging.getLogger("certpoll")

#: The shortest lease: long enough to be renewed (every third of it) between attempts.
MIN_LEASE: Final = 0.05
#: The share of a lease that must remain for an attempt to start, and the last part of a
#: lease in which no request is sent: as much as a renewal interval, so that a stream
#: renewing on time never holds an attempt back.
LEASE_LEFT_TO_START: Final = 1 / 3

EventKind = Literal["claimed", "issued", "failed", "still_pending", "lost", "released"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerEvent:
    """Something a :class:`~certpoll.Worker` did, for its ``on_event`` callback and
    ``certpoll worker``.

    ``claimed`` and ``released`` carry a ``count`` (``claimed`` also the ``keys``, so that a
    reader can tell when each order was taken); the others name one order: ``issued`` and
    ``failed`` (final answer written), ``still_pending`` (PollMaxWait passed: rescheduled
    and released, with a fresh poll budget), ``lost`` (another owner took it after the
    lease ran out; this worker stopped polling it).
    """

    kind: EventKind
    count: int = 1
    key: str | None = None
    ca: CAName | None = None
    order_id: str | None = None
    message: str | None = None
    keys: tuple[str, ...] = ()

    def as_json(self) -> str:
        """One JSON line (no certificate, no credential)."""
        fields: dict[str, object] = {"event": self.kind, "count": self.count}
        fields |= {"key": self.key, "ca": self.ca, "order_id": self.order_id}
        fields |= {"message": self.message, "keys": list(self.keys) or None}
        return json.dumps({k: v for k, v in fields.items() if v is not None})


def owner_name(role: str) -> str:
    """Who holds a claim, for people reading the store: host, process, and a random tail."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def poll_budget(connector: Connector[Any], max_wait: float | None = None) -> float:
    """A fresh poll budget as the store keeps it: ``max_wait`` or PollMaxWait, where "no
    limit" is the longest time a row holds."""
    return min(connector.poller.max_wait if max_wait is None else max_wait, MAX_SECONDS)


def _handle(record: StoredOrder, connector: Connector[Any], *, claimed: datetime) -> PendingOrder:
    """The handle of a claimed record: its schedule continues where it stopped.

    Its times are counted from the claim's moment on the store's clock (the record's last
    write, ``updated_at``), and stand as the same offsets from ``claimed``: no other clock
    (this host's wall clock, read at another moment) is mixed in.
    """
    if record.order_id is None:
        raise ConfigError(f"order {record.key!r} has no order id to poll")  # never claimed

    def after_claim(when: datetime | None, otherwise: float) -> datetime:
        offset = otherwise if when is None else (when - record.updated_at).total_seconds()
        return claimed + timedelta(seconds=min(offset, MAX_SECONDS))

    return PendingOrder(
        ca=record.ca,
        order_id=record.order_id,
        attempts=record.attempts,
        next_poll_at=after_claim(record.due_at, 0.0),
        deadline=after_claim(record.deadline, poll_budget(connector)),
    )


def _adoption(handle: PendingOrder) -> Adoption:
    """A handle as the store adopts it: its times counted from now on this host."""
    return Adoption(
        ca=handle.ca,
        order_id=handle.order_id,
        attempts=handle.attempts,
        due_in=_seconds_until(handle.next_poll_at),
        deadline_in=min(_seconds_until(handle.deadline), MAX_SECONDS),
    )


def _seconds_until(when: datetime) -> float:
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _stored_status(record: StoredOrder) -> OrderStatus:
    """The final answer the store holds for ``record``."""
    state = OrderState.ISSUED if record.state is StoredState.ISSUED else OrderState.FAILED
    return OrderStatus(
        ca=record.ca,
        order_id=record.order_id or "",
        state=state,
        message=record.message or record.last_error,
        certificate=record.certificate,
    )


class StoredOrderStream(AsyncClosing):
    """What :func:`~certpoll.poll_many` returns when given a ``store``: each
    :class:`~certpoll.OrderStatus` as it completes, written to the store before it is
    yielded.

    Use it as ``async with poll_many(connector, orders, store=store) as stream: async for
    status in stream: ...``. On the first step the orders are adopted
    (:meth:`~certpoll.OrderStore.adopt`): recorded if the store does not hold them, and
    claimed for ``lease`` seconds when free. An order already final in the store is yielded
    as stored, without a request; one another owner holds is left to it (not polled, not
    yielded). A status in state ``PENDING`` is an order still pending at its deadline: it
    is rescheduled in the store (with a fresh poll budget) and released.

    Leases are counted on the connector's Poller's clock, from before the claim (or the
    renewal) was sent. No request is sent in the last third of a lease: an attempt starts
    only while a third is known to remain, and the gate admits its requests only until
    then; a stream that falls behind (this process was paused) holds its attempts back and
    renews first. If a lease is lost (another owner took the order after it ran out), or
    the store stays unreachable into the last third (or does not answer a renewal before
    the lease may end), polling stops at once, what is held is given back, and
    :class:`~certpoll.LeaseLost` or :class:`~certpoll.TransientError` is raised: an order
    never has two pollers. An answer whose write the store refused because another owner
    took the order is not yielded; one the store could not be reached for is yielded (and
    polled again by whoever claims the order after the lease).
    """

    #: Who holds the claims, as the store shows it.
    owner: str

    def __init__(
        self,
        connector: Connector[Any],
        orders: Iterable[str | PendingOrder],
        *,
        store: OrderStore,
        lease: float,
        concurrency: int,
        on_progress: Callable[[Progress], object] | None,
        max_wait: float | None,
        claimed: Iterable[StoredOrder] | None = None,
        claimed_at: float | None = None,
        owner: str | None = None,
        on_event: Callable[[WorkerEvent], object] | None = None,
    ) -> None:
        if check_lease(lease) < MIN_LEASE:
            raise ConfigError(f"lease must be at least {MIN_LEASE} seconds, not {lease}")
        if (claimed is None) != (claimed_at is None):
            # A claim's lease is counted from before it was sent, so the two come together.
            raise ConfigError("claimed and claimed_at are given together")
        # The orders as handles, checked the way poll_many checks them (never polled).
        self._given = OrderStream(
            connector, orders, concurrency=concurrency, on_progress=None, max_wait=max_wait
        )
        self._connector = connector
        self._store = store
        self._lease = lease
        self._concurrency = concurrency
        self._on_progress = on_progress
        self._max_wait = max_wait
        self._claimed = None if claimed is None else list(claimed)
        #: The Poller's clock before the claim was sent (None: the stream adopts and claims).
        self._claimed_at = claimed_at
        #: Leases are counted on the connector's Poller's clock, and renewals wait on it.
        self._clock = connector.poller.now
        self._sleep = connector.poller.sleep
        self.owner = owner_name("poll_many") if owner is None else owner
        self._on_event = on_event
        #: The orders held, by order id (a worker's claim is held from the start).
        self._records = {record.order_id or "": record for record in self._claimed or ()}
        #: Orders whose answer is being written: neither renewed nor checkpointed meanwhile.
        self._writing: set[str] = set()
        self._ready: deque[OrderStatus] = deque()
        self._inner: OrderStream | None = None
        self._renewal: asyncio.Task[None] | None = None
        self._started = self._closed = False
        #: Why polling stopped early (a lease lost, the store unreachable), raised at the end.
        self._ended_by: Exception | None = None
        #: Until when (Poller's clock) every lease held is known to last.
        self._held_until = 0.0
        #: Set when an attempt is held back for want of lease: renew now.
        self._renew_now = asyncio.Event()
        #: Done when the next renewal has ended (renewed, lost, or given up): what held-back
        #: attempts wait for.
        self._renewed: asyncio.Future[None] | None = None

    @property
    def held(self) -> int:
        """How many orders this stream holds now."""
        return len(self._records)

    def __aiter__(self) -> Self:
        return self

    async def aclose(self) -> None:
        """Stop polling; write the answers found, checkpoint and release what is held."""
        await self._close()

    async def __anext__(self) -> OrderStatus:
        try:
            if not self._started:
                await self._begin()
            while not self._ready and self._inner is not None and not self._closed:
                try:
                    status = await self._inner.__anext__()
                except StopAsyncIteration:
                    break
                if await self._settle(status):
                    return status
        except BaseException:
            await self._close()
            raise
        if self._ready:
            return self._ready.popleft()
        await self._close()
        ended_by, self._ended_by = self._ended_by, None
        if ended_by is not None:
            raise ended_by
        raise StopAsyncIteration

    # -- taking the orders --------------------------------------------------------------------

    async def _begin(self) -> None:
        self._started = True
        loop = asyncio.get_running_loop()
        claimed, claimed_at = self._claimed, self._claimed_at
        if claimed is None or claimed_at is None:
            claimed_at = self._clock()  # before the request: the lease lasts at least from here
            adopted = await self._store.adopt(
                [_adoption(handle) for handle in self._given.pending()],
                owner=self.owner,
                lease=self._lease,
            )
            claimed = [record for record in adopted if record.owner == self.owner]
            final = (StoredState.ISSUED, StoredState.FAILED)
            self._ready.extend(_stored_status(r) for r in adopted if r.state in final)
            self._records = {record.order_id or "": record for record in claimed}
        self._held_until = claimed_at + self._lease
        # The handles' times stand as offsets from the claim, on the Poller's clock.
        wall = datetime.now(UTC)
        self._inner = OrderStream(
            self._connector,
            [_handle(record, self._connector, claimed=wall) for record in claimed],
            concurrency=self._concurrency,
            on_progress=self._on_progress,
            max_wait=self._max_wait,
            before_attempt=self._before_attempt,
            times_from=(claimed_at, wall),
        )
        if self._records:
            self._renewal = loop.create_task(
                self._keep_leases(), name=f"certpoll leases of {self.owner}"
            )

    # -- writing answers ----------------------------------------------------------------------

    async def _settle(self, status: OrderStatus) -> bool:
        """Write one answer with its claim's token; the order then leaves those held (not
        before: if the write is interrupted, the order is given back). True unless another
        owner has the order (then its answer is that owner's to write and to yield)."""
        record = self._records.get(status.order_id)
        if record is None:
            return False  # lost meanwhile: its new owner writes its answer
        kind: EventKind = "still_pending"
        self._writing.add(status.order_id)
        try:
            if status.state is OrderState.PENDING:
                handle = self._inner.handle(status.order_id) if self._inner else None
                later = await self._store.reschedule(
                    record,
                    attempts=record.attempts if handle is None else handle.attempts,
                    due_in=0.0 if handle is None else _seconds_until(handle.next_poll_at),
                    last_error=None if status.last_error is None else str(status.last_error),
                    deadline_in=poll_budget(self._connector, self._max_wait),
                )
                await self._store.release(later)
            else:
                await self._store.complete(record, status, attempts=record.attempts + 1)
                kind = "issued" if status.state is OrderState.ISSUED else "failed"
        except LeaseLost:
            self._records.pop(status.order_id, None)
            self._lost(record)
            return False
        except TransientError as exc:
            # The answer is not written, and the order stays claimed until its lease runs
            # out; then whoever claims it polls it again.
            logger.warning(
                "certpoll.store_write_failed ca=%s order_id=%s: %s",
                record.ca,
                record.order_id,
                exc,
            )
            self._records.pop(status.order_id, None)
            return True
        finally:
            self._writing.discard(status.order_id)
        self._records.pop(status.order_id, None)
        self._emit(
            WorkerEvent(
                kind=kind,
                key=record.key,
                ca=record.ca,
                order_id=record.order_id,
                message=status.message,
            )
        )
        return True

    # -- leases -------------------------------------------------------------------------------

    def _before_attempt(self) -> float | asyncio.Future[None]:
        """When at least a third of the lease is known to remain, the attempt may start,
        and its requests are sent only until that third begins (the time returned: the gate
        admits none later). Otherwise the attempts wait for a renewal, asked for at once.

        A third, so that the attempt's answer comes back and is written before the lease
        ends (``attempt_timeout`` at most a third of the lease bounds the attempt); and a
        stream renewing on time (every third) never waits here.
        """
        last_third = self._held_until - self._lease * LEASE_LEFT_TO_START
        if self._clock() <= last_third:
            return last_third
        if self._renewed is None:
            self._renewed = asyncio.get_running_loop().create_future()
        self._renew_now.set()
        return self._renewed

    async def _keep_leases(self) -> None:
        """Renew every third of a lease (or at once when an attempt waits for it), writing
        where each schedule stands; stop polling at once when a lease is lost, when a
        renewal fails in the last third of the lease, or when the store has not answered
        one by the time the lease may end."""
        every = self._lease * LEASE_LEFT_TO_START
        while self._records:
            await self._until_renewal(every)
            why = await self._renew_once(every)
            renewed, self._renewed = self._renewed, None
            if renewed is not None and not renewed.done():
                renewed.set_result(None)  # held-back attempts ask again (after the stop below)
            if why is not None:
                await self._stop_polling(why)
                return

    async def _until_renewal(self, every: float) -> None:
        """Wait ``every`` seconds on the Poller's clock, or less if an attempt asks."""
        if not self._renew_now.is_set():
            sleeping = asyncio.ensure_future(self._sleep(every))
            asked = asyncio.ensure_future(self._renew_now.wait())
            try:
                await asyncio.wait([sleeping, asked], return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeping.cancel()
                asked.cancel()
        self._renew_now.clear()

    async def _renew_once(self, every: float) -> Exception | None:
        """One renewal; the error that must stop the polls, if any.

        A renewal still unanswered when the leases may run out stops the polls then: the
        attempts in flight send no request past the lease. (It is timed on the event loop,
        as ``attempt_timeout`` is; a lease already past on the Poller's clock, after a
        pause, is renewed without a limit: no attempt starts until it is.)
        """
        started = self._clock()
        left = self._held_until - started
        limit = asyncio.timeout(left if left > 0 else None)
        try:
            async with limit:
                lost = await self._renew()
        except TransientError as exc:
            logger.warning("certpoll.store_unreachable: %s", exc)
            return exc if self._clock() >= self._held_until - every else None
        except TimeoutError as exc:
            if not limit.expired():
                return exc  # not the limit's: a bug, as below
            logger.warning("certpoll.store_unreachable: no answer to a renewal in the lease")
            return TransientError(
                "the order store did not answer a lease renewal before the leases could run "
                "out: stopped polling"
            )
        except Exception as exc:  # a bug: no poll may outlive the leases unrenewed
            return exc
        self._held_until = started + self._lease
        if not lost:
            return None
        keys = ", ".join(repr(record.key) for record in lost)
        return LeaseLost(
            f"another owner claimed {keys} after the lease ran out: stopped polling, and "
            "gave back the rest",
            key=lost[0].key,
            token=lost[0].token,
        )

    async def _renew(self) -> list[StoredOrder]:
        """Renew the leases held, with each order's place in its schedule (one statement),
        so a crash resumes it there; forget and return those another owner took."""
        renewing = [r for r in self._records.values() if r.order_id not in self._writing]
        moved: dict[str, tuple[int, float]] = {}
        for record in renewing:
            handle = None if self._inner is None else self._inner.handle(record.order_id or "")
            if handle is not None and handle.attempts != record.attempts:
                moved[record.key] = (handle.attempts, _seconds_until(handle.next_poll_at))
        kept = await self._store.renew(renewing, lease=self._lease, schedules=moved)
        lost = []
        for record in renewing:
            order_id = record.order_id or ""
            if order_id not in self._records or order_id in self._writing:
                continue  # its answer was written meanwhile
            if record.key not in kept:
                del self._records[order_id]
                self._lost(record)
                lost.append(record)
            elif record.key in moved:
                self._records[order_id] = replace(record, attempts=moved[record.key][0])
        return lost

    async def _stop_polling(self, why: Exception) -> None:
        self._ended_by = why
        if self._inner is not None:
            await self._inner.aclose()

    # -- the end ------------------------------------------------------------------------------

    async def _close(self) -> None:
        """Stop polling, write the answers found, checkpoint and release what is held; with
        the store unreachable, leave it to the leases (the next owner polls it again)."""
        if self._closed:
            return
        self._closed = True
        renewal = self._renewal
        if renewal is not None and not renewal.done():
            renewal.cancel()
        if renewal is not None:
            await asyncio.wait([renewal])
        inner = self._inner
        if inner is not None:
            await inner.aclose()
            # An answer the CA gave is not thrown away: written, then the rest given back.
            for status in inner.undelivered():
                await self._settle(status)
        released = 0
        try:
            await self._renew()
            for record in list(self._records.values()):
                await self._store.release(record)
                released += 1
        except TransientError as exc:
            logger.warning("certpoll.store_release_failed: %s; the leases will lapse", exc)
        self._records.clear()
        if released:
            self._emit(WorkerEvent(kind="released", count=released))

    def _lost(self, record: StoredOrder) -> None:
        self._emit(WorkerEvent(kind="lost", key=record.key, ca=record.ca, order_id=record.order_id))

    def _emit(self, event: WorkerEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)
