"""What every connector promises about one look at an order, and each CA's adapter to it.

A :class:`ConnectorContract` says, for one CA, how to build its connector, where its status
request goes, how its answers spell a status word, and which words mean what. The contract
tests (tests/test_connector_contract.py) run the same behaviour over the four CAs; each
CA's own test file keeps only what is peculiar to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import respx

import certpoll
from certpoll import (
    AuthenticationError,
    Failed,
    OrderNotFound,
    Pending,
    PermanentError,
    RateLimited,
    TransientError,
)
from tests.helpers import (
    DIGICERT_API_KEY,
    GLOBALSIGN_API_KEY,
    GLOBALSIGN_API_SECRET,
    GLOBALSIGN_TOKEN,
    SECTIGO_LOGIN,
    SECTIGO_PASSWORD,
    FakeTime,
    assert_no_secrets,
)

#: Connectors are generic over their settings; the contract only calls what they share.
AnyConnector = certpoll.DigiCert | certpoll.Sectigo | certpoll.Entrust | certpoll.GlobalSign

#: One row of the triage of a failed request: (answer, outcome kind, error type, retry_after).
TRIAGE = [
    # GlobalSign logs in again once on a 401 and fails the same way on the second.
    pytest.param(401, Failed, AuthenticationError, None, id="401"),
    pytest.param(403, Failed, AuthenticationError, None, id="403"),
    pytest.param(404, Failed, OrderNotFound, None, id="404"),
    pytest.param(400, Failed, PermanentError, None, id="400"),
    pytest.param(405, Failed, PermanentError, None, id="405"),
    pytest.param(409, Failed, PermanentError, None, id="409"),
    pytest.param(422, Failed, PermanentError, None, id="422"),
    pytest.param(302, Failed, PermanentError, None, id="302"),
    pytest.param(
        httpx.Response(429, headers={"Retry-After": "30"}, json={"errors": []}),
        Pending,
        RateLimited,
        30.0,
        id="429-retry-after-seconds",
    ),
    pytest.param(
        httpx.Response(
            429,
            headers={
                "Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT",
                "Date": "Wed, 21 Oct 2015 07:27:00 GMT",
            },
        ),
        Pending,
        RateLimited,
        60.0,
        id="429-retry-after-date",
    ),
    pytest.param(429, Pending, RateLimited, None, id="429"),
    pytest.param(408, Pending, TransientError, None, id="408"),
    pytest.param(500, Pending, TransientError, None, id="500"),
    pytest.param(502, Pending, TransientError, None, id="502"),
    pytest.param(503, Pending, TransientError, None, id="503"),
    pytest.param(504, Pending, TransientError, None, id="504"),
    pytest.param(httpx.ConnectError("refused"), Pending, TransientError, None, id="connect"),
    pytest.param(httpx.ReadTimeout("slow"), Pending, TransientError, None, id="timeout"),
    pytest.param(httpx.ReadError("reset"), Pending, TransientError, None, id="reset"),
    pytest.param(
        httpx.RemoteProtocolError("peer closed"), Pending, TransientError, None, id="lost"
    ),
]

Answer = int | httpx.Response | Exception


def mock_answer(route: respx.Route, answer: Answer, *, echo: str = "") -> None:
    """``route`` answers ``answer``: a bare status echoes ``echo`` (a careless error page)."""
    if isinstance(answer, Exception):
        route.mock(side_effect=answer)
    elif isinstance(answer, int):
        route.mock(return_value=httpx.Response(answer, text=echo))
    else:
        route.mock(return_value=answer)


def check_triage(
    outcome: object,
    kind: type,
    error: type[Exception],
    retry_after: float | None,
    *,
    ca: str,
    order_id: str,
) -> None:
    """``outcome`` is ``kind`` carrying exactly ``error`` about ``order_id``, with no secret."""
    assert isinstance(outcome, kind)
    assert isinstance(outcome, Pending | Failed)
    assert type(outcome.error) is error
    assert getattr(outcome.error, "ca", None) == ca
    assert getattr(outcome.error, "order_id", None) == order_id
    if isinstance(outcome, Pending):
        assert outcome.retry_after == retry_after
    assert_no_secrets(outcome, outcome.error)


@dataclass(frozen=True, kw_only=True)
class ConnectorContract:
    """One CA as the contract tests see it."""

    ca: certpoll.CAName
    #: The connector with a fake-time poller (no real sleeps), on a client it may close.
    connector: Callable[[FakeTime], AnyConnector]
    #: The base URL the respx mock serves.
    base_url: str
    order_id: str
    #: The path of the one status request of ``order_id``, under ``base_url``.
    status_path: str
    #: How the CA names what it is polling in a detail: "order 99001 is pending".
    noun: str
    #: The status answer carrying ``word``.
    status_body: Callable[[str], dict[str, object]]
    pending_words: tuple[str, ...]
    failed_words: tuple[str, ...]
    #: A certificate id the connector can revoke by.
    revoke_id: str
    #: Ids the connector refuses (ConfigError) before any request.
    bad_ids: tuple[str, ...]
    #: A text with the CA's credentials in it, for error bodies that echo them.
    echo: str
    #: The connector's class and its settings' class.
    connector_type: type[AnyConnector]
    settings_type: type[certpoll.CASettings]
    #: Every required setting, by variable suffix ("API_KEY"), with a good value.
    required_env: dict[str, str]
    #: Whether a request needs a bearer token first (a login route is mocked).
    logs_in: bool = False
    #: Whether a connector without ``http=`` needs client-certificate files to start.
    mtls: bool = False
    #: Status codes with which the CA's status request refuses the order itself (HVCA's 422):
    #: a FAILED order, not an error.
    refusal_codes: tuple[int, ...] = ()

    def __str__(self) -> str:
        return self.ca


def _no_key_files() -> dict[str, object]:
    """Client-certificate paths for connectors given their own ``http`` client."""
    return {
        "client_cert_path": Path("/nonexistent/client.crt"),
        "client_key_path": Path("/nonexistent/client.key"),
    }


def _digicert(fake_time: FakeTime) -> AnyConnector:
    settings = certpoll.DigiCertSettings(
        api_key=DIGICERT_API_KEY, org_id=4242, base_url="https://dc.test/services/v2"
    )
    return certpoll.DigiCert(settings, poller=fake_time.poller(max_wait=60.0))


def _sectigo(fake_time: FakeTime) -> AnyConnector:
    settings = certpoll.SectigoSettings(
        customer_uri="test-org",
        login=SECTIGO_LOGIN,
        password=SECTIGO_PASSWORD,
        org_id=1234,
        cert_type=567,
        base_url="https://scm.test/api",
    )
    return certpoll.Sectigo(settings, poller=fake_time.poller(max_wait=60.0))


def _entrust(fake_time: FakeTime) -> AnyConnector:
    factory: type[certpoll.CASettings] = certpoll.EntrustSettings
    settings = factory(api_url="https://cagw.example/cagw", ca_id="CA-1", **_no_key_files())
    assert isinstance(settings, certpoll.EntrustSettings)
    return certpoll.Entrust(
        settings, http=httpx.AsyncClient(), poller=fake_time.poller(max_wait=60.0)
    )


def _globalsign(fake_time: FakeTime) -> AnyConnector:
    factory: type[certpoll.CASettings] = certpoll.GlobalSignSettings
    settings = factory(
        api_key=GLOBALSIGN_API_KEY, api_secret=GLOBALSIGN_API_SECRET, **_no_key_files()
    )
    assert isinstance(settings, certpoll.GlobalSignSettings)
    return certpoll.GlobalSign(
        settings, http=httpx.AsyncClient(), poller=fake_time.poller(max_wait=60.0)
    )


CONTRACTS = [
    ConnectorContract(
        ca="digicert",
        revoke_id="88001",
        connector=_digicert,
        base_url="https://dc.test/services/v2",
        order_id="99001",
        status_path="/order/certificate/99001",
        noun="order",
        status_body=lambda word: {"id": 99001, "status": word},
        pending_words=(
            "pending",
            "processing",
            "needs_approval",
            "waiting_pickup",
            "reissue_pending",
        ),
        failed_words=("rejected", "denied", "canceled", "revoked", "expired"),
        bad_ids=("../", "/", "?", "#", "%2F", "..", "12abc", " 12", "-5", "0x10", "1e3", ""),
        echo=f"invalid X-DC-DEVKEY {DIGICERT_API_KEY}",
        connector_type=certpoll.DigiCert,
        settings_type=certpoll.DigiCertSettings,
        required_env={"API_KEY": DIGICERT_API_KEY, "ORG_ID": "77"},
    ),
    ConnectorContract(
        ca="sectigo",
        revoke_id="7",
        connector=_sectigo,
        base_url="https://scm.test/api",
        order_id="55001",
        status_path="/ssl/v1/55001",
        noun="enrollment",
        status_body=lambda word: {"sslId": 55001, "status": word, "commonName": "x"},
        pending_words=(
            "Requested",
            "Approved",
            "SAApproved",
            "Applied",
            "Init",
            "Pending",
            "Not Enrolled",
        ),
        failed_words=("Declined", "Rejected", "Revoked", "Expired", "Invalid", "Replaced"),
        bad_ids=("12abc", " 12", "12 ", "-5", "0x10", "1e3", "", "0", "012", "+12", "1.0"),
        echo=f"bad login {SECTIGO_LOGIN} / {SECTIGO_PASSWORD}",
        connector_type=certpoll.Sectigo,
        settings_type=certpoll.SectigoSettings,
        required_env={
            "CUSTOMER_URI": "acme",
            "LOGIN": SECTIGO_LOGIN,
            "PASSWORD": SECTIGO_PASSWORD,
            "ORG_ID": "9",
            "CERT_TYPE": "42",
        },
    ),
    ConnectorContract(
        ca="entrust",
        revoke_id="01",
        connector=_entrust,
        base_url="https://cagw.example/cagw",
        order_id="ENR-1",
        status_path="/v1/certificate-authorities/CA-1/enrollments/ENR-1",
        noun="enrollment",
        status_body=lambda word: {"trackingId": "ENR-1", "status": word},
        pending_words=(
            "PENDING",
            "PROCESSING",
            "AWAITING_APPROVAL",
            "PENDING_QUORUM",
            "APPROVED",
            "pending",
        ),
        failed_words=("REJECTED", "DENIED", "FAILED", "DECLINED", "rejected"),
        bad_ids=("", "..", ".", "a\nb"),
        echo="no",
        connector_type=certpoll.Entrust,
        settings_type=certpoll.EntrustSettings,
        required_env={
            "API_URL": "https://env.example/cagw/",
            "CLIENT_CERT_PATH": "/etc/certpoll/entrust.crt",
            "CLIENT_KEY_PATH": "/etc/certpoll/entrust.key",
            "CA_ID": "CA-ENV",
        },
        mtls=True,
    ),
    ConnectorContract(
        ca="globalsign",
        revoke_id="0A",
        connector=_globalsign,
        base_url="https://emea.api.hvca.globalsign.com:8443/v2",
        order_id="0A",
        status_path="/certificates/0A",
        noun="certificate",
        status_body=lambda word: {"status": word},
        pending_words=("pending", "PROCESSING"),
        failed_words=("REVOKED", "revoked", "rejected", "Denied", "FAILED"),
        bad_ids=("..",),
        echo=f"bad token {GLOBALSIGN_TOKEN}",
        refusal_codes=(422,),
        connector_type=certpoll.GlobalSign,
        settings_type=certpoll.GlobalSignSettings,
        required_env={
            "API_KEY": GLOBALSIGN_API_KEY,
            "API_SECRET": GLOBALSIGN_API_SECRET,
            "CLIENT_CERT_PATH": "/etc/certpoll/gs.crt",
            "CLIENT_KEY_PATH": "/etc/certpoll/gs.key",
        },
        logs_in=True,
        mtls=True,
    ),
]
