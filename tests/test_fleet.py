"""poll_many, PendingOrder handles, resume and Progress, through certpoll.DigiCert.

The CA is a small fake CertCentral behind ``httpx.MockTransport`` that logs the loop time of
every request it sees; everything runs in virtual time (``looptime``) unless it says not.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import random
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import certpoll
from certpoll import (
    AuthenticationError,
    ConfigError,
    DigiCert,
    DigiCertSettings,
    OrderNotFound,
    OrderState,
    OrderStatus,
    PendingOrder,
    PollDetails,
    Progress,
    RateLimited,
    poll_many,
    resume,
)
from certpoll._fleet import _Order, _pack_detail, _unpack_detail
from certpoll._gate import UpstreamGate
from certpoll._handles import utcnow as REAL_UTCNOW
from certpoll.testing import VirtualClock
from tests.certs import make_chain
from tests.helpers import DIGICERT_API_KEY
from tests.test_gate import max_in_window

BASE = "https://dc.test/services/v2"
LEAF, CHAIN, _ = make_chain("www.example.com")
BUNDLE = LEAF + CHAIN


def now() -> float:
    return asyncio.get_running_loop().time()


#: The wall clock of these tests: it moves with the loop's virtual clock.
EPOCH = datetime(2030, 1, 1, tzinfo=UTC)


def wall_now() -> datetime:
    return EPOCH + timedelta(seconds=now())


@pytest.fixture(autouse=True)
def _wall_follows_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # Both the stream and resume() read the wall clock.
    monkeypatch.setattr("certpoll._fleet.utcnow", wall_now)
    monkeypatch.setattr("certpoll._handles.utcnow", wall_now)


@dataclass
class FakeCertCentral:
    """Orders are pending until their ``issue_on``-th look, then issued."""

    issue_on: int = 2
    latency: float = 0.0
    #: (start, end, Retry-After value or None): every request in [start, end) gets a 429.
    storms: list[tuple[float, float, str | None]] = field(default_factory=list)
    #: order id -> HTTP status for its status request (404, 401, 503...).
    answers: dict[str, int] = field(default_factory=dict)
    #: order id -> the look that gets a 429 with Retry-After: 60.
    throttle_on: dict[str, int] = field(default_factory=dict)
    rejected: set[str] = field(default_factory=set)
    never: set[str] = field(default_factory=set)
    log: list[tuple[float, str]] = field(default_factory=list)
    looks: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    throttled: int = 0

    def times(self, order_id: str | None = None) -> list[float]:
        return [t for t, oid in self.log if order_id is None or oid == order_id]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        t = now()
        path = request.url.path
        assert request.headers["X-DC-DEVKEY"] == DIGICERT_API_KEY
        order_id = path.rsplit("/", 1)[1] if "/order/" in path else "download"
        self.log.append((t, order_id))
        self.in_flight += 1
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            return self._answer(t, path, order_id)
        finally:
            self.in_flight -= 1

    def _answer(self, t: float, path: str, order_id: str) -> httpx.Response:
        for start, end, retry_after in self.storms:
            if start <= t < end:
                return self._throttle(retry_after)
        if order_id == "download":
            return httpx.Response(200, text=BUNDLE)
        self.looks[order_id] += 1
        look = self.looks[order_id]
        if self.throttle_on.get(order_id) == look:
            return self._throttle("60")
        if order_id in self.answers:
            return httpx.Response(self.answers[order_id], json={"errors": []})
        if order_id in self.rejected:
            return httpx.Response(200, json={"id": int(order_id), "status": "rejected"})
        if look >= self.issue_on and order_id not in self.never:
            return httpx.Response(
                200, json={"id": int(order_id), "status": "issued", "certificate": {"id": 7}}
            )
        return httpx.Response(200, json={"id": int(order_id), "status": "pending"})

    def _throttle(self, retry_after: str | None) -> httpx.Response:
        self.throttled += 1
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        return httpx.Response(429, headers=headers, json={"errors": [{"code": "rate"}]})


def settings(**overrides: object) -> DigiCertSettings:
    values: dict[str, object] = {"api_key": DIGICERT_API_KEY, "org_id": 4242, "base_url": BASE}
    values.update(overrides)
    return DigiCertSettings(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def digicert(
    ca: FakeCertCentral,
    *,
    seed: int = 0,
    hooks: Iterable[certpoll.PollHook] = (),
    gate: UpstreamGate | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **overrides: object,
) -> AsyncIterator[DigiCert]:
    s = settings(**overrides)
    async with httpx.AsyncClient(transport=transport or httpx.MockTransport(ca)) as http:
        poller = s.make_poller(hooks=list(hooks), rng=random.Random(seed))
        yield DigiCert(s, http=http, poller=poller, gate=gate)


def ids(n: int, first: int = 1000) -> list[str]:
    return [str(first + i) for i in range(n)]


async def collect(stream: certpoll.OrderStream) -> list[OrderStatus]:
    return [status async for status in stream]


def other_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


# -- the upstream gate under many orders -------------------------------------------------------


@pytest.mark.looptime
async def test_ten_thousand_orders_stay_under_digicerts_documented_limits() -> None:
    ca = FakeCertCentral(issue_on=1)
    async with digicert(ca, poll_max_wait_seconds=math.inf) as dc:
        statuses = await collect(poll_many(dc, ids(10_000), concurrency=50))
    assert len({s.order_id for s in statuses}) == 10_000
    assert all(s.state is OrderState.ISSUED and s.certificate for s in statuses)
    times = ca.times()
    assert len(times) == 20_000  # one look and one download each
    assert now() > 12 * 180  # over twelve 3-minute windows
    # DigiCert's documented limits, and the 20 % headroom the defaults keep.
    assert max_in_window(times, 5.0) <= 80 < 100
    assert max_in_window(times, 180.0) <= 800 < 1000


async def _storm_requests(orders: int, *, share_cooldown: bool = True) -> tuple[int, int]:
    """Requests the CA sees during a 600 s storm of 429 + Retry-After: 60 starting at 30 s."""
    start = now() + 30.0
    ca = FakeCertCentral(issue_on=6, storms=[(start, start + 600.0, "60")])
    gate = UpstreamGate(rate_limits=settings().rate_limits, share_cooldown=share_cooldown)
    async with digicert(ca, gate=gate, poll_max_wait_seconds=math.inf) as dc:
        statuses = await collect(poll_many(dc, ids(orders), concurrency=20))
    assert [s.state for s in statuses] == [OrderState.ISSUED] * orders
    during = [t for t in ca.times() if start <= t < start + 600.0]
    return len(during), ca.throttled


@pytest.mark.looptime
async def test_requests_during_a_429_storm_do_not_grow_with_the_orders() -> None:
    few, few_throttled = await _storm_requests(10)
    many, many_throttled = await _storm_requests(1_000)
    # One probe a minute (the first 429, then 10 probes): the same for 10 orders and 1,000.
    assert few == many == few_throttled == many_throttled
    assert many <= 600 // 60 + 1


@pytest.mark.looptime
async def test_without_the_shared_cooldown_the_storm_grows_with_the_orders() -> None:
    # The same storm with per-order backoff only: what the gate saves the CA from.
    few, _ = await _storm_requests(10, share_cooldown=False)
    many, _ = await _storm_requests(200, share_cooldown=False)
    assert few >= 20
    assert many > 10 * few


@pytest.mark.looptime
async def test_one_orders_429_holds_every_order_then_one_probe_goes() -> None:
    ca = FakeCertCentral(issue_on=4, latency=0.5, throttle_on={"1007": 2})
    async with digicert(ca) as dc:
        statuses = await collect(poll_many(dc, ids(50), concurrency=50))
    assert all(s.state is OrderState.ISSUED for s in statuses)
    throttled_at = ca.times("1007")[1] + 0.5  # sent, then answered after the latency
    after = [t for t in ca.times() if t > throttled_at]
    assert after[0] == pytest.approx(throttled_at + 60.0, abs=0.01)  # nobody before 60 s
    assert after[1] == pytest.approx(after[0] + 0.5)  # the rest once the probe answered
    assert dc.gate.rate_limited == 1


@pytest.mark.looptime
@pytest.mark.parametrize("share_cooldown", [True, False])
async def test_the_order_whose_request_drew_a_shared_429_keeps_its_place(
    share_cooldown: bool,
) -> None:
    """A 429 the shared gate holds every order for: the order that drew it comes back when
    the gate opens, and its own schedule goes on where it was. Without a shared cooldown the
    429 is that order's alone, and costs it a step of its schedule as before."""
    ca = FakeCertCentral(issue_on=5, throttle_on={"1000": 2})
    gate = UpstreamGate(share_cooldown=share_cooldown)
    async with digicert(ca, gate=gate, poll_max_wait_seconds=math.inf, poll_jitter=0.0) as dc:
        statuses = await collect(poll_many(dc, ids(2)))
    assert all(s.state is OrderState.ISSUED for s in statuses)
    looks = ca.times("1000")
    if share_cooldown:
        # 0, 5 (the 429: Retry-After 60), 65 when the gate opens, then 15 s and 45 s: the
        # waits that were due after the look at 5 s.
        assert looks == pytest.approx([0.0, 5.0, 65.0, 80.0, 125.0], abs=0.01)
    else:
        # The 429's wait is the schedule's own step (15 s) raised to its floor (60 s); the
        # next ones are the steps after it: 45 s, 135 s.
        assert looks == pytest.approx([0.0, 5.0, 65.0, 110.0, 245.0], abs=0.01)


