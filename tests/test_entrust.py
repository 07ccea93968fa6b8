"""Entrust CA Gateway connector: requests, answers, revocation, settings.

The CAGW behaviour certctl's Entrust connector is tested for, and Entrust's own (the nested
enrollment answer, the lookup by serial, the escaped CA id); what every connector promises
is tests/test_connector_contract.py. Left out on purpose: a live configuration probe
(certpoll validates settings when they are built, see the settings tests below) and CA
certificate, renewal, CRL and OCSP methods, which certpoll does not have. The real-TLS path
(mTLS through a shared client, rotation) is in tests/test_mtls.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import ec

import certpoll
from certpoll._connectors.entrust import hex_serial
from tests.certs import make_chain, make_csr
from tests.helpers import FakeTime

BASE = "https://cagw.example/cagw"
ENROLLMENTS = f"{BASE}/v1/certificate-authorities/CA-1/enrollments"
#: The key of every CSR these tests submit, so that the certificates answered are for it.
KEY = ec.generate_private_key(ec.SECP256R1())


def settings(**overrides: object) -> certpoll.EntrustSettings:
    values: dict[str, object] = {
        "api_url": BASE + "/",
        "client_cert_path": Path("/nonexistent/client.crt"),
        "client_key_path": Path("/nonexistent/client.key"),
        "ca_id": "CA-1",
        "profile_id": "prof-ov-basic",
    }
    values.update(overrides)
    return from_env(**values)


def from_env(**values: object) -> certpoll.EntrustSettings:
    """EntrustSettings from arguments and the environment (typed without the plugin)."""
    factory: type[certpoll.CASettings] = certpoll.EntrustSettings
    built = factory(**values)
    assert isinstance(built, certpoll.EntrustSettings)
    return built


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
async def entrust(fake_time: FakeTime) -> certpoll.Entrust:
    return certpoll.Entrust(
        settings(), http=httpx.AsyncClient(), poller=fake_time.poller(max_wait=60.0)
    )


def request(
    sans: tuple[str, ...] = ("www.example.com", "example.com"),
) -> certpoll.CertificateRequest:
    return certpoll.CertificateRequest(
        common_name="www.example.com", csr_pem=make_csr("www.example.com", sans, key=KEY), sans=sans
    )


def issued_body(tracking_id: str = "ENR-2024-001", serial: int | None = None) -> dict[str, str]:
    leaf, chain, _ = make_chain(serial=serial, public_key=KEY.public_key())
    return {"trackingId": tracking_id, "status": "ISSUED", "certificate": leaf, "chain": chain}


# -- issue --------------------------------------------------------------------------------


async def test_issue_synchronous(entrust: certpoll.Entrust, mock: respx.MockRouter) -> None:
    route = mock.post(ENROLLMENTS).respond(200, json=issued_body(serial=0x91CA4B4B))
    submitted = request()
    order = await entrust.issue(submitted)
    assert order.state is certpoll.OrderState.ISSUED
    assert order.order_id == "ENR-2024-001"
    assert order.certificate is not None
    assert order.certificate.serial == str(0x91CA4B4B)
    assert order.certificate.ca_certificate_id == "00000000000000000000000000000000" + "91ca4b4b"
    assert order.certificate.chain_pem.count("BEGIN CERTIFICATE") == 2
    sent = route.calls.last.request
    assert sent.headers["Content-Type"] == "application/json"
    body = json.loads(sent.content)
    assert body["profileId"] == "prof-ov-basic"
    assert body["subjectAltNames"] == [
        {"type": "dNSName", "value": "www.example.com"},
        {"type": "dNSName", "value": "example.com"},
    ]
    assert body["requiredFormat"] == {"format": "X509"}
    assert body["optionalCertificateRequestDetails"] == {"subjectDn": "CN=www.example.com"}
    # CAGW takes base64 DER: the PEM body without armour or line breaks.
    pem_lines = submitted.csr_pem.strip().splitlines()
    assert body["csr"] == "".join(pem_lines[1:-1])


async def test_issue_reads_cagws_nested_answer(
    entrust: certpoll.Entrust, mock: respx.MockRouter
) -> None:
    leaf, _, serial = make_chain(public_key=KEY.public_key())
    answer = {
        "type": "EnrollmentResponse",
        "enrollment": {"id": "E-9", "status": "ISSUED", "body": leaf},
    }
    mock.post(ENROLLMENTS).respond(201, json=answer)
    order = await entrust.issue(request())
    assert order.state is certpoll.OrderState.ISSUED
    assert order.order_id == "E-9"
    assert order.certificate is not None
    assert order.certificate.serial == serial


def assert_failed(outcome: object, message: str) -> None:
    """``outcome`` is the CA's final "no", in these words."""
    assert isinstance(outcome, certpoll.Done)
    assert outcome.value.state is certpoll.OrderState.FAILED
    assert outcome.value.message == message


