"""Every CA answer recorded in tests/fixtures/ca-answers, replayed through its connector.

Each ``<ca>/cases.json`` names the requests of one call (``issue``, ``poll``, ``revoke``) and
the answer files that reply to them; ``SOURCES.md`` says where each answer shape was seen.
The files hold ``${NAME}`` placeholders for the certificates, which these tests make (a leaf
for the CSR's key, under tests.certs' intermediate and root): ``:crlf`` turns line ends into
CRLF, ``:slashes`` writes ``/`` as ``\\/`` the way some JSON encoders do. A placeholder in a
JSON file is JSON-escaped.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

import certpoll
from certpoll._certs import MAX_CERTIFICATES, certificate_from_pem
from certpoll._connectors._base import Connector
from certpoll._connectors.entrust import hex_serial
from certpoll.testing import TestPKI
from tests.certs import default_ca, make_chain, make_order
from tests.helpers import (
    DIGICERT_API_KEY,
    GLOBALSIGN_API_KEY,
    GLOBALSIGN_API_SECRET,
    SECTIGO_LOGIN,
    SECTIGO_PASSWORD,
    FakeTime,
)

FIXTURES = Path(__file__).parent / "fixtures" / "ca-answers"
CAS: tuple[certpoll.CAName, ...] = ("digicert", "sectigo", "entrust", "globalsign")
BASES: Mapping[certpoll.CAName, str] = {
    "digicert": "https://dc.test/services/v2",
    "sectigo": "https://scm.test/api",
    "entrust": "https://cagw.test/cagw",
    "globalsign": "https://gs.test/v2",
}
_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)((?::[a-z]+)*)\}")


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(Encoding.PEM).decode("ascii")


def _der64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(Encoding.DER)).decode("ascii")


@dataclass(frozen=True)
class Material:
    """The certificates the answers carry: a leaf for ``csr``'s key, its intermediate, root."""

    csr: str
    leaf: x509.Certificate
    values: Mapping[str, str]

    @classmethod
    def make(cls) -> Material:
        csr, leaf_pem, _, _ = make_order("www.example.com")
        leaf = x509.load_pem_x509_certificate(leaf_pem.encode())
        ca = default_ca()
        serial = leaf.serial_number
        upper = format(serial, "X")
        upper = upper if len(upper) % 2 == 0 else "0" + upper
        values = {
            "LEAF_PEM": _pem(leaf),
            "INTERMEDIATE_PEM": _pem(ca.intermediate.certificate),
            "ROOT_PEM": _pem(ca.root.certificate),
            "LEAF_DER64": _der64(leaf),
            "INTERMEDIATE_DER64": _der64(ca.intermediate.certificate),
            "ROOT_DER64": _der64(ca.root.certificate),
            "SERIAL_HEX": format(serial, "x"),
            "SERIAL_HEX_UPPER": upper,
            "SERIAL_HEX40": hex_serial(serial),
            "SERIAL_HEX_COLONS": ":".join(re.findall("..", upper)),
        }
        return cls(csr=csr, leaf=leaf, values=values)

    def fill(self, text: str, *, in_json: bool = False) -> str:
        def one(match: re.Match[str]) -> str:
            value = self.values[match[1]]
            modifiers = match[2].split(":")[1:]
            if "crlf" in modifiers:
                value = value.replace("\n", "\r\n")
            if in_json:
                value = json.dumps(value)[1:-1]
            if "slashes" in modifiers:
                value = value.replace("/", "\\/")
            return value

        return _PLACEHOLDER.sub(one, text)


MATERIAL = Material.make()


def _cases() -> list[Any]:
    params = []
    for ca in CAS:
        for case in json.loads((FIXTURES / ca / "cases.json").read_text()):
            params.append(pytest.param(ca, case, id=f"{ca}: {case['name']}"))
    return params


