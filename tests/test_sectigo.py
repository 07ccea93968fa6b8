"""certpoll.Sectigo against a strict respx mock of SCM.

Only what is Sectigo's own: the three login headers, the enroll body, the collect and its
"not ready yet" codes, revocation and settings. What every connector promises (status words,
triage of the status request, bad ids) is tests/test_connector_contract.py. Where certctl's
Sectigo connector behaves otherwise, the test pins certpoll's behaviour and says so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st

import certpoll
from certpoll import (
    AuthenticationError,
    ConfigError,
    Done,
    Failed,
    OrderNotFound,
    OrderState,
    Pending,
    PermanentError,
    RateLimited,
    ResponseParseError,
    RevocationReason,
    Sectigo,
    SectigoSettings,
    SubmissionUncertain,
    TransientError,
)
from tests.certs import make_chain, make_csr
from tests.connector_contract import TRIAGE, Answer, check_triage, mock_answer
from tests.helpers import SECTIGO_LOGIN, SECTIGO_PASSWORD, FakeTime, assert_no_secrets

BASE = "https://scm.test/api"
STATUS = "/ssl/v1/55001"
COLLECT = "/ssl/v1/collect/55001"
LEAF, CHAIN, SERIAL = make_chain("www.example.com", ["api.example.com", "cdn.example.com"])
BUNDLE = LEAF + CHAIN
CSR = make_csr("www.example.com", ["api.example.com", "cdn.example.com"])
ECHO = f"bad login {SECTIGO_LOGIN} / {SECTIGO_PASSWORD}"
AUTH = {"customerUri": "test-org", "login": SECTIGO_LOGIN, "password": SECTIGO_PASSWORD}
BAD_IDS = ["12abc", " 12", "12 ", "-5", "0x10", "1e3", "", "0", "012", "+12", "1.0"]
BAD_IDS += ["../", "/", "?", "#", "%2F", "..", "12/../13", "\u0661\u0662"]


def settings(**overrides: object) -> SectigoSettings:
    values: dict[str, object] = {
        "customer_uri": "test-org",
        "login": SECTIGO_LOGIN,
        "password": SECTIGO_PASSWORD,
        "org_id": 1234,
        "cert_type": 567,
        "base_url": BASE,
    }
    values.update(overrides)
    return SectigoSettings(**values)  # type: ignore[arg-type]


def request(
    sans: tuple[str, ...] = ("api.example.com", "cdn.example.com"),
) -> certpoll.CertificateRequest:
    return certpoll.CertificateRequest(common_name="www.example.com", csr_pem=CSR, sans=sans)


def status(word: str) -> httpx.Response:
    return httpx.Response(200, json={"sslId": 55001, "status": word, "commonName": "x"})


def not_ready(code: object = -183) -> httpx.Response:
    return httpx.Response(
        400, json={"code": code, "description": "Certificate is not collectable."}
    )


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith(("CERTPOLL_", "CERTCTL_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.fixture
def ca() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=True, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
def scm(fake_time: FakeTime) -> Sectigo:
    return Sectigo(settings(), poller=fake_time.poller(max_wait=60.0))


def _assert_auth(router: respx.MockRouter) -> None:
    assert router.calls.call_count >= 1
    for call in router.calls:
        for name, value in AUTH.items():
            assert call.request.headers[name] == value


# -- issue ---------------------------------------------------------------------------------


async def test_issue_immediate_success(ca: respx.MockRouter, scm: Sectigo) -> None:
    """Enroll, status Issued, collect; all three login headers on every call."""
    enroll = ca.post("/ssl/v1/enroll").respond(200, json={"sslId": 55001, "renewId": "ren-abc"})
    ca.get(STATUS).mock(return_value=status("Issued"))
    collect = ca.get(COLLECT, params={"format": "pemia"}).respond(200, text=BUNDLE)

    order = await scm.issue(request())

    assert order.state is OrderState.ISSUED
    assert order.order_id == "55001"
    assert order.certificate is not None
    assert (order.certificate.pem, order.certificate.chain_pem) == (LEAF, CHAIN)
    assert order.certificate.serial == SERIAL
    assert order.certificate.ca_certificate_id == "55001"
    assert json.loads(enroll.calls.last.request.content) == {
        "orgId": 1234,
        "csr": CSR,
        "certType": 567,
        "term": 365,  # the default term
        "subjAltNames": "api.example.com,cdn.example.com",
        "comments": "requested through certpoll",
    }
    assert enroll.calls.last.request.headers["Content-Type"] == "application/json"
    assert collect.calls.last.request.url.params["format"] == "pemia"
    assert enroll.call_count == 1
    assert ca.calls.call_count == 3
    _assert_auth(ca)


async def test_issue_pending(ca: respx.MockRouter, scm: Sectigo) -> None:
    """An enrollment not issued yet comes back PENDING with its sslId."""
    ca.post("/ssl/v1/enroll").respond(201, json={"sslId": 55002})
    ca.get("/ssl/v1/55002").respond(200, json={"status": "Applied"})
    order = await scm.issue(request(sans=()))
    assert order.state is OrderState.PENDING
    assert order.order_id == "55002"
    assert order.certificate is None
    assert order.message == "enrollment 55002 is Applied"
    body = json.loads(ca.calls[0].request.content)
    assert "subjAltNames" not in body
    assert "externalRequester" not in body


async def test_issue_sends_term_and_external_requester(ca: respx.MockRouter) -> None:
    ca.post("/ssl/v1/enroll").respond(200, json={"sslId": 55001})
    ca.get(STATUS).mock(return_value=status("Requested"))
    scm = Sectigo(settings(term=730, external_requester="ops@example.com"))
    await scm.issue(request())
    body = json.loads(ca.calls[0].request.content)
    assert body["term"] == 730
    assert body["externalRequester"] == "ops@example.com"


@pytest.mark.parametrize("word", ["Rejected", "Declined", "Invalid"])
async def test_issue_rejected_at_once_is_failed(
    ca: respx.MockRouter, scm: Sectigo, word: str
) -> None:
    """A rejection at submit is FAILED at once (certctl reports it as pending)."""
    ca.post("/ssl/v1/enroll").respond(200, json={"sslId": 55001})
    ca.get(STATUS).mock(return_value=status(word))
    order = await scm.issue(request())
    assert order.state is OrderState.FAILED
    assert order.message == f"enrollment 55001 is {word}"


@pytest.mark.parametrize(
    ("answer", "collect", "error"),
    [
        (httpx.Response(503, text=ECHO), None, TransientError),
        (httpx.ConnectError("refused"), None, TransientError),
        (httpx.Response(401, text=ECHO), None, AuthenticationError),
        (status("Issued"), not_ready(), None),
        (status("Issued"), httpx.Response(500), TransientError),
        (status("Issued"), httpx.Response(200, text="junk"), ResponseParseError),
    ],
)
async def test_issue_keeps_the_order_when_the_first_look_fails(
    ca: respx.MockRouter,
    scm: Sectigo,
    answer: httpx.Response | Exception,
    collect: httpx.Response | None,
    error: type[Exception] | None,
) -> None:
    ca.post("/ssl/v1/enroll").respond(200, json={"sslId": 55001})
    mock_answer(ca.get(STATUS), answer)
    if collect is not None:
        ca.get(COLLECT).mock(return_value=collect)
    order = await scm.issue(request())
    assert order.state is OrderState.PENDING
    assert order.order_id == "55001"
    if error is None:
        assert order.last_error is None
        assert order.message is not None
        assert "-183" in order.message
    else:
        assert type(order.last_error) is error
    assert_no_secrets(order, order.last_error)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(400, json={"code": -36, "description": "invalid term"}), PermanentError),
        (httpx.Response(400, json={"code": -183}), PermanentError),  # not-ready is collect-only
        (httpx.Response(401, text=ECHO), AuthenticationError),
        (httpx.Response(403), AuthenticationError),
        (httpx.Response(429, headers={"Retry-After": "0"}), RateLimited),
        (httpx.Response(500, text=ECHO), SubmissionUncertain),
        (httpx.Response(504), SubmissionUncertain),
        (httpx.Response(408), SubmissionUncertain),
        (httpx.ReadTimeout("read timed out"), SubmissionUncertain),
        (httpx.RemoteProtocolError("peer closed"), SubmissionUncertain),
        (httpx.ConnectError("refused"), TransientError),
        (httpx.Response(200, text="oops"), SubmissionUncertain),
        (httpx.Response(200, json={"renewId": "x"}), SubmissionUncertain),
        (httpx.Response(200, json={"sslId": "55001x"}), SubmissionUncertain),
        (httpx.Response(200, json={"sslId": "055001"}), SubmissionUncertain),
        (httpx.Response(200, json={"sslId": -1}), SubmissionUncertain),
    ],
)
async def test_issue_is_never_retried(
    ca: respx.MockRouter, scm: Sectigo, answer: httpx.Response | Exception, error: type[Exception]
) -> None:
    """A refused enrollment (400) is an error; an ambiguous one is SubmissionUncertain."""
    route = ca.post("/ssl/v1/enroll")
    mock_answer(route, answer)
    with pytest.raises(error) as info:
        await scm.issue(request())
    assert type(info.value) is error
    assert route.call_count == 1
    assert ca.calls.call_count == 1
    assert_no_secrets(info.value)


@pytest.mark.parametrize("sans", [("a.example.com,b.example.com",), ("  ",)])
async def test_issue_refuses_sans_scm_cannot_take(scm: Sectigo, sans: tuple[str, ...]) -> None:
    with respx.mock(assert_all_called=False) as router:
        with pytest.raises(ConfigError, match="subjAltNames"):
            await scm.issue(request(sans=sans))
        assert router.calls.call_count == 0


# -- poll_once: status words ---------------------------------------------------------------


@pytest.mark.parametrize("word", ["Issued", "Enrolled - Pending Download", "Downloaded"])
async def test_issued_collects(ca: respx.MockRouter, scm: Sectigo, word: str) -> None:
    ca.get(STATUS).mock(return_value=status(word))
    ca.get(COLLECT, params={"format": "pemia"}).respond(200, text=BUNDLE)
    outcome = await scm.poll_once("55001")
    assert isinstance(outcome, Done)
    assert outcome.value.state is OrderState.ISSUED
    assert outcome.value.certificate is not None
    assert outcome.value.certificate.serial == SERIAL
    _assert_auth(ca)


_SCM_WORDS = {
    # SCM's own spelling -> what it means: None is issued.
    "Issued": None,
    "Enrolled - Pending Download": None,
    "Downloaded": None,
    "External": None,
    "Requested": Pending,
    "Awaiting Approval": Pending,
    "Not Enrolled": Pending,
    "Applied": Pending,
    "Rejected": Done,
    "Revoked": Done,
}


@settings_(max_examples=60, deadline=None)
@given(
    word=st.sampled_from(sorted(_SCM_WORDS)),
    cases=st.lists(st.booleans(), min_size=32, max_size=32),
)
def test_a_status_word_means_the_same_in_any_case(word: str, cases: list[bool]) -> None:
    """SCM writes "Issued"; a client (Keyfactor's) compares without case: so does certpoll."""
    respelled = "".join(c.upper() if up else c.lower() for c, up in zip(word, cases, strict=False))
    outcome = Sectigo(settings())._status_outcome(respelled, order_id="55001")
    expected = _SCM_WORDS[word]
    assert (outcome is None) if expected is None else isinstance(outcome, expected)
    if isinstance(outcome, Pending):
        assert outcome.detail == f"enrollment 55001 is {respelled}"  # the CA's own spelling


def _blocks(pem: str) -> list[str]:
    end = "-----END CERTIFICATE-----\n"
    return [block + end for block in pem.split(end) if block.strip()]


@pytest.mark.parametrize("crlf", [False, True])
async def test_a_root_first_bundle_gives_the_leaf(
    ca: respx.MockRouter, scm: Sectigo, crlf: bool
) -> None:
    """SCM's x509 bundle is root first, leaf last: the leaf is found by structure."""
    root_first = "".join(reversed(_blocks(BUNDLE)))
    text = root_first.replace("\n", "\r\n") if crlf else root_first
    ca.get(STATUS).mock(return_value=status("Issued"))
    ca.get(COLLECT, params={"format": "pemia"}).respond(200, text=text)
    outcome = await scm.poll_once("55001")
    assert isinstance(outcome, Done)
    certificate = outcome.value.certificate
    assert certificate is not None
    assert certificate.serial == SERIAL
    assert certificate.pem == LEAF
    assert certificate.chain_pem == CHAIN


@pytest.mark.parametrize(
    "bundle",
    [
        pytest.param(LEAF + make_chain("other.example.com")[0], id="two-leaves"),
        pytest.param(CHAIN, id="no-leaf-only-the-chain-ends"),
        pytest.param(LEAF + _blocks(make_chain()[1])[0].replace("A", "B", 1), id="garbled"),
    ],
)
async def test_a_bundle_without_one_leaf_is_a_parse_error(
    ca: respx.MockRouter, scm: Sectigo, bundle: str
) -> None:
    ca.get(STATUS).mock(return_value=status("Issued"))
    ca.get(COLLECT, params={"format": "pemia"}).respond(200, text=bundle)
    outcome = await scm.poll_once("55001")
    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, ResponseParseError)