def _der64(pem: str) -> str:
    """A PEM certificate as CAGW writes ``requiredFormat: X509``: base64 DER, one line."""
    return "".join(pem.strip().splitlines()[1:-1])


def _chain_array(chain: str) -> list[dict[str, str]]:
    blocks = [
        b + "-----END CERTIFICATE-----" for b in chain.split("-----END CERTIFICATE-----")[:-1]
    ]
    return [{"certificateData": _der64(block)} for block in blocks]


@pytest.mark.parametrize("encode", [_der64, str], ids=["base64-der", "pem"])
async def test_issue_accepted_with_a_body_is_issued(
    entrust: certpoll.Entrust, mock: respx.MockRouter, encode: Callable[[str], str]
) -> None:
    """CAGW's own answer: ``ACCEPTED`` with the certificate in ``body`` and a chain array."""
    leaf, chain, serial = make_chain(serial=0x5912BD91, public_key=KEY.public_key())
    answer = {
        "type": "EnrollmentResponse",
        "enrollment": {
            "id": "0f8a2c4e-1111-2222-3333-444455556666",
            "serialNumber": "5912bd91",
            "subjectName": "CN=www.example.com",
            "status": "ACCEPTED",
            "body": encode(leaf),
            "properties": {},
            "chain": _chain_array(chain),
        },
    }
    mock.post(ENROLLMENTS).respond(201, json=answer)
    order = await entrust.issue(request())
    assert order.state is certpoll.OrderState.ISSUED
    assert order.order_id == "5912bd91"
    assert order.certificate is not None
    assert order.certificate.pem == leaf
    assert order.certificate.chain_pem == chain
    assert order.certificate.serial == serial


async def test_issue_without_any_id_takes_the_certificates_serial(
    entrust: certpoll.Entrust, mock: respx.MockRouter
) -> None:
    leaf, _, _ = make_chain(serial=0xBEEF, public_key=KEY.public_key())
    mock.post(ENROLLMENTS).respond(201, json={"enrollment": {"status": "ISSUED", "body": leaf}})
    order = await entrust.issue(request())
    assert order.state is certpoll.OrderState.ISSUED
    assert order.order_id == hex_serial(0xBEEF)


async def test_issue_rejected_with_a_body_is_failed(
    entrust: certpoll.Entrust, mock: respx.MockRouter
) -> None:
    leaf, _, _ = make_chain(public_key=KEY.public_key())
    answer = {"enrollment": {"id": "E-1", "status": "REJECTED", "body": _der64(leaf)}}
    mock.post(ENROLLMENTS).respond(201, json=answer)
    order = await entrust.issue(request())
    assert order.state is certpoll.OrderState.FAILED
    assert order.message == "enrollment E-1 is REJECTED"


async def test_poll_by_serial_reads_the_certificate_lookup(
    entrust: certpoll.Entrust, mock: respx.MockRouter
) -> None:
    """A hex order id is a serial: CAGW's published ``GET certificates/{serial}``."""
    leaf, chain, serial = make_chain(serial=0x5912BD91)
    answer = {
        "type": "CertificateResponse",
        "certificate": {
            "status": "normal",
            "serialNumber": "5912bd91",
            "certificateData": _der64(leaf),
        },
        "chain": _chain_array(chain),
    }
    mock.get(f"{BASE}/v1/certificate-authorities/CA-1/certificates/5912bd91").respond(
        200, json=answer
    )
    outcome = await entrust.poll_once("5912bd91")
    assert isinstance(outcome, certpoll.Done)
    assert outcome.value.certificate is not None
    assert outcome.value.certificate.serial == serial
    assert outcome.value.certificate.chain_pem == chain


@pytest.mark.parametrize("status", ["revoked", "held", "EXPIRED", "suspended"])
async def test_poll_by_serial_of_a_certificate_no_longer_good_is_failed(
    entrust: certpoll.Entrust, mock: respx.MockRouter, status: str
) -> None:
    leaf, _, _ = make_chain()
    answer = {"certificate": {"status": status, "certificateData": _der64(leaf)}, "chain": []}
    mock.get(f"{BASE}/v1/certificate-authorities/CA-1/certificates/abc123").respond(
        200, json=answer
    )
    assert_failed(await entrust.poll_once("abc123"), f"certificate abc123 is {status}")


