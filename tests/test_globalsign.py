"""GlobalSign Atlas HVCA connector: login and token, requests, answers, settings.

The HVCA behaviour certctl's GlobalSign connector is tested for, and GlobalSign's own (the
token: one login shared, renewed, retried once on a 401); what every connector promises is
tests/test_connector_contract.py. Left out on purpose: a live configuration probe (settings
are validated when built: see below) and CA certificate, renewal, CRL and OCSP methods,
which certpoll does not have. certctl sent ApiKey/ApiSecret headers; HVCA wants a bearer
token from /login, which is what is tested here. Server-CA pinning against a real TLS
server is in tests/test_mtls.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import respx
from cryptography import x509
from pydantic import SecretStr

import certpoll
from tests.certs import make_chain, make_csr
from tests.helpers import (
    GLOBALSIGN_API_KEY,
    GLOBALSIGN_API_SECRET,
    GLOBALSIGN_TOKEN,
    FakeTime,
    assert_no_secrets,
    leaked_secrets,
)

BASE = "https://emea.api.hvca.globalsign.com:8443/v2"
LOGIN = f"{BASE}/login"
CERTIFICATES = f"{BASE}/certificates"
TOKEN_2 = GLOBALSIGN_TOKEN + "-second"


def from_env(**values: object) -> certpoll.GlobalSignSettings:
    """GlobalSignSettings from arguments and the environment (typed without the plugin)."""
    factory: type[certpoll.CASettings] = certpoll.GlobalSignSettings
    built = factory(**values)
    assert isinstance(built, certpoll.GlobalSignSettings)
    return built


def settings(**overrides: object) -> certpoll.GlobalSignSettings:
    values: dict[str, object] = {
        "api_key": GLOBALSIGN_API_KEY,
        "api_secret": GLOBALSIGN_API_SECRET,
        "client_cert_path": Path("/nonexistent/client.crt"),
        "client_key_path": Path("/nonexistent/client.key"),
    }
    values.update(overrides)
    return from_env(**values)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
def login(mock: respx.MockRouter) -> respx.Route:
    return mock.post(LOGIN).respond(200, json={"access_token": GLOBALSIGN_TOKEN})


@pytest.fixture
def gs(fake_time: FakeTime) -> certpoll.GlobalSign:
    return certpoll.GlobalSign(
        settings(), http=httpx.AsyncClient(), poller=fake_time.poller(max_wait=60.0)
    )


def request(sans: tuple[str, ...] = ("www.example.com",)) -> certpoll.CertificateRequest:
    return certpoll.CertificateRequest(
        common_name="www.example.com", csr_pem=make_csr("www.example.com", sans), sans=sans
    )


def decimal_serial(pem: str) -> str:
    return str(x509.load_pem_x509_certificate(pem.encode()).serial_number)


def issued(status: str = "ISSUED") -> dict[str, object]:
    leaf, chain, _ = make_chain()
    return {"status": status, "certificate": leaf, "chain": chain, "updated_at": 1700000000}


# -- login and the token ------------------------------------------------------------------


async def test_login_then_bearer(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route
) -> None:
    status = mock.get(f"{CERTIFICATES}/0A1B").respond(202)
    assert isinstance(await gs.poll_once("0A1B"), certpoll.Pending)
    sent = login.calls.last.request
    assert json.loads(sent.content) == {
        "api_key": GLOBALSIGN_API_KEY,
        "api_secret": GLOBALSIGN_API_SECRET,
    }
    assert sent.headers["Content-Type"] == "application/json;charset=utf-8"
    assert "Authorization" not in sent.headers
    assert status.calls.last.request.headers["Authorization"] == f"Bearer {GLOBALSIGN_TOKEN}"


async def test_fifty_concurrent_polls_share_one_login(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route
) -> None:
    async def slow_login(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # every poll starts before the login answers
        return httpx.Response(200, json={"access_token": GLOBALSIGN_TOKEN})

    login.mock(side_effect=slow_login)
    mock.get(url__startswith=f"{CERTIFICATES}/").respond(202)
    outcomes = await asyncio.gather(*(gs.poll_once(f"SN{i}") for i in range(50)))
    assert all(isinstance(o, certpoll.Pending) for o in outcomes)
    assert login.call_count == 1


async def test_the_token_is_renewed_before_it_expires(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, fake_time: FakeTime
) -> None:
    login = mock.post(LOGIN).mock(
        side_effect=[
            httpx.Response(200, json={"access_token": GLOBALSIGN_TOKEN}),
            httpx.Response(200, json={"access_token": TOKEN_2}),
        ]
    )
    status = mock.get(f"{CERTIFICATES}/0A").respond(202)
    await gs.poll_once("0A")
    fake_time.now = 539.0  # still inside the 9 minutes
    await gs.poll_once("0A")
    assert login.call_count == 1
    fake_time.now = 540.0  # a minute before HVCA's 10 minutes run out
    await gs.poll_once("0A")
    assert login.call_count == 2
    assert status.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN_2}"


async def test_an_injected_clock_times_the_token(
    mock: respx.MockRouter, login: respx.Route
) -> None:
    now = [0.0]
    gs = certpoll.GlobalSign(settings(), http=httpx.AsyncClient(), clock=lambda: now[0])
    mock.get(f"{CERTIFICATES}/0A").respond(202)
    await gs.poll_once("0A")
    now[0] = 1000.0
    await gs.poll_once("0A")
    assert login.call_count == 2


async def test_a_401_logs_in_again_once(gs: certpoll.GlobalSign, mock: respx.MockRouter) -> None:
    login = mock.post(LOGIN).mock(
        side_effect=[
            httpx.Response(200, json={"access_token": GLOBALSIGN_TOKEN}),
            httpx.Response(200, json={"access_token": TOKEN_2}),
        ]
    )
    status = mock.get(f"{CERTIFICATES}/0A").mock(
        side_effect=[httpx.Response(401), httpx.Response(202)]
    )
    assert isinstance(await gs.poll_once("0A"), certpoll.Pending)
    assert login.call_count == 2
    assert [c.request.headers["Authorization"] for c in status.calls] == [
        f"Bearer {GLOBALSIGN_TOKEN}",
        f"Bearer {TOKEN_2}",
    ]


async def test_a_second_401_is_an_authentication_error(
    gs: certpoll.GlobalSign, mock: respx.MockRouter
) -> None:
    login = mock.post(LOGIN).respond(200, json={"access_token": GLOBALSIGN_TOKEN})
    status = mock.get(f"{CERTIFICATES}/0A").respond(401)
    outcome = await gs.poll_once("0A")
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.AuthenticationError)
    assert (login.call_count, status.call_count) == (2, 2)


async def test_a_403_is_not_retried(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route
) -> None:
    status = mock.get(f"{CERTIFICATES}/0A").respond(403, text="forbidden")
    outcome = await gs.poll_once("0A")
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.AuthenticationError)
    assert (login.call_count, status.call_count) == (1, 1)


async def test_concurrent_401s_lead_to_one_new_login(
    gs: certpoll.GlobalSign, mock: respx.MockRouter
) -> None:
    login = mock.post(LOGIN).mock(
        side_effect=[
            httpx.Response(200, json={"access_token": GLOBALSIGN_TOKEN}),
            httpx.Response(200, json={"access_token": TOKEN_2}),
        ]
    )

    async def answer(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # all twenty are in flight with the old token
        stale = request.headers["Authorization"] == f"Bearer {GLOBALSIGN_TOKEN}"
        return httpx.Response(401 if stale else 202)

    mock.get(url__startswith=f"{CERTIFICATES}/").mock(side_effect=answer)
    outcomes = await asyncio.gather(*(gs.poll_once(f"SN{i}") for i in range(20)))
    assert all(isinstance(o, certpoll.Pending) for o in outcomes)
    assert login.call_count == 2


async def test_a_failed_login_is_shared_by_the_callers_waiting_for_it(
    gs: certpoll.GlobalSign, mock: respx.MockRouter
) -> None:
    async def slow_failure(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # let the other callers queue up behind this login
        return httpx.Response(503)

    login = mock.post(LOGIN).mock(side_effect=slow_failure)
    outcomes = await asyncio.gather(*(gs.poll_once(f"SN{i}") for i in range(10)))
    assert all(isinstance(o, certpoll.Pending) for o in outcomes)
    assert all(isinstance(getattr(o, "error", None), certpoll.TransientError) for o in outcomes)
    assert login.call_count == 1
    # A later attempt tries again.
    await gs.poll_once("SN0")
    assert login.call_count == 2


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (httpx.Response(401), certpoll.AuthenticationError),
        (httpx.Response(200, json={"token": "x"}), certpoll.ResponseParseError),
        (httpx.Response(200, text="nope"), certpoll.ResponseParseError),
    ],
)
async def test_a_refused_or_unreadable_login_is_permanent(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, answer: httpx.Response, kind: type[Exception]
) -> None:
    mock.post(LOGIN).mock(side_effect=[answer])
    outcome = await gs.poll_once("0A")
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, kind)


async def test_the_token_never_leaks(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route
) -> None:
    echo = f"bad request with Bearer {GLOBALSIGN_TOKEN} and {GLOBALSIGN_API_SECRET}"
    mock.get(f"{CERTIFICATES}/0A").respond(400, text=echo)
    outcome = await gs.poll_once("0A")
    assert isinstance(outcome, certpoll.Failed)
    assert "[redacted]" in str(outcome.error)
    assert_no_secrets(outcome.error, gs, gs.settings, gs._token)
    assert not leaked_secrets(repr(gs.settings) + str(gs.settings.model_dump()))


@pytest.mark.parametrize("around", ["\n", "\r\n", " "])
async def test_a_token_with_whitespace_around_it_is_sent_without_it(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, around: str
) -> None:
    # A newline would make httpx refuse the header with a message quoting the whole token.
    mock.post(LOGIN).respond(200, json={"access_token": GLOBALSIGN_TOKEN + around})
    route = mock.get(f"{CERTIFICATES}/0A").respond(200, json={"status": "PENDING"})
    assert isinstance(await gs.poll_once("0A"), certpoll.Pending)
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {GLOBALSIGN_TOKEN}"


@pytest.mark.parametrize("inside", ["\n", "\x00", "\u00e9", " ", "\u2028"])
async def test_a_token_no_header_can_carry_is_a_parse_error_that_never_shows_it(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, inside: str
) -> None:
    token = GLOBALSIGN_TOKEN[:8] + inside + GLOBALSIGN_TOKEN[8:]
    mock.post(LOGIN).respond(200, json={"access_token": token})
    outcome = await gs.poll_once("0A")  # nothing else is mocked: nothing else is sent
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.ResponseParseError)
    assert "cannot be sent in an HTTP header" in str(outcome.error)
    assert_no_secrets(outcome.error)
    for text in (str(outcome.error), repr(outcome.error), str(outcome.error.body_excerpt)):
        assert GLOBALSIGN_TOKEN[8:] not in text
        assert json.dumps(token)[1:-1] not in text


@pytest.mark.parametrize(
    "spelling",
    [
        lambda token: urllib.parse.quote(token, safe=""),
        lambda token: json.dumps(token)[1:-1],
        lambda token: base64.b64encode(token.encode()).decode(),
    ],
    ids=["percent", "json", "base64"],
)
async def test_the_token_is_redacted_in_every_spelling(
    gs: certpoll.GlobalSign,
    mock: respx.MockRouter,
    login: respx.Route,
    spelling: Callable[[str], str],
) -> None:
    token = GLOBALSIGN_TOKEN + '/+="'  # characters each encoding changes
    login.respond(200, json={"access_token": token})
    echo = spelling(token)
    mock.get(f"{CERTIFICATES}/0A").respond(400, text=f"refused: {echo}")
    outcome = await gs.poll_once("0A")
    assert isinstance(outcome, certpoll.Failed)
    assert echo not in repr(outcome.error.__dict__) + str(outcome.error)
    assert "[redacted]" in str(outcome.error)


@pytest.mark.parametrize("offset", [4, 8, 12, 20])
async def test_a_202_description_echoing_a_credential_across_the_cut_leaves_nothing(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route, offset: int
) -> None:
    # The detail keeps 200 characters ("HTTP 202: " and the words): an echo straddling the
    # cut must be redacted before it, not cut into a first few characters first.
    words = "~" * (190 - offset) + GLOBALSIGN_API_SECRET
    mock.get(f"{CERTIFICATES}/0A").respond(202, json={"description": words})
    outcome = await gs.poll_once("0A")
    assert isinstance(outcome, certpoll.Pending)
    assert outcome.detail is not None
    assert GLOBALSIGN_API_SECRET[:4] not in outcome.detail
    assert len(outcome.detail) <= 200


# -- issue --------------------------------------------------------------------------------


async def test_issue_returns_the_serial_from_location(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route
) -> None:
    route = mock.post(CERTIFICATES).respond(201, headers={"Location": "/v2/certificates/0A1B2C"})
    submitted = request(("www.example.com", "example.com"))
    order = await gs.issue(submitted)
    assert order.state is certpoll.OrderState.PENDING
    assert order.order_id == "0A1B2C"
    sent = route.calls.last.request
    assert sent.headers["Content-Type"] == "application/json;charset=utf-8"
    assert sent.headers["Authorization"] == f"Bearer {GLOBALSIGN_TOKEN}"
    body = json.loads(sent.content)
    assert body["public_key"] == submitted.csr_pem
    assert body["subject_dn"] == {"common_name": "www.example.com"}
    assert body["san"] == {"dns_names": ["www.example.com", "example.com"]}
    assert set(body["validity"]) == {"not_before", "not_after"}


async def test_issue_with_a_refused_serial_echoing_a_credential_keeps_it_out(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route
) -> None:
    # A serial over 256 characters is refused; the refusal quotes its first 64 characters.
    serial = "~" * 40 + GLOBALSIGN_API_SECRET + "~" * 300
    mock.post(CERTIFICATES).respond(201, headers={"Location": f"/v2/certificates/{serial}"})
    with pytest.raises(certpoll.SubmissionUncertain) as caught:
        await gs.issue(request())
    assert_no_secrets(caught.value)
    assert GLOBALSIGN_API_SECRET[:8] not in repr(caught.value.__cause__)


async def test_issue_with_an_absolute_location_and_no_sans(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route
) -> None:
    route = mock.post(CERTIFICATES).respond(201, headers={"Location": f"{CERTIFICATES}/7F%2001/"})
    order = await gs.issue(request(sans=()))
    assert order.order_id == "7F 01"
    assert "san" not in json.loads(route.calls.last.request.content)


async def test_issue_immediate_in_the_body(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route
) -> None:
    body = {"serial_number": "12345678901234567890", **issued("issued")}
    mock.post(CERTIFICATES).respond(201, json=body)
    order = await gs.issue(request())
    assert order.state is certpoll.OrderState.ISSUED
    assert order.order_id == "12345678901234567890"
    assert order.certificate is not None
    assert order.certificate.serial == decimal_serial(order.certificate.pem)
    assert order.certificate.ca_certificate_id == "12345678901234567890"


async def test_issue_pending_in_the_body(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route
) -> None:
    mock.post(CERTIFICATES).respond(
        201, json={"serial_number": "98765432109876543210", "status": "pending"}
    )
    order = await gs.issue(request())
    assert order.state is certpoll.OrderState.PENDING
    assert order.order_id == "98765432109876543210"
    assert order.certificate is None


async def test_issue_rejected_at_once_is_failed(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route
) -> None:
    mock.post(CERTIFICATES).respond(
        201, headers={"Location": "/v2/certificates/AB"}, json={"status": "rejected"}
    )
    order = await gs.issue(request())
    assert order.state is certpoll.OrderState.FAILED
    assert order.order_id == "AB"


async def test_issue_accepted_with_202(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route
) -> None:
    mock.post(CERTIFICATES).respond(202, headers={"Location": "/v2/certificates/AB"})
    order = await gs.issue(request())
    assert (order.state, order.order_id) == (certpoll.OrderState.PENDING, "AB")


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500),
        httpx.Response(504),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("cut"),
        httpx.Response(201),  # no Location, no body
        httpx.Response(201, headers={"Location": "/v2/certificates/.."}),
        httpx.Response(201, headers={"Location": "::::"}),
        httpx.Response(201, text="{not json"),
    ],
)
async def test_issue_ambiguous_is_uncertain_and_sent_once(
    gs: certpoll.GlobalSign,
    mock: respx.MockRouter,
    login: respx.Route,
    answer: httpx.Response | Exception,
) -> None:
    route = mock.post(CERTIFICATES).mock(side_effect=[answer])
    with pytest.raises(certpoll.SubmissionUncertain):
        await gs.issue(request())
    assert route.call_count == 1


async def test_issue_refused_raises(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route
) -> None:
    route = mock.post(CERTIFICATES).respond(422, json={"description": "policy"})
    with pytest.raises(certpoll.PermanentError, match="policy"):
        await gs.issue(request())
    assert route.call_count == 1


async def test_issue_after_a_401_logs_in_again_once(
    gs: certpoll.GlobalSign, mock: respx.MockRouter
) -> None:
    login = mock.post(LOGIN).respond(200, json={"access_token": GLOBALSIGN_TOKEN})
    route = mock.post(CERTIFICATES).mock(
        side_effect=[
            httpx.Response(401),
            httpx.Response(201, headers={"Location": "/v2/certificates/AB"}),
        ]
    )
    order = await gs.issue(request())
    assert order.order_id == "AB"
    assert (login.call_count, route.call_count) == (2, 2)


async def test_issue_twice_401_raises(gs: certpoll.GlobalSign, mock: respx.MockRouter) -> None:
    mock.post(LOGIN).respond(200, json={"access_token": GLOBALSIGN_TOKEN})
    route = mock.post(CERTIFICATES).respond(401)
    with pytest.raises(certpoll.AuthenticationError):
        await gs.issue(request())
    assert route.call_count == 2


async def test_issue_403_is_not_retried(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route
) -> None:
    route = mock.post(CERTIFICATES).respond(403)
    with pytest.raises(certpoll.AuthenticationError):
        await gs.issue(request())
    assert route.call_count == 1


async def test_issue_without_a_token_sends_nothing(
    gs: certpoll.GlobalSign, mock: respx.MockRouter
) -> None:
    mock.post(LOGIN).respond(503)
    with pytest.raises(certpoll.TransientError):
        await gs.issue(request())


# -- poll_once: every triage row ----------------------------------------------------------


async def test_poll_202_is_pending(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route
) -> None:
    mock.get(f"{CERTIFICATES}/0A").respond(
        202,
        json={"description": "Certificate is being issued"},
        headers={"Content-Type": "application/problem+json"},
    )
    outcome = await gs.poll_once("0A")
    assert isinstance(outcome, certpoll.Pending)
    assert outcome.error is None
    assert outcome.detail == "HTTP 202: Certificate is being issued"


@pytest.mark.parametrize("body", [b"", b"[]", b'{"description": ""}', b"<html>", b'{"x": 1}'])
async def test_poll_202_without_words_says_the_status(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route, body: bytes
) -> None:
    mock.get(f"{CERTIFICATES}/0A").respond(202, content=body)
    outcome = await gs.poll_once("0A")
    assert outcome == certpoll.Pending(detail="HTTP 202 Accepted")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"description": "CA validation error"}', "HTTP 422: CA validation error"),
        (b"not json", "HTTP 422: not json"),
        (b"", "HTTP 422"),
    ],
)
async def test_poll_422_is_the_cas_refusal(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route, body: bytes, words: str
) -> None:
    """HVCA answers the lookup 422 when its backend could not validate the request: FAILED."""
    mock.get(f"{CERTIFICATES}/0A").respond(
        422, content=body, headers={"Content-Type": "application/problem+json"}
    )
    outcome = await gs.poll_once("0A")
    assert isinstance(outcome, certpoll.Done)
    assert outcome.value.state is certpoll.OrderState.FAILED
    assert outcome.value.message == f"certificate 0A was rejected: {words}"


@pytest.mark.parametrize(
    "escaped",
    [
        GLOBALSIGN_API_SECRET.replace("-", "\\u002d"),  # any character may be \u-escaped
        "\\u0067" + GLOBALSIGN_API_SECRET[1:],
    ],
)
async def test_a_422_description_escaping_a_credential_is_redacted_once_decoded(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route, escaped: str
) -> None:
    # The raw excerpt is redacted before it is read as JSON; decoding could reveal it.
    body = ('{"description": "refused for ' + escaped + '"}').encode()
    mock.get(f"{CERTIFICATES}/0A").respond(422, content=body)
    outcome = await gs.poll_once("0A")
    assert isinstance(outcome, certpoll.Done)
    assert outcome.value.message is not None
    assert GLOBALSIGN_API_SECRET not in outcome.value.message
    assert "[redacted]" in outcome.value.message


async def test_a_422_at_login_is_no_refusal_of_the_order(
    gs: certpoll.GlobalSign, mock: respx.MockRouter
) -> None:
    """HVCA's 422 to a malformed login says nothing about the order: it stays an error."""
    mock.post(LOGIN).respond(422, json={"description": "Invalid login request"})
    outcome = await gs.poll_once("0A")
    assert isinstance(outcome, certpoll.Failed)
    assert type(outcome.error) is certpoll.PermanentError
    assert "Invalid login request" in str(outcome.error)


