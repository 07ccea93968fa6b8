"""What every connector inherits from ``certpoll.Connector``."""

from __future__ import annotations

import asyncio
import gzip
import logging
import subprocess
import sys
from typing import ClassVar

import httpx
import pytest

import certpoll
from certpoll._connectors import _base as _connector
from certpoll._connectors._base import Connector, path_segment
from certpoll._triage import Triage
from certpoll.testing import SimulatedCA
from tests.certs import make_csr
from tests.helpers import DIGICERT_API_KEY, FakeTime

REQUEST = certpoll.CertificateRequest(
    common_name="www.example.com", csr_pem=make_csr("www.example.com")
)


class Plain(Connector[certpoll.DigiCertSettings]):
    """The smallest connector: one status request, answers decided by the test."""

    ca: ClassVar[certpoll.CAName] = "digicert"

    @property
    def base_url(self) -> str:
        return "https://ca.test/api"

    def _make_triage(self) -> Triage:
        def not_ready(response: httpx.Response) -> str | None:
            return "try later" if b"not ready" in response.content else None

        return Triage(
            ca=self.ca,
            redact=self.redact,
            pending_status_codes=frozenset({202}),
            not_ready=not_ready,
        )

    async def issue(self, request: certpoll.CertificateRequest) -> certpoll.OrderStatus:
        response = await self._submit(
            self.http.build_request("POST", self.url("orders")), certificate_request=request
        )
        return certpoll.OrderStatus(
            ca=self.ca, order_id=response.text, state=certpoll.OrderState.PENDING
        )

    async def poll_once(
        self, order_id: str
    ) -> certpoll.Done[certpoll.OrderStatus] | certpoll.Pending | certpoll.Failed:
        sent = await self._send(
            self.http.build_request("GET", self.url("orders", path_segment(order_id))),
            order_id=order_id,
        )
        if not isinstance(sent, httpx.Response):
            return sent
        return certpoll.Pending(detail=sent.text or None)

    async def _send_revocation(
        self, certificate_id: str, reason: certpoll.RevocationReason, comment: str | None
    ) -> httpx.Response | certpoll.Pending | certpoll.Failed:
        raise NotImplementedError


def connector(handler: httpx.MockTransport | None = None) -> Plain:
    settings = certpoll.DigiCertSettings(
        api_key=DIGICERT_API_KEY, org_id=1, poll_max_wait_seconds=1
    )
    http = None if handler is None else httpx.AsyncClient(transport=handler)
    return Plain(settings, http=http)


async def test_a_202_on_submit_is_an_accepted_order() -> None:
    plain = connector(httpx.MockTransport(lambda request: httpx.Response(202, text="17")))
    status = await plain.issue(REQUEST)
    assert status.order_id == "17"


async def test_a_not_ready_answer_on_submit_is_a_refusal() -> None:
    plain = connector(httpx.MockTransport(lambda request: httpx.Response(400, text="not ready")))
    with pytest.raises(certpoll.PermanentError, match="was refused: HTTP 400") as caught:
        await plain.issue(REQUEST)
    assert caught.value.status_code == 400
    assert not isinstance(caught.value, certpoll.SubmissionUncertain)


async def test_reading_stops_at_the_size_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_connector, "MAX_RESPONSE_BYTES", 1000)
    plain = connector(httpx.MockTransport(lambda request: httpx.Response(200, content=b"x" * 5000)))
    outcome = await plain.poll_once("1")
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.ResponseParseError)
    assert "larger than 1000 bytes" in str(outcome.error)
    with pytest.raises(certpoll.SubmissionUncertain):
        await plain.issue(REQUEST)


async def test_a_compressed_body_is_decoded_once() -> None:
    body = gzip.compress(b"validating")
    plain = connector(
        httpx.MockTransport(
            lambda request: httpx.Response(200, content=body, headers={"Content-Encoding": "gzip"})
        )
    )
    assert await plain.poll_once("1") == certpoll.Pending(detail="validating")


async def test_a_client_passed_in_is_never_closed() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    settings = certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1)
    async with Plain(settings, http=http):
        pass
    assert not http.is_closed
    await http.aclose()


async def test_a_client_it_created_is_closed() -> None:
    plain = connector()
    async with plain:
        assert not plain.http.is_closed
    assert plain.http.is_closed


async def test_still_pending_falls_back_to_a_plain_message(fake_time: FakeTime) -> None:
    plain = connector(httpx.MockTransport(lambda request: httpx.Response(200, text="")))
    plain.poller = fake_time.poller(max_wait=30)
    status = await plain.get_order_status("5")
    assert status.state is certpoll.OrderState.PENDING
    assert status.message == "order 5 still pending after PollMaxWait"


@pytest.mark.parametrize(
    ("value", "escaped"),
    [("12", "12"), ("a/b", "a%2Fb"), ("a?b#c", "a%3Fb%23c"), ("%2F", "%252F"), ("../x", "..%2Fx")],
)
def test_path_segment_escapes(value: str, escaped: str) -> None:
    assert path_segment(value) == escaped


