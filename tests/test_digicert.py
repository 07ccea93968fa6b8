"""certpoll.DigiCert against a strict respx mock of CertCentral.

Only what is DigiCert's own: immediate issuance on the order's 201, the download by
certificate id, the product type, revocation and settings. What every connector promises
(status words, triage of the status request, bad ids) is tests/test_connector_contract.py.
certpoll has no live configuration probe (bad settings are a ConfigError when built) and no
CRL/OCSP methods; a renewal is a new order, which is ``issue``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import respx
from pydantic import SecretStr

import certpoll
from certpoll import (
    AuthenticationError,
    ConfigError,
    DigiCert,
    DigiCertSettings,
    Done,
    Failed,
    OrderNotFound,
    OrderState,
    Pending,
    PermanentError,
    RateLimited,
    ResponseParseError,
    RevocationReason,
    SubmissionUncertain,
    TransientError,
)
from tests.certs import make_chain, make_csr, make_order
from tests.connector_contract import TRIAGE, Answer, check_triage, mock_answer
from tests.helpers import DIGICERT_API_KEY, FakeTime, assert_no_secrets

BASE = "https://dc.test/services/v2"
ORDER = "/order/certificate/99001"
DOWNLOAD = "/certificate/88001/download/format/pem_all"
LEAF, CHAIN, SERIAL = make_chain("www.example.com", ["api.example.com"])
BUNDLE = LEAF + CHAIN
#: A body that echoes the credential, as a careless CA error page might.
ECHO = f"invalid X-DC-DEVKEY {DIGICERT_API_KEY}"
BAD_IDS = ["../", "/", "?", "#", "%2F", "..", "12abc", " 12", "-5", "0x10", "1e3", "", "0", "012"]


def settings(**overrides: object) -> DigiCertSettings:
    values: dict[str, object] = {"api_key": DIGICERT_API_KEY, "org_id": 4242, "base_url": BASE}
    values.update(overrides)
    return DigiCertSettings(**values)  # type: ignore[arg-type]


def request(sans: tuple[str, ...] = ("api.example.com",)) -> certpoll.CertificateRequest:
    return certpoll.CertificateRequest(common_name="www.example.com", csr_pem=CSR, sans=sans)


CSR = make_csr("www.example.com", ["api.example.com"])


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith(("CERTPOLL_", "CERTCTL_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(str(tmp_path))  # no stray .env


@pytest.fixture
def ca() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=True, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
def dc(fake_time: FakeTime) -> DigiCert:
    return DigiCert(settings(), poller=fake_time.poller(max_wait=60.0))


def issued(certificate_id: int = 88001) -> httpx.Response:
    return httpx.Response(
        200, json={"id": 99001, "status": "issued", "certificate": {"id": certificate_id}}
    )


def status(word: str) -> httpx.Response:
    return httpx.Response(200, json={"id": 99001, "status": word})


# -- issue ---------------------------------------------------------------------------------


async def test_issue_immediate_success(ca: respx.MockRouter, dc: DigiCert) -> None:
    """Issued at once with a certificate id: the bundle is downloaded."""
    submit = ca.post("/order/certificate/ssl_basic").respond(
        201, json={"id": 99001, "status": "issued", "certificate_id": 88001}
    )
    download = ca.get(DOWNLOAD).respond(200, text=BUNDLE)

    order = await dc.issue(request())

    assert order.state is OrderState.ISSUED
    assert order.order_id == "99001"
    assert order.ca == "digicert"
    assert order.certificate is not None
    assert order.certificate.pem == LEAF
    assert order.certificate.chain_pem == CHAIN
    assert order.certificate.serial == SERIAL
    assert order.certificate.ca_certificate_id == "88001"
    assert order.certificate.not_after > order.certificate.not_before
    assert order.certificate.not_before.tzinfo is UTC
    sent = submit.calls.last.request
    assert sent.headers["X-DC-DEVKEY"] == DIGICERT_API_KEY
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.content) == {
        "certificate": {
            "common_name": "www.example.com",
            "csr": CSR,
            "dns_names": ["api.example.com"],
        },
        "organization": {"id": 4242},
        "order_validity": {"years": 1},
    }
    assert download.calls.last.request.headers["X-DC-DEVKEY"] == DIGICERT_API_KEY
    assert submit.call_count == 1


def _crlf_chain(*pems: str) -> list[dict[str, str]]:
    """``certificate_chain`` as DigiCert writes it: one entry per certificate, CRLF ends."""
    return [{"subject_common_name": "x", "pem": pem.replace("\n", "\r\n")} for pem in pems]


@pytest.mark.parametrize("root_first", [False, True])
async def test_issue_reads_the_certificate_issued_on_the_201(
    ca: respx.MockRouter, dc: DigiCert, root_first: bool
) -> None:
    """The real order answer: no status, the chain inline; ISSUED with no further request."""
    csr, leaf, chain, serial = make_order("www.example.com")
    intermediate, root = (
        c + "-----END CERTIFICATE-----\n" for c in chain.split("-----END CERTIFICATE-----\n")[:2]
    )
    pems = [root, intermediate, leaf] if root_first else [leaf, intermediate, root]
    ca.post("/order/certificate/ssl_basic").respond(
        201,
        json={
            "id": 99001,
            "requests": [{"id": 1, "status": "approved"}],
            "certificate_id": 88001,
            "certificate_chain": _crlf_chain(*pems),
        },
    )
    order = await dc.issue(certpoll.CertificateRequest(common_name="www.example.com", csr_pem=csr))
    assert order.state is OrderState.ISSUED
    assert order.certificate is not None
    assert order.certificate.pem == leaf
    assert order.certificate.chain_pem == chain
    assert order.certificate.serial == serial
    assert order.certificate.ca_certificate_id == "88001"


async def test_issue_201_with_a_csr_certpoll_cannot_read_finds_the_leaf_by_structure(
    ca: respx.MockRouter, dc: DigiCert
) -> None:
    unreadable = (
        "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n"
    )
    ca.post("/order/certificate/ssl_basic").respond(
        201,
        json={"id": 99001, "certificate_id": 88001, "certificate_chain": _crlf_chain(BUNDLE)},
    )
    order = await dc.issue(
        certpoll.CertificateRequest(common_name="www.example.com", csr_pem=unreadable)
    )
    assert order.state is OrderState.ISSUED
    assert order.certificate is not None
    assert order.certificate.pem == LEAF


async def test_issue_201_chain_for_another_key_keeps_the_order(
    ca: respx.MockRouter, dc: DigiCert
) -> None:
    """A chain whose leaf is not for the submitted key is never handed over as the order's."""
    ca.post("/order/certificate/ssl_basic").respond(
        201, json={"id": 99001, "certificate_id": 88001, "certificate_chain": _crlf_chain(LEAF)}
    )
    order = await dc.issue(request())
    assert order.state is OrderState.PENDING
    assert order.order_id == "99001"
    assert isinstance(order.last_error, ResponseParseError)


