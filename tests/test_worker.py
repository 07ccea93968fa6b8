"""Submitting through a store, and the worker that claims and polls, against the simulated CA.

The simulator runs in-process, 1000 times faster than its clock, over a SQLite store: what
the worker writes is what a restarted process or another host would read. The tests that
wait (leases, renewals, schedules) run in virtual time (``looptime``): the simulator, the
connector's Poller and the store all read the event loop's clock (:func:`loop_clock`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import certpoll
from certpoll import (
    CertificateRequest,
    DigiCert,
    OrderStore,
    StoredState,
    SubmissionUncertain,
    TransientError,
    Worker,
    WorkerEvent,
    open_store,
    request_fingerprint,
    submit_order,
)
from certpoll.testing import Credentials, Fault, OrderScript, Profile, SimulatedCA
from tests.certs import make_csr
from tests.helpers import DIGICERT_API_KEY, assert_no_secrets, run_in_virtual_time

SPEED = 1000.0


def settings(base_url: str, *, api_key: str = DIGICERT_API_KEY) -> certpoll.DigiCertSettings:
    return certpoll.DigiCertSettings(
        api_key=api_key,
        org_id=112233,
        base_url=base_url,
        poll_initial_wait_seconds=5 / SPEED,
        poll_max_backoff_seconds=60 / SPEED,
        poll_max_wait_seconds=3600 / SPEED,
    )


def request(name: str) -> CertificateRequest:
    return CertificateRequest(common_name=name, csr_pem=make_csr(name))


def make_sim() -> SimulatedCA:
    """The simulated CA of these tests: orders approved after 120 s, issued 30 s later."""
    return SimulatedCA(
        profile=Profile.fixed(OrderScript(approval_for=120, issue_after=30)),
        credentials=Credentials(digicert_api_key=DIGICERT_API_KEY),
        speed=SPEED,
    )


@pytest.fixture
def sim() -> SimulatedCA:
    return make_sim()


#: Where the stores' clock stands when the event loop's reads 0: 2026-01-01, UTC.
EPOCH = 1_767_225_600.0


def loop_clock(ahead: float = 0.0) -> Callable[[], float]:
    """A store's clock (seconds since the epoch) on the running event loop's clock, virtual
    under ``looptime``; ``ahead`` seconds ahead of it, as another host's might be."""
    loop = asyncio.get_running_loop()
    return lambda: EPOCH + ahead + loop.time()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[OrderStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'orders.db'}", clock=loop_clock())
    yield opened
    await opened.aclose()


@pytest.fixture
async def digicert(sim: SimulatedCA) -> AsyncIterator[DigiCert]:
    async with sim.client() as http, DigiCert(settings(sim.base_urls().digicert), http=http) as dc:
        yield dc


async def run_until(worker: Worker, done: asyncio.Event) -> None:
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        worker.stop()
        await running


# -- submitting ------------------------------------------------------------------------------


def test_the_fingerprint_names_what_is_ordered() -> None:
    csr = make_csr("a.example")
    base = request_fingerprint(CertificateRequest(common_name="a.example", csr_pem=csr))
    assert base.startswith("sha256:")
    assert base == request_fingerprint(
        CertificateRequest(common_name="a.example", csr_pem=f"\n{csr}\n")
    )
    assert base == request_fingerprint(
        CertificateRequest(common_name="a.example", csr_pem=csr, sans=())
    )
    other_sans = CertificateRequest(common_name="a.example", csr_pem=csr, sans=["b.example"])
    assert request_fingerprint(other_sans) != base
    assert request_fingerprint(CertificateRequest(common_name="b.example", csr_pem=csr)) != base


@pytest.mark.looptime
async def test_the_same_request_is_ordered_once(
    sim: SimulatedCA, digicert: DigiCert, store: OrderStore
) -> None:
    once = request("once.example")
    first = await submit_order(digicert, store, once)
    assert first.state is StoredState.PENDING
    assert first.owner is None  # released for any worker
    assert first.order_id is not None
    again = await submit_order(digicert, store, once)
    assert sim.order_count == 1
    assert (again.key, again.order_id) == (first.key, first.order_id)
    assert first.key == f"digicert:{first.fingerprint}"
    keyed = await submit_order(digicert, store, once, key="renewal-2026")
    assert sim.order_count == 2
    assert keyed.order_id != first.order_id


