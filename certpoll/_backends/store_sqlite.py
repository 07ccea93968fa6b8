"""The order store in a SQLite file (``sqlite:///path``): several processes on one host.

The file is in WAL mode (``synchronous=NORMAL``: a commit appends to the log without an
fsync; the log's checkpoints sync), so readers never wait for the writer. Every statement
the store runs is atomic and fenced on its own (a claim is one ``UPDATE … WHERE key IN
(SELECT …)``), and a writing statement takes the file's write lock before it reads, so two
processes never take one order. Migrations run in one ``BEGIN IMMEDIATE`` transaction.

A statement first runs at once, on the event loop, on a connection that never waits for
a lock: most take well under a millisecond, and a trip to another thread for each would
cost more than the statement (a store's cost per poll attempt is mostly that trip). When
another process holds the write lock, the statement runs again on the store's own thread,
which waits up to :data:`BUSY_TIMEOUT_SECONDS` for the lock (then a
:class:`~certpoll.TransientError`): waiting never blocks the event loop.

Leases and due times use this host's wall clock (or the ``clock`` given, in tests), which
every process on one host shares.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Final, TypeVar

from .._errors import TransientError
from .sqlite import busy, open_wal
from .store_sql import Params, SQLOrderStore
from .urls import BackendURL

__all__ = ["BUSY_TIMEOUT_SECONDS", "SQLiteOrderStore"]

#: How long a process waits for another one's write to finish before giving up.
BUSY_TIMEOUT_SECONDS: Final = 10.0

T = TypeVar("T")


class _SQLiteDatabase:
    """Two connections to one file: one on the loop that never waits, one on a thread of
    its own that waits for the write lock; one operation at a time."""

    claim_lock = ""

    def __init__(self, url: BackendURL, clock: Callable[[], float]) -> None:
        assert url.path is not None  # every sqlite URL names a file
        self._path = url.path
        self._shown = url.redacted
        self._clock = clock
        self._waiting: sqlite3.Connection | None = None
        self._at_once: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="certpoll-store-sqlite")
        self._lock: asyncio.Lock | None = None

    def _open(self, timeout: float) -> sqlite3.Connection:
        # Autocommit (migrations BEGIN and COMMIT explicitly); usable from the store's thread.
        return open_wal(
            self._path, timeout=timeout, setup=["PRAGMA synchronous=NORMAL"], row_factory=True
        )

    def _connect(self) -> sqlite3.Connection:
        """The connection that waits for the lock (on the store's thread only)."""
        if self._waiting is None:
            self._waiting = self._open(BUSY_TIMEOUT_SECONDS)
        return self._waiting

    def _failed(self, exc: sqlite3.Error) -> TransientError:
        return TransientError(
            f"the order store at {self._shown} failed: {type(exc).__name__}: {exc}"
        )

    async def _run(self, work: Callable[[], T]) -> T:
        """``work`` on the store's thread (with the connection that waits)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, work)
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` (one statement) at once on the loop; on the store's thread if the file
        is busy."""
        try:
            if self._at_once is None:
                self._at_once = self._open(0.0)
            return work(self._at_once)
        except sqlite3.Error as exc:
            if not busy(exc):
                raise self._failed(exc) from exc
        return await self._run(lambda: work(self._connect()))

    @asynccontextmanager
    async def transaction(self, *, migrating: bool = False) -> AsyncIterator[_SQLiteSession]:
        # migrating needs nothing more: BEGIN IMMEDIATE already excludes every other writer.
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not migrating:
                # Each statement of an operation is fenced in its own WHERE clause, so each
                # commits on its own.
                yield _SQLiteSession(self, migrating=False)
                return
            try:
                # Inside the try: if cancelled while waiting for the lock, still rolled back.
                await self._run(lambda: self._connect().execute("BEGIN IMMEDIATE"))
                yield _SQLiteSession(self, migrating=True)
            except BaseException:
                await asyncio.shield(self._run(self._rollback))
                raise
            await asyncio.shield(self._run(self._commit))

    def _commit(self) -> None:
        self._connect().execute("COMMIT")

    def _rollback(self) -> None:
        connection = self._connect()
        if connection.in_transaction:
            connection.execute("ROLLBACK")

    async def close(self) -> None:
        at_once, self._at_once = self._at_once, None
        if at_once is not None:
            at_once.close()
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            await self._run(waiting.close)
        self._thread.shutdown(wait=True)


class _SQLiteSession:
    def __init__(self, database: _SQLiteDatabase, *, migrating: bool) -> None:
        self._db = database
        self._migrating = migrating

    async def _statement(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._migrating:  # inside the waiting connection's transaction
            return await self._db._run(lambda: work(self._db._connect()))
        return await self._db.run(work)

    async def fetch(self, sql: str, params: Params) -> list[Mapping[str, object]]:
        def run(connection: sqlite3.Connection) -> list[Mapping[str, object]]:
            cursor = connection.execute(sql, dict(params))
            return [dict(zip(row.keys(), tuple(row), strict=True)) for row in cursor.fetchall()]

        return await self._statement(run)

    async def execute(self, sql: str, params: Params) -> None:
        await self._statement(lambda connection: connection.execute(sql, dict(params)).close())

    async def now(self) -> float:
        return self._db._clock()


class SQLiteOrderStore(SQLOrderStore):
    """An :class:`~certpoll.OrderStore` in a SQLite file."""

    def __init__(self, url: BackendURL, *, clock: Callable[[], float] | None = None) -> None:
        super().__init__(
            _SQLiteDatabase(url, time.time if clock is None else clock), url=url.redacted
        )