@pytest.mark.parametrize(
    "answer",
    [
        {"certificate_chain": [{"subject_common_name": "x"}], "certificate_id": 88001},
        {"certificate_chain": "not a list", "certificate_id": 88001},
        {"certificate_chain": _crlf_chain(LEAF)},
    ],
)
async def test_issue_201_unreadable_chain_keeps_the_order(
    ca: respx.MockRouter, dc: DigiCert, answer: dict[str, object]
) -> None:
    ca.post("/order/certificate/ssl_basic").respond(201, json={"id": 99001, **answer})
    order = await dc.issue(request())
    assert order.state is OrderState.PENDING
    assert order.order_id == "99001"
    assert isinstance(order.last_error, ResponseParseError)


async def test_issue_pending_with_other_product(ca: respx.MockRouter) -> None:
    """Product ssl_ev_basic, pending: the order id only, no download."""
    ca.post("/order/certificate/ssl_ev_basic").respond(201, json={"id": 99002, "status": "pending"})
    async with DigiCert(settings(product_type="ssl_ev_basic")) as dc:
        order = await dc.issue(request(sans=()))
    assert order.state is OrderState.PENDING
    assert order.order_id == "99002"
    assert order.certificate is None
    assert order.message == "order 99002 is pending"
    body = json.loads(ca.calls.last.request.content)
    assert "dns_names" not in body["certificate"]  # no SANs: omitted


