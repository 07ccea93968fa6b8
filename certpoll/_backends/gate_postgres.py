"""``postgresql://…``: the gate's state in PostgreSQL, each step one transaction.

The step takes the key's row lock (an upsert, so the first process creates the row), reads
``clock_timestamp()`` after the lock is held, decides by the rules of
:mod:`certpoll._backends.gate_state`, and writes the state back before it commits. Another
process on the same key waits for the lock, then decides on what this one wrote. Time is the
server's: replicas with skewed clocks share one limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .gate import unreachable
from .gate_state import GateState, SteppedGate
from .urls import BackendURL

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PostgresGate"]

_T = TypeVar("_T")

#: Bounded waits on the server: connecting, and any one statement.
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 5.0
#: Connections per process: a step holds one for a few round trips.
POOL_SIZE = 4

_SCHEMA = "CREATE TABLE IF NOT EXISTS certpoll_gate (key text PRIMARY KEY, state text NOT NULL)"
# RETURNING is computed once the row lock is held, so the clock is read after the wait.
_LOCK = """
INSERT INTO certpoll_gate AS g (key, state) VALUES ($1, '')
ON CONFLICT (key) DO UPDATE SET key = g.key
RETURNING g.state, extract(epoch FROM clock_timestamp())::float8
"""
_SAVE = "UPDATE certpoll_gate SET state = $2 WHERE key = $1"


class PostgresGate(SteppedGate):
    """Gate state per key, one row each, in a PostgreSQL table ``certpoll_gate``."""

    def __init__(self, url: BackendURL) -> None:
        self._url = url
        self.name = url.redacted
        self._pool: asyncpg.Pool | None = None
        self._connecting = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PostgresGate({self.name!r})"

    async def _connect(self) -> asyncpg.Pool:

        async with self._connecting:
            if self._pool is None:
                self._pool = await self._open()
        return self._pool

    async def _open(self) -> asyncpg.Pool:
        import asyncpg

        pool = await asyncpg.create_pool(
            self._url.url,
            min_size=1,
            max_size=POOL_SIZE,
            timeout=CONNECT_TIMEOUT,
            command_timeout=COMMAND_TIMEOUT,
        )
        try:
            async with pool.acquire() as connection, connection.transaction():
                # Two processes creating the table at once would collide: take turns.
                await connection.execute("SELECT pg_advisory_xact_lock(hashtext('certpoll_gate'))")
                await connection.execute(_SCHEMA)
        except BaseException:
            await pool.close()
            raise
        return pool

    async def step(self, key: str, decide: Callable[[GateState, float], _T]) -> _T:
        import asyncpg

        try:
            pool = await self._connect()
            async with pool.acquire() as connection, connection.transaction():
                row = await connection.fetchrow(_LOCK, key)
                assert row is not None  # an upsert with RETURNING always returns its row
                text, now = row
                state = GateState.loads(text)
                result = decide(state, now)
                await connection.execute(_SAVE, key, state.dumps())
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise unreachable(self._url, exc) from exc
        return result

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
