"""The order store against its real servers: schema versions, secrets, and many claimers.

Concurrent claimers are separate connections and separate processes (one of them killed
with SIGKILL mid-run) on one SQLite file or one PostgreSQL database. Every claim they make
is logged; afterwards no order may have been held by two claims in overlapping leases, no
fencing token handed out twice, and every order has exactly one final answer.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certpoll import (
    Adoption,
    ConfigError,
    LeaseLost,
    OrderState,
    OrderStatus,
    OrderStore,
    StoredOrder,
    StoredState,
    TransientError,
    open_store,
)
from certpoll._backends.store import SCHEMA_VERSION
from certpoll._backends.store_sql import SQLOrderStore

PASSWORD = "pw-SECRET-store-31c9"


@pytest.fixture(params=["sqlite", "postgresql"])
def server_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'orders.sqlite3'}"
    else:
        yield request.getfixturevalue("fresh_postgres_url")


async def raw(url: str, statement: str) -> None:
    """Run ``statement`` on the store's database behind certpoll's back."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn, conn:
            conn.execute(statement)
        return
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
async def opened(server_url: str) -> AsyncIterator[list[OrderStore]]:
    stores: list[OrderStore] = []
    yield stores
    for store in stores:
        await store.aclose()


async def add_pending(store: OrderStore, keys: list[str]) -> None:
    for key in keys:
        intent, _ = await store.add_intent(
            key=key, ca="digicert", fingerprint="f", common_name="c", owner="s", lease=60
        )
        await store.release(
            await store.record_submitted(intent, order_id=f"id-{key}", deadline_in=600)
        )


# -- schema ---------------------------------------------------------------------------------


async def test_the_schema_is_created_once_and_kept(
    server_url: str, opened: list[OrderStore]
) -> None:
    first = open_store(server_url)
    opened.append(first)
    assert isinstance(first, SQLOrderStore)
    assert await first.migrate() == 0  # an empty database: created from nothing
    await add_pending(first, ["a", "b"])
    again = open_store(server_url)
    opened.append(again)
    assert isinstance(again, SQLOrderStore)
    assert await again.migrate() == SCHEMA_VERSION
    assert [order.key for order in await again.orders()] == ["a", "b"]


async def test_stores_opening_together_migrate_once(
    server_url: str, opened: list[OrderStore]
) -> None:
    stores = [open_store(server_url) for _ in range(4)]
    opened.extend(stores)
    found = await asyncio.gather(*(store.migrate() for store in stores))  # type: ignore[attr-defined]
    assert sorted(found) == [0] + [SCHEMA_VERSION] * 3


async def test_a_newer_schema_is_refused_and_left_alone(
    server_url: str, opened: list[OrderStore]
) -> None:
    store = open_store(server_url)
    opened.append(store)
    await add_pending(store, ["kept"])
    await raw(server_url, "UPDATE certpoll_store_version SET version = 99")
    newer = open_store(server_url)
    opened.append(newer)
    with pytest.raises(ConfigError, match=r"schema version 99, newer .* upgrade certpoll"):
        await newer.counts()
    with pytest.raises(ConfigError):
        await newer.claim(owner="w", cas=["digicert"], limit=1, lease=1)
    await raw(server_url, f"UPDATE certpoll_store_version SET version = {SCHEMA_VERSION}")  # noqa: S608 -- a constant
    assert [order.key for order in await newer.orders()] == ["kept"]


async def test_a_version_1_store_is_migrated_with_its_orders(
    server_url: str, opened: list[OrderStore]
) -> None:
    store = open_store(server_url)
    opened.append(store)
    await add_pending(store, ["old"])
    await raw(server_url, "DROP INDEX certpoll_orders_order_id")
    await raw(server_url, "UPDATE certpoll_store_version SET version = 1")
    upgraded = open_store(server_url)
    opened.append(upgraded)
    assert isinstance(upgraded, SQLOrderStore)
    assert await upgraded.migrate() == 1
    (old,) = await upgraded.orders()
    # Version 2 finds an order by its CA's order id: the stored one is adopted, not copied.
    handle = Adoption(ca="digicert", order_id=str(old.order_id), deadline_in=3600)
    (adopted,) = await upgraded.adopt([handle], owner="w", lease=1)
    assert (adopted.key, adopted.owner) == ("old", "w")


