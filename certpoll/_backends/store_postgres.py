"""The order store in PostgreSQL (``postgresql://…``): many processes on many hosts.

Claims select their rows ``FOR UPDATE SKIP LOCKED``: concurrent claimers on any host pass
each other's rows by instead of waiting or taking them twice. Each statement commits on its
own (every write is fenced in its ``WHERE`` clause), sparing two round trips per operation.
Leases and due times are on the server's clock (``clock_timestamp()``), the one clock every
host shares. Schema migrations take a transaction-scoped advisory lock, so processes
starting together migrate once. Needs the ``postgres`` extra (asyncpg).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

from .._errors import ConfigError, TransientError
from .store_sql import Params, SQLOrderStore
from .urls import BackendURL

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

__all__ = ["PostgresOrderStore"]

#: The advisory lock that serialises migrations (any fixed number; "certpoll" in ASCII).
_MIGRATION_LOCK: Final = 0x6365727470_6F6C6C
#: Connections per process, and how long one connection attempt may take.
POOL_SIZE: Final = 8
CONNECT_TIMEOUT_SECONDS: Final = 10.0
_NAMED: Final = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def _numbered(sql: str) -> tuple[str, list[str]]:
    """``sql`` with ``:name`` parameters as asyncpg's ``$1, $2 …``, and the names in order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _NAMED.sub(number, sql), names


class _PostgresDatabase:
    claim_lock = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: BackendURL) -> None:
        try:
            import asyncpg
        except ImportError:
            raise ConfigError(
                "a postgresql:// order store needs asyncpg: pip install 'certpoll[postgres]'"
            ) from None
        self._asyncpg = asyncpg
        self._url = url
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None
        self._sql: dict[str, tuple[str, list[str]]] = {}

    def numbered(self, sql: str, params: Params) -> tuple[str, list[object]]:
        found = self._sql.get(sql)
        if found is None:
            found = self._sql[sql] = _numbered(sql)
        text, names = found
        return text, [params[name] for name in names]

    def unreachable(self, exc: BaseException) -> TransientError:
        return TransientError(
            f"the order store at {self._url.redacted} failed: {type(exc).__name__}: {exc}"
        )

    async def _open(self) -> asyncpg.Pool:
        if self._pool is None:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._pool is None:
                    self._pool = await self._asyncpg.create_pool(
                        self._url.url,
                        min_size=0,
                        max_size=POOL_SIZE,
                        timeout=CONNECT_TIMEOUT_SECONDS,
                    )
        return self._pool

    @asynccontextmanager
    async def transaction(self, *, migrating: bool = False) -> AsyncIterator[_PostgresSession]:
        failures = (
            OSError,
            TimeoutError,
            self._asyncpg.PostgresError,
            self._asyncpg.InterfaceError,
        )
        try:
            pool = await self._open()
            async with pool.acquire() as connection:
                if not migrating:
                    # Each statement of an operation is fenced in its own WHERE clause, so
                    # each commits on its own: no BEGIN and COMMIT round trips.
                    yield _PostgresSession(connection, self)
                    return
                async with connection.transaction():
                    await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                    yield _PostgresSession(connection, self)
        except failures as exc:
            raise self.unreachable(exc) from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


class _PostgresSession:
    def __init__(
        self, connection: PoolConnectionProxy[asyncpg.Record], database: _PostgresDatabase
    ) -> None:
        self._connection = connection
        self._db = database

    async def fetch(self, sql: str, params: Params) -> list[Mapping[str, object]]:
        text, values = self._db.numbered(sql, params)
        return [dict(row.items()) for row in await self._connection.fetch(text, *values)]

    async def execute(self, sql: str, params: Params) -> None:
        text, values = self._db.numbered(sql, params)
        await self._connection.execute(text, *values)

    async def now(self) -> float:
        seconds = await self._connection.fetchval(
            "SELECT extract(epoch FROM clock_timestamp())::float8"
        )
        return float(seconds)


class PostgresOrderStore(SQLOrderStore):
    """An :class:`~certpoll.OrderStore` in PostgreSQL."""

    def __init__(self, url: BackendURL) -> None:
        super().__init__(_PostgresDatabase(url), url=url.redacted)
