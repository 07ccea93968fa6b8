"""The order store's rules, the same on every backend: memory, a SQLite file, real PostgreSQL.

Memory and SQLite run on an injected clock; PostgreSQL keeps time on its server, so its
tests wait for real, with leases of a fraction of a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

import certpoll
from certpoll import (
    Certificate,
    ConfigError,
    LeaseLost,
    OrderState,
    OrderStatus,
    OrderStore,
    StoredOrder,
    StoredState,
    open_store,
)

#: Short enough that PostgreSQL's real waits stay small.
LEASE = 0.3
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@dataclass
class Clock:
    now: float = START

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    """One kind of store, and how to let time pass on its clock."""

    name: str
    url: str
    clock: Clock | None = None
    opened: list[OrderStore] = field(default_factory=list)

    def open(self) -> OrderStore:
        store = open_store(self.url, clock=self.clock)
        self.opened.append(store)
        return store

    async def advance(self, seconds: float) -> None:
        if self.clock is None:
            await asyncio.sleep(seconds)  # the server's clock: the one real wait
        else:
            self.clock.now += seconds


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "memory":
        yield "memory", "memory://"
    elif request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path / 'orders.sqlite3'}"
    else:
        yield "postgresql", request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
async def backend(backend_url: tuple[str, str]) -> AsyncIterator[Backend]:
    name, url = backend_url
    found = Backend(name, url, None if name == "postgresql" else Clock())
    yield found
    for store in found.opened:
        await store.aclose()


async def submitted(
    store: OrderStore, key: str, *, order_id: str | None = None, ca: certpoll.CAName = "digicert"
) -> StoredOrder:
    """An order taken through intent and submission, then released for workers."""
    intent, created = await store.add_intent(
        key=key,
        ca=ca,
        fingerprint=f"fp-{key}",
        common_name=f"{key}.example.com",
        owner="submitter",
        lease=LEASE,
    )
    assert created
    order = await store.record_submitted(intent, order_id=order_id or f"id-{key}", deadline_in=3600)
    await store.release(order)
    return order


def issued(order: StoredOrder) -> OrderStatus:
    certificate = Certificate(
        pem="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        chain_pem="",
        serial="42",
        not_before=datetime(2026, 1, 1, tzinfo=UTC),
        not_after=datetime(2027, 1, 1, tzinfo=UTC),
        ca_certificate_id="c-42",
    )
    assert order.order_id is not None
    return OrderStatus(
        ca=order.ca, order_id=order.order_id, state=OrderState.ISSUED, certificate=certificate
    )


# -- the life of an order -------------------------------------------------------------------


async def test_an_order_from_intent_to_certificate(backend: Backend) -> None:
    store = backend.open()
    assert isinstance(store, OrderStore)
    intent, created = await store.add_intent(
        key="k1",
        ca="sectigo",
        fingerprint="sha256:abc",
        common_name="www.example.com",
        owner="w1",
        lease=LEASE,
    )
    assert created
    assert (intent.state, intent.order_id, intent.owner, intent.token) == (
        StoredState.INTENT,
        None,
        "w1",
        1,
    )
    assert intent.lease_until is not None
    assert intent.lease_until.tzinfo is UTC
    pending = await store.record_submitted(intent, order_id="1234", deadline_in=3600)
    assert (pending.state, pending.order_id, pending.owner) == (StoredState.PENDING, "1234", "w1")
    assert pending.due_at is not None
    assert pending.deadline is not None
    assert 3599 <= (pending.deadline - pending.due_at).total_seconds() <= 3601
    # The submitter still holds it: nobody else can claim it now.
    assert await store.claim(owner="w2", cas=["sectigo"], limit=10, lease=LEASE) == []
    later = await store.reschedule(pending, attempts=1, due_in=0, last_error="HTTP 503")
    assert (later.attempts, later.last_error, later.token) == (1, "HTTP 503", 1)
    done = await store.complete(later, issued(later), attempts=2)
    assert done.state is StoredState.ISSUED
    assert done.certificate == issued(later).certificate
    assert (done.owner, done.lease_until, done.due_at, done.attempts) == (None, None, None, 2)
    assert await store.get("k1") == done
    assert await store.get("nope") is None


async def test_a_second_intent_with_the_same_key_is_the_first(backend: Backend) -> None:
    store = backend.open()
    first = await submitted(store, "same")
    again, created = await store.add_intent(
        key="same",
        ca="entrust",
        fingerprint="other",
        common_name="other.example.com",
        owner="w2",
        lease=LEASE,
    )
    assert not created
    assert (again.ca, again.fingerprint, again.order_id) == ("digicert", "fp-same", "id-same")
    assert again.token == first.token


async def test_an_intent_whose_submitter_died_is_uncertain_and_never_claimed(
    backend: Backend,
) -> None:
    store = backend.open()
    intent, _ = await store.add_intent(
        key="lost",
        ca="digicert",
        fingerprint="fp",
        common_name="lost.example.com",
        owner="dead",
        lease=LEASE,
    )
    assert await store.claim(owner="w", cas=["digicert"], limit=10, lease=LEASE) == []
    assert (await store.get("lost")).state is StoredState.INTENT  # type: ignore[union-attr]
    await backend.advance(LEASE + 0.05)
    assert await store.claim(owner="w", cas=["digicert"], limit=10, lease=LEASE) == []
    found = await store.get("lost")
    assert found is not None
    assert found.state is StoredState.UNCERTAIN
    assert found.order_id is None
    assert found.owner is None
    assert "may or may not have the order" in (found.last_error or "")
    # The dead submitter, back from a pause, cannot write an order id over it.
    with pytest.raises(ConfigError, match="uncertain, not intent"):
        await store.record_submitted(intent, order_id="99", deadline_in=60)
    assert await store.claim(owner="w", cas=["digicert"], limit=10, lease=LEASE) == []


async def test_an_uncertain_submission_is_kept_and_never_claimed(backend: Backend) -> None:
    store = backend.open()
    intent, _ = await store.add_intent(
        key="u", ca="globalsign", fingerprint="fp", common_name="u.example", owner="w", lease=LEASE
    )
    record = await store.record_uncertain(intent, error="connection reset after the POST")
    assert (record.state, record.last_error, record.owner) == (
        StoredState.UNCERTAIN,
        "connection reset after the POST",
        None,
    )
    await backend.advance(LEASE * 2)
    assert await store.claim(owner="w", cas=["globalsign"], limit=10, lease=LEASE) == []
    assert (await store.counts())[StoredState.UNCERTAIN] == 1


async def test_an_uncertain_order_is_resolved_after_a_look_at_the_ca(backend: Backend) -> None:
    store = backend.open()
    for key in ("found", "absent"):
        intent, _ = await store.add_intent(
            key=key, ca="digicert", fingerprint="f", common_name="c", owner="o", lease=LEASE
        )
        await store.record_uncertain(intent, error="timeout after the POST")
    # The CA lists an order for the first one: it is polled from now on.
    found = await store.resolve("found", order_id="4242", deadline_in=60)
    assert found is not None
    assert (found.state, found.order_id, found.owner) == (StoredState.PENDING, "4242", None)
    (claimed,) = await store.claim(owner="w", cas=["digicert"], limit=5, lease=LEASE)
    assert claimed.key == "found"
    # The CA has none for the second: the row goes, and the key may be submitted again.
    assert await store.resolve("absent", order_id=None, deadline_in=60) is None
    assert await store.get("absent") is None
    for key in ("found", "absent", "never"):
        with pytest.raises(ConfigError, match="only an uncertain order is resolved"):
            await store.resolve(key, order_id="1", deadline_in=60)


async def test_a_withdrawn_intent_frees_its_key(backend: Backend) -> None:
    store = backend.open()
    intent, _ = await store.add_intent(
        key="w", ca="digicert", fingerprint="fp", common_name="w.example", owner="o", lease=LEASE
    )
    await store.withdraw_intent(intent)
    assert await store.get("w") is None
    again, created = await store.add_intent(
        key="w", ca="digicert", fingerprint="fp", common_name="w.example", owner="o", lease=LEASE
    )
    assert created
    assert again.token == 1
    with pytest.raises(LeaseLost):
        await store.withdraw_intent(
            StoredOrder(**{**_fields(again), "key": "missing"})  # type: ignore[arg-type]
        )


def _fields(record: StoredOrder) -> dict[str, object]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


# -- claims, leases and fencing ---------------------------------------------------------------


async def test_claims_take_due_orders_of_the_given_cas_earliest_first(backend: Backend) -> None:
    store = backend.open()
    for index in range(5):
        await submitted(store, f"d{index}")
        await backend.advance(0.01)
    await submitted(store, "s0", ca="sectigo")
    first = await store.claim(owner="a", cas=["digicert"], limit=2, lease=LEASE)
    assert [order.key for order in first] == ["d0", "d1"]
    assert all(order.owner == "a" and order.token == 2 for order in first)
    rest = await store.claim(owner="b", cas=["digicert", "entrust"], limit=10, lease=LEASE)
    assert [order.key for order in rest] == ["d2", "d3", "d4"]
    # Not yet due: rescheduled for later.
    later = await store.reschedule(rest[0], attempts=1, due_in=LEASE * 10, last_error=None)
    await store.release(later)
    assert await store.claim(owner="c", cas=["digicert"], limit=10, lease=LEASE) == []
    assert [o.key for o in await store.claim(owner="c", cas=["sectigo"], limit=9, lease=LEASE)] == [
        "s0"
    ]


async def test_a_stale_owner_can_never_overwrite_the_new_owners_result(backend: Backend) -> None:
    store = backend.open()
    await submitted(store, "k")
    (old,) = await store.claim(owner="old", cas=["digicert"], limit=1, lease=LEASE)
    # The old owner pauses past its lease; the order is reclaimed by a new owner.
    assert await store.claim(owner="new", cas=["digicert"], limit=1, lease=LEASE) == []
    await backend.advance(LEASE + 0.05)
    (new,) = await store.claim(owner="new", cas=["digicert"], limit=1, lease=LEASE)
    assert new.token > old.token
    assert new.owner == "new"
    for stale_write in (
        store.reschedule(old, attempts=9, due_in=0, last_error="stale"),
        store.complete(old, issued(old), attempts=9),
    ):
        with pytest.raises(LeaseLost) as caught:
            await stale_write
        assert (caught.value.key, caught.value.token) == ("k", old.token)
    assert await store.renew([old], lease=LEASE) == set()
    await store.release(old)  # nothing to give back: a no-op, not the new owner's claim
    current = await store.get("k")
    assert current is not None
    assert (current.owner, current.attempts) == ("new", 0)
    assert await store.renew([new], lease=LEASE) == {"k"}
    failed = OrderStatus(ca="digicert", order_id="id-k", state=OrderState.FAILED, message="no")
    done = await store.complete(new, failed, attempts=1)
    assert (done.state, done.message) == (StoredState.FAILED, "no")
    with pytest.raises(ConfigError, match="failed, not pending"):
        await store.complete(new, failed, attempts=1)


async def test_a_renewed_lease_keeps_the_order(backend: Backend) -> None:
    store = backend.open()
    await submitted(store, "r")
    (held,) = await store.claim(owner="a", cas=["digicert"], limit=1, lease=LEASE)
    for _ in range(3):
        await backend.advance(LEASE * 0.6)
        assert await store.renew([held], lease=LEASE) == {"r"}
        assert await store.claim(owner="b", cas=["digicert"], limit=1, lease=LEASE) == []
    await backend.advance(LEASE + 0.05)
    (taken,) = await store.claim(owner="b", cas=["digicert"], limit=1, lease=LEASE)
    assert taken.token == held.token + 1


async def test_a_released_order_is_claimable_at_once(backend: Backend) -> None:
    store = backend.open()
    await submitted(store, "x")
    (held,) = await store.claim(owner="a", cas=["digicert"], limit=1, lease=LEASE)
    await store.release(held)
    (taken,) = await store.claim(owner="b", cas=["digicert"], limit=1, lease=LEASE)
    assert (taken.owner, taken.token) == ("b", held.token + 1)


async def test_orders_and_counts_list_by_state(backend: Backend) -> None:
    store = backend.open()
    for index in range(3):
        await submitted(store, f"p{index}", ca="entrust" if index else "digicert")
        await backend.advance(0.01)
    await store.add_intent(
        key="i", ca="digicert", fingerprint="f", common_name="i.example", owner="o", lease=LEASE
    )
    counts = await store.counts()
    assert counts == {
        StoredState.INTENT: 1,
        StoredState.PENDING: 3,
        StoredState.ISSUED: 0,
        StoredState.FAILED: 0,
        StoredState.UNCERTAIN: 0,
    }
    assert [o.key for o in await store.orders()] == ["p0", "p1", "p2", "i"]
    assert [o.key for o in await store.orders(states=[StoredState.PENDING], ca="entrust")] == [
        "p1",
        "p2",
    ]
    assert [o.key for o in await store.orders(limit=1)] == ["p0"]
    assert await store.orders(states=[]) == []


async def test_bad_arguments_are_config_errors_before_any_change(backend: Backend) -> None:
    store = backend.open()
    good = {
        "key": "k",
        "ca": "digicert",
        "fingerprint": "f",
        "common_name": "c",
        "owner": "o",
        "lease": LEASE,
    }
    for name, bad in [
        ("key", ""),
        ("ca", "letsencrypt"),
        ("owner", "x" * 300),
        ("lease", 0),
        ("lease", -1.0),
        ("lease", float("nan")),
        ("lease", 1e9),
        ("lease", True),
    ]:
        with pytest.raises(ConfigError):
            await store.add_intent(**{**good, name: bad})  # type: ignore[arg-type]
    claim: dict[str, object] = {"owner": "o", "cas": ["digicert"], "limit": 1, "lease": 1}
    for name, bad in [
        ("cas", "digicert"),
        ("cas", []),
        ("cas", ["acme"]),
        ("limit", 0),
        ("limit", 10**6),
        ("limit", 2.5),
        ("owner", ""),
    ]:
        with pytest.raises(ConfigError):
            await store.claim(**{**claim, name: bad})  # type: ignore[arg-type]
    intent, _ = await store.add_intent(**good)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        await store.record_submitted(intent, order_id="", deadline_in=60)
    with pytest.raises(ConfigError):
        await store.record_submitted(intent, order_id="1", deadline_in=-1)
    pending = await store.record_submitted(intent, order_id="1", deadline_in=60)
    for attempts in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="attempts"):
            await store.reschedule(pending, attempts=attempts, due_in=0, last_error=None)  # type: ignore[arg-type]
    still = OrderStatus(ca="digicert", order_id="1", state=OrderState.PENDING)
    with pytest.raises(ConfigError, match="only an issued or failed"):
        await store.complete(pending, still, attempts=1)
    with pytest.raises(ConfigError, match="pending, not intent"):
        await store.record_uncertain(pending, error="late")
    assert await store.counts() == {**dict.fromkeys(StoredState, 0), StoredState.PENDING: 1}


async def test_errors_are_bounded_in_the_row(backend: Backend) -> None:
    store = backend.open()
    await submitted(store, "e")
    (held,) = await store.claim(owner="a", cas=["digicert"], limit=1, lease=LEASE)
    record = await store.reschedule(held, attempts=1, due_in=0, last_error="x" * 10_000)
    assert record.last_error is not None
    assert len(record.last_error) == 2000
