"""What every connector inherits from ``certpoll.Connector``."""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import certpoll
from certpoll._connectors import _base as _connector
from certpoll._connectors import _http
from certpoll._connectors._base import Connector, path_segment, positive_int
from certpoll._triage import Triage
from certpoll.testing import Fault, SimulatedCA
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


@given(st.integers(min_value=1, max_value=10**19))
def test_a_numeric_id_reads_the_same_as_a_number_or_as_its_digits(number: int) -> None:
    """Some clients record CA ids as JSON strings ("sslId": "123"): the same id."""
    assert positive_int(number) == number
    assert positive_int(str(number)) == number


@given(st.text(max_size=12).filter(lambda text: not re.fullmatch(r"[1-9][0-9]*", text)))
def test_a_string_that_is_not_plain_digits_is_no_id(text: str) -> None:
    """No lenient parse: " 12", "012", "-5", "12abc", "1e3" name no order."""
    assert positive_int(text) is None


@pytest.mark.parametrize("value", [0, -3, True, 1.0, None, "0", ["1"]])
def test_no_id_outside_the_positive_integers(value: object) -> None:
    assert positive_int(value) is None


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


def _sim_connector(
    sim: SimulatedCA, ca: certpoll.CAName, url: str, http: httpx.AsyncClient, **settings: object
) -> certpoll.Connector[certpoll.CASettings]:
    # In-process there is no TLS: Entrust and GlobalSign open no client-certificate file.
    mtls = ca in ("entrust", "globalsign")
    values = sim.credentials.settings(
        ca,
        url,
        client_cert_path=Path("/nonexistent.crt") if mtls else None,
        client_key_path=Path("/nonexistent.key") if mtls else None,
        **settings,
    )
    return certpoll.connector_for(values, http=http, poller=FakeTime().poller(max_wait=1.0))


ALL_CAS: tuple[certpoll.CAName, ...] = ("digicert", "sectigo", "entrust", "globalsign")


@pytest.mark.parametrize("ca", ALL_CAS)
async def test_every_connector_reports_a_wrong_base_url_as_endpoint_not_found(
    ca: certpoll.CAName,
) -> None:
    # Each CA's triage starts from the shared one: none may lose the missing-route check.
    sim = SimulatedCA()
    async with sim.client() as http:
        url = getattr(sim.base_urls(), ca) + "/nothing/here"
        async with _sim_connector(sim, ca, url, http) as connector:
            with pytest.raises(certpoll.EndpointNotFound, match=f"CERTPOLL_{ca.upper()}_"):
                await connector.get_order_status("12345")
            # The right base URL and an unknown order: that order is not found.
            right = getattr(sim.base_urls(), ca)
        async with _sim_connector(sim, ca, right, http) as connector:
            with pytest.raises(certpoll.OrderNotFound) as unknown:
                await connector.get_order_status("12345")
    assert type(unknown.value) is certpoll.OrderNotFound


@pytest.mark.parametrize("ca", ALL_CAS)
async def test_every_connector_caps_a_retry_after_at_its_setting(ca: certpoll.CAName) -> None:
    sim = SimulatedCA()
    sim.add_fault(Fault.rate_limit(duration=1e6, retry_after=3600, ca=ca))
    async with sim.client() as http:
        url = getattr(sim.base_urls(), ca)
        async with _sim_connector(sim, ca, url, http, retry_after_cap_seconds=45) as connector:
            outcome = await connector.poll_once("12345")
    assert isinstance(outcome, certpoll.Pending)
    assert isinstance(outcome.error, certpoll.RateLimited)
    assert outcome.retry_after == 45.0


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


# -- redirects, as pure functions (_connectors/_http.py) ------------------------------------

SECRET = "s3cr3t-value"
HEADER_NAMES = st.sampled_from(
    sorted(_http.CREDENTIAL_HEADERS | {"accept", "content-type", "x-trace", "user-agent"})
)
HEADER_VALUES = st.sampled_from(["json", "v1", SECRET, f"Bearer {SECRET}", "ok"])
HEADERS = st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8)
LOCATIONS = st.sampled_from(
    ["/next", "https://ca.test/other", "https://elsewhere.test/x", "http://ca.test:8080/y"]
)