@pytest.mark.looptime
async def test_an_intent_without_an_order_id_is_never_sent_again(
    sim: SimulatedCA, digicert: DigiCert, store: OrderStore
) -> None:
    # Another process is in the middle of submitting it (or died doing so).
    await store.add_intent(
        key="busy",
        ca="digicert",
        fingerprint="f",
        common_name="busy.example",
        owner="other",
        lease=60,
    )
    with pytest.raises(SubmissionUncertain, match="no order id: not sent again") as caught:
        await submit_order(digicert, store, request("busy.example"), key="busy")
    assert caught.value.common_name == "busy.example"
    assert sim.order_count == 0


@pytest.mark.looptime
async def test_a_submission_that_may_have_reached_the_ca_stays_uncertain(
    sim: SimulatedCA, store: OrderStore
) -> None:
    def lost_answer(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("the answer never came", request=req)

    transport = httpx.MockTransport(lost_answer)
    async with httpx.AsyncClient(transport=transport) as http:
        dc = DigiCert(settings(sim.base_urls().digicert), http=http)
        with pytest.raises(SubmissionUncertain) as caught:
            await submit_order(dc, store, request("maybe.example"), key="maybe")
    assert_no_secrets(caught.value)
    record = await store.get("maybe")
    assert record is not None
    assert record.state is StoredState.UNCERTAIN
    assert "may have reached the CA" in (record.last_error or "")
    assert DIGICERT_API_KEY not in repr(record)


@pytest.mark.looptime
async def test_a_submission_that_never_left_frees_its_key(
    sim: SimulatedCA, store: OrderStore
) -> None:
    def refused(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=req)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refused)) as http:
        dc = DigiCert(settings(sim.base_urls().digicert), http=http)
        with pytest.raises(TransientError, match="not sent"):
            await submit_order(dc, store, request("later.example"), key="later")
    assert await store.get("later") is None


@pytest.mark.looptime
async def test_an_order_issued_at_once_is_stored_final(store: OrderStore) -> None:
    sim = SimulatedCA(credentials=Credentials(digicert_api_key=DIGICERT_API_KEY), speed=SPEED)
    async with sim.client() as http, DigiCert(settings(sim.base_urls().digicert), http=http) as dc:
        record = await submit_order(dc, store, request("now.example"))
    assert record.state is StoredState.ISSUED
    assert record.certificate is not None
    assert "BEGIN CERTIFICATE" in record.certificate.pem


# -- the worker -----------------------------------------------------------------------------


async def submit_with_one_refused(
    sim: SimulatedCA, digicert: DigiCert, store: OrderStore, *, prefix: str, count: int
) -> list[str]:
    """Submit ``count`` orders the CA issues and one it refuses (``no.example``); their names."""
    sim.script_common_name("no.example", OrderScript(issue_after=10, reject=True))
    names = [f"{prefix}{i}.example" for i in range(count)] + ["no.example"]
    for name in names:
        await submit_order(digicert, store, request(name))
    return names


@pytest.mark.looptime
async def test_a_worker_polls_every_stored_order_to_its_answer(
    sim: SimulatedCA, digicert: DigiCert, store: OrderStore
) -> None:
    names = await submit_with_one_refused(sim, digicert, store, prefix="w", count=6)
    events: list[WorkerEvent] = []
    done = asyncio.Event()

    def seen(event: WorkerEvent) -> None:
        events.append(event)
        if sum(e.kind in ("issued", "failed") for e in events) == len(names):
            done.set()

    worker = Worker(store, [digicert], lease=2.0, claim_interval=0.05, on_event=seen)
    await run_until(worker, done)
    counts = await store.counts()
    assert counts[StoredState.ISSUED] == 6
    assert counts[StoredState.FAILED] == 1
    assert sim.order_count == len(names)
    assert worker.held == 0
    for record in await store.orders(states=[StoredState.ISSUED]):
        assert record.certificate is not None
        assert record.owner is None
    assert [e.kind for e in events].count("claimed") >= 1
    assert all(DIGICERT_API_KEY not in e.as_json() for e in events)