@pytest.mark.parametrize(
    "answer",
    [
        {"certificate": "x"},
        {"certificate": {"status": "normal"}},
        {"certificate": {"certificateData": "@@"}},
        {"certificate": {"certificateData": "QUJD"}},
        {"certificate": {"certificateData": "LEAF"}, "chain": 3},
        {"certificate": {"certificateData": "LEAF"}, "chain": [{"x": 1}]},
        {"certificate": {"certificateData": "LEAF"}, "chain": [{"certificateData": "QUJD"}]},
    ],
)
async def test_poll_by_serial_unreadable_is_a_parse_error(
    entrust: certpoll.Entrust, mock: respx.MockRouter, answer: dict[str, object]
) -> None:
    answer = json.loads(json.dumps(answer).replace("LEAF", _der64(make_chain()[0])))
    mock.get(f"{BASE}/v1/certificate-authorities/CA-1/certificates/abc").respond(200, json=answer)
    outcome = await entrust.poll_once("abc")
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.ResponseParseError)


async def test_issue_async_pending(entrust: certpoll.Entrust, mock: respx.MockRouter) -> None:
    mock.post(ENROLLMENTS).respond(201, json={"trackingId": "ENR-2024-002", "status": "PENDING"})
    order = await entrust.issue(request())
    assert order.state is certpoll.OrderState.PENDING
    assert order.order_id == "ENR-2024-002"
    assert order.certificate is None
    assert order.message == "enrollment ENR-2024-002 is PENDING"


async def test_issue_without_profile_or_sans_omits_them(
    fake_time: FakeTime, mock: respx.MockRouter
) -> None:
    entrust = certpoll.Entrust(settings(profile_id=None), http=httpx.AsyncClient())
    route = mock.post(ENROLLMENTS).respond(201, json={"trackingId": "T", "status": "PENDING"})
    await entrust.issue(request(sans=()))
    body = json.loads(route.calls.last.request.content)
    assert "profileId" not in body
    assert "subjectAltNames" not in body


async def test_issue_escapes_the_subject_dn(
    entrust: certpoll.Entrust, mock: respx.MockRouter
) -> None:
    route = mock.post(ENROLLMENTS).respond(201, json={"trackingId": "T", "status": "PENDING"})
    await entrust.issue(
        certpoll.CertificateRequest(common_name=" Acme, Inc=1 ", csr_pem=make_csr("acme"))
    )
    body = json.loads(route.calls.last.request.content)
    assert body["optionalCertificateRequestDetails"]["subjectDn"] == "CN=\\ Acme\\, Inc\\=1\\ "


@pytest.mark.parametrize("status", ["REJECTED", "DENIED", "FAILED", "DECLINED"])
async def test_issue_rejected_at_once_is_failed(
    entrust: certpoll.Entrust, mock: respx.MockRouter, status: str
) -> None:
    mock.post(ENROLLMENTS).respond(200, json={"trackingId": "T-9", "status": status})
    order = await entrust.issue(request())
    assert order.state is certpoll.OrderState.FAILED
    assert order.message == f"enrollment T-9 is {status}"


async def test_issue_issued_without_certificate_stays_pending_with_the_error(
    entrust: certpoll.Entrust, mock: respx.MockRouter
) -> None:
    mock.post(ENROLLMENTS).respond(200, json={"trackingId": "T-3", "status": "ISSUED"})
    order = await entrust.issue(request())
    assert order.state is certpoll.OrderState.PENDING
    assert order.order_id == "T-3"
    assert isinstance(order.last_error, certpoll.ResponseParseError)


async def test_issue_refused_raises(entrust: certpoll.Entrust, mock: respx.MockRouter) -> None:
    route = mock.post(ENROLLMENTS).respond(
        400, json={"type": "ErrorResponse", "message": "bad csr"}
    )
    with pytest.raises(certpoll.PermanentError, match="bad csr") as caught:
        await entrust.issue(request())
    assert caught.value.status_code == 400
    assert route.call_count == 1


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500),
        httpx.Response(502),
        httpx.Response(408),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("cut"),
        httpx.Response(200, json={"status": "PENDING"}),  # no tracking id
        httpx.Response(201, text="<html>"),
        httpx.Response(201, json={"trackingId": "..", "status": "PENDING"}),
    ],
)
async def test_issue_ambiguous_is_uncertain_and_sent_once(
    entrust: certpoll.Entrust, mock: respx.MockRouter, answer: httpx.Response | Exception
) -> None:
    route = mock.post(ENROLLMENTS).mock(side_effect=[answer])
    with pytest.raises(certpoll.SubmissionUncertain) as caught:
        await entrust.issue(request())
    assert caught.value.common_name == "www.example.com"
    assert route.call_count == 1