def _redirected(
    headers: list[tuple[str, str]], method: str, status: int, location: str, body: bytes
) -> httpx.Request | None:
    request = httpx.Request(method, "https://ca.test/api/orders", headers=headers, content=body)
    response = httpx.Response(status, headers={"Location": location}, request=request)
    return _http.redirect_request(request, response, holds_secret=lambda text: SECRET in text)


@given(
    headers=HEADERS,
    method=st.sampled_from(["GET", "POST", "PUT", "HEAD"]),
    status=st.sampled_from([301, 302, 303, 307, 308]),
    location=LOCATIONS,
    body=st.sampled_from([b"", b'{"api_key": "k"}']),
)
def test_a_followed_redirect_carries_no_credential_to_another_origin(
    headers: list[tuple[str, str]], method: str, status: int, location: str, body: bytes
) -> None:
    following = _redirected(headers, method, status, location, body)
    if following is None:
        return
    if _http.same_origin(following.url, httpx.URL("https://ca.test/")):
        # The same origin keeps every credential header the request had.
        kept = {name for name, _ in headers if name in _http.CREDENTIAL_HEADERS}
        assert kept <= set(following.headers)
        return
    assert not following.content
    for name, value in following.headers.items():
        assert name not in _http.CREDENTIAL_HEADERS
        assert SECRET not in value


@given(method=st.sampled_from(["GET", "POST", "PUT", "HEAD"]), status=st.integers(300, 308))
def test_a_redirect_keeps_its_method_and_body_unless_the_rule_makes_it_a_get(
    method: str, status: int
) -> None:
    following = _redirected([], method, status, "/next", b"{}" if method != "HEAD" else b"")
    if status not in (301, 302, 303, 307, 308):
        assert following is None
        return
    assert following is not None
    rewritten = (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST")
    assert following.method == ("GET" if rewritten else method)
    assert following.content == (b"" if rewritten or method == "HEAD" else b"{}")


def test_a_redirect_to_another_scheme_or_without_location_is_not_followed() -> None:
    request = httpx.Request("GET", "https://ca.test/api")
    for headers in ({"Location": "ftp://ca.test/x"}, {}):
        response = httpx.Response(302, headers=headers, request=request)
        assert _http.redirect_request(request, response, holds_secret=lambda _: False) is None


# -- revocation reasons ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "reason", "sent"),
    [
        ({certpoll.RevocationReason.UNSPECIFIED: 0}, certpoll.RevocationReason.CA_COMPROMISE, 0),
        (
            {
                certpoll.RevocationReason.UNSPECIFIED: "unspecified",
                certpoll.RevocationReason.SUPERSEDED: "superseded",
            },
            certpoll.RevocationReason.SUPERSEDED,
            "superseded",
        ),
    ],
)
def test_a_reason_the_ca_lacks_is_sent_as_its_unspecified_and_logged(
    caplog: pytest.LogCaptureFixture,
    table: dict[certpoll.RevocationReason, object],
    reason: certpoll.RevocationReason,
    sent: object,
) -> None:
    with caplog.at_level(logging.INFO, logger="certpoll"):
        assert connector()._wire_reason(reason, table) == sent
    mapped = [r for r in caplog.records if "revocation_reason_mapped" in r.getMessage()]
    assert bool(mapped) is (reason not in table)
    if mapped:
        assert mapped[0].getMessage() == (
            f"certpoll.revocation_reason_mapped ca=digicert reason={reason.name} sent=unspecified"
        )


async def test_revoke_refuses_a_value_that_is_no_reason_before_any_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing is sent")

    with pytest.raises(certpoll.ConfigError, match="not a RevocationReason"):
        await connector(httpx.MockTransport(handler)).revoke("1", reason=42)  # type: ignore[arg-type]
