"""Opening a SQLite file in WAL mode, for the gate and the store (``sqlite:///path``).

When several processes open a new file at once (``uvicorn --workers 4`` on one gate),
SQLite refuses some set-up steps with ``database is locked`` at once, without waiting for
the busy timeout: switching the file to WAL needs its exclusive lock, and a statement whose
read snapshot another process's schema change made stale cannot wait for it. Those steps
are tried again, for as long as the connection's busy timeout, before the error stands.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Final

__all__ = ["busy", "open_wal"]

#: The first pause before a refused set-up step is tried again; it doubles up to the most.
_FIRST_PAUSE: Final = 0.005
_MOST_PAUSE: Final = 0.1


def busy(exc: sqlite3.Error) -> bool:
    """The write lock (or the file) is held by another connection right now."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc)


def open_wal(
    path: str | os.PathLike[str],
    *,
    timeout: float,
    setup: Sequence[str] = (),
    row_factory: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode (autocommit), with ``setup`` run on it.

    ``timeout`` is the connection's busy timeout, and how long the set-up is tried again
    while another process holds the file (0: once), on ``clock`` and ``sleep``. Blocks:
    call it off the event loop unless ``timeout`` is 0.
    """
    connection = sqlite3.connect(
        path, timeout=timeout, isolation_level=None, check_same_thread=False
    )
    try:
        if row_factory:
            connection.row_factory = sqlite3.Row
        give_up = clock() + timeout
        pause = _FIRST_PAUSE
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                for statement in setup:
                    connection.execute(statement)
            except sqlite3.OperationalError as exc:
                if not busy(exc) or clock() + pause > give_up:
                    raise
                sleep(pause)
                pause = min(2 * pause, _MOST_PAUSE)
            else:
                return connection
    except BaseException:
        connection.close()
        raise