@pytest.mark.parametrize("code", [-1400, -109, -183, -195, -140, -130, "-183"])
async def test_collect_not_ready_is_pending(
    ca: respx.MockRouter, scm: Sectigo, code: object
) -> None:
    """Only the documented "try later" collect codes are pending."""
    ca.get(STATUS).mock(return_value=status("Issued"))
    ca.get(COLLECT).mock(return_value=not_ready(code))
    outcome = await scm.poll_once("55001")
    assert isinstance(outcome, Pending)
    assert outcome.error is None
    assert outcome.detail is not None
    assert f"code {int(str(code))}" in outcome.detail


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(400, json={"code": -110, "description": "revoked, cannot download"}),
        httpx.Response(400, json={"code": True}),
        httpx.Response(400, json={"description": "no code"}),
        httpx.Response(400, json=[-183]),
        httpx.Response(400, text="-183"),
        httpx.Response(400, text=ECHO),
        httpx.Response(422, json={"code": -183}),
    ],
)
async def test_any_other_collect_400_is_permanent(
    ca: respx.MockRouter, scm: Sectigo, answer: httpx.Response
) -> None:
    """Any other collect 400 is permanent (certctl polls every one until its max wait)."""
    ca.get(STATUS).mock(return_value=status("Issued"))
    ca.get(COLLECT).mock(return_value=answer)
    outcome = await scm.poll_once("55001")
    assert isinstance(outcome, Failed)
    assert type(outcome.error) is PermanentError
    assert_no_secrets(outcome.error)


