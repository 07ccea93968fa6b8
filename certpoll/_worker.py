"""Orders through a store: submit with an intent first, and a worker that claims and polls.

:func:`submit_order` records an intent before the POST and the CA's order id in the step
that reads its answer, so a crash never orders twice: a key already known is never sent
again, and an intent left without an order id becomes ``UNCERTAIN`` for a person to settle.

:class:`Worker` claims due orders from the store for a lease and polls each claim with
``poll_many`` over the store (a :class:`~certpoll.StoredOrderStream`: the same schedule,
deadline, gate and triage as in memory; leases renewed with each order's schedule; each
final answer written with the claim's fencing token); on :meth:`Worker.stop` it stops
claiming, and each claim checkpoints and releases what it holds. :meth:`Worker.drain` is
the same until nothing is due, with no wiring of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import signal
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import IO, Any, Final

from ._backends.store import MAX_LEASE_SECONDS, OrderStore, StoredOrder, StoredState
from ._claimed import MIN_LEASE, StoredOrderStream, WorkerEvent, owner_name, poll_budget
from ._connectors._base import Connector
from ._errors import (
    CertpollError,
    ConfigError,
    LeaseLost,
    PermanentError,
    SubmissionUncertain,
    TransientError,
)
from ._models import CAName, CertificateRequest, OrderState

__all__ = [
    "Worker",
    "list_orders",
    "request_fingerprint",
    "serve_worker",
    "submit_order",
]

logger = logging.getLogger("certpoll")

#: The most orders a worker's knobs (batch, orders held, concurrency) may name.
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
        owner=owner_name("submit"),
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
            intent, order_id=status.order_id, deadline_in=poll_budget(connector)
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


class Worker:
    """Claim due orders from ``store`` for the CAs of ``connectors`` and poll them.

    ``lease`` is how long a claim lasts unrenewed (renewed every third of it); a dead
    worker's orders are claimed by another after at most ``lease`` plus one
    ``claim_interval``. ``batch`` bounds one claim and ``max_held`` the orders held at once;
    ``concurrency`` bounds the requests in flight per claim. Each claim is polled by
    :func:`~certpoll.poll_many` over the store (a :class:`~certpoll.StoredOrderStream`).
    Run with :meth:`run`; stop with :meth:`stop` (SIGTERM in ``certpoll worker``).
    """

    #: The name this worker claims orders under (``owner``, or one made from host and pid).
    owner: str

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
        if not MIN_LEASE <= lease <= MAX_LEASE_SECONDS:
            raise ConfigError(
                f"lease must be {MIN_LEASE} to {MAX_LEASE_SECONDS} seconds, not {lease}"
            )
        if not 0 < claim_interval <= lease:
            raise ConfigError("claim_interval must be more than 0 and at most the lease")
        for name, value in (("batch", batch), ("max_held", max_held), ("concurrency", concurrency)):
            if not 1 <= value <= _MAX_HELD:
                raise ConfigError(f"{name} must be 1 to {_MAX_HELD}, not {value}")
        self.store = store
        self.owner = owner_name("worker") if owner is None else owner
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
        self._batches: dict[asyncio.Task[None], StoredOrderStream] = {}
        self._fatal: BaseException | None = None

    @property
    def held(self) -> int:
        """How many orders this worker holds now."""
        return sum(stream.held for stream in self._batches.values())

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
        self._wake_when_idle = until_idle
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    claimed = await self._claim()
                    if until_idle and not claimed and not self._batches:
                        break
                except TransientError as exc:
                    if until_idle and not self._batches:
                        raise  # a drain does not wait for the store without end
                    # Each batch stops polling before its leases may lapse; keep trying.
                    logger.warning("certpoll.worker_store_unreachable: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._claim_interval)
        finally:
            await asyncio.shield(self._release_all())
        if self._fatal is not None:
            raise self._fatal

    async def _claim(self) -> int:
        """Claim what is due and room allows, and start polling it; how many were claimed."""
        room = min(self._batch, self._max_held - self.held)
        if room <= 0:
            return 0
        # Each CA's leases are counted on its connector's clock, from before the request.
        claimed_at = {ca: connector.poller.now() for ca, connector in self._connectors.items()}
        claimed = await self.store.claim(
            owner=self.owner, cas=list(self._connectors), limit=room, lease=self._lease
        )
        if not claimed:
            return 0
        keys = tuple(record.key for record in claimed)
        self._emit(WorkerEvent(kind="claimed", count=len(claimed), keys=keys))
        by_ca: dict[CAName, list[StoredOrder]] = {}
        for record in claimed:
            by_ca.setdefault(record.ca, []).append(record)
        for ca, records in by_ca.items():
            stream = StoredOrderStream(
                self._connectors[ca],
                (),
                store=self.store,
                lease=self._lease,
                concurrency=self._concurrency,
                on_progress=None,
                max_wait=None,
                claimed=records,
                claimed_at=claimed_at[ca],
                owner=self.owner,
                on_event=self._emit,
            )
            task = asyncio.get_running_loop().create_task(
                _poll(stream), name=f"certpoll.worker {ca} {len(records)} orders"
            )
            self._batches[task] = stream
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

    async def _release_all(self) -> None:
        """On the way out: stop every batch; each writes, checkpoints and releases."""
        batches = list(self._batches.items())
        for task, _ in batches:
            task.cancel()
        if batches:
            await asyncio.wait([task for task, _ in batches])
        for _, stream in batches:
            await stream.aclose()  # a batch cancelled before it started gives back too

    def _emit(self, event: WorkerEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)


async def _poll(stream: StoredOrderStream) -> None:
    """Poll one claim to its end (its answers are written and reported as events). A lease
    lost or a store out of reach ends only this batch: its orders come back to a claim."""
    with contextlib.suppress(LeaseLost, TransientError):
        async with stream:
            async for _ in stream:
                pass


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