@pytest.mark.looptime
async def test_a_stopped_worker_releases_what_it_holds_with_its_schedule(
    sim: SimulatedCA, digicert: DigiCert, store: OrderStore
) -> None:
    sim.script_next(OrderScript(approval_for=10**6), count=5)  # never issued while we look
    for index in range(5):
        await submit_order(digicert, store, request(f"slow{index}.example"))
    claimed = asyncio.Event()
    events: list[WorkerEvent] = []

    def seen(event: WorkerEvent) -> None:
        events.append(event)
        claimed.set()

    worker = Worker(store, [digicert], lease=0.3, claim_interval=0.05, on_event=seen)
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(claimed.wait(), 10)
    await asyncio.sleep(0.3)  # a few attempts and a renewal or two
    worker.stop()
    await asyncio.wait_for(running, 10)
    orders = await store.orders()
    assert {order.state for order in orders} == {StoredState.PENDING}
    assert all(order.owner is None for order in orders)
    assert all(order.attempts >= 1 for order in orders)  # the schedule goes on from there
    assert [e.count for e in events if e.kind == "released"] == [5]
    # Another worker claims them when they are due, without waiting for any lease.
    later = open_store(store.url, clock=loop_clock(ahead=1.0))
    try:
        taken = await later.claim(owner="next", cas=["digicert"], limit=10, lease=1)
    finally:
        await later.aclose()
    assert len(taken) == 5
    assert all(order.token == 3 for order in taken)  # submitter, the worker, and now


@pytest.mark.looptime
async def test_a_worker_stops_on_a_refused_credential_and_releases(
    sim: SimulatedCA, digicert: DigiCert, store: OrderStore
) -> None:
    await submit_order(digicert, store, request("cred.example"))
    bad = settings(sim.base_urls().digicert, api_key="wrong-key")
    async with sim.client() as http, DigiCert(bad, http=http) as refused:
        worker = Worker(store, [refused], lease=1.0, claim_interval=0.05)
        with pytest.raises(certpoll.AuthenticationError):
            await asyncio.wait_for(worker.run(), 10)
    (order,) = await store.orders()
    assert (order.state, order.owner) == (StoredState.PENDING, None)


def test_worker_settings_are_bounded(store: OrderStore, digicert: DigiCert) -> None:
    for bad in (
        {"lease": 0},
        {"lease": 10**6},
        {"claim_interval": 0},
        {"claim_interval": 100.0},
        {"batch": 0},
        {"max_held": 10**9},
    ):
        with pytest.raises(certpoll.ConfigError):
            Worker(store, [digicert], **bad)
    with pytest.raises(certpoll.ConfigError, match="at least one"):
        Worker(store, [])
    with pytest.raises(certpoll.ConfigError, match="two connectors"):
        Worker(store, [digicert, digicert])


@pytest.mark.parametrize("given", [{"claimed": []}, {"claimed_at": 0.0}])
def test_a_claim_comes_with_the_moment_it_was_sent(
    store: OrderStore, digicert: DigiCert, given: dict[str, object]
) -> None:
    """A claim's lease is counted from before it was sent: the records alone (or the moment
    alone) are refused."""
    with pytest.raises(certpoll.ConfigError, match="claimed and claimed_at"):
        certpoll.StoredOrderStream(
            digicert,
            (),
            store=store,
            lease=1.0,
            concurrency=1,
            on_progress=None,
            max_wait=None,
            **given,  # type: ignore[arg-type]
        )


class Flaky:
    """An order store that can be switched off: every call then raises TransientError, after
    ``hang`` seconds (a server that does not answer, until the client gives up)."""

    def __init__(self, inner: OrderStore, *, hang: float = 0.0) -> None:
        self.inner = inner
        self.down = False
        self.hang = hang

    def __getattr__(self, name: str) -> object:
        method = getattr(self.inner, name)

        async def call(*args: object, **kwargs: object) -> object:
            if self.down:
                await asyncio.sleep(self.hang)
                raise TransientError("the order store is unreachable")
            return await method(*args, **kwargs)

        return call