# -- poll_once: triage of the status request and of the collect ----------------------------


@pytest.mark.parametrize(("answer", "kind", "error", "retry_after"), TRIAGE)
async def test_collect_triage(
    ca: respx.MockRouter,
    scm: Sectigo,
    answer: Answer,
    kind: type,
    error: type[Exception],
    retry_after: float | None,
) -> None:
    """The collect is triaged like the status request: a 500 is transient."""
    ca.get(STATUS).mock(return_value=status("Issued"))
    mock_answer(ca.get(COLLECT), answer, echo=ECHO)
    outcome = await scm.poll_once("55001")
    check_triage(outcome, kind, error, retry_after, ca="sectigo", order_id="55001")


async def test_status_400_with_a_not_ready_code_is_permanent(
    ca: respx.MockRouter, scm: Sectigo
) -> None:
    ca.get(STATUS).mock(return_value=not_ready())
    outcome = await scm.poll_once("55001")
    assert isinstance(outcome, Failed)
    assert type(outcome.error) is PermanentError


@pytest.mark.parametrize(
    "body", ["not pem at all", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]
)
async def test_unparsable_collect_is_a_parse_error(
    ca: respx.MockRouter, scm: Sectigo, body: str
) -> None:
    """A collect that holds no readable certificate is a parse error."""
    ca.get(STATUS).mock(return_value=status("Issued"))
    ca.get(COLLECT).respond(200, text=body)
    outcome = await scm.poll_once("55001")
    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, ResponseParseError)


