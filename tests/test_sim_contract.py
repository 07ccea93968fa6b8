"""The simulated CA's own contract, in-process through httpx.ASGITransport (no sockets)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, pkcs7

import certpoll
from certpoll.testing import (
    DIGICERT,
    BodyFault,
    Fault,
    OrderScript,
    Profile,
    SimulatedCA,
)
from certpoll.testing._http import with_client_cert
from tests.certs import make_csr
from tests.credentials import CREDENTIALS, ENTRUST_CA_PATH
from tests.helpers import (
    DIGICERT_API_KEY,
    GLOBALSIGN_API_KEY,
    GLOBALSIGN_API_SECRET,
    GLOBALSIGN_TOKEN,
    SECTIGO_LOGIN,
    SECTIGO_PASSWORD,
    FakeTime,
)

DC = {"X-DC-DEVKEY": DIGICERT_API_KEY}
SC = {
    "customerUri": CREDENTIALS.sectigo_customer_uri,
    "login": SECTIGO_LOGIN,
    "password": SECTIGO_PASSWORD,
}
EN = "/entrust/cagw" + ENTRUST_CA_PATH


@pytest.fixture
def sim(fake_time: FakeTime) -> SimulatedCA:
    return SimulatedCA(credentials=CREDENTIALS, clock=fake_time.clock, sleep=fake_time.sleep)


@pytest.fixture
async def http(sim: SimulatedCA) -> AsyncIterator[httpx.AsyncClient]:
    async with sim.client(base_url="http://sim") as client:
        yield client


def dc_order(common_name: str = "www.example.com", /, **changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "certificate": {
            "common_name": common_name,
            "csr": make_csr(common_name),
            "dns_names": ["alt.example.com"],
        },
        "organization": {"id": CREDENTIALS.digicert_org_id},
    }
    body.update(changes)
    return body


def sc_enroll(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "orgId": CREDENTIALS.sectigo_org_id,
        "certType": CREDENTIALS.sectigo_cert_type,
        "term": 365,
        "csr": make_csr("sectigo.example.com"),
        "subjAltNames": "a.example.com,b.example.com",
    }
    body.update(changes)
    return body


async def dc_submit(http: httpx.AsyncClient, **changes: object) -> dict[str, object]:
    response = await http.post(
        "/digicert/services/v2/order/certificate/ssl_basic", headers=DC, json=dc_order(**changes)
    )
    assert response.status_code == 201, response.text
    answer: dict[str, object] = response.json()
    return answer


async def dc_status(http: httpx.AsyncClient, order_id: object) -> httpx.Response:
    return await http.get(f"/digicert/services/v2/order/certificate/{order_id}", headers=DC)


async def gs_token(http: httpx.AsyncClient) -> dict[str, str]:
    response = await http.post(
        "/globalsign/v2/login",
        json={"api_key": GLOBALSIGN_API_KEY, "api_secret": GLOBALSIGN_API_SECRET},
    )
    assert response.status_code == 200
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def spki(key: object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


# -- DigiCert ------------------------------------------------------------------------------


async def test_digicert_issue_download_revoke(sim: SimulatedCA, http: httpx.AsyncClient) -> None:
    body = dc_order("www.example.com")
    response = await http.post(
        "/digicert/services/v2/order/certificate/ssl_basic", headers=DC, json=body
    )
    assert response.status_code == 201
    answer = response.json()
    # Issued at once: DigiCert's real answer carries the chain and no status.
    assert "status" not in answer
    assert answer["requests"] == [{"id": answer["id"], "status": "approved"}]
    inline = [entry["pem"] for entry in answer["certificate_chain"]]
    assert all("\r\n" in text for text in inline)
    assert [entry["subject_common_name"] for entry in answer["certificate_chain"]] == [
        "www.example.com",
        "certpoll simulated CA intermediate",
        "certpoll simulated CA root",
    ]
    status = (await dc_status(http, answer["id"])).json()
    assert status["certificate"]["id"] == answer["certificate_id"]
    download = await http.get(
        f"/digicert/services/v2/certificate/{answer['certificate_id']}/download/format/pem_all",
        headers=DC,
    )
    assert download.status_code == 200
    leaf, intermediate, root = x509.load_pem_x509_certificates(download.content)
    assert x509.load_pem_x509_certificates("".join(inline).encode()) == [leaf, intermediate, root]
    info = sim.order("digicert", str(answer["id"]))
    assert leaf == info.certificate
    assert leaf.serial_number == info.serial
    assert format(info.serial, "X").zfill(40).endswith(status["certificate"]["serial_number"])
    csr = x509.load_pem_x509_csr(body["certificate"]["csr"].encode())  # type: ignore[index]
    assert spki(leaf.public_key()) == spki(csr.public_key())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["www.example.com", "alt.example.com"]
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    assert root.subject == root.issuer

    revoke = f"/digicert/services/v2/certificate/{answer['certificate_id']}/revoke"
    response = await http.put(
        revoke, headers=DC, json={"revocation_reason": "key_compromise", "comments": "gone"}
    )
    assert response.status_code == 201
    assert response.json()["type"] == "revoke"
    assert response.json()["status"] == "pending"
    assert (await dc_status(http, answer["id"])).json()["status"] == "revoked"
    assert sim.order("digicert", str(answer["id"])).revocation_reason == "key_compromise"
    again = await http.put(revoke, headers=DC, json={})
    assert again.status_code == 400
    other = await dc_submit(http)
    skipped = await http.put(
        f"/digicert/services/v2/certificate/{other['certificate_id']}/revoke",
        headers=DC,
        json={"comments": "gone", "skip_approval": True},
    )
    assert (skipped.status_code, skipped.content) == (204, b"")
    assert (await http.put(revoke, headers=DC, content=b"{nope")).status_code == 400
    assert sim.order("digicert", str(answer["id"])).requests == 6


async def test_digicert_approval_then_processing_then_issued(
    sim: SimulatedCA, http: httpx.AsyncClient, fake_time: FakeTime
) -> None:
    sim.script_next(OrderScript(approval_for=10, issue_after=20))
    answer = await dc_submit(http)
    assert answer == {"id": answer["id"], "requests": [{"id": answer["id"], "status": "pending"}]}
    assert (await dc_status(http, answer["id"])).json()["status"] == "needs_approval"
    certificate_id = sim.order("digicert", str(answer["id"])).certificate_id
    download = f"/digicert/services/v2/certificate/{certificate_id}/download/format/pem_all"
    assert (await http.get(download, headers=DC)).status_code == 404
    fake_time.now = 15
    assert (await dc_status(http, answer["id"])).json()["status"] == "pending"
    assert sim.order("digicert", str(answer["id"])).certificate is None
    revoke = f"/digicert/services/v2/certificate/{certificate_id}/revoke"
    assert (await http.put(revoke, headers=DC)).status_code == 400
    fake_time.now = 30
    assert (await dc_status(http, answer["id"])).json()["status"] == "issued"
    assert (await http.get(download, headers=DC)).status_code == 200


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"certificate": {"common_name": "x.example.com", "csr": "garbage"}}, "invalid_csr"),
        ({"certificate": {"common_name": "", "csr": "x"}}, "missing_param"),
        ({"certificate": {"common_name": "x.example.com"}}, "missing_param"),
        ({"certificate": "nope"}, "missing_param"),
        ({"certificate": {"common_name": "a", "csr": "x", "dns_names": "a"}}, "invalid_param"),
        ({"organization": {"id": 1}}, "invalid_organization"),
        ({"organization": {"id": str(CREDENTIALS.digicert_org_id)}}, "missing_param"),
    ],
)
async def test_digicert_refuses_bad_orders(
    http: httpx.AsyncClient, changes: dict[str, object], code: str
) -> None:
    response = await http.post(
        "/digicert/services/v2/order/certificate/ssl_basic", headers=DC, json=dc_order(**changes)
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == code


async def test_digicert_refuses_bad_key_unknown_orders_and_paths(http: httpx.AsyncClient) -> None:
    url = "/digicert/services/v2/order/certificate/1"
    for headers in ({}, {"X-DC-DEVKEY": "wrong"}):
        response = await http.get(url, headers=headers)
        assert response.status_code == 401
        assert response.json()["errors"][0]["message"]
    assert (await dc_status(http, 999)).status_code == 404
    # "12abc" is no order id: the path is the submit route, which takes POST only.
    assert (await dc_status(http, "12abc")).status_code == 405
    assert (
        await http.get("/digicert/services/v2/certificate/5/download/format/pem_all", headers=DC)
    ).status_code == 404
    assert (
        await http.put("/digicert/services/v2/certificate/5/revoke", headers=DC)
    ).status_code == 404
    assert (await http.delete(url, headers=DC)).status_code == 405
    assert (await http.get("/nowhere")).status_code == 404
    assert (
        await http.post(
            "/digicert/services/v2/order/certificate/ssl_basic", headers=DC, content=b"[]"
        )
    ).status_code == 400


async def test_digicert_enforces_both_documented_rate_limits(
    sim: SimulatedCA, http: httpx.AsyncClient, fake_time: FakeTime
) -> None:
    for _ in range(100):
        assert (await dc_status(http, 1)).status_code == 404
    limited = await dc_status(http, 1)
    assert limited.status_code == 429
    assert limited.json() == {
        "errors": [
            {
                "code": "request_limit_exceeded",
                "message": "Service unavailable, please limit request volume",
            }
        ]
    }
    assert "Retry-After" not in limited.headers
    # Refused requests do not count: the window reopens 5 s after the first accepted one.
    fake_time.now = 5.0
    assert (await dc_status(http, 1)).status_code == 404
    # 1000 per 3 minutes: fill it 99 at a time, 5 s apart.
    accepted = 101
    while accepted < 1000:
        fake_time.now += 5.0
        for _ in range(min(99, 1000 - accepted)):
            assert (await dc_status(http, 1)).status_code == 404
            accepted += 1
    fake_time.now += 5.0
    assert fake_time.now < 180
    assert (await dc_status(http, 1)).status_code == 429
    assert sim.throttled == 2
    fake_time.now = 180.01
    assert (await dc_status(http, 1)).status_code == 404
    # Bad keys are refused before they can use up the limit.
    assert (await http.get("/digicert/services/v2/order/certificate/1")).status_code == 401


async def test_digicert_rate_limits_can_be_switched_off(fake_time: FakeTime) -> None:
    sim = SimulatedCA(credentials=CREDENTIALS, clock=fake_time.clock, digicert_rate_limits=())
    async with sim.client(base_url="http://sim") as http:
        for _ in range(150):
            assert (await dc_status(http, 1)).status_code == 404


# -- Sectigo -------------------------------------------------------------------------------


async def test_sectigo_enroll_collect_revoke(
    sim: SimulatedCA, http: httpx.AsyncClient, fake_time: FakeTime
) -> None:
    sim.script_next(OrderScript(issue_after=30, collect_not_ready_for=20), ca="sectigo")
    response = await http.post("/sectigo/api/ssl/v1/enroll", headers=SC, json=sc_enroll())
    assert response.status_code == 200
    ssl_id = response.json()["sslId"]
    assert isinstance(ssl_id, int)
    assert response.json()["renewId"]
    status = (await http.get(f"/sectigo/api/ssl/v1/{ssl_id}", headers=SC)).json()
    assert status["status"] == "Applied"
    assert status["commonName"] == "sectigo.example.com"
    assert "serialNumber" not in status
    collect = f"/sectigo/api/ssl/v1/collect/{ssl_id}"
    early = await http.get(collect, params={"format": "x509"}, headers=SC)
    assert (early.status_code, early.json()["code"]) == (400, -1400)
    fake_time.now = 35
    assert (await http.get(f"/sectigo/api/ssl/v1/{ssl_id}", headers=SC)).json()[
        "status"
    ] == "Issued"
    not_ready = await http.get(collect, params={"format": "x509"}, headers=SC)
    assert (not_ready.status_code, not_ready.json()["code"]) == (400, -183)
    fake_time.now = 50
    bundle = await http.get(collect, params={"format": "x509"}, headers=SC)
    assert bundle.status_code == 200
    assert b"\r\n" in bundle.content
    certificates = x509.load_pem_x509_certificates(bundle.content)
    info = sim.order("sectigo", str(ssl_id))
    # "Certificate (w/ chain)" is root first, the leaf last; "w/ issuer after" leaf first.
    assert certificates[-1] == info.certificate
    assert certificates[0].subject == certificates[0].issuer
    assert len(certificates) == 3
    issuer_after = await http.get(collect, params={"format": "pemia"}, headers=SC)
    assert x509.load_pem_x509_certificates(issuer_after.content) == list(reversed(certificates))
    reverse = await http.get(collect, params={"format": "x509IOR"}, headers=SC)
    assert x509.load_pem_x509_certificates(reverse.content) == list(reversed(certificates))[1:]
    assert info.dns_names == ("sectigo.example.com", "a.example.com", "b.example.com")
    status = (await http.get(f"/sectigo/api/ssl/v1/{ssl_id}", headers=SC)).json()
    assert int(status["serialNumber"], 16) == info.serial
    only = await http.get(collect, params={"format": "x509CO"}, headers=SC)
    assert len(x509.load_pem_x509_certificates(only.content)) == 1
    path_form = await http.get(f"{collect}/pem", headers=SC)
    assert len(x509.load_pem_x509_certificates(path_form.content)) == 3
    chain = await http.get(collect, params={"format": "x509IO"}, headers=SC)
    assert len(x509.load_pem_x509_certificates(chain.content)) == 2
    p7 = await http.get(collect, headers=SC)
    assert len(pkcs7.load_pem_pkcs7_certificates(p7.content)) == 3
    der = await http.get(collect, params={"format": "bin"}, headers=SC)
    assert len(pkcs7.load_der_pkcs7_certificates(der.content)) == 3
    odd = await http.get(collect, params={"format": "zip"}, headers=SC)
    assert odd.status_code == 400

    revoke = f"/sectigo/api/ssl/v1/revoke/{ssl_id}"
    assert (await http.post(revoke, headers=SC, json={"reasonCode": 1})).status_code == 400
    bad_code = await http.post(revoke, headers=SC, json={"reasonCode": 2, "reason": "x"})
    assert bad_code.status_code == 400
    response = await http.post(revoke, headers=SC, json={"reasonCode": 1, "reason": "leaked"})
    assert response.status_code == 204
    assert (await http.get(f"/sectigo/api/ssl/v1/{ssl_id}", headers=SC)).json()[
        "status"
    ] == "Revoked"
    gone = await http.get(collect, params={"format": "x509"}, headers=SC)
    assert (gone.status_code, gone.json()["code"]) == (400, -110)
    twice = await http.post(revoke, headers=SC, json={"reasonCode": 1, "reason": "leaked"})
    assert (twice.status_code, twice.json()["code"]) == (400, -102)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        (
            {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----"},
            -10,
        ),
        ({"csr": 5}, -10),
        ({"term": 17}, -36),
        ({"orgId": 8}, -3),
        ({"certType": "99"}, -3),
        ({"subjAltNames": ["a"]}, -3),
    ],
)
async def test_sectigo_refuses_bad_enrollments(
    http: httpx.AsyncClient, changes: dict[str, object], code: int
) -> None:
    response = await http.post("/sectigo/api/ssl/v1/enroll", headers=SC, json=sc_enroll(**changes))
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["description"]


async def test_sectigo_refuses_bad_credentials_and_unknown_orders(http: httpx.AsyncClient) -> None:
    for headers in ({**SC, "password": "wrong"}, {**SC, "customerUri": "other"}, {}):
        response = await http.get("/sectigo/api/ssl/v1/1", headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == -16
    missing = await http.get("/sectigo/api/ssl/v1/424242", headers=SC)
    assert missing.status_code == 404
    assert (await http.get("/sectigo/api/ssl/v1/12abc", headers=SC)).status_code == 404
    assert (await http.get("/sectigo/api/ssl/v1/collect/9", headers=SC)).status_code == 404
    assert (
        await http.post("/sectigo/api/ssl/v1/enroll", headers=SC, content=b"x")
    ).status_code == 400


async def test_sectigo_csr_without_names_is_refused(http: httpx.AsyncClient) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    from cryptography.hazmat.primitives import hashes

    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    body = sc_enroll(csr=csr.public_bytes(Encoding.PEM).decode(), subjAltNames="")
    response = await http.post("/sectigo/api/ssl/v1/enroll", headers=SC, json=body)
    assert response.json()["code"] == -10
    named = sc_enroll(csr=csr.public_bytes(Encoding.PEM).decode(), subjAltNames="only.example.com")
    response = await http.post("/sectigo/api/ssl/v1/enroll", headers=SC, json=named)
    assert response.status_code == 200


# -- Entrust -------------------------------------------------------------------------------


def en_body(**changes: object) -> dict[str, object]:
    pem = make_csr("entrust.example.com")
    der = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    body: dict[str, object] = {
        "csr": der,
        "profileId": "P1",
        "requiredFormat": {"format": "X509"},
        "subjectAltNames": [{"type": "dNSName", "value": "e2.example.com"}],
    }
    body.update(changes)
    return body


async def test_entrust_enroll_poll_revoke(
    sim: SimulatedCA, http: httpx.AsyncClient, fake_time: FakeTime
) -> None:
    base = EN
    sim.script_next(OrderScript(approval_for=60, issue_after=60))
    response = await http.post(f"{base}/enrollments", json=en_body())
    assert response.status_code == 201
    assert response.json()["type"] == "EnrollmentResponse"
    enrollment = response.json()["enrollment"]
    tracking = enrollment["id"]
    assert enrollment["status"] == "AWAITING_APPROVAL"
    assert "body" not in enrollment
    assert "serialNumber" not in enrollment
    fake_time.now = 61
    status = (await http.get(f"{base}/enrollments/{tracking}")).json()["enrollment"]
    assert status["status"] == "PENDING"
    fake_time.now = 121
    status = (await http.get(f"{base}/enrollments/{tracking}")).json()["enrollment"]
    assert status["status"] == "ISSUED"
    leaf = x509.load_der_x509_certificate(base64.b64decode(status["body"]))
    intermediate, root = (
        x509.load_der_x509_certificate(base64.b64decode(c["certificateData"]))
        for c in status["chain"]
    )
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    info = sim.order("entrust", tracking)
    assert leaf == info.certificate
    assert int(status["serialNumber"], 16) == info.serial
    assert sim.order("entrust", status["serialNumber"]).order_id == tracking
    assert info.dns_names == ("entrust.example.com", "e2.example.com")
    lookup = await http.get(f"{base}/certificates/{status['serialNumber']}")
    assert lookup.json()["type"] == "CertificateResponse"
    assert lookup.json()["certificate"]["status"] == "normal"
    assert base64.b64decode(lookup.json()["certificate"]["certificateData"]) == leaf.public_bytes(
        Encoding.DER
    )
    assert len(lookup.json()["chain"]) == 2

    actions = f"{base}/certificates/{format(info.serial, '040x')}/actions"
    wrong = await http.post(actions, json={"action": {"type": "RenewAction"}})
    assert wrong.status_code == 400
    assert wrong.json()["type"] == "ErrorResponse"
    bad_reason = await http.post(actions, json={"action": {"type": "RevokeAction", "reason": "x"}})
    assert bad_reason.status_code == 400
    done = await http.post(
        actions, json={"action": {"type": "RevokeAction", "reason": "keyCompromise"}}
    )
    assert done.status_code == 200
    assert done.json()["action"]["status"] == "COMPLETED"
    assert done.json()["action"]["reason"] == "keyCompromise"
    assert (await http.get(f"{base}/enrollments/{tracking}")).json()["enrollment"][
        "status"
    ] == "REVOKED"
    revoked = await http.get(f"{base}/certificates/{status['serialNumber']}")
    assert revoked.json()["certificate"]["status"] == "revoked"
    by_decimal = f"{base}/certificates/{info.serial}/actions"
    again = await http.post(by_decimal, json={"action": {"type": "RevokeAction"}})
    assert again.status_code == 400


async def test_entrust_issues_at_once_and_refuses_bad_input(
    sim: SimulatedCA, http: httpx.AsyncClient
) -> None:
    base = EN
    response = await http.post(
        f"{base}/enrollments",
        json=en_body(csr=make_csr("pem.example.com"), requiredFormat={"format": "PEM"}),
    )
    assert response.json()["enrollment"]["status"] == "ISSUED"
    assert response.json()["enrollment"]["body"].startswith("-----BEGIN CERTIFICATE-----")
    sim.script_next(OrderScript(awkward=True), ca="entrust")
    accepted = (await http.post(f"{base}/enrollments", json=en_body())).json()["enrollment"]
    assert accepted["status"] == "ACCEPTED"
    accepted_leaf = x509.load_der_x509_certificate(base64.b64decode(accepted["body"]))
    assert accepted_leaf == sim.order("entrust", accepted["id"]).certificate
    no_format = en_body()
    del no_format["requiredFormat"]
    assert (await http.post(f"{base}/enrollments", json=no_format)).status_code == 400
    pkcs12 = en_body(requiredFormat={"format": "PKCS12"})
    assert (await http.post(f"{base}/enrollments", json=pkcs12)).status_code == 400
    assert (await http.get(f"{base}/certificates/abcdef")).status_code == 404
    assert (await http.post(f"{base}/enrollments", json=en_body(csr="AAAA"))).status_code == 400
    assert (
        await http.post(f"{base}/enrollments", json=en_body(csr=base64.b64encode(b"x").decode()))
    ).status_code == 400
    bad_alt = await http.post(f"{base}/enrollments", json=en_body(subjectAltNames=[{"type": 1}]))
    assert bad_alt.status_code == 400
    assert (await http.post(f"{base}/enrollments", content=b"[")).status_code == 400
    other = "/entrust/cagw/v1/certificate-authorities/NOPE"
    assert (await http.post(f"{other}/enrollments", json=en_body())).status_code == 404
    assert (await http.get(f"{other}/enrollments/ENR-1")).status_code == 404
    assert (await http.post(f"{other}/certificates/01/actions", json={})).status_code == 404
    assert (await http.get(f"{base}/enrollments/ENR-404")).status_code == 404
    assert (await http.post(f"{base}/certificates/zz/actions", json={})).status_code == 404


async def test_entrust_profile_is_checked_when_configured(fake_time: FakeTime) -> None:
    credentials = dataclasses.replace(CREDENTIALS, entrust_profile_id="P1")
    sim = SimulatedCA(credentials=credentials, clock=fake_time.clock)
    async with sim.client(base_url="http://sim") as http:
        url = f"{EN}/enrollments"
        assert (await http.post(url, json=en_body(profileId="P2"))).status_code == 400
        assert (await http.post(url, json=en_body())).status_code == 201


async def test_mtls_routes_refuse_a_peer_without_client_certificate(sim: SimulatedCA) -> None:
    transport = httpx.ASGITransport(app=with_client_cert(sim, False))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        url = f"{EN}/enrollments/ENR-1"
        assert (await http.get(url)).status_code == 403
        assert (await http.post("/globalsign/v2/login", json={})).status_code == 403
        assert (await dc_status(http, 1)).status_code == 404
    transport = httpx.ASGITransport(app=with_client_cert(sim, True))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        assert (await http.get(url)).status_code == 404


# -- GlobalSign ----------------------------------------------------------------------------


async def test_globalsign_login_issue_poll_revoke(
    sim: SimulatedCA, http: httpx.AsyncClient, fake_time: FakeTime
) -> None:
    auth = await gs_token(http)
    assert GLOBALSIGN_TOKEN in auth["Authorization"]
    sim.script_next(OrderScript(issue_after=10))
    body = {
        "public_key": make_csr("gs.example.com"),
        "subject_dn": {"common_name": "gs.example.com"},
        "san": {"dns_names": ["gs2.example.com"]},
    }
    response = await http.post("/globalsign/v2/certificates", json=body, headers=auth)
    assert response.status_code == 201
    location = response.headers["Location"]
    serial = location.rsplit("/", 1)[1]
    assert location == f"http://sim/globalsign/v2/certificates/{serial}"
    pending = await http.get(f"/globalsign/v2/certificates/{serial}", headers=auth)
    assert pending.status_code == 202
    fake_time.now = 10
    done = await http.get(f"/globalsign/v2/certificates/{serial.lower()}", headers=auth)
    assert done.status_code == 200
    answer = done.json()
    assert answer["status"] == "ISSUED"
    assert answer["serial_number"] == serial
    leaf = x509.load_pem_x509_certificate(answer["certificate"].encode())
    assert leaf.serial_number == int(serial, 16) == sim.order("globalsign", serial).serial
    revoked = await http.patch(
        f"/globalsign/v2/certificates/{serial}",
        json={"revocation_reason": "keyCompromise"},
        headers=auth,
    )
    assert revoked.status_code == 204
    after = (await http.get(f"/globalsign/v2/certificates/{serial}", headers=auth)).json()
    assert after["status"] == "REVOKED"
    again = await http.patch(f"/globalsign/v2/certificates/{serial}", headers=auth)
    assert again.status_code == 409
    chain = await http.get("/globalsign/v2/trustchain", headers=auth)
    assert len(chain.json()) == 2


async def test_globalsign_tokens_expire(
    sim: SimulatedCA, http: httpx.AsyncClient, fake_time: FakeTime
) -> None:
    url = "/globalsign/v2/certificates/00"
    assert (await http.get(url)).status_code == 401
    assert (await http.get(url, headers={"Authorization": "Basic x"})).status_code == 401
    auth = await gs_token(http)
    assert (await http.get(url, headers=auth)).status_code == 404
    fake_time.now = 599
    assert (await http.get(url, headers=auth)).status_code == 404
    fake_time.now = 600
    expired = await http.get(url, headers=auth)
    assert expired.status_code == 401
    fresh = await gs_token(http)
    assert (await http.get(url, headers=fresh)).status_code == 404
    sim.expire_tokens()
    assert (await http.get(url, headers=fresh)).status_code == 401


async def test_globalsign_refuses_bad_login_and_bad_orders(http: httpx.AsyncClient) -> None:
    logins: list[object] = [{"api_key": GLOBALSIGN_API_KEY, "api_secret": "wrong"}, {}, []]
    for login in logins:
        response = await http.post("/globalsign/v2/login", json=login)
        assert response.status_code == 401
    auth = await gs_token(http)
    url = "/globalsign/v2/certificates"
    orders: list[dict[str, object]] = [
        {"csr": "nope", "subject_dn": {"common_name": "x.example.com"}},
        {"public_key": "-----BEGIN PUBLIC KEY-----\nAA\n-----END PUBLIC KEY-----\n"},
        {"csr": make_csr("x.example.com"), "san": {"dns_names": "x"}},
        {"csr": make_csr("x.example.com"), "subject_dn": "x"},
    ]
    for order in orders:
        assert (await http.post(url, json=order, headers=auth)).status_code == 400
    assert (await http.post(url, content=b"nope", headers=auth)).status_code == 400
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    public = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    no_name = await http.post(url, json={"public_key": public}, headers=auth)
    assert no_name.status_code == 400
    named = {"public_key": public, "subject_dn": {"common_name": "k.example.com"}}
    assert (await http.post(url, json=named, headers=auth)).status_code == 201
    assert (await http.patch(f"{url}/ABCD", headers=auth)).status_code == 404
    response = await http.post(url, json=named, headers=auth)
    serial = response.headers["Location"].rsplit("/", 1)[1]
    bad = await http.patch(f"{url}/{serial}", content=b"{", headers=auth)
    assert bad.status_code == 400


# -- scripts, faults, counters, time -----------------------------------------------------


async def test_scripted_errors_come_before_the_real_answers(
    sim: SimulatedCA, http: httpx.AsyncClient
) -> None:
    errors = (429, 503, BodyFault.TRUNCATED, BodyFault.NOT_JSON, BodyFault.MISSING_FIELD)
    sim.script_next(OrderScript(errors=errors, retry_after=7.5), ca="digicert")
    order_id = (await dc_submit(http))["id"]
    limited = await dc_status(http, order_id)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "8"
    assert limited.json()["errors"][0]["code"] == DIGICERT.RATE_LIMIT_CODE
    unavailable = await dc_status(http, order_id)
    assert unavailable.status_code == 503
    assert unavailable.headers["Retry-After"] == "8"
    truncated = await dc_status(http, order_id)
    assert truncated.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        truncated.json()
    html = await dc_status(http, order_id)
    assert html.headers["content-type"] == "text/html"
    missing = await dc_status(http, order_id)
    assert "status" not in missing.json()
    assert missing.json()["id"] == order_id
    assert (await dc_status(http, order_id)).json()["status"] == "issued"
    assert sim.throttled == 1
    assert sim.responses_by_status[503] == 1


@pytest.mark.parametrize(
    ("ca", "word"),
    [
        ("digicert", "rejected"),
        ("sectigo", "Rejected"),
        ("entrust", "REJECTED"),
        ("globalsign", "CA validation error"),
    ],
)
async def test_rejection_in_each_ca_words(
    sim: SimulatedCA, http: httpx.AsyncClient, fake_time: FakeTime, ca: str, word: str
) -> None:
    sim.script_common_name("no.example.com", OrderScript(issue_after=5, reject=True))
    if ca == "digicert":
        order_id = (
            await dc_submit(
                http,
                certificate={"common_name": "no.example.com", "csr": make_csr("no.example.com")},
            )
        )["id"]
        status_url = f"/digicert/services/v2/order/certificate/{order_id}"
        headers = DC
    elif ca == "sectigo":
        response = await http.post(
            "/sectigo/api/ssl/v1/enroll", headers=SC, json=sc_enroll(csr=make_csr("no.example.com"))
        )
        order_id = response.json()["sslId"]
        status_url, headers = f"/sectigo/api/ssl/v1/{order_id}", SC
    elif ca == "entrust":
        response = await http.post(
            f"{EN}/enrollments",
            json=en_body(csr=make_csr("no.example.com")),
        )
        order_id = response.json()["enrollment"]["id"]
        status_url, headers = (
            f"{EN}/enrollments/{order_id}",
            {},
        )
    else:
        headers = await gs_token(http)
        response = await http.post(
            "/globalsign/v2/certificates", headers=headers, json={"csr": make_csr("no.example.com")}
        )
        status_url = response.headers["Location"].removeprefix("http://sim")
    fake_time.now = 5
    response = await http.get(status_url, headers=headers)
    if ca == "globalsign":
        # HVCA answers the lookup of a request its backend refused 422, problem+json.
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["description"] == word
        return
    assert response.status_code == 200
    assert response.json().get("enrollment", response.json())["status"] == word
    if ca == "sectigo":
        collect = await http.get(
            f"/sectigo/api/ssl/v1/collect/{order_id}", params={"format": "pemia"}, headers=SC
        )
        assert collect.json()["code"] == -130


async def test_script_queue_per_ca_and_common_name(
    sim: SimulatedCA, http: httpx.AsyncClient
) -> None:
    slow = OrderScript(issue_after=100)
    sim.script_next(slow, ca="sectigo")
    sim.script_next(OrderScript(approval_for=5), count=2)
    first = await dc_submit(http)
    second = await dc_submit(http)
    third = await dc_submit(http)
    words = [(await dc_status(http, a["id"])).json()["status"] for a in (first, second, third)]
    assert words == ["needs_approval", "needs_approval", "issued"]
    response = await http.post("/sectigo/api/ssl/v1/enroll", headers=SC, json=sc_enroll())
    assert sim.order("sectigo", str(response.json()["sslId"])).script == slow
    with pytest.raises(certpoll.ConfigError):
        sim.script_next(slow, count=0)


async def test_fault_windows(
    sim: SimulatedCA, http: httpx.AsyncClient, fake_time: FakeTime
) -> None:
    await dc_status(http, 1)  # the first request sets the epoch at 0
    sim.add_fault(Fault.rate_limit(start=10, duration=5, retry_after=30, ca="sectigo"))
    sim.add_fault(Fault.outage(start=20, duration=5, ca="digicert"))
    sim.add_fault(Fault.slow(0.25, start=30, duration=1))
    sim.add_fault(Fault(start=40, duration=1, status=500, probability=0.0))
    fake_time.now = 10
    burst = await http.get("/sectigo/api/ssl/v1/1", headers=SC)
    assert (burst.status_code, burst.headers["Retry-After"]) == (429, "30")
    assert burst.json()["description"] == "Too Many Requests"
    assert (await dc_status(http, 1)).status_code == 404
    fake_time.now = 15
    assert (await http.get("/sectigo/api/ssl/v1/1", headers=SC)).status_code == 404
    fake_time.now = 20
    outage = await dc_status(http, 1)
    assert outage.status_code == 503
    assert "Retry-After" not in outage.headers
    # A fault comes before authentication, like a load balancer's answer.
    assert (await http.get("/digicert/services/v2/order/certificate/1")).status_code == 503
    fake_time.now = 30
    before = len(fake_time.sleeps)
    assert (await dc_status(http, 1)).status_code == 404
    assert fake_time.sleeps[before:] == [0.25]
    fake_time.now = 40
    assert (await dc_status(http, 1)).status_code == 404
    assert sim.epoch == 0


async def test_counters(sim: SimulatedCA, http: httpx.AsyncClient) -> None:
    order_id = (await dc_submit(http))["id"]
    await dc_status(http, order_id)
    await dc_status(http, order_id)
    await http.get("/elsewhere")
    assert sim.requests == 4
    assert sim.requests_by_route == {"digicert.submit": 1, "digicert.status": 2, "unknown": 1}
    assert sim.responses_by_status == {201: 1, 200: 2, 404: 1}
    assert sim.order("digicert", str(order_id)).requests == 2
    assert sim.order_count == 1
    assert "orders=1" in repr(sim)
    with pytest.raises(KeyError):
        sim.order("digicert", "0")


async def test_speed_compresses_time(fake_time: FakeTime) -> None:
    sim = SimulatedCA(
        credentials=CREDENTIALS,
        clock=fake_time.clock,
        speed=3600,
        profile=Profile.fixed(OrderScript(issue_after=7200)),
    )
    async with sim.client(base_url="http://sim") as http:
        order_id = (await dc_submit(http))["id"]
        fake_time.now = 1.9
        assert (await dc_status(http, order_id)).json()["status"] == "pending"
        fake_time.now = 2.0
        assert (await dc_status(http, order_id)).json()["status"] == "issued"


@pytest.mark.looptime
async def test_default_clock_is_the_running_loop() -> None:
    """Without ``clock=`` the simulator reads the loop's time: a virtual 90 s pass for it too."""
    sim = SimulatedCA(speed=2.0)
    assert sim.now() == 0.0
    assert sim.epoch is not None
    await asyncio.sleep(90)
    assert sim.now() == pytest.approx(180.0)


