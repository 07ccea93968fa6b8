"""Reliability (docs/security.md): bad answers, broken connections, outages and cancellation.

Every bad input ends in a clear certpoll error or a pending outcome; nothing is lost, nothing
leaks. Bad bodies are made by mangling the simulated CA's real answers for all four
connectors; broken connections use real sockets on 127.0.0.1 (tests/reliability_servers.py).
The only real waits are the 0.2 s attempt timeouts whose firing is what is under test.
"""

from __future__ import annotations

import asyncio
import gc
import re
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest

import certpoll
from certpoll._connectors import _base as _connector
from certpoll.testing import SimulatedCA
from tests.certs import make_csr
from tests.credentials import CREDENTIALS
from tests.helpers import DIGICERT_API_KEY, FakeTime, assert_no_secrets
from tests.reliability_servers import never_answer, not_tls, raw_server, reset_mid_body, trickle

CAS: tuple[certpoll.CAName, ...] = ("digicert", "sectigo", "entrust", "globalsign")

#: The request whose answer carries the order's status, per CA.
STATUS = {
    "digicert": re.compile(r"/order/certificate/\d+$"),
    "sectigo": re.compile(r"/ssl/v1/\d+$"),
    "entrust": re.compile(r"/(enrollments|certificates)/[^/]+$"),
    "globalsign": re.compile(r"/certificates/[^/]+$"),
}
#: The request whose answer carries the certificate's PEM, per CA.
PEM = {
    "digicert": re.compile(r"/download/"),
    "sectigo": re.compile(r"/ssl/v1/collect/"),
    "entrust": STATUS["entrust"],
    "globalsign": STATUS["globalsign"],
}

Mangle = Callable[[httpx.Response, bytes], httpx.Response]


@dataclass
class Mangler(httpx.AsyncBaseTransport):
    """Forwards to the simulator; answers to requests matching ``target`` go through ``mangle``."""

    sim: SimulatedCA
    target: re.Pattern[str] | None = None
    mangle: Mangle | None = None
    mangled: int = 0
    inner: httpx.ASGITransport = field(init=False)

    def __post_init__(self) -> None:
        self.inner = httpx.ASGITransport(app=self.sim)  # type: ignore[arg-type]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        if (
            self.target is None
            or self.mangle is None
            or request.method != "GET"
            or not self.target.search(request.url.path)
        ):
            return httpx.Response(response.status_code, headers=response.headers, content=body)
        self.mangled += 1
        return self.mangle(response, body)


def replaced(body: bytes | Callable[[bytes], bytes], content_type: str | None = "keep") -> Mangle:
    def mangle(response: httpx.Response, original: bytes) -> httpx.Response:
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        if content_type != "keep":
            headers.pop("content-type", None)
            if content_type is not None:
                headers["content-type"] = content_type
        content = body(original) if callable(body) else body
        return httpx.Response(response.status_code, headers=headers, content=content)

    return mangle


def connector(
    ca: certpoll.CAName, sim: SimulatedCA, http: httpx.AsyncClient
) -> certpoll.Connector[certpoll.CASettings]:
    settings = CREDENTIALS.settings(ca, sim.base_urls()[ca])
    return certpoll.connector_for(settings, http=http, poller=FakeTime().poller(max_wait=60))


CSR = make_csr("rel.example")


def request(name: str = "rel.example") -> certpoll.CertificateRequest:
    return certpoll.CertificateRequest(common_name="rel.example", csr_pem=CSR)


@dataclass
class Rig:
    sim: SimulatedCA
    mangler: Mangler
    http: httpx.AsyncClient


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    sim = SimulatedCA(credentials=CREDENTIALS, clock=lambda: 0.0)
    mangler = Mangler(sim)
    async with httpx.AsyncClient(transport=mangler) as http:
        yield Rig(sim, mangler, http)


async def look_with(
    rig: Rig, ca: certpoll.CAName, target: dict[str, re.Pattern[str]], mangle: Mangle
) -> certpoll.Done[certpoll.OrderStatus] | certpoll.Pending | certpoll.Failed:
    """Submit an order (issued at once), then one look at it with the answer mangled."""
    conn = connector(ca, rig.sim, rig.http)
    order = await conn.issue(request())
    rig.mangler.target, rig.mangler.mangle = target[ca], mangle
    outcome: certpoll.Done[certpoll.OrderStatus] | certpoll.Pending | certpoll.Failed
    outcome = await conn.poll_once(order.order_id)
    assert rig.mangler.mangled >= 1
    if isinstance(outcome, certpoll.Failed | certpoll.Pending) and outcome.error is not None:
        assert isinstance(outcome.error, certpoll.CertpollError)
        assert_no_secrets(outcome.error)
    return outcome


