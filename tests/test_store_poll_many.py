"""``poll_many(connector, orders, store=...)`` against a SQLite file and a PostgreSQL server.

The orders are taken in the store under a lease (recorded if the store does not hold them),
polled by the same scheduler as in memory, and each answer is written with the claim's
fencing token before it is yielded; whatever is held when the stream stops is given back.

Against SQLite (and in memory) the tests run in virtual time (``looptime``, the stores on the
event loop's clock); against PostgreSQL in real time, since its leases are on its server's
clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import certpoll
from certpoll import (
    DigiCert,
    LeaseLost,
    OrderState,
    OrderStore,
    StoredState,
    open_store,
    poll_many,
    submit_order,
)
from certpoll.testing import OrderScript, SimulatedCA
from tests.helpers import run_in_virtual_time
from tests.test_worker import loop_clock, make_sim, request, settings


@pytest.fixture
def sim() -> SimulatedCA:
    return make_sim()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        request.applymarker(pytest.mark.looptime)
        yield f"sqlite:///{tmp_path / 'orders.db'}"
    else:
        yield request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[OrderStore]:
    on_the_loop = store_url.startswith("sqlite:")  # PostgreSQL keeps its server's time
    opened = open_store(store_url, clock=loop_clock() if on_the_loop else None)
    yield opened
    await opened.aclose()


@pytest.fixture
async def digicert(sim: SimulatedCA) -> AsyncIterator[DigiCert]:
    async with sim.client() as http, DigiCert(settings(sim.base_urls().digicert), http=http) as dc:
        yield dc


async def order_ids(dc: DigiCert, names: list[str]) -> list[str]:
    """Orders placed without the store, as a service that predates it would."""
    return [(await dc.issue(request(name))).order_id for name in names]


async def test_orders_are_recorded_claimed_polled_and_every_answer_written(
    sim: SimulatedCA, digicert: DigiCert, store: OrderStore
) -> None:
    sim.script_common_name("no.example", OrderScript(issue_after=10, reject=True))
    ids = await order_ids(digicert, [f"p{i}.example" for i in range(5)] + ["no.example"])
    seen: dict[str, OrderState] = {}
    async with poll_many(digicert, ids, store=store, lease=2.0) as stream:
        async for status in stream:
            # Written before it is yielded: the store already holds this answer.
            stored = await store.get(f"digicert:{status.order_id}")
            assert stored is not None
            assert (stored.state.value, stored.owner) == (status.state.value, None)
            seen[status.order_id] = status.state
        assert stream.held == 0
    assert sorted(seen) == sorted(ids)
    assert list(seen.values()).count(OrderState.FAILED) == 1
    counts = await store.counts()
    assert (counts[StoredState.ISSUED], counts[StoredState.FAILED]) == (5, 1)
    for record in await store.orders(states=[StoredState.ISSUED]):
        assert record.certificate is not None
        assert record.attempts >= 1
    # Asked again: every answer comes from the store, without a request to the CA.
    requests = sim.requests
    async with poll_many(digicert, ids, store=store) as again:
        answers = {status.order_id: status.state async for status in again}
    assert answers == seen
    assert sim.requests == requests
    assert sim.order_count == len(ids)


async def test_an_order_submitted_through_the_store_is_found_by_its_order_id(
    digicert: DigiCert, store: OrderStore
) -> None:
    submitted = await submit_order(digicert, store, request("known.example"))
    assert submitted.order_id is not None
    async with poll_many(digicert, [submitted.order_id], store=store) as stream:
        (status,) = [status async for status in stream]
    assert status.state is OrderState.ISSUED
    (record,) = await store.orders()  # the same row, not a copy under another key
    assert (record.key, record.state) == (submitted.key, StoredState.ISSUED)


def handle(order_id: str) -> certpoll.Adoption:
    return certpoll.Adoption(ca="digicert", order_id=order_id, deadline_in=3600)


async def test_an_order_another_owner_holds_is_left_to_it(
    digicert: DigiCert, store: OrderStore
) -> None:
    ids = await order_ids(digicert, ["mine.example", "theirs.example"])
    (held,) = await store.adopt([handle(ids[1])], owner="someone else", lease=60)
    assert held.owner == "someone else"
    async with poll_many(digicert, ids, store=store) as stream:
        answered = [status.order_id async for status in stream]
    assert answered == [ids[0]]  # neither polled nor yielded
    other = await store.get(f"digicert:{ids[1]}")
    assert other is not None
    assert (other.state, other.owner, other.token) == (StoredState.PENDING, "someone else", 1)


async def test_a_stream_stopped_early_gives_back_what_it_holds_with_its_schedule(
    sim: SimulatedCA, digicert: DigiCert, store: OrderStore
) -> None:
    sim.script_next(OrderScript(approval_for=10**6), count=3)  # never issued while we look
    ids = await order_ids(digicert, [f"slow{i}.example" for i in range(3)])
    async with poll_many(digicert, ids, store=store, lease=0.3) as stream:
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.4)  # a few attempts, and a renewal that writes the schedule
        assert stream.held == 3
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
    for record in await store.orders():
        assert (record.state, record.owner) == (StoredState.PENDING, None)
        assert record.attempts >= 1  # the next owner goes on from there


@pytest.mark.looptime
async def test_a_lost_lease_stops_every_poll_and_is_raised(
    sim: SimulatedCA, digicert: DigiCert, tmp_path: Path
) -> None:
    sim.script_next(OrderScript(approval_for=10**6), count=2)
    ids = await order_ids(digicert, ["a.example", "b.example"])
    url = f"sqlite:///{tmp_path / 'lost.db'}"
    store = open_store(url, clock=loop_clock())
    # Another process whose clock is past the lease: to it, the lease ran out.
    later = open_store(url, clock=loop_clock(ahead=3600))
    await later.counts()  # opened before the stream runs
    try:
        async with poll_many(digicert, ids, store=store, lease=0.3) as stream:
            taking = asyncio.ensure_future(anext(stream))
            while stream.held < 2:  # noqa: ASYNC110 -- the stream has no event to wait on
                await asyncio.sleep(0.01)
            taken = await later.claim(owner="next", cas=["digicert"], limit=1, lease=60)
            with pytest.raises(LeaseLost, match="another owner claimed"):
                await asyncio.wait_for(taking, 10)
            requests = sim.requests
            await asyncio.sleep(0.1)
            assert sim.requests == requests  # no poll of any order after the loss
        (kept,) = taken
        for record in await store.orders():
            expected = ("next", kept.token) if record.key == kept.key else (None, record.token)
            assert (record.owner, record.token) == expected
    finally:
        await later.aclose()
        await store.aclose()


@hypothesis_settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plan=st.lists(st.sampled_from(["new", "submitted", "held", "issued"]), min_size=1, max_size=6),
    concurrency=st.integers(1, 3),
)
def test_every_order_named_is_answered_once_or_left_to_its_owner(
    plan: list[str], concurrency: int
) -> None:
    """Whatever mix of orders the store holds: each one free to claim is answered exactly
    once and written; each held by another owner is untouched; nothing is ordered again."""

    async def scenario() -> None:
        ca = make_sim()
        memory = open_store("memory://", clock=loop_clock())
        async with (
            ca.client() as http,
            DigiCert(settings(ca.base_urls().digicert), http=http) as dc,
        ):
            ids = []
            for index, kind in enumerate(plan):
                name = f"o{index}.example"
                if kind == "new":
                    ids.append((await dc.issue(request(name))).order_id)
                    continue
                record = await submit_order(dc, memory, request(name))
                assert record.order_id is not None
                ids.append(record.order_id)
            by_kind = {
                kind: [i for i, k in zip(ids, plan, strict=True) if k == kind] for kind in plan
            }
            async with poll_many(dc, by_kind.get("issued", []), store=memory) as first:
                async for _ in first:  # final in the store before they are named again
                    pass
            for order_id in by_kind.get("held", []):
                await memory.adopt([handle(order_id)], owner="other", lease=600)
            requests = ca.requests
            async with poll_many(dc, ids, store=memory, concurrency=concurrency) as stream:
                answers = [status.order_id async for status in stream]
        held = set(by_kind.get("held", []))
        assert sorted(answers) == sorted(set(ids) - held)
        if set(plan) <= {"issued", "held"}:
            assert ca.requests == requests  # answered from the store alone
        for order_id in ids:
            (record,) = [r for r in await memory.orders() if r.order_id == order_id]
            if order_id in held:
                assert (record.state, record.owner) == (StoredState.PENDING, "other")
            else:
                assert (record.state, record.owner) == (StoredState.ISSUED, None)
        assert ca.order_count == len(ids)
        await memory.aclose()

    run_in_virtual_time(scenario())


@pytest.mark.looptime
@pytest.mark.parametrize("skew", [-365 * 86400.0, 86400.0])
async def test_stored_times_count_from_the_claim_whatever_the_stores_clock(
    sim: SimulatedCA, skew: float
) -> None:
    """A store whose clock is far from this host's (a PostgreSQL server's, set wrong): an
    order handed over with its next look due in 10 s and its deadline in 60 s is looked at
    first 10 s after the claim and last at 60 s, on the connector's clock."""
    sim.script_next(OrderScript(approval_for=10**6), count=1)
    loop = asyncio.get_running_loop()
    sent: list[float] = []

    async def note(_: httpx.Request) -> None:
        sent.append(loop.time())

    wall, started = time.time(), loop.time()
    store = open_store("memory://", clock=lambda: wall + skew + loop.time() - started)
    slower = settings(sim.base_urls().digicert).model_copy(update={"poll_max_backoff_seconds": 5.0})
    async with (
        sim.client(event_hooks={"request": [note]}) as http,
        DigiCert(slower, http=http) as dc,
    ):
        (order_id,) = await order_ids(dc, ["skew.example"])
        now = datetime.now(UTC)
        handle = certpoll.PendingOrder(
            ca="digicert",
            order_id=order_id,
            attempts=0,
            next_poll_at=now + timedelta(seconds=10),
            deadline=now + timedelta(seconds=60),
        )
        claimed = loop.time()
        sent.clear()
        async with poll_many(dc, [handle], store=store, lease=30.0) as stream:
            (status,) = [status async for status in stream]
    await store.aclose()
    assert status.state is OrderState.PENDING  # still pending at its deadline
    assert sent[0] - claimed == pytest.approx(10.0, abs=0.05)
    assert sent[-1] - claimed == pytest.approx(60.0, abs=0.05)