def _connector(ca: certpoll.CAName, http: httpx.AsyncClient, time: FakeTime) -> Connector[Any]:
    base = BASES[ca]
    poller = time.poller(max_wait=60.0)
    files: dict[str, Any] = {
        "client_cert_path": Path("/nonexistent/client.crt"),
        "client_key_path": Path("/nonexistent/client.key"),
    }
    if ca == "digicert":
        settings_ = certpoll.DigiCertSettings(
            api_key=SecretStr(DIGICERT_API_KEY), org_id=4242, base_url=base
        )
        return certpoll.DigiCert(settings_, http=http, poller=poller)
    if ca == "sectigo":
        return certpoll.Sectigo(
            certpoll.SectigoSettings(
                customer_uri="example",
                login=SecretStr(SECTIGO_LOGIN),
                password=SecretStr(SECTIGO_PASSWORD),
                org_id=1234,
                cert_type=5678,
                base_url=base,
            ),
            http=http,
            poller=poller,
        )
    if ca == "entrust":
        entrust = certpoll.EntrustSettings(api_url=base, ca_id="CA-1", **files)
        return certpoll.Entrust(entrust, http=http, poller=poller)
    globalsign = certpoll.GlobalSignSettings(
        api_url=base,
        api_key=SecretStr(GLOBALSIGN_API_KEY),
        api_secret=SecretStr(GLOBALSIGN_API_SECRET),
        **files,
    )
    return certpoll.GlobalSign(globalsign, http=http, poller=poller)


@dataclass
class Seen:
    """What one call came to, whatever its return type."""

    state: certpoll.OrderState | None = None
    message: str | None = None
    order_id: str | None = None
    certificate: certpoll.Certificate | None = None
    error: Exception | None = None
    revoked: bool = False


def _seen(result: object) -> Seen:
    if isinstance(result, certpoll.Done):
        result = result.value
    if isinstance(result, certpoll.OrderStatus):
        return Seen(
            result.state, result.message, result.order_id, result.certificate, result.last_error
        )
    if isinstance(result, certpoll.Pending):
        return Seen(certpoll.OrderState.PENDING, result.detail, error=result.error)
    assert isinstance(result, certpoll.Failed)
    return Seen(error=result.error)


async def _call(connector: Connector[Any], case: Mapping[str, Any]) -> Seen:
    try:
        if case["call"] == "issue":
            request = certpoll.CertificateRequest(
                common_name="www.example.com", csr_pem=MATERIAL.csr
            )
            return _seen(await connector.issue(request))
        if case["call"] == "poll":
            return _seen(await connector.poll_once(MATERIAL.fill(case["order"])))
        await connector.revoke(MATERIAL.fill(case["certificate"]))
        return Seen(revoked=True)
    except certpoll.CertpollError as exc:
        return Seen(error=exc)


def _mount(router: respx.MockRouter, ca: certpoll.CAName, route: Mapping[str, Any]) -> None:
    content = b""
    headers = {k: MATERIAL.fill(v) for k, v in route.get("headers", {}).items()}
    if route["file"] is not None:
        name = str(route["file"])
        text = (FIXTURES / ca / name).read_text()
        content = MATERIAL.fill(text, in_json=name.endswith(".json")).encode()
        default = "application/json" if name.endswith(".json") else "application/x-pem-file"
        headers.setdefault("Content-Type", default)
    url = httpx.URL(BASES[ca] + MATERIAL.fill(route["path"]))
    lookups: dict[str, Any] = {"method": route["method"], "host": url.host, "path": url.path}
    if route.get("params") is not None:
        lookups["params"] = route["params"]
    router.route(**lookups).respond(route["status"], content=content, headers=headers)