# -- bad bodies on a 200 --------------------------------------------------------------------

HTML = b"<!DOCTYPE html><html><body><h1>500 Internal Server Error</h1></body></html>"

UNREADABLE_STATUS: dict[str, Mangle] = {
    "malformed JSON": replaced(b'{"status": "issued",'),
    "JSON null": replaced(b"null"),
    "a JSON list": replaced(b"[]"),
    "a JSON string": replaced(b'"issued"'),
    "an empty object": replaced(b"{}"),
    "an HTML error page": replaced(HTML, "text/html"),
    "a truncated body": replaced(lambda body: body[: len(body) // 2]),
    "an empty body": replaced(b""),
    "an empty body without a content type": replaced(b"", None),
    "bytes that are not UTF-8": replaced(b"\xff\xfe\x00{"),
}


@pytest.mark.parametrize("ca", CAS)
@pytest.mark.parametrize("mangle", UNREADABLE_STATUS.values(), ids=UNREADABLE_STATUS.keys())
async def test_an_unreadable_status_answer_is_a_parse_error(
    rig: Rig, ca: certpoll.CAName, mangle: Mangle
) -> None:
    outcome = await look_with(rig, ca, STATUS, mangle)
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.ResponseParseError)
    assert outcome.error.ca == ca


def _strings_for_ints(body: bytes) -> bytes:
    return re.sub(rb'(":\s*)(-?\d+)', rb'\1"\2"', body)


def _ints_for_strings(body: bytes) -> bytes:
    return re.sub(rb'(":\s*)"[^"]*"', rb"\g<1>7", body)


WRONG_SHAPE: dict[str, Mangle] = {
    "strings where ints belong": replaced(_strings_for_ints),
    "ints where strings belong": replaced(_ints_for_strings),
    "nulls everywhere": replaced(lambda body: re.sub(rb'(":\s*)("[^"]*"|-?\d+)', rb"\1null", body)),
    "a nested list for the object": replaced(lambda body: b"[" + body + b"]"),
}


@pytest.mark.parametrize("ca", CAS)
@pytest.mark.parametrize("mangle", WRONG_SHAPE.values(), ids=WRONG_SHAPE.keys())
async def test_json_of_the_wrong_shape_is_never_another_exception(
    rig: Rig, ca: certpoll.CAName, mangle: Mangle
) -> None:
    outcome = await look_with(rig, ca, STATUS, mangle)
    # A field the connector does not need may be mangled harmlessly; a Done is then the
    # right certificate, never a made-up one.
    if isinstance(outcome, certpoll.Done):
        assert outcome.value.certificate is not None
        issued = rig.sim.order(ca, outcome.value.order_id).certificate
        assert issued is not None
        assert outcome.value.certificate.not_after == issued.not_valid_after_utc


@pytest.mark.parametrize("ca", CAS)
@pytest.mark.parametrize("content_type", ["text/html", "text/plain", None, "application/xml"])
async def test_the_content_type_does_not_decide(
    rig: Rig, ca: certpoll.CAName, content_type: str | None
) -> None:
    """A good body under a wrong (or no) content type is read for what it is."""
    outcome = await look_with(rig, ca, STATUS, replaced(lambda body: body, content_type))
    assert isinstance(outcome, certpoll.Done)


# -- PEM ------------------------------------------------------------------------------------


def _begin_line_only(body: bytes) -> bytes:
    """The first certificate cut short: after its BEGIN line, or (base64 DER) at 40 chars."""
    begin = body.find(b"-----BEGIN CERTIFICATE-----")
    if begin >= 0:
        return body[: begin + 40]
    return re.sub(rb'"(MII[^"]{37})[^"]*"', rb'"\1"', body, count=1)


BAD_PEM: dict[str, Mangle] = {
    # Every DER certificate's base64 starts "MII": break the first one.
    "garbage inside the PEM": replaced(lambda body: body.replace(b"MII", b"M!I", 1)),
    "a certificate that does not parse": replaced(lambda body: body.replace(b"MII", b"AAA", 1)),
    "the BEGIN line only": replaced(_begin_line_only),
}


@pytest.mark.parametrize("ca", CAS)
@pytest.mark.parametrize("mangle", BAD_PEM.values(), ids=BAD_PEM.keys())
async def test_a_broken_certificate_is_a_parse_error(
    rig: Rig, ca: certpoll.CAName, mangle: Mangle
) -> None:
    outcome = await look_with(rig, ca, PEM, mangle)
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.ResponseParseError)