async def test_issue_not_sent_is_transient(
    entrust: certpoll.Entrust, mock: respx.MockRouter
) -> None:
    route = mock.post(ENROLLMENTS).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(certpoll.TransientError) as caught:
        await entrust.issue(request())
    assert not isinstance(caught.value, certpoll.SubmissionUncertain)
    assert route.call_count == 1


async def test_issue_rejects_a_csr_that_is_not_base64(entrust: certpoll.Entrust) -> None:
    bad = "-----BEGIN CERTIFICATE REQUEST-----\n!!!\n-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(certpoll.ConfigError, match="base64"):
        await entrust.issue(certpoll.CertificateRequest(common_name="x", csr_pem=bad))


# -- poll_once: every triage row ----------------------------------------------------------


def status_url(tracking_id: str = "ENR-1") -> str:
    return f"{ENROLLMENTS}/{tracking_id}"


async def test_poll_issued(entrust: certpoll.Entrust, mock: respx.MockRouter) -> None:
    body = issued_body("ENR-1")
    route = mock.get(status_url()).respond(200, json=body)
    outcome = await entrust.poll_once("ENR-1")
    assert isinstance(outcome, certpoll.Done)
    status = outcome.value
    assert status.state is certpoll.OrderState.ISSUED
    assert status.certificate is not None
    assert status.certificate.not_after > status.certificate.not_before
    assert status.certificate.pem.startswith("-----BEGIN CERTIFICATE-----")
    assert "Content-Type" not in route.calls.last.request.headers


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"trackingId": "ENR-1"}',
        b'{"status": 3}',
        b'{"status": "ISSUED"}',
        b'{"status": "ISSUED", "certificate": ""}',
        b'{"status": "ISSUED", "certificate": "garbage"}',
        b'{"status": "ISSUED", "certificate": "-----BEGIN CERTIFICATE-----\\nAAAA\\n'
        b'-----END CERTIFICATE-----"}',
    ],
)
async def test_poll_unreadable_is_a_parse_error(
    entrust: certpoll.Entrust, mock: respx.MockRouter, body: bytes
) -> None:
    mock.get(status_url()).respond(200, content=body)
    outcome = await entrust.poll_once("ENR-1")
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.ResponseParseError)
    assert outcome.error.ca == "entrust"


# -- ids cannot change the path -----------------------------------------------------------


@pytest.mark.parametrize(
    ("order_id", "segment"),
    [
        ("../../admin", "..%2F..%2Fadmin"),
        ("a/b", "a%2Fb"),
        ("a?b=1", "a%3Fb%3D1"),
        ("a#frag", "a%23frag"),
        ("a%2Fb", "a%252Fb"),
    ],
)
async def test_order_ids_are_one_escaped_segment(
    entrust: certpoll.Entrust, mock: respx.MockRouter, order_id: str, segment: str
) -> None:
    route = mock.route(method="GET").respond(200, json={"status": "PENDING"})
    await entrust.poll_once(order_id)
    url = route.calls.last.request.url
    assert url.raw_path.decode() == f"/cagw/v1/certificate-authorities/CA-1/enrollments/{segment}"
    assert url.query == b""


async def test_ca_id_is_escaped_too(mock: respx.MockRouter) -> None:
    entrust = certpoll.Entrust(settings(ca_id="../x"), http=httpx.AsyncClient())
    route = mock.route(method="GET").respond(200, json={"status": "PENDING"})
    await entrust.poll_once("T")
    assert route.calls.last.request.url.raw_path.decode() == (
        "/cagw/v1/certificate-authorities/..%2Fx/enrollments/T"
    )


# -- get_order_status (virtual time) ------------------------------------------------------


async def test_get_order_status_polls_until_issued(
    entrust: certpoll.Entrust, mock: respx.MockRouter, fake_time: FakeTime
) -> None:
    mock.get(status_url()).mock(
        side_effect=[
            httpx.Response(200, json={"status": "AWAITING_APPROVAL"}),
            httpx.Response(503),
            httpx.Response(200, json=issued_body("ENR-1")),
        ]
    )
    status = await entrust.get_order_status("ENR-1")
    assert status.state is certpoll.OrderState.ISSUED
    assert len(fake_time.sleeps) == 2


async def test_get_order_status_403_raises(
    entrust: certpoll.Entrust, mock: respx.MockRouter
) -> None:
    mock.get(status_url()).respond(403, text="forbidden")
    with pytest.raises(certpoll.AuthenticationError, match="403"):
        await entrust.get_order_status("ENR-1")


# -- revoke -------------------------------------------------------------------------------


