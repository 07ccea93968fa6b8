# ruff: noqa: S608 -- SQL text is built from this module's constants; values are bound
"""The order store's rules in SQL, once, for SQLite and PostgreSQL alike.

Every operation is a few statements written in the SQL both databases speak (``INSERT … ON
CONFLICT DO NOTHING``, ``UPDATE … RETURNING``), each atomic and fenced on its own, so the
backends run them without a surrounding transaction (schema migrations excepted); a backend
supplies only a :class:`Database`: how to run statements, how to bind ``:name`` parameters,
what time it is, and how to lock the rows a claim takes (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so
concurrent claimers pass each other by; SQLite: nothing, ``BEGIN IMMEDIATE`` already lets one
writer in at a time).

Fencing is in the ``WHERE`` clause of every write: ``key = :key AND token = :token AND
state = :state``. A write that changes no row is refused, and one more look at the row says
why (:func:`.store.refusal`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final, Protocol

from .._models import CAName, OrderStatus
from .store import (
    COLUMNS,
    SCHEMA_VERSION,
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
    newer_schema_error,
    not_uncertain,
    record_from_row,
    refusal,
)

__all__ = ["MIGRATIONS", "Database", "Session", "SQLOrderStore"]

Params = Mapping[str, object]

#: The statements that bring a store from version N to N + 1, for N = 0, 1, ...
#: Types are spelled so that both databases read them the same way (SQLite: REAL and
#: INTEGER affinity). Times are seconds since the Unix epoch.
MIGRATIONS: Final[Sequence[Sequence[str]]] = (
    (
        """
        CREATE TABLE certpoll_orders (
            key TEXT PRIMARY KEY,
            ca TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            common_name TEXT NOT NULL,
            state TEXT NOT NULL,
            order_id TEXT,
            attempts INTEGER NOT NULL,
            token BIGINT NOT NULL,
            owner TEXT,
            lease_until DOUBLE PRECISION,
            due_at DOUBLE PRECISION,
            deadline DOUBLE PRECISION,
            last_error TEXT,
            message TEXT,
            certificate TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )
        """,
        "CREATE INDEX certpoll_orders_due ON certpoll_orders (state, due_at)",
        "CREATE INDEX certpoll_orders_created ON certpoll_orders (created_at)",
    ),
    # An order is found by its CA's order id (adopt), and is stored once under it.
    ("CREATE UNIQUE INDEX certpoll_orders_order_id ON certpoll_orders (ca, order_id)",),
)
assert len(MIGRATIONS) == SCHEMA_VERSION  # a migration per version, always

_ALL: Final = ", ".join(COLUMNS)
#: Rows named per statement (at most ten bound parameters each, well under every limit).
_CHUNK: Final = 1000
_VERSION_TABLE: Final = "certpoll_store_version"


class Session(Protocol):
    """Where an operation's statements run (see :meth:`Database.transaction`)."""

    async def fetch(self, sql: str, params: Params) -> list[Mapping[str, object]]:
        """Run ``sql`` (``:name`` parameters) and return its rows."""
        ...

    async def execute(self, sql: str, params: Params) -> None:
        """Run ``sql`` for its effect."""
        ...

    async def now(self) -> float:
        """The store's clock: seconds since the epoch."""
        ...


class Database(Protocol):
    """What a SQL backend supplies."""

    #: Appended to the claim's row selection to lock the chosen rows.
    claim_lock: str

    def transaction(self, *, migrating: bool = False) -> AbstractAsyncContextManager[Session]:
        """A session whose statements each commit on their own; with ``migrating``, one
        transaction (committed on success, rolled back on any exception) that also holds
        the one lock serialising schema migrations."""
        ...

    async def close(self) -> None:
        """Close the connections."""
        ...


def _placeholders(prefix: str, values: Sequence[object]) -> tuple[str, dict[str, object]]:
    names = [f"{prefix}{index}" for index in range(len(values))]
    return ", ".join(f":{name}" for name in names), dict(zip(names, values, strict=True))


