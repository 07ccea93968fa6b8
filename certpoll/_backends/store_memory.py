"""The order store in this process's memory (``memory://``): for tests and one-off scripts.

Nothing survives the process; the rules (intents, leases, fencing) are the same as on disk.
Every method runs without awaiting in between, so each is one atomic step on the loop.

A claim never scans the rows: each CA's pending orders sit in a heap keyed by when they are
next free to claim (their due time, or their lease's end if later), and intents in a heap
by their lease's end. A change pushes a fresh entry; an entry whose time no longer matches
its row is stale and skipped when it comes up, and the heaps are rebuilt when stale
entries outnumber the rows. Claiming k orders among n stored costs O(k log n).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from .._models import CAName, OrderStatus
from .store import (
    COLUMNS,
    UNCERTAIN_AFTER_CRASH,
    Adoption,
    StoredOrder,
    StoredState,
    check_adoptions,
    check_attempts,
    check_claim,
    check_intent,
    check_lease,
    check_limit,
    check_order_id,
    check_schedules,
    check_seconds,
    error_text,
    final_fields,
    not_uncertain,
    record_from_row,
    refusal,
)

__all__ = ["MemoryOrderStore"]

_Row = dict[str, object]
_Heap = list[tuple[float, str]]


def _free_at(row: _Row) -> float | None:
    """When ``row`` may next be claimed (a pending order) or turns uncertain (an intent)."""
    lease_until: float | None = row["lease_until"]  # type: ignore[assignment]
    if row["state"] == StoredState.INTENT.value:
        return lease_until
    if row["state"] != StoredState.PENDING.value:
        return None
    due: float = row["due_at"]  # type: ignore[assignment]
    return due if lease_until is None else max(due, lease_until)


def _accepted(row: _Row, *, order_id: str, deadline_in: float, now: float) -> None:
    """``row`` as an order the CA accepted: pending, due at once, polled for ``deadline_in``."""
    row.update(
        state=StoredState.PENDING.value,
        order_id=order_id,
        due_at=now,
        deadline=now + deadline_in,
        updated_at=now,
    )


class MemoryOrderStore:
    """An :class:`~certpoll.OrderStore` in memory; ``clock`` gives seconds since the epoch."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = time.time if clock is None else clock
        self._rows: dict[str, _Row] = {}
        self._by_order_id: dict[tuple[object, object], str] = {}
        #: Per CA, (when free to claim, key) of its pending orders; intents by lease end.
        self._pending: dict[object, _Heap] = {}
        self._intents: _Heap = []
        self._entries = 0

    def __repr__(self) -> str:
        return f"MemoryOrderStore({len(self._rows)} orders)"

    @property
    def url(self) -> str:
        """``memory://``."""
        return "memory://"

    # -- the rows and their index -----------------------------------------------------------

    def _saved(self, row: _Row) -> StoredOrder:
        """Index ``row`` after a change (a fresh heap entry) and return it as a record."""
        if row["order_id"] is not None:
            self._by_order_id[row["ca"], row["order_id"]] = str(row["key"])
        free_at = _free_at(row)
        if free_at is not None:
            if row["state"] == StoredState.INTENT.value:
                heap = self._intents
            else:
                heap = self._pending.setdefault(row["ca"], [])
            heapq.heappush(heap, (free_at, str(row["key"])))
            self._entries += 1
            if self._entries > 2 * len(self._rows) + 64:
                self._rebuild()
        return record_from_row(row)

    def _rebuild(self) -> None:
        """The heaps again from the rows, without the stale entries."""
        self._pending, self._intents, self._entries = {}, [], 0
        for row in self._rows.values():
            free_at = _free_at(row)
            if free_at is not None:
                if row["state"] == StoredState.INTENT.value:
                    self._intents.append((free_at, str(row["key"])))
                else:
                    self._pending.setdefault(row["ca"], []).append((free_at, str(row["key"])))
                self._entries += 1
        heapq.heapify(self._intents)
        for heap in self._pending.values():
            heapq.heapify(heap)

    def _pop_free(self, heap: _Heap, state: StoredState, now: float) -> _Row | None:
        """The row of ``heap``'s earliest live entry if it is free at ``now`` (popped)."""
        while heap and heap[0][0] <= now:
            free_at, key = heapq.heappop(heap)
            self._entries -= 1
            row = self._rows.get(key)
            if row is not None and row["state"] == state.value and _free_at(row) == free_at:
                return row
        return None

    def _forget(self, row: _Row) -> None:
        del self._rows[str(row["key"])]
        if row["order_id"] is not None:
            del self._by_order_id[row["ca"], row["order_id"]]

    # -- the operations -------------------------------------------------------------------

    async def add_intent(
        self,
        *,
        key: str,
        ca: CAName,
        fingerprint: str,
        common_name: str,
        owner: str,
        lease: float,
    ) -> tuple[StoredOrder, bool]:
        """See :meth:`certpoll.OrderStore.add_intent`."""
        check_intent(key=key, ca=ca, fingerprint=fingerprint, common_name=common_name, owner=owner)
        lease = check_lease(lease)
        if key in self._rows:
            return record_from_row(self._rows[key]), False
        now = self._clock()
        row: _Row = dict.fromkeys(COLUMNS)
        row.update(
            key=key,
            ca=ca,
            fingerprint=fingerprint,
            common_name=common_name,
            state=StoredState.INTENT.value,
            attempts=0,
            token=1,
            owner=owner,
            lease_until=now + lease,
            created_at=now,
            updated_at=now,
        )
        self._rows[key] = row
        return self._saved(row), True

    def _held(self, claimed: StoredOrder, state: StoredState, doing: str) -> _Row:
        row = self._rows.get(claimed.key)
        if row is None or row["token"] != claimed.token or row["state"] != state.value:
            current = None if row is None else record_from_row(row)
            raise refusal(claimed, current, state, doing)
        row["updated_at"] = self._clock()
        return row

    async def record_submitted(
        self, claimed: StoredOrder, *, order_id: str, deadline_in: float
    ) -> StoredOrder:
        """See :meth:`certpoll.OrderStore.record_submitted`."""
        check_order_id(order_id)
        deadline_in = check_seconds(deadline_in, "deadline_in")
        row = self._held(claimed, StoredState.INTENT, "recording the order id")
        _accepted(row, order_id=order_id, deadline_in=deadline_in, now=self._clock())
        return self._saved(row)

    async def record_uncertain(self, claimed: StoredOrder, *, error: str) -> StoredOrder:
        """See :meth:`certpoll.OrderStore.record_uncertain`."""
        row = self._held(claimed, StoredState.INTENT, "recording an uncertain submission")
        row.update(
            state=StoredState.UNCERTAIN.value,
            last_error=error_text(error),
            owner=None,
            lease_until=None,
        )
        return self._saved(row)

    async def withdraw_intent(self, claimed: StoredOrder) -> None:
        """See :meth:`certpoll.OrderStore.withdraw_intent`."""
        self._forget(self._held(claimed, StoredState.INTENT, "withdrawing the intent"))

    async def resolve(
        self, key: str, *, order_id: str | None, deadline_in: float
    ) -> StoredOrder | None:
        """See :meth:`certpoll.OrderStore.resolve`."""
        deadline_in = check_seconds(deadline_in, "deadline_in")
        if order_id is not None:
            check_order_id(order_id)
        row = self._rows.get(key)
        if row is None or row["state"] != StoredState.UNCERTAIN.value:
            raise not_uncertain(key, None if row is None else StoredState(str(row["state"])))
        if order_id is None:
            self._forget(row)
            return None
        _accepted(row, order_id=order_id, deadline_in=deadline_in, now=self._clock())
        return self._saved(row)

    def _take(self, row: _Row, *, owner: str, until: float, now: float) -> StoredOrder:
        row.update(owner=owner, lease_until=until, token=row["token"] + 1, updated_at=now)  # type: ignore[operator]
        return self._saved(row)

    async def claim(
        self, *, owner: str, cas: Iterable[CAName], limit: int, lease: float
    ) -> list[StoredOrder]:
        """See :meth:`certpoll.OrderStore.claim`."""
        chosen = check_claim(owner=owner, cas=cas, limit=limit)
        lease = check_lease(lease)
        now = self._clock()
        while (intent := self._pop_free(self._intents, StoredState.INTENT, now)) is not None:
            intent.update(
                state=StoredState.UNCERTAIN.value,
                last_error=UNCERTAIN_AFTER_CRASH,
                owner=None,
                lease_until=None,
                updated_at=now,
            )
        heaps = [self._pending[ca] for ca in chosen if ca in self._pending]
        claimed: list[StoredOrder] = []
        while len(claimed) < limit:
            # The CA whose earliest entry is earliest: k claims cost O(k log n).
            live = [heap for heap in heaps if heap and heap[0][0] <= now]
            if not live:
                break
            row = self._pop_free(min(live, key=lambda heap: heap[0]), StoredState.PENDING, now)
            if row is not None:
                claimed.append(self._take(row, owner=owner, until=now + lease, now=now))
        claimed.sort(key=lambda record: (record.due_at, record.key))
        return claimed

    async def adopt(
        self, orders: Sequence[Adoption], *, owner: str, lease: float
    ) -> list[StoredOrder]:
        """See :meth:`certpoll.OrderStore.adopt`."""
        wanted = check_adoptions(orders)
        check_claim(owner=owner, cas={order.ca for order in wanted} or {"digicert"}, limit=1)
        lease = check_lease(lease)
        now = self._clock()
        found = []
        for order in wanted:
            key = self._by_order_id.get((order.ca, order.order_id))
            if key is None and order.key not in self._rows:
                key = order.key
                row: _Row = dict.fromkeys(COLUMNS)
                row.update(
                    key=key,
                    ca=order.ca,
                    fingerprint="",
                    common_name="",
                    state=StoredState.PENDING.value,
                    order_id=order.order_id,
                    attempts=order.attempts,
                    token=0,
                    due_at=now + order.due_in,
                    deadline=now + order.deadline_in,
                    created_at=now,
                    updated_at=now,
                )
                self._rows[key] = row
            if key is None:
                continue  # its key holds another order: not this one
            row = self._rows[key]
            lease_until: float = row["lease_until"] or -math.inf  # type: ignore[assignment]
            if row["state"] == StoredState.PENDING.value and lease_until <= now:
                found.append(self._take(row, owner=owner, until=now + lease, now=now))
            else:
                found.append(record_from_row(row))
        return found

    async def renew(
        self,
        claimed: Iterable[StoredOrder],
        *,
        lease: float,
        schedules: Mapping[str, tuple[int, float]] | None = None,
    ) -> set[str]:
        """See :meth:`certpoll.OrderStore.renew`."""
        lease = check_lease(lease)
        progress = check_schedules(schedules)
        now = self._clock()
        held = set()
        live = (StoredState.INTENT.value, StoredState.PENDING.value)
        for record in claimed:
            row = self._rows.get(record.key)
            if row is not None and row["token"] == record.token and row["state"] in live:
                row.update(lease_until=now + lease, updated_at=now)
                if record.key in progress:
                    attempts, due_in = progress[record.key]
                    row.update(attempts=attempts, due_at=now + due_in)
                self._saved(row)
                held.add(record.key)
        return held

    async def reschedule(
        self,
        claimed: StoredOrder,
        *,
        attempts: int,
        due_in: float,
        last_error: str | None,
        deadline_in: float | None = None,
    ) -> StoredOrder:
        """See :meth:`certpoll.OrderStore.reschedule`."""
        check_attempts(attempts)
        due_in = check_seconds(due_in, "due_in")
        if deadline_in is not None:
            deadline_in = check_seconds(deadline_in, "deadline_in")
        row = self._held(claimed, StoredState.PENDING, "rescheduling")
        now = self._clock()
        row.update(attempts=attempts, due_at=now + due_in, last_error=error_text(last_error))
        if deadline_in is not None:
            row["deadline"] = now + deadline_in
        return self._saved(row)

    async def complete(
        self, claimed: StoredOrder, status: OrderStatus, *, attempts: int
    ) -> StoredOrder:
        """See :meth:`certpoll.OrderStore.complete`."""
        state, message, last_error, certificate = final_fields(status)
        check_attempts(attempts)
        row = self._held(claimed, StoredState.PENDING, "recording the final answer")
        row.update(
            state=state.value,
            attempts=attempts,
            message=message,
            last_error=last_error,
            certificate=certificate,
            owner=None,
            lease_until=None,
            due_at=None,
        )
        return self._saved(row)

    async def release(self, claimed: StoredOrder) -> StoredOrder | None:
        """See :meth:`certpoll.OrderStore.release`."""
        row = self._rows.get(claimed.key)
        if (
            row is None
            or row["token"] != claimed.token
            or row["state"] != StoredState.PENDING.value
        ):
            return None
        row.update(owner=None, lease_until=None, updated_at=self._clock())
        return self._saved(row)

    async def get(self, key: str) -> StoredOrder | None:
        """See :meth:`certpoll.OrderStore.get`."""
        row = self._rows.get(key)
        return None if row is None else record_from_row(row)

    async def orders(
        self,
        *,
        states: Iterable[StoredState] | None = None,
        ca: CAName | None = None,
        limit: int = 1000,
    ) -> list[StoredOrder]:
        """See :meth:`certpoll.OrderStore.orders`."""
        limit = check_limit(limit)
        wanted = {StoredState(s).value for s in (StoredState if states is None else states)}
        rows = [
            row
            for row in self._rows.values()
            if row["state"] in wanted and (ca is None or row["ca"] == ca)
        ]
        rows.sort(key=lambda row: (row["created_at"], row["key"]))
        return [record_from_row(row) for row in rows[:limit]]

    async def counts(self) -> dict[StoredState, int]:
        """See :meth:`certpoll.OrderStore.counts`."""
        found = dict.fromkeys(StoredState, 0)
        for row in self._rows.values():
            found[StoredState(str(row["state"]))] += 1
        return found

    async def aclose(self) -> None:
        """Nothing to close."""