@pytest.mark.parametrize("body", ["", "\r\n"])
async def test_an_empty_collect_is_not_ready_yet(
    ca: respx.MockRouter, scm: Sectigo, body: str
) -> None:
    """A 200 collect with nothing in it is pending, as Keyfactor's SCM plugin reads it."""
    ca.get(STATUS).mock(return_value=status("Issued"))
    ca.get(COLLECT).respond(200, text=body)
    outcome = await scm.poll_once("55001")
    assert isinstance(outcome, Pending)
    assert outcome.detail is not None
    assert "not ready to collect yet" in outcome.detail


# -- get_order_status (zero real time) ----------------------------------------------------


async def test_get_order_status_issued(ca: respx.MockRouter, scm: Sectigo) -> None:
    """Polling returns the collected certificate."""
    ca.get(STATUS).mock(return_value=status("Issued"))
    ca.get(COLLECT).respond(200, text=BUNDLE)
    result = await scm.get_order_status("55001")
    assert result.state is OrderState.ISSUED
    assert result.certificate is not None
    assert result.certificate.pem == LEAF


async def test_get_order_status_collect_not_ready(
    ca: respx.MockRouter, scm: Sectigo, fake_time: FakeTime
) -> None:
    """Issued, but collect says -183 until the max wait: pending, with SCM's words."""
    ca.get(STATUS).mock(return_value=status("Issued"))
    ca.get(COLLECT).mock(return_value=not_ready())
    result = await scm.get_order_status("55001")
    assert result.state is OrderState.PENDING
    assert result.message is not None
    assert "Certificate is not collectable." in result.message
    assert fake_time.now == pytest.approx(60.0)