@pytest.mark.parametrize("status", ["ISSUED", "issued", "Issued"])
async def test_poll_issued(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route, status: str
) -> None:
    mock.get(f"{CERTIFICATES}/12345").respond(200, json=issued(status))
    outcome = await gs.poll_once("12345")
    assert isinstance(outcome, certpoll.Done)
    value = outcome.value
    assert value.state is certpoll.OrderState.ISSUED
    assert value.certificate is not None
    assert value.certificate.serial == decimal_serial(value.certificate.pem)
    assert value.certificate.ca_certificate_id == "12345"
    assert value.certificate.chain_pem.count("BEGIN CERTIFICATE") == 2


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"null",
        b"{}",
        b'{"status": "ISSUED"}',
        b'{"status": "ISSUED", "certificate": " "}',
        b'{"status": "ISSUED", "certificate": "not pem"}',
    ],
)
async def test_poll_unreadable_is_a_parse_error(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route, body: bytes
) -> None:
    mock.get(f"{CERTIFICATES}/0A").respond(200, content=body)
    outcome = await gs.poll_once("0A")
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.ResponseParseError)


@pytest.mark.parametrize(
    ("serial", "segment"),
    [
        ("../login", "..%2Flogin"),
        ("a/b", "a%2Fb"),
        ("a?x", "a%3Fx"),
        ("a#x", "a%23x"),
        ("%2F", "%252F"),
    ],
)
async def test_serials_are_one_escaped_segment(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route, serial: str, segment: str
) -> None:
    route = mock.get(url__startswith=f"{CERTIFICATES}/").respond(202)
    await gs.poll_once(serial)
    assert route.calls.last.request.url.raw_path.decode() == f"/v2/certificates/{segment}"