@pytest.mark.parametrize(
    "answer",
    [
        {"id": 99003},  # no status: DigiCert's usual answer
        {"id": 99003, "status": "issued"},  # issued, but no certificate id yet
        {"id": 99003, "status": "issued", "certificate_id": 0},
        {"id": 99003, "status": "needs_approval", "certificate_id": 5},
    ],
)
async def test_issue_without_a_certificate_is_pending(
    ca: respx.MockRouter, dc: DigiCert, answer: dict[str, object]
) -> None:
    ca.post("/order/certificate/ssl_basic").respond(201, json=answer)
    order = await dc.issue(request())
    assert order.state is OrderState.PENDING
    assert order.order_id == "99003"
    assert order.last_error is None


@pytest.mark.parametrize("pad", [0, 40, 300])
async def test_issue_with_an_unknown_status_word_echoing_the_key_keeps_it_out(
    ca: respx.MockRouter, dc: DigiCert, pad: int
) -> None:
    # The submit's own status word goes through the word table: redacted, then cut.
    word = "~" * pad + DIGICERT_API_KEY
    ca.post("/order/certificate/ssl_basic").respond(201, json={"id": 99005, "status": word})
    order = await dc.issue(request())
    assert order.state is OrderState.PENDING
    assert order.order_id == "99005"
    assert order.message is not None
    assert DIGICERT_API_KEY[:8] not in order.message
    assert "unknown to certpoll" in order.message
    assert len(order.message) < 120


@pytest.mark.parametrize("word", ["pending", "needs_approval", "issued"])
async def test_issue_with_a_known_status_word_says_it(
    ca: respx.MockRouter, dc: DigiCert, word: str
) -> None:
    ca.post("/order/certificate/ssl_basic").respond(201, json={"id": 99006, "status": word})
    order = await dc.issue(request())
    assert order.state is OrderState.PENDING
    assert order.message == f"order 99006 is {word}"


@pytest.mark.parametrize("word", ["rejected", "denied", "canceled", "Rejected", "DENIED"])
async def test_issue_rejected_at_once_is_failed(
    ca: respx.MockRouter, dc: DigiCert, word: str
) -> None:
    """A rejection at submit is FAILED at once (certctl reports it as pending)."""
    ca.post("/order/certificate/ssl_basic").respond(201, json={"id": 99004, "status": word})
    order = await dc.issue(request())
    assert order.state is OrderState.FAILED
    assert order.order_id == "99004"
    assert order.message == f"order 99004 is {word}"


@pytest.mark.parametrize("word", ["ISSUED", "Issued", " issued "])
async def test_a_status_in_another_case_reads_the_same(
    ca: respx.MockRouter, dc: DigiCert, word: str
) -> None:
    """CertCentral writes lower case; an order "ISSUED" is downloaded all the same."""
    ca.get(ORDER).respond(200, json={"id": 99001, "status": word, "certificate": {"id": 88001}})
    ca.get(DOWNLOAD).respond(200, text=BUNDLE)
    outcome = await dc.poll_once("99001")
    assert isinstance(outcome, Done)
    assert outcome.value.state is OrderState.ISSUED