async def test_big_bodies_and_lifespan(sim: SimulatedCA, http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/sectigo/api/ssl/v1/enroll", headers=SC, content=b"x" * (1024 * 1024 + 1)
    )
    assert response.status_code == 413
    sent: list[dict[str, object]] = []
    script: list[dict[str, object]] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    messages = iter(script)

    async def receive() -> dict[str, object]:
        return next(messages)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await sim({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    await sim({"type": "websocket"}, receive, send)
    assert len(sent) == 2


def test_profiles_are_replayable_and_scripts_validated() -> None:
    import random

    realistic = Profile.realistic(seed=3)
    picks = [realistic.pick(random.Random(3), "sectigo") for _ in range(1)]
    again = [Profile.realistic(seed=3).pick(random.Random(3), "sectigo") for _ in range(1)]
    assert picks == again
    rng = random.Random(1)
    scripts = [realistic.pick(rng, ca) for ca in ("digicert", "sectigo") * 500]
    assert any(s.reject for s in scripts)
    assert any(s.approval_for > 0 for s in scripts)
    assert any(s.errors for s in scripts)
    assert any(s.collect_not_ready_for > 0 for s in scripts)
    # The awkward real shapes (root-first SCM bundles, CAGW's ACCEPTED) for some orders, and
    # DigiCert's issuance in the order's own answer for some of its orders.
    assert 0 < sum(s.awkward for s in scripts) < len(scripts)
    digicert = scripts[0::2]
    assert any(s.issue_after == 0 and s.approval_for == 0 and not s.reject for s in digicert)
    assert realistic.faults
    for bad in (
        {"issue_after": -1},
        {"approval_for": float("nan")},
        {"retry_after": -1},
        {"errors": (200,)},
    ):
        with pytest.raises(certpoll.ConfigError):
            OrderScript(**bad)
    for bad_fault in (
        {"status": 200},
        {"probability": 2.0},
        {"ca": "acme"},
        {"latency": -1},
        {"retry_after": -2},
    ):
        with pytest.raises(certpoll.ConfigError):
            Fault(**bad_fault)
    for bad_sim in ({"speed": 0}, {"token_lifetime": 0}, {"digicert_rate_limits": ((0, 5.0),)}):
        with pytest.raises(certpoll.ConfigError):
            SimulatedCA(**bad_sim)
    assert "SECRET" not in repr(CREDENTIALS)
    assert SimulatedCA().base_urls("http://h/")["sectigo"] == "http://h/sectigo/api"


def test_import_certpoll_does_not_import_the_simulator() -> None:
    code = (
        "import sys, certpoll; "
        "assert 'certpoll.testing' not in sys.modules; assert 'uvicorn' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    code = "import sys, certpoll.testing; assert 'uvicorn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("ca", ["digicert", "sectigo", "entrust", "globalsign"])
def test_credentials_settings_and_environment_name_the_same_account(
    ca: certpoll.CAName, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The variables ``environment`` gives (what serve-sim prints) read back into the settings
    ``settings`` builds, with any further settings fields given."""
    monkeypatch.chdir(tmp_path)  # no .env
    for name in list(os.environ):
        if name.startswith(("CERTPOLL_", "CERTCTL_")):
            monkeypatch.delenv(name)
    url = f"http://127.0.0.1:9/{ca}"
    pair = {"client_cert_path": tmp_path / "c.pem", "client_key_path": tmp_path / "k.pem"}
    built = CREDENTIALS.settings(ca, url, **pair)
    for name, value in CREDENTIALS.environment(ca, url, **pair).items():
        monkeypatch.setenv(name, value)
    assert type(built)() == built
    assert getattr(built, built.url_field) == url
    assert CREDENTIALS.settings(ca, url, poll_max_wait_seconds=7).poll_max_wait_seconds == 7