class SQLOrderStore:
    """An :class:`~certpoll.OrderStore` over a SQL :class:`Database`."""

    def __init__(self, database: Database, *, url: str) -> None:
        self._db = database
        self._url = url
        self._ready = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url!r})"

    @property
    def url(self) -> str:
        """The store's URL without its password."""
        return self._url

    # -- the schema ---------------------------------------------------------------------

    async def _session(self) -> AbstractAsyncContextManager[Session]:
        if not self._ready:
            await self.migrate()
        return self._db.transaction()

    async def migrate(self) -> int:
        """Create or migrate the schema to this code's version; returns the version found.

        A store at a newer version raises :class:`~certpoll.ConfigError` and is left alone.
        """
        async with self._db.transaction(migrating=True) as session:
            await session.execute(
                f"CREATE TABLE IF NOT EXISTS {_VERSION_TABLE} (version INTEGER NOT NULL)", {}
            )
            rows = await session.fetch(f"SELECT version FROM {_VERSION_TABLE}", {})
            found = int(rows[0]["version"]) if rows else 0  # type: ignore[call-overload]
            if found > SCHEMA_VERSION:
                raise newer_schema_error(found, self._url)
            for statements in MIGRATIONS[found:]:
                for statement in statements:
                    await session.execute(statement, {})
            if not rows:
                await session.execute(
                    f"INSERT INTO {_VERSION_TABLE} (version) VALUES (:version)",
                    {"version": SCHEMA_VERSION},
                )
            elif found < SCHEMA_VERSION:
                await session.execute(
                    f"UPDATE {_VERSION_TABLE} SET version = :version", {"version": SCHEMA_VERSION}
                )
        self._ready = True
        return found

    # -- writes that need a claim -----------------------------------------------------------

    async def _write(
        self,
        claimed: StoredOrder,
        state: StoredState,
        doing: str,
        assignments: str,
        params: Params,
        later: Mapping[str, float] | None = None,
    ) -> StoredOrder:
        """``UPDATE … SET assignments`` on the row ``claimed`` still holds in ``state``.

        ``later`` are times given as seconds from now, bound as times on the store's clock.
        """
        async with await self._session() as session:
            now = await session.now()
            times = {name: now + seconds for name, seconds in (later or {}).items()}
            rows = await session.fetch(
                f"UPDATE certpoll_orders SET {assignments}, updated_at = :now "
                f"WHERE key = :key AND token = :token AND state = :state RETURNING {_ALL}",
                {
                    **params,
                    **times,
                    "now": now,
                    "key": claimed.key,
                    "token": claimed.token,
                    "state": state.value,
                },
            )
            if rows:
                return record_from_row(rows[0])
            current = await self._get(session, claimed.key)
        raise refusal(claimed, current, state, doing)

    async def record_submitted(
        self, claimed: StoredOrder, *, order_id: str, deadline_in: float
    ) -> StoredOrder:
        """See :meth:`certpoll.OrderStore.record_submitted`."""
        return await self._write(
            claimed,
            StoredState.INTENT,
            "recording the order id",
            "state = :pending, order_id = :order_id, due_at = :now, deadline = :deadline",
            {"pending": StoredState.PENDING.value, "order_id": check_order_id(order_id)},
            {"deadline": check_seconds(deadline_in, "deadline_in")},
        )

    async def record_uncertain(self, claimed: StoredOrder, *, error: str) -> StoredOrder:
        """See :meth:`certpoll.OrderStore.record_uncertain`."""
        return await self._write(
            claimed,
            StoredState.INTENT,
            "recording an uncertain submission",
            "state = :uncertain, last_error = :error, owner = NULL, lease_until = NULL",
            {"uncertain": StoredState.UNCERTAIN.value, "error": error_text(error)},
        )

    async def withdraw_intent(self, claimed: StoredOrder) -> None:
        """See :meth:`certpoll.OrderStore.withdraw_intent`."""
        async with await self._session() as session:
            rows = await session.fetch(
                "DELETE FROM certpoll_orders WHERE key = :key AND token = :token "
                "AND state = :state RETURNING key",
                {"key": claimed.key, "token": claimed.token, "state": StoredState.INTENT.value},
            )
            if rows:
                return
            current = await self._get(session, claimed.key)
        raise refusal(claimed, current, StoredState.INTENT, "withdrawing the intent")

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
        params = {
            "attempts": check_attempts(attempts),
            "error": error_text(last_error),
        }
        later = {"due_at": check_seconds(due_in, "due_in")}
        assignments = "attempts = :attempts, due_at = :due_at, last_error = :error"
        if deadline_in is not None:
            later["deadline"] = check_seconds(deadline_in, "deadline_in")
            assignments += ", deadline = :deadline"
        return await self._write(
            claimed, StoredState.PENDING, "rescheduling", assignments, params, later
        )

    async def complete(
        self, claimed: StoredOrder, status: OrderStatus, *, attempts: int
    ) -> StoredOrder:
        """See :meth:`certpoll.OrderStore.complete`."""
        state, message, last_error, certificate = final_fields(status)
        return await self._write(
            claimed,
            StoredState.PENDING,
            "recording the final answer",
            "state = :final, attempts = :attempts, message = :message, last_error = :error, "
            "certificate = :certificate, owner = NULL, lease_until = NULL, due_at = NULL",
            {
                "final": state.value,
                "attempts": check_attempts(attempts),
                "message": message,
                "error": last_error,
                "certificate": certificate,
            },
        )

    async def release(self, claimed: StoredOrder) -> StoredOrder | None:
        """See :meth:`certpoll.OrderStore.release`."""
        async with await self._session() as session:
            rows = await session.fetch(
                "UPDATE certpoll_orders SET owner = NULL, lease_until = NULL, updated_at = :now "
                f"WHERE key = :key AND token = :token AND state = :state RETURNING {_ALL}",
                {
                    "now": await session.now(),
                    "key": claimed.key,
                    "token": claimed.token,
                    "state": StoredState.PENDING.value,
                },
            )
        return record_from_row(rows[0]) if rows else None

    # -- intents, claims and leases ---------------------------------------------------------

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
        async with await self._session() as session:
            now = await session.now()
            rows = await session.fetch(
                "INSERT INTO certpoll_orders (key, ca, fingerprint, common_name, state, "
                "attempts, token, owner, lease_until, created_at, updated_at) VALUES "
                "(:key, :ca, :fingerprint, :common_name, :state, 0, 1, :owner, :until, "
                f":now, :now) ON CONFLICT (key) DO NOTHING RETURNING {_ALL}",
                {
                    "key": key,
                    "ca": ca,
                    "fingerprint": fingerprint,
                    "common_name": common_name,
                    "state": StoredState.INTENT.value,
                    "owner": owner,
                    "until": now + lease,
                    "now": now,
                },
            )
            if rows:
                return record_from_row(rows[0]), True
            existing = await self._get(session, key)
        assert existing is not None  # only its owner deletes an intent
        return existing, False

    async def resolve(
        self, key: str, *, order_id: str | None, deadline_in: float
    ) -> StoredOrder | None:
        """See :meth:`certpoll.OrderStore.resolve`."""
        deadline_in = check_seconds(deadline_in, "deadline_in")
        uncertain = {"key": key, "uncertain": StoredState.UNCERTAIN.value}
        async with await self._session() as session:
            if order_id is None:
                rows = await session.fetch(
                    "DELETE FROM certpoll_orders WHERE key = :key AND state = :uncertain "
                    "RETURNING key",
                    uncertain,
                )
            else:
                now = await session.now()
                rows = await session.fetch(
                    "UPDATE certpoll_orders SET state = :pending, order_id = :order_id, "
                    "due_at = :now, deadline = :deadline, updated_at = :now "
                    f"WHERE key = :key AND state = :uncertain RETURNING {_ALL}",
                    {
                        **uncertain,
                        "pending": StoredState.PENDING.value,
                        "order_id": check_order_id(order_id),
                        "now": now,
                        "deadline": now + deadline_in,
                    },
                )
            if rows:
                return None if order_id is None else record_from_row(rows[0])
            current = await self._get(session, key)
        raise not_uncertain(key, None if current is None else current.state)

    async def claim(
        self, *, owner: str, cas: Iterable[CAName], limit: int, lease: float
    ) -> list[StoredOrder]:
        """See :meth:`certpoll.OrderStore.claim`."""
        chosen = check_claim(owner=owner, cas=cas, limit=limit)
        lease = check_lease(lease)
        in_cas, ca_params = _placeholders("ca", chosen)
        async with await self._session() as session:
            now = await session.now()
            await session.execute(
                "UPDATE certpoll_orders SET state = :uncertain, last_error = :why, "
                "owner = NULL, lease_until = NULL, updated_at = :now WHERE key IN ("
                "SELECT key FROM certpoll_orders WHERE state = :intent AND lease_until <= :now"
                f"{self._db.claim_lock})",
                {
                    "uncertain": StoredState.UNCERTAIN.value,
                    "why": UNCERTAIN_AFTER_CRASH,
                    "intent": StoredState.INTENT.value,
                    "now": now,
                },
            )
            rows = await session.fetch(
                "UPDATE certpoll_orders SET owner = :owner, lease_until = :until, "
                "token = token + 1, updated_at = :now WHERE key IN ("
                "SELECT key FROM certpoll_orders WHERE state = :pending "
                f"AND ca IN ({in_cas}) AND due_at <= :now "
                "AND (lease_until IS NULL OR lease_until <= :now) "
                f"ORDER BY due_at LIMIT :limit{self._db.claim_lock}) RETURNING {_ALL}",
                {
                    **ca_params,
                    "owner": owner,
                    "until": now + lease,
                    "now": now,
                    "pending": StoredState.PENDING.value,
                    "limit": limit,
                },
            )
        claimed = [record_from_row(row) for row in rows]
        claimed.sort(key=lambda record: (record.due_at, record.key))
        return claimed

    async def adopt(
        self, orders: Sequence[Adoption], *, owner: str, lease: float
    ) -> list[StoredOrder]:
        """See :meth:`certpoll.OrderStore.adopt`."""
        wanted = check_adoptions(orders)
        check_claim(owner=owner, cas={order.ca for order in wanted} or {"digicert"}, limit=1)
        lease = check_lease(lease)
        found: dict[tuple[str, str], StoredOrder] = {}
        async with await self._session() as session:
            now = await session.now()
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                found.update(await self._adopt(session, chunk, owner=owner, now=now, lease=lease))
        named = ((order.ca, order.order_id) for order in wanted)
        return [found[name] for name in named if name in found]

    async def _adopt(
        self, session: Session, chunk: Sequence[Adoption], *, owner: str, now: float, lease: float
    ) -> dict[tuple[str, str], StoredOrder]:
        params: dict[str, object] = {
            "owner": owner,
            "until": now + lease,
            "now": now,
            "pending": StoredState.PENDING.value,
        }
        rows, named = [], []
        for i, order in enumerate(chunk):
            rows.append(
                f"(:k{i}, :c{i}, '', '', :pending, :o{i}, :a{i}, 0, :d{i}, :e{i}, :now, :now)"
            )
            named.append(f"(:c{i}, :o{i})")
            params |= {f"k{i}": order.key, f"c{i}": order.ca, f"o{i}": order.order_id}
            params |= {f"a{i}": order.attempts, f"d{i}": now + order.due_in}
            params[f"e{i}"] = now + order.deadline_in
        pairs = ", ".join(named)
        # A row for an order id already stored (under any key) is not added again.
        await session.execute(
            "INSERT INTO certpoll_orders (key, ca, fingerprint, common_name, state, order_id, "
            "attempts, token, due_at, deadline, created_at, updated_at) VALUES "
            f"{', '.join(rows)} ON CONFLICT DO NOTHING",
            params,
        )
        await session.execute(
            "UPDATE certpoll_orders SET owner = :owner, lease_until = :until, "
            "token = token + 1, updated_at = :now WHERE key IN ("
            f"SELECT key FROM certpoll_orders WHERE (ca, order_id) IN (VALUES {pairs}) "
            "AND state = :pending AND (lease_until IS NULL OR lease_until <= :now)"
            f"{self._db.claim_lock})",
            params,
        )
        stored = await session.fetch(
            f"SELECT {_ALL} FROM certpoll_orders WHERE (ca, order_id) IN (VALUES {pairs})",
            params,
        )
        records = (record_from_row(row) for row in stored)
        return {(record.ca, record.order_id or ""): record for record in records}

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
        held: set[str] = set()
        records = list(claimed)
        if not records:
            return held
        async with await self._session() as session:
            now = await session.now()
            for start in range(0, len(records), _CHUNK):
                chunk = records[start : start + _CHUNK]
                rows = ", ".join(
                    f"(:k{i}, CAST(:t{i} AS BIGINT), CAST(:a{i} AS INTEGER), "
                    f"CAST(:d{i} AS DOUBLE PRECISION))"
                    for i in range(len(chunk))
                )
                params: dict[str, object] = {
                    "until": now + lease,
                    "now": now,
                    "intent": StoredState.INTENT.value,
                    "pending": StoredState.PENDING.value,
                }
                for i, record in enumerate(chunk):
                    attempts, due_in = progress.get(record.key, (None, None))
                    params |= {f"k{i}": record.key, f"t{i}": record.token, f"a{i}": attempts}
                    params[f"d{i}"] = None if due_in is None else now + due_in
                # One statement per chunk: the leases, and where each schedule stands.
                found = await session.fetch(
                    "UPDATE certpoll_orders SET lease_until = :until, updated_at = :now, "
                    "attempts = COALESCE(v.column3, attempts), "
                    "due_at = COALESCE(v.column4, due_at) "
                    f"FROM (VALUES {rows}) AS v WHERE key = v.column1 AND token = v.column2 "
                    "AND state IN (:intent, :pending) RETURNING key",
                    params,
                )
                held.update(str(row["key"]) for row in found)
        return held

    # -- reading ----------------------------------------------------------------------------

    @staticmethod
    async def _get(session: Session, key: str) -> StoredOrder | None:
        rows = await session.fetch(
            f"SELECT {_ALL} FROM certpoll_orders WHERE key = :key", {"key": key}
        )
        return record_from_row(rows[0]) if rows else None

    async def get(self, key: str) -> StoredOrder | None:
        """See :meth:`certpoll.OrderStore.get`."""
        async with await self._session() as session:
            return await self._get(session, key)

    async def orders(
        self,
        *,
        states: Iterable[StoredState] | None = None,
        ca: CAName | None = None,
        limit: int = 1000,
    ) -> list[StoredOrder]:
        """See :meth:`certpoll.OrderStore.orders`."""
        limit = check_limit(limit)
        wanted = [StoredState(s).value for s in (StoredState if states is None else states)]
        if not wanted:
            return []
        in_states, params = _placeholders("state", wanted)
        where = f"state IN ({in_states})"
        if ca is not None:
            where += " AND ca = :ca"
            params["ca"] = ca
        async with await self._session() as session:
            rows = await session.fetch(
                f"SELECT {_ALL} FROM certpoll_orders WHERE {where} "
                "ORDER BY created_at, key LIMIT :limit",
                {**params, "limit": limit},
            )
        return [record_from_row(row) for row in rows]

    async def counts(self) -> dict[StoredState, int]:
        """See :meth:`certpoll.OrderStore.counts`."""
        async with await self._session() as session:
            rows = await session.fetch(
                "SELECT state, count(*) AS n FROM certpoll_orders GROUP BY state", {}
            )
        found = dict.fromkeys(StoredState, 0)
        for row in rows:
            found[StoredState(str(row["state"]))] = int(row["n"])  # type: ignore[call-overload]
        return found

    async def aclose(self) -> None:
        """Close the connections; the orders stay."""
        await self._db.close()