# -- get_order_status (virtual time) ------------------------------------------------------


async def test_get_order_status_polls_until_issued(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route, fake_time: FakeTime
) -> None:
    mock.get(f"{CERTIFICATES}/0A").mock(
        side_effect=[httpx.Response(202), httpx.Response(202), httpx.Response(200, json=issued())]
    )
    status = await gs.get_order_status("0A")
    assert status.state is certpoll.OrderState.ISSUED
    assert len(fake_time.sleeps) == 2
    assert login.call_count == 1


async def test_get_order_status_still_pending(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route, fake_time: FakeTime
) -> None:
    mock.get(f"{CERTIFICATES}/0A").respond(202)
    status = await gs.get_order_status("0A")
    assert status.state is certpoll.OrderState.PENDING
    assert status.message is not None
    assert fake_time.now == pytest.approx(60.0)


# -- revoke -------------------------------------------------------------------------------


#: GlobalSign's hvclient offers six names; the CA's own reasons go as unspecified.
HVCA_REASONS = {
    certpoll.RevocationReason.UNSPECIFIED: "unspecified",
    certpoll.RevocationReason.KEY_COMPROMISE: "keyCompromise",
    certpoll.RevocationReason.CA_COMPROMISE: "unspecified",
    certpoll.RevocationReason.AFFILIATION_CHANGED: "affiliationChanged",
    certpoll.RevocationReason.SUPERSEDED: "superseded",
    certpoll.RevocationReason.CESSATION_OF_OPERATION: "cessationOfOperation",
    certpoll.RevocationReason.CERTIFICATE_HOLD: "unspecified",
    certpoll.RevocationReason.PRIVILEGE_WITHDRAWN: "privilegeWithdrawn",
}


