"""Orders through a store: submit with an intent first, and a worker that claims and polls.

:func:`submit_order` records an intent before the POST and the CA's order id in the step
that reads its answer, so a crash never orders twice: a key already known is never sent
again, and an intent left without an order id becomes ``UNCERTAIN`` for a person to settle.

:class:`Worker` claims due orders from the store for a lease, polls them with
:func:`~certpoll.poll_many` (the same schedule, deadline, gate and triage as in memory: the
store only feeds it handles and takes its answers), renews the leases while it polls and
checkpoints each order's schedule at every renewal, writes each final answer with the
claim's fencing token, and on :meth:`Worker.stop` stops claiming, checkpoints and releases
what it holds. :meth:`Worker.drain` is the same until nothing is due: ``poll_many`` over a
store, with no wiring of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Final, Literal

from ._backends.store import OrderStore, StoredOrder, StoredState
from ._connectors._base import Connector
from ._errors import (
    CertpollError,
    ConfigError,
    LeaseLost,
    PermanentError,
    SubmissionUncertain,
    TransientError,
)
from ._fleet import OrderStream, poll_many
from ._handles import PendingOrder
from ._models import CAName, CertificateRequest, OrderState, OrderStatus

__all__ = [
    "Worker",
    "WorkerEvent",
    "list_orders",
    "request_fingerprint",
    "serve_worker",
    "submit_order",
]

logger = logging.getLogger("certpoll")

#: Bounds of the worker's knobs: a lease long enough to renew, short enough to recover.
_MIN_LEASE: Final = 0.05
_MAX_LEASE: Final = 3600.0
_MAX_HELD: Final = 100_000


def request_fingerprint(request: CertificateRequest) -> str:
    """A stable name for what ``request`` orders: ``sha256:`` of its common name, its sorted
    DNS names and its CSR (whitespace around the PEM ignored). Two requests with the same
    fingerprint order the same certificate."""
    canonical = json.dumps(
        [request.common_name, sorted(request.sans), request.csr_pem.strip()],
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _owner_name(role: str) -> str:
    """Who holds a claim, for people reading the store: host, process, and a random tail."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def submit_order(
    connector: Connector[Any],
    store: OrderStore,
    request: CertificateRequest,
    *,
    key: str | None = None,
    lease: float = 60.0,
) -> StoredOrder:
    """Submit ``request`` through ``store``: the intent first, then the POST, then its id.

    ``key`` is the idempotency key (default: the CA and :func:`request_fingerprint`, so the
    same request is ordered once). A key the store already knows is never sent again: its
    record comes back as it is when it has an order id (pending, issued or failed), and a
    :class:`~certpoll.SubmissionUncertain` is raised when it has none (another process is
    submitting it, or one died doing so). ``lease`` bounds how long the intent is held
    before an unfinished submission is reported ``UNCERTAIN``.

    Returns the stored order, ``PENDING`` (released for any worker to poll) or, when the
    CA answered at once, ``ISSUED`` or ``FAILED``. A submission that surely did not reach
    the CA (no connection, a refusal) raises its error and frees the key; one that may
    have reached it raises :class:`~certpoll.SubmissionUncertain` and stays ``UNCERTAIN``.
    """
    fingerprint = request_fingerprint(request)
    intent, created = await store.add_intent(
        key=f"{connector.ca}:{fingerprint}" if key is None else key,
        ca=connector.ca,
        fingerprint=fingerprint,
        common_name=request.common_name,
        owner=_owner_name("submit"),
        lease=lease,
    )
    if not created:
        if intent.order_id is not None:
            return intent
        raise SubmissionUncertain(
            f"{connector.ca}: the order for {request.common_name!r} (key {intent.key!r}) is "
            f"already recorded as {intent.state.value} with no order id: not sent again; "
            "check the CA before ordering again",
            ca=connector.ca,
            common_name=request.common_name,
        )
    try:
        status = await connector.issue(request)
    except (TransientError, PermanentError):
        # Not sent, or refused: the CA has no order. The key is free for another try.
        await asyncio.shield(store.withdraw_intent(intent))
        raise
    except BaseException as exc:
        # SubmissionUncertain, a cancellation mid-POST, a bug: the CA may have the order.
        why = str(exc) if isinstance(exc, CertpollError) else type(exc).__name__
        await asyncio.shield(store.record_uncertain(intent, error=why))
        raise
    try:
        record = await store.record_submitted(
            intent, order_id=status.order_id, deadline_in=connector.poller.max_wait
        )
    except CertpollError as exc:
        logger.error(
            "certpoll.store_write_failed ca=%s order_id=%s key=%s: the CA created the order "
            "but the store could not record it",
            connector.ca,
            status.order_id,
            intent.key,
        )
        raise SubmissionUncertain(
            f"{connector.ca}: the CA created {connector.order_noun} {status.order_id} for "
            f"{request.common_name!r}, but the order store could not record it: {exc}",
            ca=connector.ca,
            common_name=request.common_name,
        ) from exc
    if status.state is OrderState.PENDING:
        return await store.release(record) or record
    return await store.complete(record, status, attempts=1)