# -- secrets --------------------------------------------------------------------------------


def _chain_text(error: BaseException) -> str:
    texts = []
    current: BaseException | None = error
    while current is not None:
        texts += [str(current), repr(current), repr(getattr(current, "__dict__", None))]
        current = current.__cause__ or current.__context__
    return " ".join(texts)


async def test_an_unreachable_postgres_is_transient_and_never_shows_the_password() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    store = open_store(f"postgresql://certpoll:{PASSWORD}@127.0.0.1:{port}/db")
    try:
        assert PASSWORD not in repr(store) + store.url
        assert "***" in store.url
        with pytest.raises(TransientError) as caught:
            await store.counts()
        assert PASSWORD not in _chain_text(caught.value)
        assert "***" in str(caught.value)
    finally:
        await store.aclose()


async def test_a_password_in_the_url_is_in_no_row_nor_message(postgres_url: str) -> None:
    # The suite's server trusts every local user, so any password gets in.
    with_password = postgres_url.replace("certpoll@", f"certpoll:{PASSWORD}@")
    store = open_store(with_password)
    try:
        await add_pending(store, ["secret-check"])
        rows = await store.orders()
        assert rows
        assert PASSWORD not in repr(rows) + repr(store) + store.url
        await raw(postgres_url, "UPDATE certpoll_store_version SET version = 7")
        newer = open_store(with_password)
        with pytest.raises(ConfigError) as caught:
            await newer.counts()
        await newer.aclose()
        assert PASSWORD not in _chain_text(caught.value)
    finally:
        await raw(postgres_url, "DROP TABLE IF EXISTS certpoll_orders, certpoll_store_version")
        await store.aclose()


def test_a_bad_store_url_never_shows_the_password() -> None:
    for url in (f"redis://:{PASSWORD}@cache:6379/0", f"mysql://u:{PASSWORD}@db/x"):
        with pytest.raises(ConfigError) as caught:
            open_store(url)
        assert PASSWORD not in _chain_text(caught.value)
    with pytest.raises(ConfigError, match="server's clock"):
        open_store("postgresql://db.example/x", clock=time.time)


async def test_an_unwritable_sqlite_file_is_a_transient_error(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'missing-dir' / 'orders.db'}")
    try:
        with pytest.raises(TransientError, match="order store at sqlite"):
            await store.counts()
    finally:
        await store.aclose()


# -- a model of the rules, checked step by step (memory and SQLite, on a fake clock) ------

OWNERS = ("a", "b", "c")
KEYS = tuple(f"k{i}" for i in range(4))

steps = st.lists(
    st.one_of(
        st.tuples(st.just("claim"), st.sampled_from(OWNERS), st.integers(1, 4)),
        st.tuples(st.just("advance"), st.sampled_from([0.1, 0.5, 1.0, 2.0])),
        st.tuples(
            st.just("write"),
            st.sampled_from(OWNERS),
            st.sampled_from(KEYS),
            st.sampled_from(["reschedule", "complete", "release", "renew"]),
        ),
    ),
    max_size=40,
)


@dataclass
class Model:
    """What the store must hold: per key, the latest token, its lease, and its state."""

    token: dict[str, int]
    lease_until: dict[str, float | None]
    final: set[str]