@pytest.mark.parametrize(("reason", "name"), HVCA_REASONS.items())
async def test_revoke_patches_with_a_reason(
    gs: certpoll.GlobalSign,
    mock: respx.MockRouter,
    login: respx.Route,
    reason: certpoll.RevocationReason,
    name: str,
) -> None:
    route = mock.patch(f"{CERTIFICATES}/0A1B").respond(204)
    await gs.revoke("0A1B", reason=reason)
    sent = route.calls.last.request
    assert sent.headers["Content-Type"] == "application/json;charset=utf-8"
    body = json.loads(sent.content)
    assert body["revocation_reason"] == name
    assert isinstance(body["revocation_time"], int)
    assert set(HVCA_REASONS) == set(certpoll.RevocationReason)


async def test_revoke_a_certificate_object(
    gs: certpoll.GlobalSign, mock: respx.MockRouter, login: respx.Route
) -> None:
    mock.get(f"{CERTIFICATES}/0A").respond(200, json=issued())
    outcome = await gs.poll_once("0A")
    assert isinstance(outcome, certpoll.Done)
    assert outcome.value.certificate is not None
    route = mock.patch(f"{CERTIFICATES}/0A").respond(200, json={})
    await gs.revoke(outcome.value.certificate, reason=certpoll.RevocationReason.KEY_COMPROMISE)
    assert json.loads(route.calls.last.request.content)["revocation_reason"] == "keyCompromise"