EventKind = Literal["claimed", "issued", "failed", "still_pending", "lost", "released"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerEvent:
    """Something a :class:`Worker` did, for its ``on_event`` callback and ``certpoll worker``.

    ``claimed`` and ``released`` carry a ``count``; the others name one order: ``issued`` and
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

    def as_json(self) -> str:
        """One JSON line (no certificate, no credential)."""
        fields = {"event": self.kind, "count": self.count, "key": self.key, "ca": self.ca}
        fields |= {"order_id": self.order_id, "message": self.message}
        return json.dumps({k: v for k, v in fields.items() if v is not None})


class _Batch:
    """The orders one claim gave this worker, polled by one stream."""

    def __init__(self, connector: Connector[Any], claimed: list[StoredOrder]) -> None:
        self.connector = connector
        self.records = {record.order_id or "": record for record in claimed}
        self.stream: OrderStream | None = None


class Worker:
    """Claim due orders from ``store`` for the CAs of ``connectors`` and poll them.

    ``lease`` is how long a claim lasts unrenewed (renewed every third of it); a dead
    worker's orders are claimed by another after at most ``lease`` plus one
    ``claim_interval``. ``batch`` bounds one claim and ``max_held`` the orders held at once;
    ``concurrency`` bounds the requests in flight per claim. Run with :meth:`run`; stop
    with :meth:`stop` (SIGTERM in ``certpoll worker``).
    """

    def __init__(
        self,
        store: OrderStore,
        connectors: Iterable[Connector[Any]],
        *,
        lease: float = 30.0,
        claim_interval: float = 1.0,
        batch: int = 100,
        max_held: int = 1000,
        concurrency: int = 10,
        owner: str | None = None,
        on_event: Callable[[WorkerEvent], object] | None = None,
    ) -> None:
        self._connectors: dict[CAName, Connector[Any]] = {}
        for connector in connectors:
            if connector.ca in self._connectors:
                raise ConfigError(f"two connectors for {connector.ca}: give one per CA")
            self._connectors[connector.ca] = connector
        if not self._connectors:
            raise ConfigError("a worker needs at least one connector")
        if not _MIN_LEASE <= lease <= _MAX_LEASE:
            raise ConfigError(f"lease must be {_MIN_LEASE} to {_MAX_LEASE} seconds, not {lease}")
        if not 0 < claim_interval <= lease:
            raise ConfigError("claim_interval must be more than 0 and at most the lease")
        for name, value in (("batch", batch), ("max_held", max_held), ("concurrency", concurrency)):
            if not 1 <= value <= _MAX_HELD:
                raise ConfigError(f"{name} must be 1 to {_MAX_HELD}, not {value}")
        self.store = store
        self.owner = _owner_name("worker") if owner is None else owner
        self._lease = lease
        self._claim_interval = claim_interval
        self._batch = batch
        self._max_held = max_held
        self._concurrency = concurrency
        #: Called with each :class:`WorkerEvent`.
        self.on_event = on_event
        self._stopping = asyncio.Event()
        #: Set by :meth:`stop`, and in a drain when the last batch ends: the loop's wake-up.
        self._wake = asyncio.Event()
        self._wake_when_idle = False
        self._batches: dict[asyncio.Task[None], _Batch] = {}
        self._fatal: BaseException | None = None
        #: Until when (loop clock) every lease held is known to last.
        self._held_until = 0.0

    @property
    def held(self) -> int:
        """How many orders this worker holds now."""
        return sum(len(batch.records) for batch in self._batches.values())

    def stop(self) -> None:
        """Stop claiming; :meth:`run` then checkpoints, releases what it holds, and returns."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Claim and poll until :meth:`stop`; then release every order still held.

        An error that would fail every order alike (a refused credential) stops the worker
        the same way, and is raised once everything is released.
        """
        await self._serve(until_idle=False)

    async def drain(self) -> None:
        """Claim and poll until no order of the worker's CAs is due and none is held.

        :func:`~certpoll.poll_many` over a store: every due ``PENDING`` order is claimed,
        polled on its schedule to its answer or its deadline, and written back (an order
        still pending at its deadline is rescheduled, and a later drain or worker takes it
        when it is due). Orders another owner holds are left to it. :meth:`stop` ends it
        early, releasing what it holds, as for :meth:`run`. An unreachable store is
        retried while orders are held (their polls stop before their leases may lapse),
        and raised as :class:`~certpoll.TransientError` once none is.
        """
        await self._serve(until_idle=True)

    async def _serve(self, *, until_idle: bool) -> None:
        renew_every = self._lease / 3
        loop = asyncio.get_running_loop()
        next_renewal = loop.time() + renew_every
        self._wake_when_idle = until_idle
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    claimed = await self._claim()
                    if until_idle and not claimed and not self._batches:
                        break
                    if loop.time() >= next_renewal:
                        started = loop.time()
                        await self._renew()
                        self._held_until = started + self._lease
                        next_renewal = loop.time() + renew_every
                except TransientError as exc:
                    if until_idle and not self._batches:
                        raise  # a drain does not wait for the store without end
                    # The store is unreachable: keep trying, but stop polling before the
                    # leases may have lapsed, so that no order gets a second poller.
                    logger.warning("certpoll.worker_store_unreachable: %s", exc)
                    if loop.time() >= self._held_until - renew_every:
                        self._abandon()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(),
                        min(self._claim_interval, max(0.0, next_renewal - loop.time())),
                    )
        finally:
            await asyncio.shield(self._release_all())
        if self._fatal is not None:
            raise self._fatal

    # -- claims ---------------------------------------------------------------------------

    async def _claim(self) -> int:
        """Claim what is due and room allows, and start polling it; how many were claimed."""
        room = min(self._batch, self._max_held - self.held)
        if room <= 0:
            return 0
        if not self._batches:
            self._held_until = asyncio.get_running_loop().time() + self._lease
        claimed = await self.store.claim(
            owner=self.owner, cas=list(self._connectors), limit=room, lease=self._lease
        )
        if not claimed:
            return 0
        self._emit(WorkerEvent(kind="claimed", count=len(claimed)))
        by_ca: dict[CAName, list[StoredOrder]] = {}
        for record in claimed:
            by_ca.setdefault(record.ca, []).append(record)
        for ca, records in by_ca.items():
            batch = _Batch(self._connectors[ca], records)
            task = asyncio.get_running_loop().create_task(
                self._poll(batch), name=f"certpoll.worker {ca} {len(records)} orders"
            )
            self._batches[task] = batch
            task.add_done_callback(self._forget)
        return len(claimed)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._batches.pop(task, None)
        if self._wake_when_idle and not self._batches:
            self._wake.set()  # a drain looks for more at once, or ends
        error = None if task.cancelled() else task.exception()
        if error is not None and self._fatal is None:
            # A refused credential (or a bug) would fail every order alike: stop the worker.
            self._fatal = error
            self.stop()

    async def _poll(self, batch: _Batch) -> None:
        """Poll one batch to its end, writing each answer with its claim's token; whatever
        is left when it stops (cancelled, lost, a refused credential) is given back."""
        connector = batch.connector
        handles = [_handle(record, connector) for record in batch.records.values()]
        try:
            async with poll_many(connector, handles, concurrency=self._concurrency) as stream:
                batch.stream = stream
                async for status in stream:
                    await self._settle(batch, status)
        finally:
            # Stopped early: the answers the stream found but had not yielded are written
            # too (an answer the CA gave is not thrown away), then the rest is given back.
            if batch.stream is not None:
                for status in batch.stream.undelivered():
                    await self._settle(batch, status)
            await self._give_back(batch)

    async def _settle(self, batch: _Batch, status: OrderStatus) -> None:
        """Write one answer of the stream with its claim's token; the order then leaves the
        batch (not before: if the write is interrupted, the order is given back)."""
        record = batch.records.get(status.order_id)
        if record is None:
            return  # lost meanwhile: its new owner writes its answer
        connector = batch.connector
        event = WorkerEvent(
            kind="still_pending",
            key=record.key,
            ca=record.ca,
            order_id=record.order_id,
            message=status.message,
        )
        try:
            if status.state is OrderState.PENDING:
                handle = batch.stream.handle(status.order_id) if batch.stream else None
                later = await self.store.reschedule(
                    record,
                    attempts=record.attempts if handle is None else handle.attempts,
                    due_in=0.0 if handle is None else _seconds_until(handle.next_poll_at),
                    last_error=None if status.last_error is None else str(status.last_error),
                    deadline_in=connector.poller.max_wait,
                )
                await self.store.release(later)
            else:
                await self.store.complete(record, status, attempts=record.attempts + 1)
                event = WorkerEvent(
                    kind="issued" if status.state is OrderState.ISSUED else "failed",
                    key=record.key,
                    ca=record.ca,
                    order_id=record.order_id,
                    message=status.message,
                )
        except LeaseLost:
            event = WorkerEvent(kind="lost", key=record.key, ca=record.ca, order_id=record.order_id)
        except TransientError as exc:
            # The store is unreachable: the answer is not written, and the order stays
            # claimed until its lease runs out; then a worker polls it again.
            logger.warning(
                "certpoll.worker_write_failed ca=%s order_id=%s: %s",
                record.ca,
                record.order_id,
                exc,
            )
            del batch.records[status.order_id]
            return
        del batch.records[status.order_id]
        self._emit(event)

    # -- leases -------------------------------------------------------------------------------

    async def _renew(self) -> None:
        """Renew every lease held; stop polling what was lost; checkpoint the rest."""
        held = [record for batch in self._batches.values() for record in batch.records.values()]
        if not held:
            return
        kept = await self.store.renew(held, lease=self._lease)
        for task, batch in list(self._batches.items()):
            lost = [record for record in batch.records.values() if record.key not in kept]
            if lost:
                # Another owner has these: stop polling them at once (no second poller);
                # the batch's task, cancelled, gives back the rest.
                for record in lost:
                    del batch.records[record.order_id or ""]
                    self._emit(
                        WorkerEvent(
                            kind="lost", key=record.key, ca=record.ca, order_id=record.order_id
                        )
                    )
                if not task.cancelling():
                    task.cancel()
            else:
                await self._checkpoint(batch)

    async def _checkpoint(self, batch: _Batch) -> None:
        """Write each held order's place in its schedule, so a crash resumes it there."""
        stream = batch.stream
        if stream is None:
            return
        for order_id, record in list(batch.records.items()):
            handle = stream.handle(order_id)
            if handle is None or handle.attempts == record.attempts:
                continue
            try:
                batch.records[order_id] = await self.store.reschedule(
                    record,
                    attempts=handle.attempts,
                    due_in=_seconds_until(handle.next_poll_at),
                    last_error=record.last_error,
                )
            except LeaseLost:
                del batch.records[order_id]
                self._emit(
                    WorkerEvent(kind="lost", key=record.key, ca=record.ca, order_id=order_id)
                )

    async def _give_back(self, batch: _Batch) -> None:
        """Checkpoint and release what the batch still holds; with the store unreachable,
        leave it to its lease (another worker takes it when the lease runs out)."""
        released = 0
        try:
            await self._checkpoint(batch)
            for record in batch.records.values():
                await self.store.release(record)
                released += 1
        except TransientError as exc:
            logger.warning("certpoll.worker_release_failed: %s; the leases will lapse", exc)
        batch.records.clear()
        if released:
            self._emit(WorkerEvent(kind="released", count=released))

    def _abandon(self) -> None:
        """Stop polling everything held (the batches then try to give their orders back)."""
        for task in self._batches:
            if not task.cancelling():  # once: a second cancel would cut its give-back short
                task.cancel()

    async def _release_all(self) -> None:
        """On the way out: stop every batch; each checkpoints and releases what it holds."""
        tasks = list(self._batches)
        self._abandon()
        if tasks:
            await asyncio.wait(tasks)

    def _emit(self, event: WorkerEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)


def _handle(record: StoredOrder, connector: Connector[Any]) -> PendingOrder:
    """The poll_many handle of a claimed record: its schedule continues where it stopped."""
    now = datetime.now(UTC)
    deadline = record.deadline or now + timedelta(seconds=connector.poller.max_wait)
    if record.order_id is None:
        raise ConfigError(f"order {record.key!r} has no order id to poll")  # never claimed
    return PendingOrder(
        ca=record.ca,
        order_id=record.order_id,
        attempts=record.attempts,
        next_poll_at=record.due_at or now,
        deadline=deadline,
    )


def _seconds_until(when: datetime) -> float:
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def summarise(counts: Mapping[StoredState, int]) -> str:
    """``pending 3, issued 10, …``: the states with their counts."""
    return ", ".join(f"{state.value} {count}" for state, count in counts.items())


# -- the two commands' bodies (``certpoll worker`` and ``certpoll orders``) -------------------


def _describe(event: WorkerEvent) -> str:
    if event.kind in ("claimed", "released"):
        return f"{event.kind} {event.count} orders"
    return f"{event.kind:<13} {event.ca} {event.order_id} (key {event.key})"


async def serve_worker(worker: Worker, *, out: IO[str], json_lines: bool) -> None:
    """Run ``worker`` until SIGTERM or SIGINT, printing each event (JSON lines or text)."""

    def show(event: WorkerEvent) -> None:
        print(event.as_json() if json_lines else _describe(event), file=out, flush=True)

    worker.on_event = show
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for number in signals:
        loop.add_signal_handler(number, worker.stop)
    try:
        await worker.run()
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
    counts = await worker.store.counts()
    if json_lines:
        print(json.dumps({"event": "stopped", "counts": _counts_json(counts)}), file=out)
    else:
        print(f"stopped; the store holds: {summarise(counts)}", file=out)


def _counts_json(counts: Mapping[StoredState, int]) -> dict[str, int]:
    return {state.value: count for state, count in counts.items()}


def _record_json(record: StoredOrder) -> dict[str, object]:
    def when(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "key": record.key,
        "ca": record.ca,
        "state": record.state.value,
        "order_id": record.order_id,
        "common_name": record.common_name,
        "attempts": record.attempts,
        "owner": record.owner,
        "lease_until": when(record.lease_until),
        "due_at": when(record.due_at),
        "last_error": record.last_error,
        "message": record.message,
        "serial": None if record.certificate is None else record.certificate.serial,
    }


async def list_orders(
    store: OrderStore, *, states: Iterable[StoredState] | None, json_out: bool, out: IO[str]
) -> None:
    """Print the store's orders by state: one JSON document, or a count line and a table."""
    counts = await store.counts()
    chosen = list(StoredState if states is None else states)
    records = await store.orders(states=chosen, limit=10_000)
    records.sort(key=lambda record: (chosen.index(record.state), record.created_at))
    if json_out:
        document = {
            "counts": _counts_json(counts),
            "orders": [_record_json(record) for record in records],
        }
        print(json.dumps(document, indent=2), file=out)
        return
    print(summarise(counts), file=out)
    for record in records:
        note = record.last_error or record.message or ""
        print(
            f"{record.state.value:<10} {record.ca:<10} {record.order_id or '-':<12} "
            f"{record.common_name:<30} attempts={record.attempts} {note}".rstrip(),
            file=out,
        )