@pytest.mark.parametrize("ca", CAS)
async def test_garbage_around_the_pem_is_ignored(rig: Rig, ca: certpoll.CAName) -> None:
    # "\\n" is a newline escape inside a JSON string and plain junk in a PEM file: both work.
    junk = replaced(
        lambda body: body.replace(
            b"-----BEGIN CERTIFICATE-----", b"junk \\n\\n-----BEGIN CERTIFICATE-----", 1
        ).replace(b"-----END CERTIFICATE-----", b"-----END CERTIFICATE-----\\ntrailer", 1)
    )
    outcome = await look_with(rig, ca, PEM, junk)
    assert isinstance(outcome, certpoll.Done)
    assert outcome.value.certificate is not None
    issued = rig.sim.order(ca, outcome.value.order_id).certificate
    assert issued is not None
    assert outcome.value.certificate.not_after == issued.not_valid_after_utc


# -- a body far larger than any certificate answer -------------------------------------------


class Endless(httpx.AsyncByteStream):
    """``total`` bytes in 1 MiB chunks, never held in memory at once."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = b"x" * (1024 * 1024)
        while self.sent < self.total:
            self.sent += len(chunk)
            yield chunk


async def test_a_huge_body_stops_at_the_cap_and_memory_stays_flat(fake_time: FakeTime) -> None:
    streams: list[Endless] = []

    def huge(request: httpx.Request) -> httpx.Response:
        streams.append(Endless(100 * 1024 * 1024))
        return httpx.Response(200, stream=streams[-1])

    settings = certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(huge)) as http:
        dc = certpoll.DigiCert(settings, http=http, poller=fake_time.poller())
        gc.collect()
        tracemalloc.start()
        try:
            outcome = await dc.poll_once("99001")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.ResponseParseError)
    assert f"larger than {_connector.MAX_RESPONSE_BYTES} bytes" in str(outcome.error)
    # Reading stopped just past the cap: of the 100 MiB, about 11 MiB were read.
    assert streams[0].sent <= _connector.MAX_RESPONSE_BYTES + 2 * 1024 * 1024
    assert peak < 30 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


# -- broken connections, on real sockets -----------------------------------------------------


def real_digicert(base_url: str, *, attempt_timeout: float = 0.2) -> certpoll.DigiCert:
    """A DigiCert connector with its own real client; a FakeTime schedule of one attempt."""
    settings = certpoll.DigiCertSettings(
        api_key=DIGICERT_API_KEY,
        org_id=1,
        base_url=base_url,
        attempt_timeout_seconds=attempt_timeout,
    )
    time_ = FakeTime()
    return certpoll.DigiCert(
        settings, poller=time_.poller(max_wait=1.0, attempt_timeout=attempt_timeout)
    )


def other_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


def serving(task: asyncio.Task[object]) -> bool:
    """Whether ``task`` is the test server's: a connection it handles, or one being accepted.

    The event loop accepts a TLS or plain connection in a task of its own, which may still be
    pending when the client has already given up (under load, or on a slower interpreter).
    """
    name = getattr(task.get_coro(), "__qualname__", "")
    return name.startswith("raw_server.") or name.endswith("._accept_connection2")


async def test_a_server_trickling_one_byte_at_a_time_is_ended_by_the_attempt_timeout() -> None:
    # Each byte comes well within httpx's read timeout: only the attempt bound can end it.
    body = b'{"id": 99001, "status": "pending"}' * 100
    async with raw_server(trickle(body, every=0.02)) as url:
        dc = real_digicert(url)
        started = time.monotonic()
        status = await dc.get_order_status("99001")
        elapsed = time.monotonic() - started
        await dc.aclose()
    assert status.state is certpoll.OrderState.PENDING
    assert isinstance(status.last_error, certpoll.AttemptTimeout)
    assert elapsed < 2.0


async def test_a_server_that_never_answers_is_pending_after_the_timeout() -> None:
    async with raw_server(never_answer) as url:
        dc = real_digicert(url)
        status = await dc.get_order_status("99001")
        await dc.aclose()
    assert status.state is certpoll.OrderState.PENDING
    assert isinstance(status.last_error, certpoll.TransientError)
    assert_no_secrets(status.last_error)


async def test_a_connection_reset_mid_body_is_transient() -> None:
    body = b'{"id": 99001, "status": "issued", "certificate": {"id": 1}}' + b" " * 5000
    async with raw_server(reset_mid_body(body, sent=20)) as url:
        dc = real_digicert(url, attempt_timeout=5.0)
        outcome = await dc.poll_once("99001")
        await dc.aclose()
    assert isinstance(outcome, certpoll.Pending)
    assert isinstance(outcome.error, certpoll.TransientError)
    assert not isinstance(outcome.error, certpoll.AttemptTimeout)
    assert isinstance(outcome.error.__cause__, httpx.TransportError)


async def test_a_tls_handshake_failure_is_transient() -> None:
    """A server answering the ClientHello with plain text: the handshake cannot complete.

    A server certificate from an untrusted CA: tests/test_security.py.
    """
    async with raw_server(not_tls, read_head=False) as url:
        dc = real_digicert(url.replace("http://", "https://"), attempt_timeout=5.0)
        outcome = await dc.poll_once("99001")
        await dc.aclose()
    assert isinstance(outcome, certpoll.Pending)
    assert isinstance(outcome.error, certpoll.TransientError)
    assert isinstance(outcome.error.__cause__, httpx.ConnectError)


async def test_a_dns_failure_is_transient() -> None:
    # RFC 2606: .invalid never resolves; the resolver answers without the network.
    dc = real_digicert("https://ca.certpoll.invalid/services/v2", attempt_timeout=5.0)
    outcome = await dc.poll_once("99001")
    await dc.aclose()
    assert isinstance(outcome, certpoll.Pending)
    assert isinstance(outcome.error, certpoll.TransientError)
    assert isinstance(outcome.error.__cause__, httpx.ConnectError)


async def test_a_refused_connection_is_transient_and_a_submit_not_sent() -> None:
    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    dc = real_digicert(f"http://127.0.0.1:{port}/v2", attempt_timeout=5.0)
    outcome = await dc.poll_once("99001")
    assert isinstance(outcome, certpoll.Pending)
    assert isinstance(outcome.error, certpoll.TransientError)
    with pytest.raises(certpoll.TransientError, match="was not sent"):
        await dc.issue(request())
    await dc.aclose()


# -- submissions: never a second POST ---------------------------------------------------------


@dataclass
class Counting:
    posts: int = 0


async def test_a_submit_that_times_out_after_sending_is_uncertain_and_sent_once() -> None:
    seen = Counting()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.posts += 1
        await reader.read()

    async with raw_server(silent) as url:
        dc = real_digicert(url)
        with pytest.raises(certpoll.SubmissionUncertain) as info:
            await dc.issue(request())
        await dc.aclose()
    assert seen.posts == 1
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert_no_secrets(info.value)


async def test_a_submit_reset_mid_response_is_uncertain_and_sent_once() -> None:
    seen = Counting()
    reset = reset_mid_body(b'{"id": 99001, "certificate_id": 1}' + b" " * 1000, sent=10)

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.posts += 1
        await reset(reader, writer)

    async with raw_server(counted) as url:
        dc = real_digicert(url, attempt_timeout=5.0)
        with pytest.raises(certpoll.SubmissionUncertain):
            await dc.issue(request())
        await dc.aclose()
    assert seen.posts == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_5xx_on_submit_is_uncertain_and_sent_once(status: int) -> None:
    seen = Counting()

    async def failing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.posts += 1
        writer.write(f"HTTP/1.1 {status} Oops\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        await reader.read()

    async with raw_server(failing) as url:
        dc = real_digicert(url, attempt_timeout=5.0)
        with pytest.raises(certpoll.SubmissionUncertain) as info:
            await dc.issue(request())
        await dc.aclose()
    assert seen.posts == 1
    assert info.value.status_code == status


# -- cancellation leaves nothing behind -------------------------------------------------------


@pytest.mark.parametrize("after", [0.0, 0.01, 0.05, 0.12])
async def test_cancelling_get_order_status_at_any_point_leaves_nothing_behind(
    after: float,
) -> None:
    """Cancelled while connecting, sending, waiting for the answer, or reading it."""
    body = b'{"id": 99001, "status": "pending"}' * 50
    async with raw_server(trickle(body, every=0.01)) as url:
        transport = httpx.AsyncHTTPTransport()
        settings = certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1, base_url=url)
        async with httpx.AsyncClient(transport=transport) as http:
            dc = certpoll.DigiCert(settings, http=http)
            before = other_tasks()
            task = asyncio.create_task(dc.get_order_status("99001"))
            await asyncio.sleep(after)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Cancelled while connecting, httpcore leaves an empty shell in its pool (no
            # socket, "CONNECTING" for ever, reused by the next request): anything that got
            # as far as a socket must be gone.
            connected = [c for c in transport._pool.connections if c.info() != "CONNECTING"]
            assert connected == []
            left = {t for t in other_tasks() - before if not serving(t)}
            assert left == set()


# -- the CA goes down in the middle of 1,000 orders, and comes back ---------------------------


@dataclass
class Outage(httpx.AsyncBaseTransport):
    """The simulator behind a network that refuses connections from ``down`` to ``up``."""

    sim: SimulatedCA
    down: float
    up: float
    #: (loop time, order id) of every status request that reached the wire.
    looks: list[tuple[float, str]] = field(default_factory=list)
    refused: int = 0
    inner: httpx.ASGITransport = field(init=False)

    def __post_init__(self) -> None:
        self.inner = httpx.ASGITransport(app=self.sim)  # type: ignore[arg-type]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        now = asyncio.get_running_loop().time()
        found = re.search(r"/order/certificate/(\d+)$", request.url.path)
        if found and request.method == "GET":
            self.looks.append((now, found[1]))
        if self.down <= now < self.up:
            self.refused += 1
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return await self.inner.handle_async_request(request)


@pytest.mark.looptime
async def test_an_outage_in_the_middle_of_a_thousand_orders_loses_none() -> None:
    from certpoll.testing import Fault, OrderScript, Profile

    # Orders take 10 minutes; the network drops at 2 min for 3 min, then the CA answers 503
    # (its maintenance window) for 5 more minutes before coming back.
    sim = SimulatedCA(
        credentials=CREDENTIALS,
        profile=Profile.fixed(OrderScript(issue_after=600)),
        digicert_rate_limits=(),
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    network = Outage(sim, down=start + 120, up=start + 300)
    settings = CREDENTIALS.settings(
        "digicert", sim.base_urls().digicert, rate_limits=(), poll_max_wait_seconds=7200
    )
    async with httpx.AsyncClient(transport=network) as http:
        dc = certpoll.connector_for(settings, http=http)
        orders = [await dc.issue(request()) for _ in range(1000)]
        assert {o.state for o in orders} == {certpoll.OrderState.PENDING}
        assert sim.epoch == start  # issuing took no virtual time: windows count from start
        sim.add_fault(Fault.outage(start=300, duration=300))
        ended: dict[str, float] = {}
        results: list[certpoll.OrderStatus] = []
        async for status in certpoll.poll_many(dc, [o.order_id for o in orders], concurrency=50):
            ended[status.order_id] = loop.time()
            results.append(status)
        assert other_tasks() == set()
        looks_before = len(network.looks)
        await asyncio.sleep(3600)  # nothing polls any more
        assert len(network.looks) == looks_before
    assert network.refused > 0
    assert sim.responses_by_status[503] > 0
    assert len(results) == 1000
    assert len({s.order_id for s in results}) == 1000
    assert {s.state for s in results} == {certpoll.OrderState.ISSUED}
    # None was polled after its answer came back.
    last_look: Counter[str] = Counter()
    for when, order_id in network.looks:
        assert when <= ended[order_id], f"order {order_id} polled after it ended"
        last_look[order_id] += 1
    assert set(last_look) == set(ended)
