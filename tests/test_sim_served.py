"""The simulated CA served on 127.0.0.1: TLS, and client certificates for Entrust/GlobalSign."""

from __future__ import annotations

import ssl

import httpx
import pytest

import certpoll
from certpoll.testing import SimulatedCA, serve
from tests.certs import make_csr
from tests.credentials import CREDENTIALS, ENTRUST_CA_PATH
from tests.helpers import DIGICERT_API_KEY, GLOBALSIGN_API_KEY, GLOBALSIGN_API_SECRET


async def test_served_with_tls_and_client_certificates() -> None:
    sim = SimulatedCA(credentials=CREDENTIALS)
    async with serve(sim) as served:
        urls = served.base_urls
        assert urls.digicert.startswith("https://127.0.0.1:")
        assert urls.entrust.split("/entrust")[0] == urls.globalsign.split("/globalsign")[0]
        assert urls.digicert.split("/digicert")[0] != urls.entrust.split("/entrust")[0]
        async with served.client() as http:
            order = await http.post(
                f"{urls.digicert}/order/certificate/ssl_basic",
                headers={"X-DC-DEVKEY": DIGICERT_API_KEY},
                json={
                    "certificate": {
                        "common_name": "tls.example.com",
                        "csr": make_csr("tls.example.com"),
                    },
                    "organization": {"id": CREDENTIALS.digicert_org_id},
                },
            )
            assert order.status_code == 201
            login = await http.post(
                f"{urls.globalsign}/login",
                json={"api_key": GLOBALSIGN_API_KEY, "api_secret": GLOBALSIGN_API_SECRET},
            )
            assert login.status_code == 200
            enrollment = await http.post(
                f"{urls.entrust}{ENTRUST_CA_PATH}/enrollments",
                json={"csr": make_csr("mtls.example.com"), "requiredFormat": {"format": "X509"}},
            )
            assert enrollment.json()["enrollment"]["status"] == "ISSUED"
            # The mTLS routes are not on the server without client authentication.
            wrong = await http.get(
                urls.digicert.split("/digicert")[0]
                + f"/entrust/cagw{ENTRUST_CA_PATH}/enrollments/x"
            )
            assert wrong.status_code == 403
        # Without the client certificate, the mTLS server refuses the TLS session.
        no_client = ssl.create_default_context(cafile=str(served.ca_cert_path))
        async with httpx.AsyncClient(verify=no_client) as http:
            assert (await http.get(f"{urls.digicert}/order/certificate/1")).status_code == 401
            with pytest.raises(httpx.TransportError):
                await http.post(f"{urls.globalsign}/login", json={})
        # And the server's certificate is not trusted by default.
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"{urls.digicert}/order/certificate/1")
        ca_path = served.ca_cert_path
        assert ca_path is not None
        assert ca_path.exists()
    assert not ca_path.exists()
    assert sim.requests_by_route["entrust.enroll"] == 1


async def test_served_without_tls() -> None:
    sim = SimulatedCA()
    async with serve(sim, tls=False) as served:
        assert served.base_urls.entrust.startswith("http://127.0.0.1:")
        assert served.ca_cert_path is None
        with pytest.raises(certpoll.ConfigError):
            served.ssl_context()
        async with served.client() as http:
            ca_id = sim.credentials.entrust_ca_id
            response = await http.get(
                f"{served.base_urls.entrust}/v1/certificate-authorities/{ca_id}/enrollments/x"
            )
            assert response.status_code == 404


async def test_served_on_ipv6_loopback_or_refused_elsewhere() -> None:
    with pytest.raises(certpoll.ConfigError):
        async with serve(SimulatedCA(), host="0.0.0.0"):  # noqa: S104 - refused on purpose
            pass  # pragma: no cover