async def run_model(
    store: OrderStore, clock: list[float], program: list[tuple[object, ...]]
) -> None:
    lease = 1.0
    await add_pending(store, list(KEYS))
    model = Model(token=dict.fromkeys(KEYS, 1), lease_until=dict.fromkeys(KEYS), final=set())
    held: dict[tuple[str, str], StoredOrder] = {}
    for step in program:
        now = clock[0]
        if step[0] == "advance":
            clock[0] += float(step[1])  # type: ignore[arg-type]
        elif step[0] == "claim":
            owner, limit = str(step[1]), int(step[2])  # type: ignore[call-overload]
            free = [
                key
                for key in KEYS
                if key not in model.final
                and (model.lease_until[key] is None or model.lease_until[key] <= now)  # type: ignore[operator]
            ]
            got = await store.claim(owner=owner, cas=["digicert"], limit=limit, lease=lease)
            assert {order.key for order in got} <= set(free)
            assert len(got) == min(limit, len(free))
            for order in got:
                model.token[order.key] += 1
                assert order.token == model.token[order.key]
                model.lease_until[order.key] = now + lease
                held[(owner, order.key)] = order
        else:
            owner, key, kind = str(step[1]), str(step[2]), str(step[3])
            mine = held.get((owner, key))
            if mine is None:
                continue
            current = mine.token == model.token[key] and key not in model.final
            if kind == "renew":
                assert await store.renew([mine], lease=lease) == ({key} if current else set())
                if current:
                    model.lease_until[key] = now + lease
            elif kind == "release":
                await store.release(mine)
                if current:
                    model.lease_until[key] = None
            elif kind == "reschedule":
                if current:
                    await store.reschedule(mine, attempts=1, due_in=0, last_error=None)
                else:
                    with pytest.raises((LeaseLost, ConfigError)):
                        await store.reschedule(mine, attempts=1, due_in=0, last_error=None)
            else:
                status = OrderStatus(
                    ca="digicert", order_id=f"id-{key}", state=OrderState.FAILED, message="no"
                )
                if current:
                    await store.complete(mine, status, attempts=1)
                    model.final.add(key)
                else:
                    with pytest.raises((LeaseLost, ConfigError)):
                        await store.complete(mine, status, attempts=1)
    counts = await store.counts()
    assert counts[StoredState.FAILED] == len(model.final)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@settings(max_examples=60)
@given(program=steps)
def test_claims_and_writes_follow_the_model(kind: str, program: list[tuple[object, ...]]) -> None:
    clock = [1_767_225_600.0]
    with tempfile.TemporaryDirectory() as scratch:
        url = "memory://" if kind == "memory" else f"sqlite:///{scratch}/m.db"

        async def main() -> None:
            store = open_store(url, clock=lambda: clock[0])
            try:
                await run_model(store, clock, program)
            finally:
                await store.aclose()

        asyncio.run(main())


# -- many claimers at once --------------------------------------------------------------------

LEASE = 0.25
#: Seconds after a lease ran out by which a dropped claim must have been reclaimed.
RECLAIM_BOUND = 2.0
#: The claimer each process runs: claims, then completes or drops what it claimed (a
#: dropped claim is an owner that died holding it), logging every claim as a JSON line.
CLAIMER = """
import asyncio, json, random, sys
from certpoll import LeaseLost, OrderState, OrderStatus, StoredState, open_store

async def main(url, name, seed, lease):
    rng = random.Random(seed)
    store = open_store(url)
    try:
        while (await store.counts())[StoredState.PENDING]:
            claimed = await store.claim(owner=name, cas=["digicert"], limit=5, lease=lease)
            for order in claimed:
                print(json.dumps({"claim": order.key, "token": order.token, "owner": name,
                                  "until": order.lease_until.timestamp()}), flush=True)
            for order in claimed:
                if rng.random() < 0.3:
                    continue  # died holding it: only the lease gives it back
                status = OrderStatus(ca="digicert", order_id=order.order_id,
                                     state=OrderState.ISSUED if rng.random() < 0.5
                                     else OrderState.FAILED, message=name)
                try:
                    await store.complete(order, status, attempts=1)
                except LeaseLost:
                    print(json.dumps({"lost": order.key, "token": order.token}), flush=True)
                else:
                    print(json.dumps({"done": order.key, "token": order.token}), flush=True)
            if not claimed:
                await asyncio.sleep(0.02)
    finally:
        await store.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
"""