async def test_get_order_status_not_ready_then_collected(
    ca: respx.MockRouter, fake_time: FakeTime
) -> None:
    scm = Sectigo(settings(), poller=fake_time.poller(max_wait=600.0))
    ca.get(STATUS).mock(
        side_effect=[status("Applied"), httpx.Response(502), *[status("Issued")] * 3]
    )
    ca.get(COLLECT).mock(
        side_effect=[not_ready(-1400), httpx.Response(503), httpx.Response(200, text=BUNDLE)]
    )
    result = await scm.get_order_status("55001")
    assert result.state is OrderState.ISSUED
    assert len(fake_time.sleeps) == 4


async def test_get_order_status_raises_on_collect_403(ca: respx.MockRouter, scm: Sectigo) -> None:
    ca.get(STATUS).mock(return_value=status("Issued"))
    ca.get(COLLECT).respond(403, text=ECHO)
    with pytest.raises(AuthenticationError) as info:
        await scm.get_order_status("55001")
    assert_no_secrets(info.value)


async def test_get_order_status_keeps_the_last_transient_error(
    ca: respx.MockRouter, scm: Sectigo
) -> None:
    ca.get(STATUS).mock(side_effect=httpx.ConnectError(f"no route {SECTIGO_PASSWORD}"))
    result = await scm.get_order_status("55001")
    assert result.state is OrderState.PENDING
    assert isinstance(result.last_error, TransientError)
    # certpoll's own error is redacted; the httpx cause keeps its own words.
    assert "no route [redacted]" in str(result.last_error)
    assert SECTIGO_PASSWORD not in repr(result)