@pytest.mark.parametrize(
    "download",
    [httpx.Response(503), httpx.Response(403, text=ECHO), httpx.Response(200, text="junk")],
)
async def test_issue_keeps_the_order_when_the_immediate_download_fails(
    ca: respx.MockRouter, dc: DigiCert, download: httpx.Response
) -> None:
    ca.post("/order/certificate/ssl_basic").respond(
        201, json={"id": 99001, "status": "issued", "certificate_id": 88001}
    )
    ca.get(DOWNLOAD).mock(return_value=download)
    order = await dc.issue(request())
    assert order.state is OrderState.PENDING
    assert order.order_id == "99001"
    assert isinstance(order.last_error, TransientError | PermanentError)
    assert_no_secrets(order, order.last_error)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(400, text=ECHO), PermanentError),  # a refused download
        (httpx.Response(401, text=ECHO), AuthenticationError),
        (httpx.Response(403), AuthenticationError),
        (httpx.Response(422), PermanentError),
        (httpx.Response(429, headers={"Retry-After": "0"}), RateLimited),
        (httpx.Response(500, text=ECHO), SubmissionUncertain),
        (httpx.Response(502), SubmissionUncertain),
        (httpx.Response(503), SubmissionUncertain),
        (httpx.Response(408), SubmissionUncertain),
        (httpx.ReadTimeout("read timed out"), SubmissionUncertain),
        (httpx.WriteTimeout("write timed out"), SubmissionUncertain),
        (httpx.RemoteProtocolError("peer closed connection"), SubmissionUncertain),
        (httpx.ReadError("connection reset"), SubmissionUncertain),
        (httpx.ConnectError("refused"), TransientError),
        (httpx.Response(201, text="<html>"), SubmissionUncertain),
        (httpx.Response(201, json=[1]), SubmissionUncertain),
        (httpx.Response(201, json={"status": "pending"}), SubmissionUncertain),
        (httpx.Response(201, json={"id": "id99001"}), SubmissionUncertain),
        (httpx.Response(201, json={"id": "-99001"}), SubmissionUncertain),
        (httpx.Response(201, json={"id": True}), SubmissionUncertain),
    ],
)
async def test_issue_is_never_retried(
    ca: respx.MockRouter,
    dc: DigiCert,
    answer: httpx.Response | Exception,
    error: type[Exception],
) -> None:
    route = ca.post("/order/certificate/ssl_basic")
    if isinstance(answer, Exception):
        route.mock(side_effect=answer)
    else:
        route.mock(return_value=answer)
    with pytest.raises(error) as info:
        await dc.issue(request())
    assert type(info.value) is error
    assert route.call_count == 1
    assert_no_secrets(info.value)
    if isinstance(info.value, SubmissionUncertain):
        assert info.value.common_name == "www.example.com"
        assert info.value.__cause__ is not None


async def test_product_type_is_one_escaped_path_segment(ca: respx.MockRouter) -> None:
    route = ca.route(method="POST").respond(201, json={"id": 1})
    await DigiCert(settings(product_type="ssl/../../user?x#y")).issue(request())
    assert route.calls.last.request.url.raw_path == (
        b"/services/v2/order/certificate/ssl%2F..%2F..%2Fuser%3Fx%23y"
    )


async def test_default_product_type_is_ssl_basic(ca: respx.MockRouter) -> None:
    """Without a product type the order is for ssl_basic."""
    ca.post("/order/certificate/ssl_basic").respond(201, json={"id": 1})
    assert (
        DigiCertSettings(api_key=SecretStr(DIGICERT_API_KEY), org_id=1).product_type == "ssl_basic"
    )
    await DigiCert(settings()).issue(request())


# -- poll_once: status words ---------------------------------------------------------------


async def test_issued_downloads_by_certificate_id(ca: respx.MockRouter, dc: DigiCert) -> None:
    ca.get(ORDER).mock(return_value=issued())
    ca.get(DOWNLOAD).respond(200, text="preamble\n" + BUNDLE + "trailer\n")
    outcome = await dc.poll_once("99001")
    assert isinstance(outcome, Done)
    certificate = outcome.value.certificate
    assert certificate is not None
    assert (certificate.pem, certificate.chain_pem, certificate.serial) == (LEAF, CHAIN, SERIAL)
    assert certificate.ca_certificate_id == "88001"