@pytest.mark.looptime
async def test_a_worker_cut_off_from_its_store_stops_polling_before_its_leases_lapse(
    sim: SimulatedCA, digicert: DigiCert, store: OrderStore
) -> None:
    sim.script_next(OrderScript(approval_for=10**6), count=3)
    for index in range(3):
        await submit_order(digicert, store, request(f"cut{index}.example"))
    flaky = Flaky(store)
    claimed = asyncio.Event()
    worker = Worker(
        flaky,  # type: ignore[arg-type]
        [digicert],
        lease=0.6,
        claim_interval=0.05,
        on_event=lambda event: claimed.set(),
    )
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(claimed.wait(), 10)
    flaky.down = True
    await asyncio.sleep(0.6)  # past the lease: the worker must have stopped polling by now
    requests = sim.requests
    await asyncio.sleep(0.3)
    assert sim.requests == requests, "still polling orders whose lease may have lapsed"
    assert not running.done()  # an outage of the store does not end the worker
    flaky.down = False
    claimed.clear()
    await asyncio.wait_for(claimed.wait(), 10)  # the orders come back after their lease
    worker.stop()
    await asyncio.wait_for(running, 10)
    assert sim.requests > requests


class DownAfterClaim(Flaky):
    """A store that goes out of reach the moment it has run the first claim, whose answer
    then takes ``answer_delay`` seconds to come back (a slow network)."""

    def __init__(self, inner: OrderStore, *, hang: float, answer_delay: float) -> None:
        super().__init__(inner, hang=hang)
        self.answer_delay = answer_delay
        #: When the claim's statement ran (the event loop's clock): the lease starts there.
        self.claimed_at: float | None = None

    def __getattr__(self, name: str) -> object:
        call = super().__getattr__(name)
        if name != "claim" or self.claimed_at is not None:
            return call

        async def claim(*args: object, **kwargs: object) -> object:
            claimed = await call(*args, **kwargs)  # type: ignore[operator]
            self.claimed_at = asyncio.get_running_loop().time()
            self.down = True
            await asyncio.sleep(self.answer_delay)
            return claimed

        return claim


@pytest.mark.looptime
@pytest.mark.parametrize("answer_delay", [0.0, 0.3])
async def test_a_store_out_of_reach_gets_no_request_in_the_last_third_of_a_lease(
    sim: SimulatedCA, store: OrderStore, answer_delay: float
) -> None:
    """The store stops answering once it has run the claim (whose answer may come back
    late), and each renewal hangs half a lease before it fails: once two thirds of the
    lease are gone, counted from when the claim ran, no request goes to the CA."""
    lease = 0.6
    sim.script_next(OrderScript(approval_for=10**6), count=3)
    loop = asyncio.get_running_loop()
    sent: list[float] = []

    async def note(_: httpx.Request) -> None:
        sent.append(loop.time())

    flaky = DownAfterClaim(store, hang=lease / 2, answer_delay=answer_delay)
    async with (
        sim.client(event_hooks={"request": [note]}) as http,
        DigiCert(settings(sim.base_urls().digicert), http=http) as dc,
    ):
        for index in range(3):
            await submit_order(dc, store, request(f"out{index}.example"))
        submitted = len(sent)
        worker = Worker(flaky, [dc], lease=lease, claim_interval=0.05)  # type: ignore[arg-type]
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(2 * lease)
        worker.stop()
        await asyncio.wait_for(running, 10)
    assert flaky.claimed_at is not None
    polls = [moment - flaky.claimed_at for moment in sent[submitted:]]
    assert len(polls) >= 3  # polled while the lease had time left
    assert max(polls) <= lease * 2 / 3 + 1e-9, "a request in the last third of the lease"


