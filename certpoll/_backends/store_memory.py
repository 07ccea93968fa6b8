"""The order store in this process's memory (``memory://``): for tests and one-off scripts.

Nothing survives the process; the rules (intents, leases, fencing) are the same as on disk.
Every method runs without awaiting in between, so each is one atomic step on the loop. A
claim looks at every row (no index): fine for tests and scripts, not for 100,000 orders.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable

from .._models import CAName, OrderStatus
from .store import (
    COLUMNS,
    UNCERTAIN_AFTER_CRASH,
    StoredOrder,
    StoredState,
    check_attempts,
    check_claim,
    check_intent,
    check_lease,
    check_limit,
    check_order_id,
    check_seconds,
    error_text,
    final_fields,
    not_uncertain,
    record_from_row,
    refusal,
)

__all__ = ["MemoryOrderStore"]

_Row = dict[str, object]


def _accepted(row: _Row, *, order_id: str, deadline_in: float, now: float) -> StoredOrder:
    """``row`` as an order the CA accepted: pending, due at once, polled for ``deadline_in``."""
    row.update(
        state=StoredState.PENDING.value,
        order_id=order_id,
        due_at=now,
        deadline=now + deadline_in,
        updated_at=now,
    )
    return record_from_row(row)


class MemoryOrderStore:
    """An :class:`~certpoll.OrderStore` in memory; ``clock`` gives seconds since the epoch."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = time.time if clock is None else clock
        self._rows: dict[str, _Row] = {}

    def __repr__(self) -> str:
        return f"MemoryOrderStore({len(self._rows)} orders)"

    @property
    def url(self) -> str:
        """``memory://``."""
        return "memory://"

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
        return record_from_row(row), True

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
        return _accepted(row, order_id=order_id, deadline_in=deadline_in, now=self._clock())

    async def record_uncertain(self, claimed: StoredOrder, *, error: str) -> StoredOrder:
        """See :meth:`certpoll.OrderStore.record_uncertain`."""
        row = self._held(claimed, StoredState.INTENT, "recording an uncertain submission")
        row.update(
            state=StoredState.UNCERTAIN.value,
            last_error=error_text(error),
            owner=None,
            lease_until=None,
        )
        return record_from_row(row)

    async def withdraw_intent(self, claimed: StoredOrder) -> None:
        """See :meth:`certpoll.OrderStore.withdraw_intent`."""
        self._held(claimed, StoredState.INTENT, "withdrawing the intent")
        del self._rows[claimed.key]

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
            del self._rows[key]
            return None
        return _accepted(row, order_id=order_id, deadline_in=deadline_in, now=self._clock())

    async def claim(
        self, *, owner: str, cas: Iterable[CAName], limit: int, lease: float
    ) -> list[StoredOrder]:
        """See :meth:`certpoll.OrderStore.claim`."""
        chosen = set(check_claim(owner=owner, cas=cas, limit=limit))
        lease = check_lease(lease)
        now = self._clock()
        due: list[_Row] = []
        for row in self._rows.values():
            free = row["lease_until"] is None or row["lease_until"] <= now  # type: ignore[operator]
            if row["state"] == StoredState.INTENT.value and free:
                row.update(
                    state=StoredState.UNCERTAIN.value,
                    last_error=UNCERTAIN_AFTER_CRASH,
                    owner=None,
                    lease_until=None,
                    updated_at=now,
                )
            elif (
                row["state"] == StoredState.PENDING.value
                and row["ca"] in chosen
                and free
                and row["due_at"] <= now  # type: ignore[operator]
            ):
                due.append(row)
        claimed = []
        for row in heapq.nsmallest(limit, due, key=lambda row: (row["due_at"], row["key"])):
            row.update(
                owner=owner,
                lease_until=now + lease,
                token=row["token"] + 1,  # type: ignore[operator]
                updated_at=now,
            )
            claimed.append(record_from_row(row))
        return claimed

    async def renew(self, claimed: Iterable[StoredOrder], *, lease: float) -> set[str]:
        """See :meth:`certpoll.OrderStore.renew`."""
        lease = check_lease(lease)
        now = self._clock()
        held = set()
        live = (StoredState.INTENT.value, StoredState.PENDING.value)
        for record in claimed:
            row = self._rows.get(record.key)
            if row is not None and row["token"] == record.token and row["state"] in live:
                row.update(lease_until=now + lease, updated_at=now)
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
        return record_from_row(row)

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
        return record_from_row(row)

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
        return record_from_row(row)

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
