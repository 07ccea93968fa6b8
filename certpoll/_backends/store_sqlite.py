"""The order store in a SQLite file (``sqlite:///path``): several processes on one host.

The file is in WAL mode, so readers never wait for the writer. Every statement the store
runs is atomic and fenced on its own (a claim is one ``UPDATE … WHERE key IN (SELECT …)``),
and a writing statement takes the file's write lock before it reads, so two processes
never take one order (a process that finds the lock taken waits up to
:data:`BUSY_TIMEOUT_SECONDS`, then gets a :class:`~certpoll.TransientError`). Migrations
run in one ``BEGIN IMMEDIATE`` transaction. The connection lives on a thread of its own: no
call blocks the event loop.

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
from .store_sql import Params, SQLOrderStore
from .urls import BackendURL

__all__ = ["BUSY_TIMEOUT_SECONDS", "SQLiteOrderStore"]

#: How long a process waits for another one's write to finish before giving up.
BUSY_TIMEOUT_SECONDS: Final = 10.0

T = TypeVar("T")


class _SQLiteDatabase:
    """One connection on one thread; one operation at a time."""

    claim_lock = ""

    def __init__(self, url: BackendURL, clock: Callable[[], float]) -> None:
        assert url.path is not None  # every sqlite URL names a file
        self._path = url.path
        self._shown = url.redacted
        self._clock = clock
        self._connection: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="certpoll-store-sqlite")
        self._lock: asyncio.Lock | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self._path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,  # autocommit; migrations BEGIN and COMMIT explicitly
                check_same_thread=False,  # one thread uses it, but not the one that made it
            )
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._connection = connection
        return self._connection

    async def _run(self, work: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, work)
        except sqlite3.Error as exc:
            raise TransientError(
                f"the order store at {self._shown} failed: {type(exc).__name__}: {exc}"
            ) from exc

    @asynccontextmanager
    async def transaction(self, *, migrating: bool = False) -> AsyncIterator[_SQLiteSession]:
        # migrating needs nothing more: BEGIN IMMEDIATE already excludes every other writer.
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not migrating:
                # Each statement of an operation is fenced in its own WHERE clause, so each
                # commits on its own: one trip to the store's thread per statement.
                yield _SQLiteSession(self)
                return
            try:
                # Inside the try: if cancelled while waiting for the lock, still rolled back.
                await self._run(lambda: self._connect().execute("BEGIN IMMEDIATE"))
                yield _SQLiteSession(self)
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
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._run(connection.close)
        self._thread.shutdown(wait=True)


class _SQLiteSession:
    def __init__(self, database: _SQLiteDatabase) -> None:
        self._db = database

    async def fetch(self, sql: str, params: Params) -> list[Mapping[str, object]]:
        def run() -> list[Mapping[str, object]]:
            cursor = self._db._connect().execute(sql, dict(params))
            return [dict(zip(row.keys(), tuple(row), strict=True)) for row in cursor.fetchall()]

        return await self._db._run(run)

    async def execute(self, sql: str, params: Params) -> None:
        await self._db._run(lambda: self._db._connect().execute(sql, dict(params)).close())

    async def now(self) -> float:
        return self._db._clock()


class SQLiteOrderStore(SQLOrderStore):
    """An :class:`~certpoll.OrderStore` in a SQLite file."""

    def __init__(self, url: BackendURL, *, clock: Callable[[], float] | None = None) -> None:
        super().__init__(
            _SQLiteDatabase(url, time.time if clock is None else clock), url=url.redacted
        )