async def claim_with_processes(url: str, orders: int, *, kill_one: bool) -> list[dict[str, object]]:
    store = open_store(url)
    try:
        await add_pending(store, [f"o{i:04d}" for i in range(orders)])
    finally:
        await store.aclose()
    log_dir = Path(tempfile.mkdtemp(prefix="certpoll-claimers-"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}

    def start(index: int) -> tuple[subprocess.Popen[bytes], Path]:
        log = log_dir / f"claimer-{index}.jsonl"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", CLAIMER, url, f"w{index}", str(index), str(LEASE)],
                stdout=out,
                env=env,
            )
        return process, log

    running = [start(index) for index in range(3)]
    if kill_one:
        await asyncio.sleep(random.Random(7).uniform(0.8, 1.5))
        running[0][0].send_signal(signal.SIGKILL)
        running.append(start(3))
    for process, _ in running:
        await asyncio.to_thread(process.wait, 120)
    lines = []
    for _, log in running:
        for line in log.read_text().splitlines():
            if line.strip():
                lines.append(json.loads(line))
    return lines


def check_claims(events: list[dict[str, object]], orders: int, *, unlogged: int = 0) -> None:
    """``unlogged``: answers a killed claimer may have written but not lived to log."""
    claims: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    done: dict[str, int] = defaultdict(int)
    for event in events:
        if "claim" in event:
            claims[str(event["claim"])].append(
                (float(event["until"]), int(event["token"]), str(event["owner"]))  # type: ignore[call-overload,arg-type]
            )
        elif "done" in event:
            done[str(event["done"])] += 1
    assert orders - unlogged <= len(done) <= orders
    assert set(done.values()) == {1}, "an order got two final answers"
    reclaimed_after: list[float] = []
    for key, held in claims.items():
        held.sort()
        tokens = [token for _, token, _ in held]
        assert len(set(tokens)) == len(tokens), f"{key}: a token handed out twice"
        assert tokens == sorted(tokens), f"{key}: tokens not increasing with time"
        for (until, _, owner), (next_until, _, next_owner) in itertools.pairwise(held):
            # Each claim's lease starts LEASE before its end: the next starts after this ends.
            assert next_until - LEASE >= until - 1e-3, (
                f"{key}: {owner} and {next_owner} held it in overlapping leases"
            )
            reclaimed_after.append(next_until - LEASE - until)
    # A dropped claim (its owner "died") is taken again soon after its lease: the claimers
    # loop every few milliseconds; the bound leaves room for a loaded machine.
    assert reclaimed_after, "no claim was ever dropped and reclaimed"
    assert max(reclaimed_after) <= RECLAIM_BOUND, max(reclaimed_after)


async def test_claimer_processes_never_share_an_order(server_url: str) -> None:
    events = await claim_with_processes(server_url, 150, kill_one=True)
    # The killed claimer may die between a final answer's commit and its log line.
    check_claims(events, 150, unlogged=1)
    store = open_store(server_url)
    try:
        counts = await store.counts()
    finally:
        await store.aclose()
    assert counts[StoredState.ISSUED] + counts[StoredState.FAILED] == 150, counts


async def test_claimer_connections_never_share_an_order(fresh_postgres_url: str) -> None:
    # One process, several connection pools: the claims race inside PostgreSQL.
    store = open_store(fresh_postgres_url)
    await add_pending(store, [f"c{i:03d}" for i in range(200)])
    await store.aclose()
    claimers = [open_store(fresh_postgres_url) for _ in range(6)]
    try:
        results = await asyncio.gather(
            *(
                claimer.claim(owner=f"w{i}", cas=["digicert"], limit=50, lease=30)
                for i, claimer in enumerate(claimers)
                for _ in range(2)
            )
        )
    finally:
        for claimer in claimers:
            await claimer.aclose()
    keys = [order.key for batch in results for order in batch]
    assert len(keys) == len(set(keys)) == 200