@pytest.mark.looptime
async def test_an_attempt_in_flight_sends_nothing_after_a_lease_it_could_not_renew(
    sim: SimulatedCA, store: OrderStore
) -> None:
    """The claim's answer comes late (its batch starts polling with little lease left), the
    store then hangs on every call, and the CA is slow: the attempt that started in time
    finds the certificate issued as the lease ends, and must not download it then."""
    lease = 0.6
    sim.script_next(OrderScript(issue_after=100), count=1)  # 0.1 s: issued at the first look
    loop = asyncio.get_running_loop()
    sent: list[float] = []

    async def note(_: httpx.Request) -> None:
        sent.append(loop.time())

    flaky = DownAfterClaim(store, hang=3 * lease, answer_delay=0.35)
    async with (
        sim.client(event_hooks={"request": [note]}) as http,
        DigiCert(settings(sim.base_urls().digicert), http=http) as dc,
    ):
        await submit_order(dc, store, request("late.example"))
        sim.add_fault(Fault.slow(300))  # every answer 0.3 s late: a look ends past the lease
        submitted = len(sent)
        worker = Worker(flaky, [dc], lease=lease, claim_interval=0.05)  # type: ignore[arg-type]
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(3 * lease)
        worker.stop()
        await asyncio.wait_for(running, 20)
    assert flaky.claimed_at is not None
    polls = [moment - flaky.claimed_at for moment in sent[submitted:]]
    assert polls == [pytest.approx(0.35)]  # its one look, in time; no download after the lease


@hypothesis_settings(max_examples=40, deadline=None)
@given(
    lease=st.floats(0.3, 3.0),
    answer_share=st.floats(0.0, 0.6),
    hang_share=st.floats(0.0, 2.0),
    latency_share=st.floats(0.0, 0.5),
    orders=st.integers(1, 4),
)
def test_no_request_goes_out_in_the_last_third_of_a_lease_whatever_the_timing(
    lease: float, answer_share: float, hang_share: float, latency_share: float, orders: int
) -> None:
    """Whatever the lease, however late the claim's answer, however long the out-of-reach
    store hangs and the CA takes to answer, and however many orders queue at the gate:
    counted from when the claim ran, no request goes to the CA in the last third of the
    lease."""

    async def scenario() -> list[float]:
        ca = make_sim()
        ca.script_next(OrderScript(approval_for=10**6), count=orders)
        memory = open_store("memory://", clock=loop_clock())
        flaky = DownAfterClaim(memory, hang=hang_share * lease, answer_delay=answer_share * lease)
        loop = asyncio.get_running_loop()
        sent: list[float] = []

        async def note(_: httpx.Request) -> None:
            sent.append(loop.time())

        async with (
            ca.client(event_hooks={"request": [note]}) as http,
            DigiCert(settings(ca.base_urls().digicert), http=http) as dc,
        ):
            for index in range(orders):
                await submit_order(dc, memory, request(f"p{index}.example"))
            ca.add_fault(Fault.slow(latency_share * lease * SPEED))
            submitted = len(sent)
            worker = Worker(flaky, [dc], lease=lease, claim_interval=0.05)  # type: ignore[arg-type]
            running = asyncio.create_task(worker.run())
            await asyncio.sleep(2 * lease)
            worker.stop()
            await asyncio.wait_for(running, 10 * lease)
        await memory.aclose()
        assert flaky.claimed_at is not None
        return [moment - flaky.claimed_at for moment in sent[submitted:]]

    looks = run_in_virtual_time(scenario())
    assert max(looks, default=0.0) <= lease * 2 / 3 + 1e-9, "a request in the last third"


