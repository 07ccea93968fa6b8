"""``sqlite:///path``: the gate's state in one file, shared by the processes of one host.

Each step is one ``BEGIN IMMEDIATE`` transaction (SQLite's write lock, taken before reading,
so two processes never decide on the same state), on the host's wall clock: every process
on the host reads the same one. The standard library's :mod:`sqlite3` blocks, so each step
runs in a worker thread and the event loop keeps going while another process holds the lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .gate import unreachable
from .gate_state import GateState, SteppedGate
from .sqlite import open_wal
from .urls import BackendURL

__all__ = ["SQLiteGate"]

_T = TypeVar("_T")

#: How long a step waits for another process's transaction before the backend counts as
#: unreachable. Steps take well under a millisecond, so this is only ever reached when
#: something is wrong with the file.
BUSY_TIMEOUT = 5.0

# Versioned by name: a change to the row ships as certpoll_gate_v2 beside it.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS certpoll_gate_v1 "
    "(key TEXT PRIMARY KEY, state TEXT NOT NULL, answered BLOB NOT NULL)"
)


class SQLiteGate(SteppedGate):
    """Gate state per key, one row each, in a SQLite file (table ``certpoll_gate_v1``)."""

    def __init__(self, url: BackendURL, *, clock: Callable[[], float] | None = None) -> None:
        assert url.path is not None  # parse_backend_url gives every sqlite URL a path
        self._url = url
        self._path = url.path
        self.name = url.redacted
        self._clock = time.time if clock is None else clock
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLiteGate({self.name!r})"

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = open_wal(self._path, timeout=BUSY_TIMEOUT, setup=[_SCHEMA])
        return self._connection

    def _step_in_thread(self, key: str, decide: Callable[[GateState, float], _T]) -> _T:
        with self._lock:
            try:
                connection = self._connect()
                connection.execute("BEGIN IMMEDIATE")
                try:
                    row = connection.execute(
                        "SELECT state, answered FROM certpoll_gate_v1 WHERE key = ?", (key,)
                    ).fetchone()
                    state = GateState() if row is None else GateState.load(*row)
                    result = decide(state, self._clock())
                    connection.execute(
                        "INSERT OR REPLACE INTO certpoll_gate_v1 (key, state, answered) "
                        "VALUES (?, ?, ?)",
                        (key, *state.dump()),
                    )
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise unreachable(self._url, exc) from exc
            return result

    async def step(self, key: str, decide: Callable[[GateState, float], _T]) -> _T:
        return await asyncio.to_thread(self._step_in_thread, key, decide)

    async def aclose(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