@pytest.mark.parametrize(
    "body",
    [
        {"status": "issued"},
        {"status": "issued", "certificate": {}},
        {"status": "issued", "certificate": {"id": 0}},
        {"status": "issued", "certificate": {"id": "cert88001"}},
        {"status": "issued", "certificate": None},
    ],
)
async def test_issued_without_certificate_id_is_a_parse_error(
    ca: respx.MockRouter, dc: DigiCert, body: dict[str, object]
) -> None:
    """An issued order without a usable certificate id cannot be downloaded."""
    ca.get(ORDER).respond(200, json=body)
    outcome = await dc.poll_once("99001")
    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, ResponseParseError)
    assert "no certificate id" in str(outcome.error)


# -- poll_once: triage of the status request and of the download --------------------------


@pytest.mark.parametrize(("answer", "kind", "error", "retry_after"), TRIAGE)
async def test_download_triage(
    ca: respx.MockRouter,
    dc: DigiCert,
    answer: Answer,
    kind: type,
    error: type[Exception],
    retry_after: float | None,
) -> None:
    """The download is triaged like the status request: a 5xx is transient, not permanent."""
    ca.get(ORDER).mock(return_value=issued())
    mock_answer(ca.get(DOWNLOAD), answer, echo=ECHO)
    outcome = await dc.poll_once("99001")
    check_triage(outcome, kind, error, retry_after, ca="digicert", order_id="99001")


@pytest.mark.parametrize(
    "body",
    ["", "not a certificate", "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"],
)
async def test_unparsable_download_is_a_parse_error(
    ca: respx.MockRouter, dc: DigiCert, body: str
) -> None:
    """A download that holds no readable certificate is a parse error."""
    ca.get(ORDER).mock(return_value=issued())
    ca.get(DOWNLOAD).respond(200, text=body)
    outcome = await dc.poll_once("99001")
    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, ResponseParseError)


async def test_a_201_status_answer_is_read_like_a_200(ca: respx.MockRouter, dc: DigiCert) -> None:
    """Every 2xx status answer is read (certctl fails any 2xx but 200)."""
    ca.get(ORDER).respond(203, json={"status": "pending"})
    assert isinstance(await dc.poll_once("99001"), Pending)


# -- get_order_status (zero real time) ----------------------------------------------------


async def test_get_order_status_issued(ca: respx.MockRouter, dc: DigiCert) -> None:
    """Polling returns the issued certificate."""
    ca.get(ORDER).mock(return_value=issued())
    ca.get(DOWNLOAD).respond(200, text=BUNDLE)
    result = await dc.get_order_status("99001")
    assert result.state is OrderState.ISSUED
    assert result.certificate is not None
    assert result.certificate.serial == SERIAL


async def test_get_order_status_pending_then_issued(
    ca: respx.MockRouter, fake_time: FakeTime
) -> None:
    dc = DigiCert(settings(), poller=fake_time.poller(max_wait=600.0))
    ca.get(ORDER).mock(
        side_effect=[
            status("pending"),
            httpx.Response(503),
            status("processing"),
            issued(),
            issued(),
        ]
    )
    ca.get(DOWNLOAD).mock(side_effect=[httpx.Response(502), httpx.Response(200, text=BUNDLE)])
    result = await dc.get_order_status("99001")
    assert result.state is OrderState.ISSUED
    assert len(fake_time.sleeps) == 4  # pending, 503, processing, download 502
    assert fake_time.now < 600