class Stall:
    """The connector's clock in a process that stood still: the event loop's clock plus the
    seconds it stalled (the loop's own timers do not see the jump, as after a SIGSTOP they
    would all be late at once)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._loop = asyncio.get_running_loop()

    def clock(self) -> float:
        return self._loop.time() + self.seconds


class Renewals:
    """An order store that notes, at each renewal, how many requests the CA had seen."""

    def __init__(self, inner: OrderStore, sim: SimulatedCA) -> None:
        self.inner = inner
        self.seen: list[int] = []
        self._sim = sim

    def __getattr__(self, name: str) -> object:
        method = getattr(self.inner, name)
        if name != "renew":
            return method

        async def renew(*args: object, **kwargs: object) -> object:
            self.seen.append(self._sim.requests)
            return await method(*args, **kwargs)

        return renew


async def _stalled_worker(
    sim: SimulatedCA, store: OrderStore, *, lease: float, taken_meanwhile: bool
) -> tuple[int, int, list[int], list[WorkerEvent]]:
    """A worker that polls three orders, then stalls for two leases; meanwhile another
    owner (whose clock is past the lease) takes them, or not. The CA's request count at the
    stall and a lease later, the renewals since the stall, and the worker's events."""
    sim.script_next(OrderScript(approval_for=10**6), count=3)
    stall = Stall()
    base = settings(sim.base_urls().digicert)
    other = open_store(store.url, clock=loop_clock(ahead=3600))
    await other.counts()  # opened (and its schema read) before the worker runs
    watched = Renewals(store, sim)
    events: list[WorkerEvent] = []
    try:
        async with (
            sim.client() as http,
            DigiCert(base, http=http, poller=base.make_poller(clock=stall.clock)) as dc,
        ):
            for index in range(3):
                await submit_order(dc, store, request(f"stall{index}.example"))
            worker = Worker(watched, [dc], lease=lease, claim_interval=0.05, on_event=events.append)  # type: ignore[arg-type]
            running = asyncio.create_task(worker.run())
            await asyncio.sleep(lease / 6)  # a few attempts, no renewal yet
            assert worker.held == 3
            assert sim.requests > 3
            if taken_meanwhile:
                taken = await other.claim(owner="next", cas=["digicert"], limit=10, lease=60)
                assert len(taken) == 3
            stall.seconds += 2 * lease
            at_stall, renewed_before = sim.requests, len(watched.seen)
            await asyncio.sleep(lease)
            later = sim.requests
            worker.stop()
            await asyncio.wait_for(running, 10)
    finally:
        await other.aclose()
    return at_stall, later, watched.seen[renewed_before:], events


@pytest.mark.looptime
async def test_a_worker_stalled_past_its_lease_never_polls_the_order_again(
    sim: SimulatedCA, store: OrderStore
) -> None:
    at_stall, later, _, events = await _stalled_worker(sim, store, lease=2.0, taken_meanwhile=True)
    assert later == at_stall, "polled orders another owner claimed after the lease ran out"
    assert sum(e.kind == "lost" for e in events) >= 1
    for record in await store.orders():
        assert (record.state, record.owner) == (StoredState.PENDING, "next")


@pytest.mark.looptime
async def test_a_worker_stalled_past_its_lease_polls_again_once_it_renewed(
    sim: SimulatedCA, store: OrderStore
) -> None:
    at_stall, later, renewals, events = await _stalled_worker(
        sim, store, lease=2.0, taken_meanwhile=False
    )
    assert not any(e.kind == "lost" for e in events)  # nobody took them: still this worker's
    assert renewals, "no renewal after the stall"
    assert renewals[0] == at_stall, "polled after the stall before renewing its lease"
    assert later > at_stall  # and then polls again


class _NoRecord(Flaky):
    """A store that takes intents but cannot record the CA's answer."""

    def __getattr__(self, name: str) -> object:
        if name == "record_submitted":
            self.down = True
        else:
            self.down = False
        return super().__getattr__(name)