@pytest.mark.looptime
async def test_a_shared_429_with_retry_after_zero_does_not_spin() -> None:
    ca = FakeCertCentral(issue_on=3)
    storm_at = [0.0]

    async def throttled_once(request: httpx.Request) -> httpx.Response:
        if now() == 5.0 and storm_at[0] == 0.0:
            storm_at[0] = now()
            return httpx.Response(429, headers={"Retry-After": "0"}, json={"errors": []})
        return await ca(request)

    transport = httpx.MockTransport(throttled_once)
    async with digicert(
        ca, transport=transport, poll_max_wait_seconds=math.inf, poll_jitter=0.0
    ) as dc:
        statuses = await collect(poll_many(dc, ids(1)))
    assert statuses[0].state is OrderState.ISSUED
    # The 429 at 5 s: back after the schedule's first wait (5 s), not at once.
    assert ca.times("1000") == pytest.approx([0.0, 10.0, 25.0], abs=0.01)


# -- cancellation ---------------------------------------------------------------------------


@pytest.mark.looptime
async def test_cancelling_the_consumer_mid_flight_leaves_nothing_behind() -> None:
    ca = FakeCertCentral(issue_on=2, latency=1.0)
    seen: list[OrderStatus] = []

    async def consume(stream: certpoll.OrderStream) -> None:
        async for status in stream:
            seen.append(status)

    async with digicert(ca) as dc:
        stream = poll_many(dc, ids(300), concurrency=20)
        task = asyncio.create_task(consume(stream))
        await asyncio.sleep(40)
        while ca.in_flight == 0:  # noqa: ASYNC110 - catch the next burst mid-flight
            await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert other_tasks() == set()
        assert ca.in_flight == 0
        requests = len(ca.log)
        await asyncio.sleep(600)
        assert len(ca.log) == requests  # nothing polls any more
        assert seen
        # Every order not finished has a handle, interrupted ones due at once.
        assert len(stream.pending()) == 300 - len(seen)
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()


