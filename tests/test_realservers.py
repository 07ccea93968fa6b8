"""The real servers the suite starts answer, with their own clocks."""

from __future__ import annotations

import asyncpg
import redis.asyncio as redis


async def test_postgres_answers_with_its_own_clock(fresh_postgres_url: str) -> None:
    connection = await asyncpg.connect(fresh_postgres_url)
    try:
        assert (
            await connection.fetchval("SELECT current_database()")
            == (fresh_postgres_url.rsplit("/", 1)[1])
        )
        assert await connection.fetchval("SELECT extract(epoch FROM clock_timestamp()) > 0")
    finally:
        await connection.close()


async def test_redis_answers_with_its_own_clock(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert await client.ping()
        seconds, _micros = await client.time()
        assert seconds > 0
    finally:
        await client.aclose()