async def test_get_order_status_keeps_the_last_transient_error(
    ca: respx.MockRouter, dc: DigiCert
) -> None:
    ca.get(ORDER).mock(return_value=httpx.Response(503, text=ECHO))
    result = await dc.get_order_status("99001")
    assert result.state is OrderState.PENDING
    assert isinstance(result.last_error, TransientError)
    assert result.last_error.status_code == 503
    assert_no_secrets(result, result.last_error)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(404), OrderNotFound),
        (httpx.Response(401, text=ECHO), AuthenticationError),
        (httpx.Response(200, text="{"), ResponseParseError),
    ],
)
async def test_get_order_status_raises_permanent_errors(
    ca: respx.MockRouter, dc: DigiCert, answer: httpx.Response, error: type[Exception]
) -> None:
    route = ca.get(ORDER).mock(return_value=answer)
    with pytest.raises(error) as info:
        await dc.get_order_status("99001")
    assert route.call_count == 1
    assert_no_secrets(info.value)


async def test_get_order_status_download_403_raises(ca: respx.MockRouter, dc: DigiCert) -> None:
    ca.get(ORDER).mock(return_value=issued())
    ca.get(DOWNLOAD).respond(403, text=ECHO)
    with pytest.raises(AuthenticationError, match="403") as info:
        await dc.get_order_status("99001")
    assert_no_secrets(info.value)


# -- ids never change the request path ----------------------------------------------------


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_bad_order_ids_are_refused_before_any_request(dc: DigiCert, bad: str) -> None:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        with pytest.raises(ConfigError, match="DigiCert order id"):
            await dc.poll_once(bad)
        with pytest.raises(ConfigError):
            await dc.get_order_status(bad)
        with pytest.raises(ConfigError, match="DigiCert certificate id"):
            await dc.revoke(bad)
        assert router.calls.call_count == 0


async def test_order_id_must_be_a_string(dc: DigiCert) -> None:
    with pytest.raises(ConfigError, match="string"):
        await dc.poll_once(99001)  # type: ignore[arg-type]


# -- revoke ---------------------------------------------------------------------------------

REASONS = {
    RevocationReason.UNSPECIFIED: "unspecified",
    RevocationReason.KEY_COMPROMISE: "key_compromise",
    RevocationReason.CA_COMPROMISE: "unspecified",
    RevocationReason.AFFILIATION_CHANGED: "affiliation_changed",
    RevocationReason.SUPERSEDED: "superseded",
    RevocationReason.CESSATION_OF_OPERATION: "cessation_of_operation",
    RevocationReason.CERTIFICATE_HOLD: "unspecified",
    RevocationReason.PRIVILEGE_WITHDRAWN: "unspecified",
}


def certificate() -> certpoll.Certificate:
    now = datetime.now(UTC)
    return certpoll.Certificate(
        pem=LEAF,
        chain_pem=CHAIN,
        serial=SERIAL,
        not_before=now,
        not_after=now,
        ca_certificate_id="88001",
    )


@pytest.mark.parametrize(("reason", "name"), REASONS.items())
async def test_revoke_uses_the_certificate_id_and_maps_the_reason(
    ca: respx.MockRouter, dc: DigiCert, reason: RevocationReason, name: str
) -> None:
    """Revocation addresses the certificate id (not the serial) and maps the reason."""
    route = ca.put("/certificate/88001/revoke").respond(204)
    await dc.revoke(certificate(), reason=reason)
    sent = route.calls.last.request
    assert sent.headers["X-DC-DEVKEY"] == DIGICERT_API_KEY
    assert json.loads(sent.content) == {
        "revocation_reason": name,
        "comments": f"revoked through certpoll: {name}",
    }
    assert SERIAL not in str(sent.url)
    assert set(REASONS) == set(RevocationReason)