@pytest.mark.looptime
async def test_an_order_the_store_could_not_record_is_named_in_the_error(
    sim: SimulatedCA, digicert: DigiCert, store: OrderStore, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(SubmissionUncertain) as caught:
        await submit_order(digicert, _NoRecord(store), request("kept.example"), key="kept")  # type: ignore[arg-type]
    assert sim.order_count == 1  # the CA's first order: 100001, named for the operator
    assert "order 100001" in str(caught.value)
    assert "could not record it" in str(caught.value)
    assert isinstance(caught.value.__cause__, TransientError)
    assert any("order_id=100001" in record.getMessage() for record in caplog.records)


@pytest.mark.looptime
async def test_the_worker_command_prints_text_on_a_terminal(
    sim: SimulatedCA, digicert: DigiCert, store: OrderStore
) -> None:
    import io

    from certpoll._worker import serve_worker

    await submit_order(digicert, store, request("text.example"))
    out = io.StringIO()
    worker = Worker(store, [digicert], lease=2.0, claim_interval=0.05)
    running = asyncio.create_task(serve_worker(worker, out=out, json_lines=False))
    for _ in range(200):
        if "issued" in out.getvalue():
            break
        await asyncio.sleep(0.02)
    worker.stop()
    await asyncio.wait_for(running, 10)
    lines = out.getvalue().splitlines()
    assert lines[0] == "claimed 1 orders"
    assert lines[1].startswith("issued        digicert 100001 (key digicert:sha256:")
    assert lines[-1].startswith("stopped; the store holds: intent 0, pending 0, issued 1")


class _SlowFirstAnswer:
    """A store whose first final answer hangs: the worker is stopped while it waits."""

    def __init__(self, inner: OrderStore) -> None:
        self.inner = inner
        self.waiting = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        method = getattr(self.inner, name)
        if name != "complete":
            return method

        async def complete(*args: object, **kwargs: object) -> object:
            if not self.waiting.is_set():
                self.waiting.set()
                await asyncio.Event().wait()  # until cancelled
            return await method(*args, **kwargs)

        return complete


@pytest.mark.looptime
async def test_a_stopped_worker_writes_the_answers_it_found_but_had_not_written(
    sim: SimulatedCA, store: OrderStore
) -> None:
    instant = SimulatedCA(credentials=Credentials(digicert_api_key=DIGICERT_API_KEY))
    instant.script_next(OrderScript(issue_after=0.2), count=3)
    async with (
        instant.client() as http,
        DigiCert(settings(instant.base_urls().digicert), http=http) as dc,
    ):
        for index in range(3):
            await submit_order(dc, store, request(f"found{index}.example"))
        await asyncio.sleep(0.3)  # all three issued: the worker's first looks find them so
        slow = _SlowFirstAnswer(store)
        worker = Worker(slow, [dc], lease=5.0, claim_interval=0.05)  # type: ignore[arg-type]
        running = asyncio.create_task(worker.run())
        await asyncio.wait_for(slow.waiting.wait(), 10)
        worker.stop()  # the first answer's write hangs; the two others are not yet written
        await asyncio.wait_for(running, 10)
    orders = await store.orders()
    assert sorted(order.state.value for order in orders) == ["issued", "issued", "pending"]
    assert all(order.owner is None for order in orders)  # the interrupted one given back


# -- drain: poll_many over a store ----------------------------------------------------------


@pytest.mark.looptime
async def test_a_drain_polls_every_due_order_to_its_answer_and_returns(
    sim: SimulatedCA, digicert: DigiCert, store: OrderStore
) -> None:
    names = await submit_with_one_refused(sim, digicert, store, prefix="d", count=12)
    kinds: list[str] = []
    worker = Worker(
        store,
        [digicert],
        lease=2.0,
        batch=5,
        claim_interval=0.05,
        on_event=lambda e: kinds.append(e.kind),
    )
    await asyncio.wait_for(worker.drain(), 30)
    counts = await store.counts()
    assert (counts[StoredState.ISSUED], counts[StoredState.FAILED]) == (12, 1)
    assert counts[StoredState.PENDING] == 0
    assert sim.order_count == len(names)  # polled, never ordered again
    assert worker.held == 0
    assert kinds.count("claimed") >= 3  # batches of 5: claimed as room frees up
    assert all(record.owner is None for record in await store.orders())


@pytest.mark.looptime
async def test_a_drain_leaves_what_another_owner_holds(
    sim: SimulatedCA, digicert: DigiCert, store: OrderStore
) -> None:
    for index in range(4):
        await submit_order(digicert, store, request(f"h{index}.example"))
    (held,) = await store.claim(owner="someone else", cas=["digicert"], limit=1, lease=60)
    await asyncio.wait_for(Worker(store, [digicert], claim_interval=0.05).drain(), 30)
    by_key = {record.key: record for record in await store.orders()}
    assert by_key[held.key].state is StoredState.PENDING
    assert by_key[held.key].owner == "someone else"
    assert sum(r.state is StoredState.ISSUED for r in by_key.values()) == 3


@pytest.mark.looptime
async def test_a_drain_reschedules_what_is_still_pending_at_its_deadline(
    sim: SimulatedCA, store: OrderStore
) -> None:
    sim.script_next(OrderScript(approval_for=10**6), count=2)
    short = settings(sim.base_urls().digicert).model_copy(
        update={"poll_max_wait_seconds": 60 / SPEED}
    )
    async with sim.client() as http, DigiCert(short, http=http) as dc:
        for index in range(2):
            await submit_order(dc, store, request(f"late{index}.example"))
        kinds: list[str] = []
        worker = Worker(
            store, [dc], lease=2.0, claim_interval=0.05, on_event=lambda e: kinds.append(e.kind)
        )
        await asyncio.wait_for(worker.drain(), 30)
    assert kinds.count("still_pending") == 2
    for record in await store.orders():
        assert (record.state, record.owner) == (StoredState.PENDING, None)
        assert record.attempts >= 2  # the first attempt and the last one at the deadline
        assert record.due_at is not None


@pytest.mark.looptime
async def test_a_drain_raises_when_the_store_is_unreachable(
    digicert: DigiCert, store: OrderStore
) -> None:
    flaky = Flaky(store)
    flaky.down = True
    worker = Worker(flaky, [digicert], claim_interval=0.05)  # type: ignore[arg-type]
    with pytest.raises(TransientError, match="unreachable"):
        await asyncio.wait_for(worker.drain(), 10)


@pytest.mark.looptime
async def test_a_stopped_drain_releases_what_it_holds(
    sim: SimulatedCA, digicert: DigiCert, store: OrderStore
) -> None:
    sim.script_next(OrderScript(approval_for=10**6), count=3)
    for index in range(3):
        await submit_order(digicert, store, request(f"s{index}.example"))
    claimed = asyncio.Event()
    worker = Worker(
        store, [digicert], lease=2.0, claim_interval=0.05, on_event=lambda e: claimed.set()
    )
    draining = asyncio.create_task(worker.drain())
    await asyncio.wait_for(claimed.wait(), 10)
    worker.stop()
    await asyncio.wait_for(draining, 10)
    assert {(r.state, r.owner) for r in await store.orders()} == {(StoredState.PENDING, None)}


@hypothesis_settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    issued=st.integers(0, 6),
    rejected=st.integers(0, 3),
    batch=st.integers(1, 4),
    concurrency=st.integers(1, 3),
)
def test_a_drain_accounts_for_every_order_once(
    issued: int, rejected: int, batch: int, concurrency: int
) -> None:
    """Whatever the batch and concurrency: each order ends with exactly one answer, written
    once, and nothing is ordered twice."""

    async def scenario() -> None:
        ca = SimulatedCA(
            profile=Profile.fixed(OrderScript(approval_for=30, issue_after=10)),
            credentials=Credentials(digicert_api_key=DIGICERT_API_KEY),
            speed=SPEED,
        )
        memory = certpoll.open_store("memory://", clock=loop_clock())
        written: list[str] = []
        async with (
            ca.client() as http,
            DigiCert(settings(ca.base_urls().digicert), http=http) as dc,
        ):
            for index in range(issued):
                await submit_order(dc, memory, request(f"ok{index}.example"))
            for index in range(rejected):
                name = f"no{index}.example"
                ca.script_common_name(name, OrderScript(issue_after=5, reject=True))
                await submit_order(dc, memory, request(name))
            worker = Worker(
                memory,
                [dc],
                batch=batch,
                concurrency=concurrency,
                claim_interval=0.05,
                on_event=lambda e: (
                    written.append(e.key or "") if e.kind in ("issued", "failed") else None
                ),
            )
            await asyncio.wait_for(worker.drain(), 30)
        counts = await memory.counts()
        assert (counts[StoredState.ISSUED], counts[StoredState.FAILED]) == (issued, rejected)
        assert len(written) == len(set(written)) == issued + rejected
        assert ca.order_count == issued + rejected
        await memory.aclose()

    run_in_virtual_time(scenario())


@pytest.mark.looptime
async def test_a_worker_stopped_as_it_claims_gives_back_what_it_claimed(
    digicert: DigiCert, store: OrderStore
) -> None:
    for index in range(3):
        await submit_order(digicert, store, request(f"quick{index}.example"))
    worker = Worker(store, [digicert], claim_interval=0.05)
    # Stopped the moment it claims: its batch is cancelled before it ever ran.
    worker.on_event = lambda event: worker.stop() if event.kind == "claimed" else None
    await asyncio.wait_for(worker.run(), 10)
    assert {(r.state, r.owner) for r in await store.orders()} == {(StoredState.PENDING, None)}