@pytest.mark.parametrize(("ca", "case"), _cases())
async def test_every_recorded_answer(
    ca: certpoll.CAName, case: Mapping[str, Any], fake_time: FakeTime
) -> None:
    expect: Mapping[str, Any] = case["expect"]
    async with httpx.AsyncClient() as http:
        with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
            for route in case["routes"]:
                _mount(router, ca, route)
            seen = await _call(_connector(ca, http, fake_time), case)
    if "error" in expect:
        assert type(seen.error).__name__ == expect["error"], seen
        assert expect["words"] in str(seen.error)
        return
    if expect.get("revoked"):
        assert seen.revoked, seen
        return
    assert seen.state is certpoll.OrderState(expect["state"]), seen
    assert seen.error is None, seen
    if "message" in expect:
        assert seen.message == MATERIAL.fill(expect["message"])
    if "words" in expect:
        assert seen.message is not None
        assert expect["words"] in seen.message
    if "order_id" in expect:
        assert seen.order_id == MATERIAL.fill(expect["order_id"])
    if seen.state is not certpoll.OrderState.ISSUED:
        assert seen.certificate is None
        return
    certificate = seen.certificate
    assert certificate is not None
    leaf = MATERIAL.leaf
    assert certificate.pem == _pem(leaf)
    assert certificate.chain_pem == "".join(MATERIAL.values[f"{n}_PEM"] for n in expect["chain"])
    serial = str(leaf.serial_number) if expect["serial"] == "LEAF" else expect["serial"]
    assert certificate.serial == MATERIAL.fill(serial)
    assert certificate.not_before == leaf.not_valid_before_utc
    assert certificate.not_after == leaf.not_valid_after_utc
    if "ca_certificate_id" in expect:
        assert certificate.ca_certificate_id == MATERIAL.fill(expect["ca_certificate_id"])


def test_every_fixture_file_is_replayed_and_cited() -> None:
    """No answer file sits unused, and SOURCES.md names every one of them."""
    sources = (FIXTURES / "SOURCES.md").read_text()
    for ca in CAS:
        used = {
            route["file"]
            for case in json.loads((FIXTURES / ca / "cases.json").read_text())
            for route in case["routes"]
            if route["file"] is not None
        }
        files = {p.name for p in (FIXTURES / ca).iterdir() if p.name != "cases.json"}
        assert files == used, ca
        for name in files:
            assert f"`{ca}/{name}`" in sources, name


# -- the leaf by structure, in any order --------------------------------------------------

_LEAF, _CHAIN, _SERIAL = make_chain("order.example.com")
_BLOCKS = [
    _LEAF,
    *(b + "-----END CERTIFICATE-----\n" for b in _CHAIN.split("-----END CERTIFICATE-----\n")[:-1]),
]


@settings(max_examples=60, deadline=None)
@given(
    order=st.permutations(range(3)),
    repeats=st.lists(st.integers(0, 2), max_size=3),
    crlf=st.booleans(),
    junk=st.sampled_from(["", "\n", "subject=/CN=x\n", "\r\n\r\n"]),
)
def test_any_order_gives_the_same_leaf_and_chain(
    order: list[int], repeats: list[int], crlf: bool, junk: str
) -> None:
    bundle = junk.join(_BLOCKS[i] for i in [*order, *repeats])
    if crlf:
        bundle = bundle.replace("\n", "\r\n")
    certificate = certificate_from_pem(bundle, ca="sectigo", order_id="1", ca_certificate_id="1")
    assert certificate.pem == _LEAF
    assert certificate.chain_pem == _CHAIN
    assert certificate.serial == _SERIAL


@pytest.mark.parametrize(
    "bundle",
    [
        pytest.param(_CHAIN, id="only the issuers"),
        pytest.param(_LEAF + make_chain("two.example.com")[0], id="two leaves"),
        pytest.param(_BLOCKS[2], id="only the root"),
        pytest.param("", id="nothing"),
    ],
)
def test_no_single_leaf_is_a_parse_error(bundle: str) -> None:
    with pytest.raises(certpoll.ResponseParseError):
        certificate_from_pem(bundle, ca="sectigo", order_id="1", ca_certificate_id="1")


def test_a_chain_that_does_not_verify_is_cut_where_it_breaks() -> None:
    """An issuer whose signature does not verify is not part of the chain."""
    foreign = TestPKI(name="another CA").chain_pem
    certificate = certificate_from_pem(
        _LEAF + foreign, ca="sectigo", order_id="1", ca_certificate_id="1"
    )
    assert certificate.pem == _LEAF
    assert certificate.chain_pem == ""


def test_an_answer_with_too_many_certificates_is_refused_before_any_signature_check() -> None:
    leaves = "".join(make_chain(f"n{i}.example.com")[0] for i in range(MAX_CERTIFICATES + 1))
    with pytest.raises(certpoll.ResponseParseError, match="more than"):
        certificate_from_pem(leaves, ca="sectigo", order_id="1", ca_certificate_id="1")