@pytest.mark.parametrize("value", ["", ".", "..", "a\nb", "x" * 257])
def test_path_segment_refuses(value: str) -> None:
    with pytest.raises(certpoll.ConfigError):
        path_segment(value)


def test_path_segment_needs_a_string() -> None:
    with pytest.raises(certpoll.ConfigError, match="must be a string"):
        path_segment(12)  # type: ignore[arg-type]


# -- issue() returns the accepted order at once ------------------------------------------------


@pytest.mark.looptime
async def test_issue_returns_the_accepted_order_without_waiting_behind_a_hold() -> None:
    """Sectigo accepted the enrolment; meanwhile another order's 429 holds the gate for an
    hour. The first look does not queue behind it: the sslId comes back at once.
    """
    settings = certpoll.SectigoSettings(
        customer_uri="c", login="l-SECRET", password="p-SECRET", org_id=1, cert_type=1
    )
    holder: list[certpoll.Sectigo] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/enroll"):
            await holder[0].gate.hold(3600.0)  # another order's Retry-After, meanwhile
            return httpx.Response(200, json={"sslId": 77})
        return httpx.Response(200, json={"status": "Applied"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        scm = certpoll.Sectigo(settings, http=http)
        holder.append(scm)
        loop = asyncio.get_running_loop()
        order = await scm.issue(REQUEST)
        assert loop.time() == 0.0
        assert order.order_id == "77"
        assert order.state is certpoll.OrderState.PENDING
        assert isinstance(order.last_error, certpoll.GateClosed)
        assert order.retry_after == pytest.approx(3600.0)
        # Only the look after the submit is bounded: a later poll waits as a poll does.
        status = await scm.get_order_status("77")
        assert status.state is certpoll.OrderState.PENDING


@pytest.mark.looptime
async def test_issue_waits_at_the_gate_before_the_submit_and_polls_after_it_normally() -> None:
    settings = certpoll.SectigoSettings(
        customer_uri="c", login="l-SECRET", password="p-SECRET", org_id=1, cert_type=1
    )
    seen: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(asyncio.get_running_loop().time())
        if request.url.path.endswith("/enroll"):
            return httpx.Response(200, json={"sslId": 78})
        return httpx.Response(200, json={"status": "Applied"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        scm = certpoll.Sectigo(settings, http=http)
        await scm.gate.hold(30.0)
        order = await scm.issue(REQUEST)
    assert seen == [30.0, 30.0]  # the submit waited the hold out; then the look went at once
    assert order.last_error is None


# -- a wrong base URL is not an unknown order ----------------------------------------------------


@pytest.mark.looptime
@pytest.mark.parametrize("suffix", ["/v3", "/nothing/here"])
async def test_a_route_the_simulator_does_not_have_is_endpoint_not_found(suffix: str) -> None:
    sim = SimulatedCA()
    settings = certpoll.DigiCertSettings(
        api_key=sim.credentials.digicert_api_key,
        org_id=sim.credentials.digicert_org_id,
        base_url=sim.base_urls().digicert + suffix,
    )
    async with sim.client() as http, certpoll.DigiCert(settings, http=http) as dc:
        with pytest.raises(certpoll.EndpointNotFound, match="CERTPOLL_DIGICERT_BASE_URL") as err:
            await dc.get_order_status("1")
    assert not isinstance(err.value, certpoll.OrderNotFound)
    assert err.value.status_code == 404


@pytest.mark.parametrize(
    ("code", "expected"),
    [("not_found|route", certpoll.EndpointNotFound), ("not_found", certpoll.OrderNotFound)],
)
async def test_digicerts_route_404_differs_from_its_order_404(
    code: str, expected: type[Exception]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"errors": [{"code": code, "message": "Not found."}]})

    settings = certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        dc = certpoll.DigiCert(settings, http=http)
        outcome = await dc.poll_once("5")
    assert isinstance(outcome, certpoll.Failed)
    assert type(outcome.error) is expected


# -- failures a user can see ---------------------------------------------------------------------


def test_certpoll_logs_nothing_to_stderr_without_logging_configured() -> None:
    code = (
        "import logging, certpoll\n"
        "logging.getLogger('certpoll').warning('certpoll.attempt outcome=failed')\n"
        "logging.getLogger('certpoll.sub').error('certpoll.other')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stderr == ""
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("certpoll").handlers)


@pytest.mark.looptime
async def test_an_unreachable_ca_ends_pending_with_the_connection_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    settings = certpoll.DigiCertSettings(
        api_key=DIGICERT_API_KEY, org_id=1, base_url="http://127.0.0.1:9", poll_max_wait_seconds=20
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        dc = certpoll.DigiCert(settings, http=http)
        status = await dc.get_order_status("1")
    assert asyncio.get_running_loop().time() == pytest.approx(20.0, abs=0.01)
    assert status.state is certpoll.OrderState.PENDING
    assert isinstance(status.last_error, certpoll.TransientError)
    assert isinstance(status.last_error.__cause__, httpx.ConnectError)
    assert "Connection refused" in str(status.last_error)