@pytest.mark.looptime
async def test_breaking_out_of_a_bare_async_for_stops_every_poll() -> None:
    ca = FakeCertCentral(issue_on=1, latency=1.0)
    async with digicert(ca) as dc:
        async for _ in poll_many(dc, ids(100), concurrency=10):
            break
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert other_tasks() == set()
        assert ca.in_flight == 0


@pytest.mark.looptime
async def test_async_with_closes_the_stream_on_the_way_out() -> None:
    ca = FakeCertCentral(issue_on=1, latency=1.0)
    async with digicert(ca) as dc, poll_many(dc, ids(100), concurrency=10) as stream:
        first = await stream.__anext__()
        assert first.state is OrderState.ISSUED
    assert other_tasks() == set()
    assert ca.in_flight == 0
    assert stream.progress().issued >= 1


async def test_cancellation_empties_a_real_connection_pool() -> None:
    """Real sockets on 127.0.0.1 (no virtual time): the CA never answers."""
    arrived = asyncio.Event()
    connections: list[asyncio.StreamWriter] = []

    async def silent_ca(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        if len(connections) == 5:
            arrived.set()
        await reader.read()  # until the client hangs up

    server = await asyncio.start_server(silent_ca, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = httpx.AsyncHTTPTransport()
    try:
        async with digicert(
            FakeCertCentral(), transport=transport, base_url=f"http://127.0.0.1:{port}/v2"
        ) as dc:
            task = asyncio.create_task(collect(poll_many(dc, ids(20), concurrency=5)))
            await arrived.wait()
            assert len(transport._pool.connections) == 5
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert transport._pool.connections == []
            assert {t.get_name() for t in other_tasks()} <= {"server"} | {
                t.get_name() for t in other_tasks() if "poll_many" not in t.get_name()
            }
            assert not [t for t in other_tasks() if "poll_many" in t.get_name()]
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


# -- resumable handles ----------------------------------------------------------------------


@pytest.mark.looptime
async def test_a_handle_survives_json_and_the_resumed_poll_continues_the_schedule() -> None:
    ca = FakeCertCentral(issue_on=6)
    async with digicert(ca, poll_jitter=0.0) as dc:
        stream = poll_many(dc, ["5001"])
        task = asyncio.create_task(collect(stream))
        await asyncio.sleep(30)  # looks at 0, 5 and 20 s; the next is due at 65 s
        await stream.aclose()
        assert await task == []
        (handle,) = stream.pending()
    assert ca.times("5001") == [0.0, 5.0, 20.0]
    assert handle.attempts == 3
    wall = wall_now()
    assert handle.next_poll_at - wall == pytest.approx(timedelta(seconds=35), abs=timedelta(1))
    assert handle.deadline - wall == pytest.approx(timedelta(seconds=570), abs=timedelta(1))

    stored = handle.to_json()
    assert json.loads(stored)["attempts"] == 3
    restored = PendingOrder.from_json(stored)
    assert restored == handle

    # A "restart": a new connector, a new gate, the loop clock elsewhere.
    await asyncio.sleep(1000)
    started = now()
    async with digicert(ca, poll_jitter=0.0) as dc:
        (status,) = await collect(poll_many(dc, [restored]))
    assert status.state is OrderState.ISSUED
    looks = [t - started for t in ca.times("5001")[3:]]
    # Due 35 s after the handle was taken; then 135 s and 300 s, as if never interrupted.
    # (The handle was taken 1000 s ago, so it is overdue: it goes at once.)
    assert looks == pytest.approx([0.0, 135.0, 435.0], abs=0.01)


@pytest.mark.looptime
async def test_resume_continues_one_order_with_the_poller() -> None:
    ca = FakeCertCentral(issue_on=5)
    wall = wall_now()
    handle = PendingOrder(
        ca="digicert",
        order_id="6001",
        attempts=2,
        next_poll_at=wall + timedelta(seconds=40),
        deadline=wall + timedelta(seconds=3600),
    )
    ca.looks["6001"] = 2
    async with digicert(ca, poll_jitter=0.0) as dc:
        status = await resume(dc, PendingOrder.from_json(handle.to_json()))
    assert status.state is OrderState.ISSUED
    # First look when due, then the waits after two attempts: 45 s, 135 s.
    assert ca.times("6001") == pytest.approx([40.0, 85.0, 220.0], abs=0.01)


@pytest.mark.looptime
async def test_resume_of_an_expired_handle_gets_a_fresh_max_wait() -> None:
    ca = FakeCertCentral(never={"6002"})
    wall = wall_now()
    handle = PendingOrder(
        ca="digicert", order_id="6002", attempts=0, next_poll_at=wall, deadline=wall
    )
    async with digicert(ca, poll_jitter=0.0, poll_max_wait_seconds=60) as dc:
        status = await resume(dc, handle)
        assert status.state is OrderState.PENDING
        assert status.message == "order 6002 is pending"
        assert ca.times("6002") == pytest.approx([0.0, 5.0, 20.0, 60.0], abs=0.01)
        status = await resume(dc, handle, max_wait=10)
        assert ca.times("6002")[4:] == pytest.approx([60.0, 65.0, 70.0], abs=0.01)


@pytest.mark.looptime
async def test_still_pending_orders_come_back_with_a_handle() -> None:
    ca = FakeCertCentral(never={"7001", "7002"}, answers={"7002": 503})
    async with digicert(ca, poll_jitter=0.0) as dc:
        stream = poll_many(dc, ["7001", "7002", "7003"], max_wait=60)
        statuses = {s.order_id: s async for s in stream}
        assert statuses["7003"].state is OrderState.ISSUED
        assert statuses["7001"].state is OrderState.PENDING
        assert statuses["7001"].message == "order 7001 is pending"
        assert statuses["7002"].message == "order 7002 still pending after PollMaxWait"
        assert isinstance(statuses["7002"].last_error, certpoll.TransientError)
        assert stream.handle("7003") is None
        handle = stream.handle("7001")
        assert handle is not None
        assert handle.attempts == 4  # 0, 5, 20 and the last look at 60 s
        wall = wall_now()
        assert handle.next_poll_at - wall == pytest.approx(timedelta(seconds=135), abs=timedelta(1))
        assert {h.order_id for h in stream.pending()} == {"7001", "7002"}
        progress = stream.progress()
        assert (progress.issued, progress.still_pending, progress.pending) == (1, 2, 0)

        # Resumed without max_wait: the deadline has passed, so a fresh PollMaxWait (600 s).
        await asyncio.sleep(135)
        started = now()
        ca.never.discard("7001")
        (again,) = await collect(poll_many(dc, [handle]))
        assert again.state is OrderState.ISSUED
        assert ca.times("7001")[4] - started == pytest.approx(0.0, abs=0.01)


@pytest.mark.looptime
async def test_a_retry_after_past_the_deadline_ends_the_poll_with_it() -> None:
    ca = FakeCertCentral(throttle_on={"7101": 1})
    async with digicert(ca) as dc:
        stream = poll_many(dc, ["7101"], max_wait=30)
        (status,) = await collect(stream)
        assert status.state is OrderState.PENDING
        assert status.retry_after == 60.0
        assert isinstance(status.last_error, RateLimited)
        handle = stream.handle("7101")
        assert handle is not None
        wall = wall_now()
        assert handle.next_poll_at - wall == pytest.approx(timedelta(seconds=60), abs=timedelta(1))


@pytest.mark.looptime
async def test_handles_before_the_first_step_and_with_infinite_deadlines() -> None:
    async with digicert(FakeCertCentral()) as dc:
        stream = poll_many(dc, ["8001"], max_wait=math.inf)
        handle = stream.handle("8001")
        assert handle is not None
        assert handle.attempts == 0
        assert handle.deadline.year > 3000
        assert PendingOrder.from_json(handle.to_json()) == handle
        assert stream.handle("nope") is None
        await stream.aclose()


def test_pending_order_normalises_to_utc() -> None:
    plus_two = timezone_plus(2)
    handle = PendingOrder(
        ca="sectigo",
        order_id="x",
        attempts=1,
        next_poll_at=datetime(2030, 1, 1, 12, tzinfo=plus_two),
        deadline=datetime(2030, 1, 1, 13, tzinfo=plus_two),
    )
    assert handle.next_poll_at == datetime(2030, 1, 1, 10, tzinfo=UTC)
    assert handle.next_poll_at.tzinfo is UTC
    assert json.loads(handle.to_json())["deadline"] == "2030-01-01T11:00:00+00:00"


def timezone_plus(hours: int) -> timezone:
    return timezone(timedelta(hours=hours))


GOOD = {
    "ca": "digicert",
    "order_id": "1",
    "attempts": 2,
    "next_poll_at": "2030-01-01T00:00:00+00:00",
    "deadline": "2030-01-01T00:10:00Z",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ca": "letsencrypt"}, "ca must be one of"),
        ({"order_id": ""}, "order_id must be a non-empty string"),
        ({"order_id": 5}, "order_id must be a non-empty string"),
        ({"attempts": -1}, "attempts must be 0 or more"),
        ({"attempts": True}, "attempts must be an integer"),
        ({"attempts": "2"}, "attempts must be an integer"),
        ({"next_poll_at": "2030-01-01T00:00:00"}, "timezone-aware"),
        ({"deadline": "soon"}, "deadline is not an ISO 8601 time"),
        ({"deadline": 5}, "deadline must be an ISO 8601 string"),
        ({"deadline": None}, "deadline must be an ISO 8601 string"),
    ],
)
def test_bad_handles_are_config_errors(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PendingOrder.from_json(json.dumps(GOOD | change))


@pytest.mark.parametrize(
    ("text", "message"),
    [("{", "must be JSON"), ("[]", "is a JSON object, not list"), ('{"ca": "digicert"}', "lacks")],
)
def test_unreadable_handles_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PendingOrder.from_json(text)


def test_handle_json_ignores_unknown_keys_and_needs_datetimes() -> None:
    handle = PendingOrder.from_json(json.dumps(GOOD | {"note": "kept elsewhere"}).encode())
    assert handle.deadline == datetime(2030, 1, 1, 0, 10, tzinfo=UTC)
    with pytest.raises(ConfigError, match="next_poll_at must be a datetime"):
        PendingOrder(
            ca="digicert",
            order_id="1",
            attempts=0,
            next_poll_at="2030-01-01",  # type: ignore[arg-type]
            deadline=handle.deadline,
        )


# -- progress, failures, schedule -----------------------------------------------------------


@pytest.mark.looptime
async def test_progress_counts_add_up() -> None:
    ca = FakeCertCentral(
        issue_on=3, rejected={"1003"}, answers={"1004": 404}, throttle_on={"1005": 1}
    )
    seen: list[Progress] = []
    async with digicert(ca) as dc:
        statuses = await collect(poll_many(dc, ids(200), on_progress=seen.append, concurrency=8))
    states = Counter(s.state for s in statuses)
    assert states == {OrderState.ISSUED: 198, OrderState.FAILED: 2}
    last = seen[-1]
    assert last == Progress(
        pending=0, issued=198, failed=2, still_pending=0, requests_sent=len(ca.log), rate_limited=1
    )
    assert last.total == 200
    assert all(p.total == 200 for p in seen)
    assert [p.issued + p.failed for p in seen] == sorted(p.issued + p.failed for p in seen)
    failed = {s.order_id: s for s in statuses if s.state is OrderState.FAILED}
    assert isinstance(failed["1004"].last_error, OrderNotFound)
    assert failed["1003"].message is not None
    assert "rejected" in failed["1003"].message


@pytest.mark.looptime
async def test_progress_heartbeats_while_nothing_finishes() -> None:
    ca = FakeCertCentral(issue_on=5)
    seen: list[tuple[float, Progress]] = []
    async with digicert(ca, poll_jitter=0.0) as dc:
        await collect(poll_many(dc, ids(3), on_progress=lambda p: seen.append((now(), p))))
    heartbeats = [t for t, p in seen if p.pending == 3]
    assert heartbeats == [0.0, 5.0, 20.0, 65.0]  # after each round of looks
    assert seen[-1][1].issued == 3


@pytest.mark.looptime
async def test_a_refused_credential_stops_everything() -> None:
    ca = FakeCertCentral(answers={"1010": 401}, latency=1.0)
    async with digicert(ca) as dc:
        stream = poll_many(dc, ids(50), concurrency=20)
        with pytest.raises(AuthenticationError):
            await collect(stream)
        assert other_tasks() == set()
        assert ca.in_flight == 0


@pytest.mark.looptime
async def test_a_bug_in_a_connector_is_raised_not_swallowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with digicert(FakeCertCentral()) as dc:

        async def broken(order_id: str) -> certpoll.Pending:
            raise ZeroDivisionError(order_id)

        monkeypatch.setattr(dc, "poll_once", broken)
        with pytest.raises(ZeroDivisionError):
            await collect(poll_many(dc, ids(5)))


@pytest.mark.looptime
async def test_a_permanent_error_raised_by_an_attempt_fails_that_order_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with digicert(FakeCertCentral(issue_on=1)) as dc:
        real = dc.poll_once

        async def picky(order_id: str) -> certpoll.Done[OrderStatus] | certpoll.Pending:
            if order_id == "1001":
                raise certpoll.PermanentError("no", ca="digicert")
            return await real(order_id)  # type: ignore[return-value]

        monkeypatch.setattr(dc, "poll_once", picky)
        statuses = {s.order_id: s for s in await collect(poll_many(dc, ids(3)))}
    assert statuses["1001"].state is OrderState.FAILED
    assert statuses["1000"].state is OrderState.ISSUED


@pytest.mark.looptime
async def test_a_wrong_result_type_is_a_type_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async with digicert(FakeCertCentral()) as dc:

        async def wrong(order_id: str) -> object:
            return "issued"

        monkeypatch.setattr(dc, "poll_once", wrong)
        with pytest.raises(TypeError, match="Done, Pending or Failed"):
            await collect(poll_many(dc, ["1"]))


@pytest.mark.looptime
async def test_an_attempt_cancelled_by_someone_else_is_tried_again() -> None:
    ca = FakeCertCentral(issue_on=1, latency=1.0)
    async with digicert(ca) as dc:
        stream = poll_many(dc, ["1"])
        task = asyncio.create_task(collect(stream))
        await asyncio.sleep(0.5)
        (attempt,) = [t for t in other_tasks() if "poll_many" in t.get_name()]
        attempt.cancel()
        (status,) = await task
    assert status.state is OrderState.ISSUED
    assert ca.times() == [0.0, 0.5, 1.5]  # cancelled look, the look again, the download


@pytest.mark.looptime
async def test_the_schedule_is_the_pollers_step_for_step() -> None:
    single = FakeCertCentral(issue_on=6)
    async with digicert(single, seed=7) as dc:
        await dc.get_order_status("1")
    fleet = FakeCertCentral(issue_on=6)
    async with digicert(fleet, seed=7) as dc:
        start = now()
        await collect(poll_many(dc, ["1"]))
    assert [t - start for t in fleet.times()] == pytest.approx(single.times())
    assert len(single.times()) == 7


@pytest.mark.looptime
async def test_hooks_see_every_attempt() -> None:
    records: list[PollDetails] = []
    async with digicert(FakeCertCentral(issue_on=2, rejected={"2"}), hooks=[records.append]) as dc:
        await collect(poll_many(dc, ["1", "2"]))
    outcomes = sorted((r.order_id, r.attempt, r.outcome) for r in records)
    assert outcomes == [("1", 1, "pending"), ("1", 2, "done"), ("2", 1, "done")]
    pending = next(r for r in records if r.outcome == "pending")
    assert pending.next_wait is not None
    assert pending.next_wait == pytest.approx(5.0, rel=0.2)


@pytest.mark.looptime
async def test_queueing_behind_the_rate_limit_never_times_an_attempt_out() -> None:
    ca = FakeCertCentral(issue_on=1, latency=0.5)
    gate = UpstreamGate(rate_limits=[(1, 1.0)])
    async with digicert(ca, gate=gate, attempt_timeout_seconds=2.0) as dc:
        statuses = await collect(poll_many(dc, ids(100), concurrency=100, max_wait=math.inf))
    assert [s.state for s in statuses] == [OrderState.ISSUED] * 100
    # 200 requests, one at a time: each counts from its admission to its answer (0.5 s),
    # then for the 1 s window and the gate's 0.1 s margin; the last answer 0.5 s after.
    assert now() == pytest.approx(199 * 1.6 + 0.5, abs=0.1)


@pytest.mark.parametrize(
    ("orders", "options", "message"),
    [
        (["1"], {"concurrency": 0}, "concurrency must be a positive integer"),
        (["1"], {"concurrency": True}, "concurrency must be a positive integer"),
        (["1"], {"max_wait": 0}, "max_wait must be a positive"),
        (["1"], {"max_wait": math.nan}, "max_wait must be a positive"),
        (["1", "1"], {}, "listed twice"),
        (["12abc"], {}, "not a valid"),
        ("123", {}, "not one string"),
    ],
)
async def test_bad_arguments_are_config_errors_before_any_request(
    orders: Iterable[str], options: dict[str, object], message: str
) -> None:
    ca = FakeCertCentral()
    async with digicert(ca) as dc:
        with pytest.raises(ConfigError, match=message):
            poll_many(dc, orders, **options)  # type: ignore[call-overload]
    assert ca.log == []


async def test_handles_of_another_ca_are_refused() -> None:
    wall = wall_now()
    handle = PendingOrder(ca="sectigo", order_id="1", attempts=0, next_poll_at=wall, deadline=wall)
    async with digicert(FakeCertCentral()) as dc:
        with pytest.raises(ConfigError, match="is for sectigo, not digicert"):
            poll_many(dc, [handle])
        with pytest.raises(ConfigError, match="is for sectigo, not digicert"):
            await resume(dc, handle)


async def test_a_pending_order_costs_well_under_two_kilobytes() -> None:
    order_ids = ids(100_000)
    async with digicert(FakeCertCentral()) as dc:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            stream = poll_many(dc, order_ids)
            stream._start()
            used = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        await stream.aclose()
    per_order = used / len(order_ids)
    print(f"memory per pending order: {per_order:.0f} bytes")
    assert per_order < 2048
    assert per_order < 600


@pytest.mark.looptime
async def test_every_order_keeps_the_cas_latest_words_for_itself() -> None:
    """Orders share their message's shape in memory, but each hook record and each final
    status still carries that order's own words, whatever its id."""
    records: list[certpoll.PollDetails] = []
    order_ids = ["1", "11", "111", "2", "1000"]
    ca = FakeCertCentral(never=set(order_ids))
    async with digicert(ca, hooks=[records.append], poll_max_wait_seconds=30.0) as dc:
        statuses = await collect(poll_many(dc, order_ids, concurrency=2))
    assert {s.order_id: s.message for s in statuses} == {
        order_id: f"order {order_id} is pending" for order_id in order_ids
    }
    assert records
    assert all(r.detail == f"order {r.order_id} is pending" for r in records)


@given(order_id=st.text(min_size=1, max_size=8), detail=st.text(max_size=40))
def test_a_packed_message_unpacks_to_itself(order_id: str, detail: str) -> None:
    shapes: dict[tuple[str, str], tuple[str, str]] = {}
    order = _Order(order_id, attempts=0, due=0.0, deadline=1.0)
    order.detail = _pack_detail(order_id, detail, shapes)
    assert _unpack_detail(order) == detail
    again = _pack_detail(order_id, detail, shapes)
    assert again is order.detail or again == detail  # a shape is shared, not copied


def test_the_real_wall_clock_is_aware_utc() -> None:
    assert REAL_UTCNOW().tzinfo is UTC


# -- the deadline is hard, whatever the gate does ---------------------------------------------


@pytest.mark.looptime
async def test_a_thousand_concurrent_polls_each_end_by_their_deadline() -> None:
    # DigiCert's default limits admit 80 requests per 5 s: most of 1,000 polls cannot even
    # make their first look within PollMaxWait. Each still ends by max_wait + attempt_timeout.
    ca = FakeCertCentral(never=set(ids(1000)))
    ended: list[float] = []
    async with digicert(ca, poll_max_wait_seconds=60, attempt_timeout_seconds=30) as dc:

        async def one(order_id: str) -> OrderStatus:
            status = await dc.get_order_status(order_id)
            ended.append(now())
            return status

        statuses = await asyncio.gather(*(one(i) for i in ids(1000)))
    assert max(ended) <= 60 + 30
    assert max(ended) <= 60 + 0.01  # and here (no slow answers) by the deadline itself
    assert all(s.state is OrderState.PENDING for s in statuses)
    refused = [s for s in statuses if isinstance(s.last_error, certpoll.GateClosed)]
    assert refused  # told why: the gate could not admit their look in time
    assert all(s.retry_after is not None for s in refused)
    assert max_in_window(ca.times(), 5.0) <= 80


@pytest.mark.looptime
@pytest.mark.parametrize(("concurrency", "latency"), [(2, 5.0), (10, 5.0), (3, 29.0), (1, 45.0)])
async def test_orders_waiting_for_a_free_slot_still_end_by_their_deadline(
    concurrency: int, latency: float
) -> None:
    # More looks are due than the slots can take: a look that waited past its order's
    # deadline gets only what is left of attempt_timeout, and none once that is gone.
    ca = FakeCertCentral(never=set(ids(100)), latency=latency)
    ended: dict[str, float] = {}
    async with digicert(ca, poll_max_wait_seconds=60, attempt_timeout_seconds=30) as dc:
        stream = poll_many(dc, ids(100), concurrency=concurrency)
        async for status in stream:
            ended[status.order_id] = now()
            assert status.state is OrderState.PENDING
        assert sorted(h.order_id for h in stream.pending()) == ids(100)
    assert sorted(ended) == ids(100)
    assert max(ended.values()) <= 60 + 30
    assert max(ca.times()) < 60 + 30


@pytest.mark.looptime
async def test_one_orders_long_hold_does_not_hold_another_orders_poll() -> None:
    ca = FakeCertCentral(never={"1", "2"}, storms=[(0.0, 0.5, "3600")])
    async with digicert(ca, poll_max_wait_seconds=60, retry_after_cap_seconds=7200) as dc:
        first = await dc.get_order_status("1")
        assert first.retry_after == 3600.0
        assert isinstance(first.last_error, RateLimited)
        second = await dc.get_order_status("2")
    assert now() == pytest.approx(0.0, abs=0.01)  # not 3,600 s later
    assert second.state is OrderState.PENDING
    assert isinstance(second.last_error, certpoll.GateClosed)
    assert second.retry_after == pytest.approx(3600.0, abs=0.01)
    assert ca.times("2") == []  # nothing was sent for it


@pytest.mark.looptime
@pytest.mark.parametrize("value", ["999999999999", "9" * 30, "Fri, 31 Dec 9999 23:59:59 GMT"])
async def test_a_hostile_retry_after_holds_the_connector_no_longer_than_the_cap(
    value: str,
) -> None:
    ca = FakeCertCentral(issue_on=1, storms=[(0.0, 0.5, value)])
    async with digicert(ca, poll_max_wait_seconds=60) as dc:
        held = await dc.get_order_status("1")
        assert held.state is OrderState.PENDING
        assert held.retry_after == 600.0  # the documented default cap
        assert dc.gate.opens_in() == pytest.approx(600.0)
        stream = poll_many(dc, ["2"], max_wait=3600)
        (status,) = await collect(stream)
    assert status.state is OrderState.ISSUED
    assert ca.times("2")[0] == pytest.approx(600.0, abs=0.01)


@pytest.mark.looptime
async def test_a_budget_off_the_clock_grid_makes_two_looks_per_order() -> None:
    ca = FakeCertCentral(never=set(ids(20)))
    async with digicert(ca) as dc:
        statuses = await collect(poll_many(dc, ids(20), max_wait=0.1 + 0.2))
    assert all(s.state is OrderState.PENDING for s in statuses)
    assert set(ca.looks.values()) == {2}  # the first look and the last, at 0.3 s


# -- no answer is ever dropped ----------------------------------------------------------------


def account(all_ids: list[str], seen: list[OrderStatus], stream: certpoll.OrderStream) -> None:
    """Every order exactly once: a final answer yielded or handed over, or an open handle."""
    delivered = seen + list(stream.undelivered())
    final = [s.order_id for s in delivered if s.state is not OrderState.PENDING]
    still_open = [h.order_id for h in stream.pending()]
    assert len(final) == len(set(final))
    assert sorted(final + still_open) == sorted(all_ids)
    assert stream.undelivered() == ()  # handed over once


@pytest.mark.looptime
async def test_answers_settled_with_a_refused_credential_are_handed_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nine issued answers (status, then download: 2 s) and one 403 arrive at the same instant.
    ca = FakeCertCentral(issue_on=1, latency=1.0)
    seen: list[OrderStatus] = []
    async with digicert(ca) as dc:
        real = dc.poll_once

        async def refused_late(order_id: str) -> certpoll.Done[OrderStatus] | certpoll.Pending:
            if order_id == "1009":
                await asyncio.sleep(2.0)
                return certpoll.Failed(AuthenticationError("403", ca="digicert"))  # type: ignore[return-value]
            return await real(order_id)  # type: ignore[return-value]

        monkeypatch.setattr(dc, "poll_once", refused_late)
        stream = poll_many(dc, ids(10), concurrency=10)

        async def consume() -> None:
            async for status in stream:
                seen.append(status)

        with pytest.raises(AuthenticationError):
            await consume()
        handed = stream.undelivered()
        assert len(seen) + len(handed) == 9
        assert all(s.state is OrderState.ISSUED for s in [*seen, *handed])
        assert [h.order_id for h in stream.pending()] == ["1009"]


@pytest.mark.looptime
async def test_cancelling_the_consumer_keeps_every_settled_answer() -> None:
    ca = FakeCertCentral(issue_on=1, latency=1.0)
    seen: list[OrderStatus] = []
    async with digicert(ca) as dc:
        stream = poll_many(dc, ids(10), concurrency=10)

        async def consume() -> None:
            async for status in stream:
                seen.append(status)
                await asyncio.sleep(3600)  # slow work on each: the rest settle meanwhile

        task = asyncio.create_task(consume())
        await asyncio.sleep(10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(seen) == 1
        account(ids(10), seen, stream)
        assert stream.pending() == ()


@pytest.mark.looptime
@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_answers_that_came_in_while_nobody_iterated_are_handed_over(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The consumer works on its first answer for an hour; meanwhile the nine other attempts
    # finish (order k after k seconds), with nobody driving the stream to settle them. Stopping
    # it then (aclose, or cancelling the consumer inside the docs' recipe) must settle them.
    seen: list[OrderStatus] = []
    async with digicert(FakeCertCentral(issue_on=1)) as dc:
        real = dc.poll_once

        async def slow(order_id: str) -> certpoll.Done[OrderStatus] | certpoll.Pending:
            await asyncio.sleep(int(order_id) - 999)
            return await real(order_id)  # type: ignore[return-value]

        monkeypatch.setattr(dc, "poll_once", slow)
        stream = poll_many(dc, ids(10), concurrency=10)

        async def consume() -> None:
            async with stream:
                async for status in stream:
                    seen.append(status)
                    await asyncio.sleep(3600)
                    if how == "aclose":
                        await stream.aclose()
                        return

        task = asyncio.create_task(consume())
        await asyncio.sleep(1800)
        if how == "cancel":
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        handed = stream.undelivered()
        assert [s.order_id for s in seen] == ["1000"]
        assert sorted(s.order_id for s in handed) == ids(10)[1:]
        assert all(s.state is OrderState.ISSUED for s in handed)
        assert stream.pending() == ()  # settled, not re-polled later


@pytest.mark.looptime
@pytest.mark.parametrize("how", ["aclose", "cancel", "error"])
@pytest.mark.parametrize("after", range(0, 13, 2))
async def test_stopping_the_stream_at_any_point_accounts_for_every_order(
    how: str, after: int
) -> None:
    orders = ids(12)
    ca = FakeCertCentral(
        issue_on=2,
        latency=0.7,
        rejected={"1003"},
        never={"1004", "1005"},
        answers={"1006": 404} | ({"1011": 401} if how == "error" else {}),
    )
    seen: list[OrderStatus] = []
    async with digicert(ca, poll_max_wait_seconds=40) as dc:
        stream = poll_many(dc, orders, concurrency=3)

        async def consume() -> None:
            async with stream:  # the recipe of docs/many-orders.md
                if how == "aclose" and after == 0:
                    return
                async for status in stream:
                    seen.append(status)
                    if how == "aclose" and len(seen) == after:
                        return

        task = asyncio.create_task(consume())
        if how == "cancel":
            while len(seen) < after and not task.done():  # noqa: ASYNC110 - stop at that count
                await asyncio.sleep(0.05)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, AuthenticationError):
            await task
        account(orders, seen, stream)
        assert other_tasks() == set()


# -- handles never overflow -------------------------------------------------------------------


@pytest.mark.looptime
@pytest.mark.parametrize("retry_after", [1e11, 1e300, math.inf])
async def test_a_huge_retry_after_still_gives_handles(
    retry_after: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with digicert(FakeCertCentral()) as dc:

        async def far(order_id: str) -> certpoll.Pending:
            return certpoll.Pending(retry_after=retry_after)

        monkeypatch.setattr(dc, "poll_once", far)
        stream = poll_many(dc, ["1", "2"])
        statuses = await collect(stream)
        assert [s.state for s in statuses] == [OrderState.PENDING] * 2
        handles = stream.pending()
        assert len(handles) == 2
        assert stream.handle("1") is not None
        for handle in handles:
            assert handle.next_poll_at.year > 3000
            assert PendingOrder.from_json(handle.to_json()) == handle


@pytest.mark.looptime
async def test_a_hostile_retry_after_header_gives_a_handle_due_within_the_cap() -> None:
    ca = FakeCertCentral(storms=[(0.0, 0.5, "9" * 40)])
    async with digicert(ca) as dc:
        stream = poll_many(dc, ["1"], max_wait=60)
        (status,) = await collect(stream)
        (handle,) = stream.pending()
    assert status.retry_after == 600.0
    assert handle.next_poll_at - wall_now() == pytest.approx(
        timedelta(seconds=600), abs=timedelta(1)
    )


# -- one clock ----------------------------------------------------------------------------------


async def test_poll_many_runs_on_the_pollers_clock() -> None:
    clock = VirtualClock()
    ca = FakeCertCentral(never={"1"})
    s = settings(poll_jitter=0.0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(ca)) as http:
        dc = DigiCert(s, http=http, poller=clock.poller(s.backoff_policy(), max_wait=600.0))
        loop_before = now()
        stream = poll_many(dc, ["1"])
        (status,) = await asyncio.wait_for(collect(stream), timeout=5.0)
    assert status.state is OrderState.PENDING
    assert clock.now == pytest.approx(600.0)  # 0, 5, 20, 65, 200, 500, 600 on the clock
    assert ca.looks["1"] == 7
    assert now() - loop_before < 5.0


@pytest.mark.looptime
async def test_a_wrong_base_url_stops_the_stream_and_every_order_stays_open() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"errors": [{"code": "not_found|route"}]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        dc = DigiCert(settings(), http=http)
        stream = poll_many(dc, ids(5))
        with pytest.raises(certpoll.EndpointNotFound, match="CERTPOLL_DIGICERT_BASE_URL"):
            await collect(stream)
        assert stream.undelivered() == ()
        assert sorted(h.order_id for h in stream.pending()) == ids(5)