@pytest.mark.parametrize(
    ("code", "kind"), [(404, certpoll.OrderNotFound), (502, certpoll.TransientError)]
)
async def test_revoke_refused_raises(
    gs: certpoll.GlobalSign,
    mock: respx.MockRouter,
    login: respx.Route,
    code: int,
    kind: type[Exception],
) -> None:
    mock.patch(f"{CERTIFICATES}/0A").respond(code)
    with pytest.raises(kind):
        await gs.revoke("0A")


# -- settings -----------------------------------------------------------------------------

ENV = {
    "API_URL": "https://apac.example:8443/v2/",
    "API_KEY": GLOBALSIGN_API_KEY,
    "API_SECRET": GLOBALSIGN_API_SECRET,
    "CLIENT_CERT_PATH": "/etc/certpoll/gs.crt",
    "CLIENT_KEY_PATH": "/etc/certpoll/gs.key",
    "SERVER_CA_PATH": "/etc/certpoll/gs-ca.pem",
    "POLL_MAX_WAIT_SECONDS": "900",
}


@pytest.mark.parametrize("prefix", ["CERTPOLL_GLOBALSIGN_", "CERTCTL_GLOBALSIGN_"])
def test_settings_from_either_prefix(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(prefix + name, value)
    read = from_env()
    assert read.api_url == "https://apac.example:8443/v2"
    assert read.api_key == SecretStr(GLOBALSIGN_API_KEY)
    assert read.api_secret.get_secret_value() == GLOBALSIGN_API_SECRET
    assert read.client_cert_path == Path("/etc/certpoll/gs.crt")
    assert read.client_key_path == Path("/etc/certpoll/gs.key")
    assert read.server_ca_path == Path("/etc/certpoll/gs-ca.pem")
    assert read.poll_max_wait_seconds == 900
    assert not leaked_secrets(repr(read) + str(read))


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    read = settings()
    assert read.api_url == BASE
    assert read.server_ca_path is None
    gs = certpoll.GlobalSign(read, http=httpx.AsyncClient())
    assert gs.base_url == BASE
    assert repr(gs) == f"GlobalSign(base_url={BASE!r})"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("API_URL", "emea.api.hvca.globalsign.com"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    for key, good in ENV.items():
        monkeypatch.setenv("CERTPOLL_GLOBALSIGN_" + key, good)
    monkeypatch.setenv("CERTPOLL_GLOBALSIGN_" + name, value)
    with pytest.raises(certpoll.ConfigError, match="CERTPOLL_GLOBALSIGN_" + name) as caught:
        from_env()
    assert_no_secrets(caught.value)


def test_own_client_needs_readable_key_files() -> None:
    with pytest.raises(certpoll.ConfigError, match="CERTPOLL_GLOBALSIGN_CLIENT_KEY_PATH"):
        certpoll.GlobalSign(settings())