def test_hex_serial_is_zero_padded_lowercase() -> None:
    assert (
        hex_serial(0x91CA4B4B136A86B718AE01A5403CE62B) == "0000000091ca4b4b136a86b718ae01a5403ce62b"
    )
    assert len(hex_serial(1 << 170)) > 40


@pytest.mark.parametrize(
    ("reason", "sent"),
    [
        (certpoll.RevocationReason.UNSPECIFIED, "unspecified"),
        (certpoll.RevocationReason.KEY_COMPROMISE, "keyCompromise"),
        (certpoll.RevocationReason.CA_COMPROMISE, "caCompromise"),
        (certpoll.RevocationReason.AFFILIATION_CHANGED, "affiliationChanged"),
        (certpoll.RevocationReason.SUPERSEDED, "superseded"),
        (certpoll.RevocationReason.CESSATION_OF_OPERATION, "cessationOfOperation"),
        (certpoll.RevocationReason.CERTIFICATE_HOLD, "certificateHold"),
        (certpoll.RevocationReason.PRIVILEGE_WITHDRAWN, "privilegeWithdrawn"),
    ],
)
async def test_revoke_sends_a_revoke_action(
    entrust: certpoll.Entrust,
    mock: respx.MockRouter,
    reason: certpoll.RevocationReason,
    sent: str,
) -> None:
    mock.post(ENROLLMENTS).respond(200, json=issued_body(serial=0xABCDEF))
    order = await entrust.issue(request())
    assert order.certificate is not None
    serial = "0" * 34 + "abcdef"
    route = mock.post(f"{BASE}/v1/certificate-authorities/CA-1/certificates/{serial}/actions")
    route.respond(200, json={})
    await entrust.revoke(order.certificate, reason=reason)
    body = json.loads(route.calls.last.request.content)
    assert body == {
        "action": {
            "type": "RevokeAction",
            "reason": sent,
            "comment": f"revoked through certpoll: {sent}",
        }
    }


async def test_revoke_by_id_with_comment(entrust: certpoll.Entrust, mock: respx.MockRouter) -> None:
    route = mock.post(f"{BASE}/v1/certificate-authorities/CA-1/certificates/0a%2F/actions")
    route.respond(204)
    await entrust.revoke("0a/", comment="rotated")
    assert json.loads(route.calls.last.request.content)["action"]["comment"] == "rotated"


@pytest.mark.parametrize(
    ("code", "kind"),
    [(400, certpoll.PermanentError), (404, certpoll.OrderNotFound), (503, certpoll.TransientError)],
)
async def test_revoke_refused_raises(
    entrust: certpoll.Entrust, mock: respx.MockRouter, code: int, kind: type[Exception]
) -> None:
    mock.post(f"{BASE}/v1/certificate-authorities/CA-1/certificates/01/actions").respond(code)
    with pytest.raises(kind):
        await entrust.revoke("01")


# -- lifecycle and settings ---------------------------------------------------------------


def test_own_client_needs_readable_key_files() -> None:
    with pytest.raises(certpoll.ConfigError, match="CERTPOLL_ENTRUST_CLIENT_CERT_PATH"):
        certpoll.Entrust(settings())


ENV = {
    "API_URL": "https://env.example/cagw/",
    "CLIENT_CERT_PATH": "/etc/certpoll/entrust.crt",
    "CLIENT_KEY_PATH": "/etc/certpoll/entrust.key",
    "CA_ID": "CA-ENV",
    "PROFILE_ID": "prof-env",
    "POLL_MAX_WAIT_SECONDS": "86400",
}


@pytest.mark.parametrize("prefix", ["CERTPOLL_ENTRUST_", "CERTCTL_ENTRUST_"])
def test_settings_from_either_prefix(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(prefix + name, value)
    read = from_env()
    assert read.api_url == "https://env.example/cagw"
    assert read.client_cert_path == Path("/etc/certpoll/entrust.crt")
    assert read.client_key_path == Path("/etc/certpoll/entrust.key")
    assert read.ca_id == "CA-ENV"
    assert read.profile_id == "prof-env"
    assert read.poll_max_wait_seconds == 86400


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("API_URL", "ftp://cagw.example"),
        ("API_URL", "cagw.example/cagw"),
        ("API_URL", "https://cagw.example/cagw?x=1"),
        ("CA_ID", ""),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    for key, good in ENV.items():
        monkeypatch.setenv("CERTCTL_ENTRUST_" + key, good)
    monkeypatch.setenv("CERTCTL_ENTRUST_" + name, value)
    with pytest.raises(certpoll.ConfigError, match="CERTCTL_ENTRUST_" + name):
        from_env()