async def test_revoke_by_id_with_a_comment(ca: respx.MockRouter, dc: DigiCert) -> None:
    route = ca.put("/certificate/77/revoke").respond(
        201, json={"id": 1, "type": "revoke", "status": "pending"}
    )
    await dc.revoke("77", reason=RevocationReason.SUPERSEDED, comment="replaced by 78")
    assert json.loads(route.calls.last.request.content) == {
        "revocation_reason": "superseded",
        "comments": "replaced by 78",
    }


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(400, text=ECHO), PermanentError),  # a refused revocation
        (httpx.Response(403), AuthenticationError),
        (httpx.Response(404), OrderNotFound),
        (httpx.Response(429), RateLimited),
        (httpx.Response(503, text=ECHO), TransientError),
        (httpx.ConnectError("refused"), TransientError),
    ],
)
async def test_revoke_raises_the_triaged_error(
    ca: respx.MockRouter, dc: DigiCert, answer: httpx.Response | Exception, error: type[Exception]
) -> None:
    route = ca.put("/certificate/88001/revoke")
    mock_answer(route, answer)
    with pytest.raises(error) as info:
        await dc.revoke(certificate(), reason=RevocationReason.KEY_COMPROMISE)
    assert type(info.value) is error
    assert route.call_count == 1
    assert_no_secrets(info.value)


# -- settings, secrets, lifecycle ---------------------------------------------------------


def test_settings_from_certpoll_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "API_KEY": DIGICERT_API_KEY,
        "ORG_ID": "77",
        "PRODUCT_TYPE": "ssl_plus",
        "BASE_URL": "https://eu.test/services/v2",
        "POLL_MAX_WAIT_SECONDS": "120",
        "POLL_INITIAL_WAIT_SECONDS": "2",
        "POLL_MAX_BACKOFF_SECONDS": "60",
        "POLL_JITTER": "0.1",
        "ATTEMPT_TIMEOUT_SECONDS": "10",
        "RATE_LIMITS": "[[10, 1]]",
    }
    for key, value in env.items():
        monkeypatch.setenv(f"CERTPOLL_DIGICERT_{key}", value)
    s = DigiCertSettings()
    assert s.api_key.get_secret_value() == DIGICERT_API_KEY
    assert (s.org_id, s.product_type, s.base_url) == (77, "ssl_plus", "https://eu.test/services/v2")
    assert (s.poll_max_wait_seconds, s.poll_initial_wait_seconds) == (120, 2)
    assert (s.poll_max_backoff_seconds, s.poll_jitter, s.attempt_timeout_seconds) == (60, 0.1, 10)
    assert s.rate_limits == ((10, 1.0),)
    dc = DigiCert(s)
    assert dc.poller.max_wait == 120
    assert dc.base_url == "https://eu.test/services/v2"


def test_settings_from_certctl_variables_and_certpoll_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CERTCTL_DIGICERT_API_KEY", DIGICERT_API_KEY)
    monkeypatch.setenv("CERTCTL_DIGICERT_ORG_ID", "1")
    monkeypatch.setenv("CERTCTL_DIGICERT_POLL_MAX_WAIT_SECONDS", "30")
    monkeypatch.setenv("CERTCTL_DIGICERT_PRODUCT_TYPE", "ssl_wildcard")
    s = DigiCertSettings()
    assert (s.org_id, s.poll_max_wait_seconds, s.product_type) == (1, 30, "ssl_wildcard")
    monkeypatch.setenv("CERTPOLL_DIGICERT_POLL_MAX_WAIT_SECONDS", "45")
    monkeypatch.setenv("CERTPOLL_DIGICERT_ORG_ID", "2")
    s = DigiCertSettings()
    assert (s.org_id, s.poll_max_wait_seconds) == (2, 45)


def test_zero_max_wait_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTCTL_DIGICERT_POLL_MAX_WAIT_SECONDS", "0")
    assert settings().poll_max_wait_seconds == 600


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CERTPOLL_DIGICERT_ORG_ID", "acme"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("CERTPOLL_DIGICERT_API_KEY", DIGICERT_API_KEY)
    monkeypatch.setenv("CERTPOLL_DIGICERT_ORG_ID", "1")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable) as info:
        DigiCertSettings()
    assert_no_secrets(info.value)