# -- sslId validation -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_bad_ssl_ids_are_refused_before_any_request(scm: Sectigo, bad: str) -> None:
    """An sslId is a plain positive decimal: "12abc" is refused, not read as 12."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        with pytest.raises(ConfigError, match="Sectigo sslId"):
            await scm.poll_once(bad)
        with pytest.raises(ConfigError, match="Sectigo sslId"):
            await scm.get_order_status(bad)
        with pytest.raises(ConfigError, match="Sectigo sslId"):
            await scm.revoke(bad)
        assert router.calls.call_count == 0


# -- revoke ---------------------------------------------------------------------------------

REASON_CODES = {
    RevocationReason.UNSPECIFIED: 0,
    RevocationReason.KEY_COMPROMISE: 1,
    RevocationReason.CA_COMPROMISE: 0,
    RevocationReason.AFFILIATION_CHANGED: 3,
    RevocationReason.SUPERSEDED: 4,
    RevocationReason.CESSATION_OF_OPERATION: 5,
    RevocationReason.CERTIFICATE_HOLD: 0,
    RevocationReason.PRIVILEGE_WITHDRAWN: 0,
}


def certificate() -> certpoll.Certificate:
    now = datetime.now(UTC)
    return certpoll.Certificate(
        pem=LEAF,
        chain_pem=CHAIN,
        serial=SERIAL,
        not_before=now,
        not_after=now,
        ca_certificate_id="55001",
    )


@pytest.mark.parametrize(("reason", "code"), REASON_CODES.items())
async def test_revoke_by_ssl_id_with_the_reason_code(
    ca: respx.MockRouter, scm: Sectigo, reason: RevocationReason, code: int
) -> None:
    """Revocation addresses the sslId (not the serial) with the RFC 5280 reason code."""
    route = ca.post("/ssl/v1/revoke/55001").respond(204)
    await scm.revoke(certificate(), reason=reason)
    sent = route.calls.last.request
    assert json.loads(sent.content) == {
        "reasonCode": code,
        "reason": f"revoked through certpoll: {reason.name.lower()}",
    }
    assert SERIAL not in str(sent.url)
    _assert_auth(ca)
    assert set(REASON_CODES) == set(RevocationReason)


async def test_revoke_with_a_comment(ca: respx.MockRouter, scm: Sectigo) -> None:
    route = ca.post("/ssl/v1/revoke/7").respond(204)
    await scm.revoke("7", reason=RevocationReason.KEY_COMPROMISE, comment="key leaked")
    assert json.loads(route.calls.last.request.content) == {"reasonCode": 1, "reason": "key leaked"}


@pytest.mark.parametrize("comment", ["", "   ", "x" * 513])
async def test_revoke_refuses_a_comment_scm_cannot_take(scm: Sectigo, comment: str) -> None:
    with pytest.raises(ConfigError, match="512"):
        await scm.revoke("7", comment=comment)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(400, json={"code": -102, "description": "Only issued"}), PermanentError),
        (httpx.Response(401, text=ECHO), AuthenticationError),
        (httpx.Response(404), OrderNotFound),
        (httpx.Response(429), RateLimited),
        (httpx.Response(500, text=ECHO), TransientError),
        (httpx.ReadTimeout("slow"), TransientError),
    ],
)
async def test_revoke_raises_the_triaged_error(
    ca: respx.MockRouter, scm: Sectigo, answer: httpx.Response | Exception, error: type[Exception]
) -> None:
    """A refused revocation raises the triaged error."""
    route = ca.post("/ssl/v1/revoke/55001")
    mock_answer(route, answer)
    with pytest.raises(error) as info:
        await scm.revoke(certificate())
    assert type(info.value) is error
    assert route.call_count == 1
    assert_no_secrets(info.value)


# -- settings, secrets, lifecycle ---------------------------------------------------------


def test_settings_from_certpoll_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "CUSTOMER_URI": "acme",
        "LOGIN": SECTIGO_LOGIN,
        "PASSWORD": SECTIGO_PASSWORD,
        "ORG_ID": "9",
        "CERT_TYPE": "42",
        "TERM": "730",
        "BASE_URL": "https://scm.example/api/",
        "EXTERNAL_REQUESTER": "ops@example.com",
        "POLL_MAX_WAIT_SECONDS": "300",
        "POLL_INITIAL_WAIT_SECONDS": "1",
        "POLL_MAX_BACKOFF_SECONDS": "30",
        "POLL_JITTER": "0",
        "ATTEMPT_TIMEOUT_SECONDS": "5",
        "RATE_LIMITS": "[[5, 1], [100, 60]]",
    }
    for key, value in env.items():
        monkeypatch.setenv(f"CERTPOLL_SECTIGO_{key}", value)
    s = SectigoSettings()
    assert (s.customer_uri, s.org_id, s.cert_type, s.term) == ("acme", 9, 42, 730)
    assert s.login.get_secret_value() == SECTIGO_LOGIN
    assert s.password.get_secret_value() == SECTIGO_PASSWORD
    assert s.external_requester == "ops@example.com"
    assert (s.poll_max_wait_seconds, s.poll_initial_wait_seconds) == (300, 1)
    assert (s.poll_max_backoff_seconds, s.poll_jitter, s.attempt_timeout_seconds) == (30, 0, 5)
    assert s.rate_limits == ((5, 1.0), (100, 60.0))
    scm = Sectigo(s)
    assert scm.base_url == "https://scm.example/api"
    assert scm.poller.max_wait == 300


def test_settings_from_certctl_variables_and_certpoll_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in {
        "CUSTOMER_URI": "old",
        "LOGIN": SECTIGO_LOGIN,
        "PASSWORD": SECTIGO_PASSWORD,
        "ORG_ID": "1",
        "CERT_TYPE": "2",
        "POLL_MAX_WAIT_SECONDS": "30",
    }.items():
        monkeypatch.setenv(f"CERTCTL_SECTIGO_{key}", value)
    s = SectigoSettings()
    assert (s.customer_uri, s.org_id, s.term, s.poll_max_wait_seconds) == ("old", 1, 365, 30)
    monkeypatch.setenv("CERTPOLL_SECTIGO_CUSTOMER_URI", "new")
    monkeypatch.setenv("CERTPOLL_SECTIGO_POLL_MAX_WAIT_SECONDS", "90")
    s = SectigoSettings()
    assert (s.customer_uri, s.poll_max_wait_seconds) == ("new", 90)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CERTPOLL_SECTIGO_TERM", "0"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable) as info:
        settings()
    assert_no_secrets(info.value)


@pytest.mark.parametrize("field", ["customer_uri", "login", "password", "org_id", "cert_type"])
def test_missing_required_field_names_the_variable(field: str) -> None:
    """A missing required setting is a ConfigError naming its variable."""
    values: dict[str, object] = {
        "customer_uri": "o",
        "login": SECTIGO_LOGIN,
        "password": SECTIGO_PASSWORD,
        "org_id": 1,
        "cert_type": 2,
    }
    del values[field]
    with pytest.raises(ConfigError, match=f"CERTPOLL_SECTIGO_{field.upper()}") as info:
        SectigoSettings(**values)  # type: ignore[arg-type]
    assert_no_secrets(info.value)
