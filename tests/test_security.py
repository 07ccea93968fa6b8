"""Security promises (docs/security.md): redirects, credentials across origins, TLS verification.

Server-CA pinning against a real TLS server with two generated CAs is in tests/test_mtls.py
(``test_pinning_an_unrelated_ca_fails_the_handshake``, ``test_a_pinned_ca_is_the_only_trust_root``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import ssl
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import certpoll
from certpoll._connectors import _base as _connector
from certpoll._mtls import MTLSTransport
from certpoll._redaction import Redactor
from certpoll.testing import VirtualClock
from tests.helpers import (
    DIGICERT_API_KEY,
    GLOBALSIGN_API_KEY,
    GLOBALSIGN_API_SECRET,
    GLOBALSIGN_TOKEN,
    SECTIGO_LOGIN,
    SECTIGO_PASSWORD,
    FakeTime,
    assert_no_secrets,
    leaked_secrets,
    run_in_virtual_time,
)
from tests.tls_helpers import TLSAuthority

DC = "https://dc.test/services/v2"
DC_STATUS = f"{DC}/order/certificate/99001"
SC = "https://scm.test/api"
SC_STATUS = f"{SC}/ssl/v1/55001"
GS = "https://gs.test:8443/v2"
EVIL = "https://evil.test/collect"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith(("CERTPOLL_", "CERTCTL_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        yield router


def digicert(fake_time: FakeTime, **overrides: object) -> certpoll.DigiCert:
    values: dict[str, object] = {"api_key": DIGICERT_API_KEY, "org_id": 1, "base_url": DC}
    values.update(overrides)
    settings = certpoll.DigiCertSettings(**values)  # type: ignore[arg-type]
    return certpoll.DigiCert(settings, poller=fake_time.poller(max_wait=60.0))


def sectigo(fake_time: FakeTime, **overrides: object) -> certpoll.Sectigo:
    values: dict[str, object] = {
        "customer_uri": "test-org",
        "login": SECTIGO_LOGIN,
        "password": SECTIGO_PASSWORD,
        "org_id": 1,
        "cert_type": 2,
        "base_url": SC,
    }
    values.update(overrides)
    settings = certpoll.SectigoSettings(**values)  # type: ignore[arg-type]
    return certpoll.Sectigo(settings, poller=fake_time.poller(max_wait=60.0))


def globalsign(fake_time: FakeTime, **overrides: object) -> certpoll.GlobalSign:
    values: dict[str, object] = {
        "api_url": GS,
        "api_key": GLOBALSIGN_API_KEY,
        "api_secret": GLOBALSIGN_API_SECRET,
        "client_cert_path": Path("/nonexistent/client.crt"),
        "client_key_path": Path("/nonexistent/client.key"),
    }
    values.update(overrides)
    settings = certpoll.GlobalSignSettings(**values)  # type: ignore[arg-type]
    return certpoll.GlobalSign(
        settings, http=httpx.AsyncClient(), poller=fake_time.poller(max_wait=60.0)
    )


def credentials_in(request: httpx.Request) -> list[str]:
    return leaked_secrets(" ".join(f"{k}: {v}" for k, v in request.headers.multi_items()))


# -- redirects: off by default -------------------------------------------------------------


async def test_redirects_are_not_followed_by_default(
    mock: respx.MockRouter, fake_time: FakeTime
) -> None:
    mock.get(DC_STATUS).respond(302, headers={"Location": EVIL})
    outcome = await digicert(fake_time).poll_once("99001")
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.PermanentError)
    assert outcome.error.status_code == 302
    assert len(mock.calls) == 1  # nothing sent to evil.test (it is not even mocked)


async def test_a_redirect_on_submit_is_a_refusal_not_a_second_post(
    mock: respx.MockRouter, fake_time: FakeTime
) -> None:
    from tests.certs import make_csr

    submit = mock.post(f"{DC}/order/certificate/ssl_basic").respond(
        307, headers={"Location": f"{DC}/elsewhere"}
    )
    request = certpoll.CertificateRequest(common_name="a.example", csr_pem=make_csr("a.example"))
    with pytest.raises(certpoll.PermanentError):
        await digicert(fake_time).issue(request)
    assert submit.call_count == 1


def test_follow_redirects_is_off_unless_set() -> None:
    assert certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1).follow_redirects is False


# -- redirects turned on: credentials never leave the origin ----------------------------


async def test_digicert_key_is_not_sent_to_another_origin(
    mock: respx.MockRouter, fake_time: FakeTime
) -> None:
    first = mock.get(DC_STATUS).respond(302, headers={"Location": EVIL})
    evil = mock.get(EVIL).respond(200, json={"id": 99001, "status": "pending"})
    outcome = await digicert(fake_time, follow_redirects=True).poll_once("99001")
    assert isinstance(outcome, certpoll.Pending)
    assert first.calls.last.request.headers["X-DC-DEVKEY"] == DIGICERT_API_KEY
    sent = evil.calls.last.request
    assert "X-DC-DEVKEY" not in sent.headers
    assert credentials_in(sent) == []
    assert sent.headers["Host"] == "evil.test"


async def test_sectigo_account_headers_are_not_sent_to_another_origin(
    mock: respx.MockRouter, fake_time: FakeTime
) -> None:
    mock.get(SC_STATUS).respond(301, headers={"Location": EVIL})
    evil = mock.get(EVIL).respond(200, json={"sslId": 55001, "status": "Applied"})
    outcome = await sectigo(fake_time, follow_redirects=True).poll_once("55001")
    assert isinstance(outcome, certpoll.Pending)
    sent = evil.calls.last.request
    for name in ("customerUri", "login", "password"):
        assert name not in sent.headers
    assert credentials_in(sent) == []


async def test_globalsign_bearer_token_is_not_sent_to_another_origin(
    mock: respx.MockRouter, fake_time: FakeTime
) -> None:
    mock.post(f"{GS}/login").respond(200, json={"access_token": GLOBALSIGN_TOKEN})
    first = mock.get(f"{GS}/certificates/0A1B").respond(
        307, headers={"Location": "http://gs.test:8443/v2/certificates/0A1B"}
    )
    # Same host, but http: another origin, so no token in clear text.
    downgraded = mock.get("http://gs.test:8443/v2/certificates/0A1B").respond(202)
    outcome = await globalsign(fake_time, follow_redirects=True).poll_once("0A1B")
    assert isinstance(outcome, certpoll.Pending)
    assert first.calls.last.request.headers["Authorization"] == f"Bearer {GLOBALSIGN_TOKEN}"
    sent = downgraded.calls.last.request
    assert "Authorization" not in sent.headers
    assert credentials_in(sent) == []


async def test_a_body_holding_secrets_is_never_resent_to_another_origin(
    mock: respx.MockRouter, fake_time: FakeTime
) -> None:
    login = mock.post(f"{GS}/login").respond(307, headers={"Location": f"{EVIL}/login"})
    outcome = await globalsign(fake_time, follow_redirects=True).poll_once("0A1B")
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.PermanentError)
    assert outcome.error.status_code == 307
    assert login.call_count == 1  # evil.test is not mocked: nothing was sent there


async def test_a_same_origin_redirect_keeps_the_credential_and_the_body(
    mock: respx.MockRouter, fake_time: FakeTime
) -> None:
    mock.post(f"{GS}/login").respond(308, headers={"Location": "/v2/login2"})
    moved = mock.post(f"{GS}/login2").respond(200, json={"access_token": GLOBALSIGN_TOKEN})
    mock.get(f"{GS}/certificates/0A1B").respond(202)
    outcome = await globalsign(fake_time, follow_redirects=True).poll_once("0A1B")
    assert isinstance(outcome, certpoll.Pending)
    body = json.loads(moved.calls.last.request.content)
    assert body == {"api_key": GLOBALSIGN_API_KEY, "api_secret": GLOBALSIGN_API_SECRET}


async def test_a_303_after_a_post_becomes_a_get_without_a_body(
    mock: respx.MockRouter, fake_time: FakeTime
) -> None:
    mock.post(f"{GS}/login").respond(303, headers={"Location": f"{EVIL}/token"})
    token = mock.get(f"{EVIL}/token").respond(200, json={"access_token": GLOBALSIGN_TOKEN})
    mock.get(f"{GS}/certificates/0A1B").respond(202)
    outcome = await globalsign(fake_time, follow_redirects=True).poll_once("0A1B")
    assert isinstance(outcome, certpoll.Pending)
    sent = token.calls.last.request
    assert sent.content == b""
    assert "Content-Type" not in sent.headers
    assert credentials_in(sent) == []


async def test_a_header_holding_a_credential_value_is_dropped_too(
    mock: respx.MockRouter, fake_time: FakeTime
) -> None:
    dc = digicert(fake_time, follow_redirects=True)
    mock.get(DC_STATUS).respond(302, headers={"Location": EVIL})
    evil = mock.get(EVIL).respond(200, json={"id": 99001, "status": "pending"})
    request = dc.http.build_request(
        "GET", DC_STATUS, headers={"X-Custom": f"key={DIGICERT_API_KEY}", "X-Other": "kept"}
    )
    response = await dc._send(request, order_id="99001")
    assert isinstance(response, httpx.Response)
    assert "X-Custom" not in evil.calls.last.request.headers
    assert evil.calls.last.request.headers["X-Other"] == "kept"


async def test_redirects_stop_after_the_maximum(
    mock: respx.MockRouter, fake_time: FakeTime
) -> None:
    loop = mock.get(DC_STATUS).respond(302, headers={"Location": DC_STATUS})
    outcome = await digicert(fake_time, follow_redirects=True).poll_once("99001")
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.PermanentError)
    assert loop.call_count == _connector.MAX_REDIRECTS + 1


@pytest.mark.parametrize(
    "headers",
    [{}, {"Location": ""}, {"Location": "ftp://dc.test/x"}],
)
async def test_a_redirect_without_a_usable_location_is_not_followed(
    mock: respx.MockRouter, fake_time: FakeTime, headers: dict[str, str]
) -> None:
    route = mock.get(DC_STATUS).respond(302, headers=headers)
    outcome = await digicert(fake_time, follow_redirects=True).poll_once("99001")
    assert isinstance(outcome, certpoll.Failed)
    assert route.call_count == 1


async def test_a_streamed_body_is_not_replayed(mock: respx.MockRouter, fake_time: FakeTime) -> None:
    async def stream() -> object:
        yield b"x"

    dc = digicert(fake_time, follow_redirects=True)
    route = mock.post(DC_STATUS).respond(307, headers={"Location": DC_STATUS + "/2"})
    request = httpx.Request("POST", DC_STATUS, content=stream())  # type: ignore[arg-type]
    outcome = await dc._send(request)
    assert isinstance(outcome, certpoll.Failed)
    assert route.call_count == 1


# -- TLS verification -----------------------------------------------------------------------


def test_tls_verification_is_on_unless_switched_off_explicitly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1).tls_verify is True
    monkeypatch.setenv("CERTPOLL_DIGICERT_TLS_VERIFY", "false")
    assert certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1).tls_verify is False
    monkeypatch.setenv("CERTPOLL_DIGICERT_TLS_VERIFY", "0")
    assert certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1).tls_verify is False
    monkeypatch.setenv("CERTPOLL_DIGICERT_TLS_VERIFY", "TRUE")
    assert certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1).tls_verify is True


@pytest.mark.parametrize("value", ["", "off", "no", "n", "f", "disable", "2", 0, None])
def test_an_unclear_tls_verify_value_is_a_config_error(value: object) -> None:
    with pytest.raises(certpoll.ConfigError, match="tls_verify"):
        certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1, tls_verify=value)


def test_an_unclear_value_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CERTCTL_SECTIGO_TLS_VERIFY", "nope")
    with pytest.raises(certpoll.ConfigError, match="CERTCTL_SECTIGO_TLS_VERIFY"):
        certpoll.SectigoSettings(customer_uri="c", login="l", password="p", org_id=1, cert_type=2)


async def test_a_connector_with_verification_off_warns_at_every_start(
    caplog: pytest.LogCaptureFixture, fake_time: FakeTime
) -> None:
    for _ in range(2):
        dc = digicert(fake_time, tls_verify=False)
        assert dc.http._transport._pool._ssl_context.verify_mode == ssl.CERT_NONE  # type: ignore[attr-defined]
        await dc.aclose()
    warnings = [r for r in caplog.records if "tls_verify_off" in r.getMessage()]
    assert len(warnings) == 2
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert "NOT verified" in warnings[0].getMessage()


async def test_a_connector_with_verification_on_verifies_and_says_nothing(
    caplog: pytest.LogCaptureFixture, fake_time: FakeTime
) -> None:
    dc = digicert(fake_time)
    context = dc.http._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    await dc.aclose()
    assert not [r for r in caplog.records if "tls_verify_off" in r.getMessage()]


async def test_a_shared_client_is_the_callers_business(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1, tls_verify=False)
    async with httpx.AsyncClient() as http:
        certpoll.DigiCert(settings, http=http)
        context = http._transport._pool._ssl_context  # type: ignore[attr-defined]
        assert context.verify_mode == ssl.CERT_REQUIRED  # untouched
    [warning] = [r for r in caplog.records if "tls_verify_off" in r.getMessage()]
    assert "does not apply" in warning.getMessage()


async def test_an_unverified_client_really_connects_to_an_untrusted_server(
    fake_time: FakeTime,
) -> None:
    """A real TLS server on 127.0.0.1 with a certificate from a CA nobody trusts."""
    from tests.reliability_servers import tls_server

    async with tls_server(TLSAuthority(), b'{"id": 99001, "status": "pending"}') as url:
        strict = digicert(fake_time, base_url=url)
        outcome = await strict.poll_once("99001")
        assert isinstance(outcome, certpoll.Pending)
        assert isinstance(outcome.error, certpoll.TransientError)
        assert "CERTIFICATE_VERIFY_FAILED" in str(outcome.error)
        await strict.aclose()
        lax = digicert(fake_time, base_url=url, tls_verify=False)
        outcome = await lax.poll_once("99001")
        assert isinstance(outcome, certpoll.Pending)
        assert outcome.error is None
        await lax.aclose()


def test_mtls_transport_verification_off_is_explicit_and_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pair = TLSAuthority().write_client(tmp_path)
    cert, key = pair.cert_path, pair.key_path
    on = MTLSTransport(cert, key).ssl_context()
    assert on.verify_mode == ssl.CERT_REQUIRED
    assert on.check_hostname
    off = MTLSTransport(cert, key, verify=False)
    assert off.ssl_context().verify_mode == ssl.CERT_NONE
    assert [r.levelno for r in caplog.records if "tls_verify_off" in r.getMessage()] == [
        logging.WARNING
    ]
    with pytest.raises(certpoll.ConfigError, match="verify must be"):
        MTLSTransport(cert, key, verify="false")  # type: ignore[arg-type]
    with pytest.raises(certpoll.ConfigError, match="needs verify=True"):
        MTLSTransport(cert, key, verify=False, server_ca_path=cert)


def test_mtls_mounts_follows_the_setting(tmp_path: Path) -> None:
    pair = TLSAuthority().write_client(tmp_path)
    cert, key = pair.cert_path, pair.key_path
    common = {"ca_id": "CA1", "client_cert_path": cert, "client_key_path": key}
    off = certpoll.EntrustSettings(api_url="https://a.test", tls_verify=False, **common)  # type: ignore[arg-type]
    on = certpoll.EntrustSettings(api_url="https://a.test", **common)  # type: ignore[arg-type]
    [transport] = certpoll.mtls_mounts(off).values()
    assert isinstance(transport, MTLSTransport)
    assert transport.verify is False
    with pytest.raises(certpoll.ConfigError, match="two different"):
        certpoll.mtls_mounts(off, on)


def test_a_pin_and_verification_off_contradict_each_other() -> None:
    with pytest.raises(certpoll.ConfigError, match="SERVER_CA_PATH pins"):
        certpoll.GlobalSignSettings(
            api_key="k",
            api_secret="s",
            client_cert_path="c",
            client_key_path="k",
            server_ca_path="ca.pem",
            tls_verify=False,
        )


# -- no credential survives, in any spelling, anywhere ------------------------------------------

#: Printable ASCII without "~" (the padding) and without whitespace (stripped on load).
SECRET_CHARS = "".join(chr(c) for c in range(33, 127) if chr(c) != "~")
secret_text = st.text(alphabet=SECRET_CHARS, min_size=8, max_size=30)


def spelled(secret: str, how: str, login: str, password: str) -> str:
    """``secret`` as a library or a hostile server might write it (computed independently)."""
    if how == "percent":
        return urllib.parse.quote(secret, safe="")
    if how == "basic":
        return base64.b64encode(f"{login}:{password}".encode()).decode()
    if how == "bytes":
        return repr(secret.encode())[2:-1]
    return secret


def survivors(text: str, login: str, password: str) -> list[str]:
    """The credentials in ``text``: raw, percent-encoded, basic header, or 8-character prefix."""
    found = []
    for secret in (login, password):
        for form in (secret, urllib.parse.quote(secret, safe=""), secret[:8]):
            if form in text:
                found.append(form)
    basic = base64.b64encode(f"{login}:{password}".encode()).decode()
    if basic[:12] in text:
        found.append(basic)
    return found


def texts_of(thing: object) -> list[str]:
    """str, repr and attributes of ``thing`` and of its whole cause/context chain."""
    texts: list[str] = []
    seen: set[int] = set()
    current: object = thing
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current)]
        if isinstance(current, BaseException):
            texts.append(repr(getattr(current, "__dict__", None)))
            current = current.__cause__ or current.__context__
        else:
            current = None
    return texts


def hostile_ca(where: str, echo: str, pad: int) -> httpx.MockTransport:
    """A Sectigo that echoes ``echo`` after ``pad`` characters into ``where``."""
    padded = "~" * pad + echo

    def handler(request: httpx.Request) -> httpx.Response:
        collect = "/collect/" in request.url.path
        if where == "status_word":
            return httpx.Response(200, json={"status": padded})
        if where == "error_text":
            return httpx.Response(500, text=padded)
        if where == "error_json":
            return httpx.Response(404, json={"code": -1, "description": padded})
        if where == "unauthorized":
            return httpx.Response(401, text=padded)
        if where == "retry_after":
            return httpx.Response(503, headers={"Retry-After": echo}, text="busy")
        if where == "location":  # a URL holds its echo escaped (httpx decodes the path)
            location = f"https://scm.test/{urllib.parse.quote(padded, safe='')}"
            return httpx.Response(302, headers={"Location": location})
        if not collect:  # "collect": issued, then a not-ready collect that echoes
            return httpx.Response(200, json={"status": "Issued"})
        return httpx.Response(400, json={"code": -1400, "description": padded})

    return httpx.MockTransport(handler)


@settings(max_examples=150)
@given(
    login=secret_text,
    password=secret_text | st.tuples(secret_text, st.text(SECRET_CHARS, max_size=10)),
    login_first=st.booleans(),
    around=st.sampled_from(["", "\n", "\r\n", " ", "\t\n", " \n\n"]),
    where=st.sampled_from(
        [
            "status_word",
            "error_text",
            "error_json",
            "unauthorized",
            "retry_after",
            "location",
            "collect",
        ]
    ),
    which=st.sampled_from(["login", "password"]),
    how=st.sampled_from(["raw", "percent", "basic", "bytes"]),
    pad=st.integers(0, 260),
)
def test_no_credential_survives_in_any_error_repr_log_or_cause(
    login: str,
    password: str | tuple[str, str],
    login_first: bool,
    around: str,
    where: str,
    which: str,
    how: str,
    pad: int,
) -> None:
    """Secrets (prefixes of each other, with a file's trailing newline) echoed by a hostile CA
    across every cut: none survives in an error, a repr, a log record or a cause chain.
    """
    if isinstance(password, tuple):  # the password extends the login, or the other way round
        base, extra = password
        login, password = (base, base + extra) if login_first else (base + extra, base)
    assume(login != password)
    # What certpoll writes anyway, with credentials that cannot be confused with these: a
    # "credential" found there ("gate_url", "ertpoll_") is certpoll's own word, not a leak.
    own_words = rendered("~login~", "~password~", around, where, which, how, pad)
    assume(not any(survivors(text, login, password) for text in own_words))
    for text in rendered(login, password, around, where, which, how, pad):
        assert not survivors(text, login, password), text


def rendered(
    login: str, password: str, around: str, where: str, which: str, how: str, pad: int
) -> list[str]:
    """Every text certpoll produces for one poll against a CA echoing a credential: the
    str, repr and cause chain of everything it returns or raises, and its log records."""
    settings_ = certpoll.SectigoSettings(
        customer_uri="c",
        login=login + around,
        password=around + password,
        org_id=1,
        cert_type=1,
        follow_redirects=True,
    )
    assert (settings_.login.get_secret_value(), settings_.password.get_secret_value()) == (
        login,
        password,
    )
    secret = login if which == "login" else password
    echo = spelled(secret, how, login, password)
    records: list[logging.LogRecord] = []
    handler = _Collect(records)
    logging.getLogger("certpoll").addHandler(handler)

    async def scenario() -> list[object]:
        clock = VirtualClock()
        transport = hostile_ca(where, echo, pad)
        async with httpx.AsyncClient(transport=transport) as http:
            scm = certpoll.Sectigo(settings_, http=http, poller=clock.poller(max_wait=1.0))
            things: list[object] = [scm, scm.settings, scm.gate, scm.poller]
            things.append(await scm.poll_once("77"))
            try:
                things.append(await scm.get_order_status("77"))
            except certpoll.CertpollError as exc:
                things.append(exc)
            return things

    try:
        things = run_in_virtual_time(scenario())
    finally:
        logging.getLogger("certpoll").removeHandler(handler)
    texts = [text for thing in things for text in texts_of(thing)]
    for outcome in things:
        for field_ in ("error", "last_error", "detail", "message"):
            texts += texts_of(getattr(outcome, field_, None))
    texts += [" ".join([r.getMessage(), repr(r.args), repr(vars(r))]) for r in records]
    return texts


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@given(
    head=st.text(SECRET_CHARS, min_size=1, max_size=12),
    overlap=st.text(SECRET_CHARS, min_size=1, max_size=12),
    tail=st.text(SECRET_CHARS, min_size=1, max_size=12),
    pad=st.integers(0, 3),
)
def test_two_credentials_echoed_overlapping_leave_no_character_of_either(
    head: str, overlap: str, tail: str, pad: int
) -> None:
    # "login-AB12" and "AB12-password" echoed as "login-AB12-password": replacing the first
    # occurrence found must not leave "-password" behind.
    first, second = head + overlap, overlap + tail
    text = "~" * pad + head + overlap + tail + "~"
    assert Redactor([first, second])(text) == "~" * pad + "[redacted]~"
    assert Redactor([second, first])(text) == "~" * pad + "[redacted]~"


@given(
    short=st.text(SECRET_CHARS, min_size=1, max_size=12),
    head=st.text(SECRET_CHARS, max_size=6),
    tail=st.text(SECRET_CHARS, max_size=6),
)
def test_a_credential_inside_another_leaves_nothing_of_the_longer(
    short: str, head: str, tail: str
) -> None:
    # A Sectigo login that is a prefix (or any part) of the password: replacing the login
    # first would leave the rest of the password visible.
    longer = head + short + tail
    assert Redactor([short, longer])("~" + longer + "~") == "~[redacted]~"


def _spellings_computed_apart(secret: str, other: str) -> list[str]:
    """How Python, httpx, JSON, a URL or a basic header can write ``secret``."""
    raw = secret.encode("utf-8", "surrogatepass")
    return [
        secret,
        repr(secret)[1:-1],
        repr(raw)[2:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/"),  # PHP's json_encode
        urllib.parse.quote(secret, safe=""),
        re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), urllib.parse.quote(secret, safe="")),
        urllib.parse.quote_plus(secret),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        base64.b64encode(f"{secret}:{other}".encode("utf-8", "surrogatepass")).decode(),
        base64.b64encode(f"{other}:{secret}".encode("utf-8", "surrogatepass")).decode(),
    ]


@given(secret=st.text(min_size=1, max_size=20), other=st.text(SECRET_CHARS, min_size=1))
def test_every_spelling_of_any_credential_is_redacted(secret: str, other: str) -> None:
    # Any text, quotes, backslashes, control and non-ASCII characters included: what a
    # bytes repr or a JSON escape changes, and what a secret of another library may hold.
    assume(not any(c in "~[]" for c in secret) and secret != other)
    redact = Redactor([secret, other])
    for spelling in _spellings_computed_apart(secret, other):
        assume("~" not in spelling)
        assert redact(f"~{spelling}~") == "~[redacted]~", spelling


def _chain_texts(error: BaseException | None) -> str:
    """str, repr and attributes of ``error`` and of everything in its chain, the bytes a
    ``UnicodeError`` holds included."""
    texts, todo, seen = [], [error], set()
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), repr(getattr(current, "__dict__", None))]
        texts.append(repr(getattr(current, "object", None)))
        todo += [current.__cause__, current.__context__]
    return " ".join(texts)


UNREADABLE = {
    "not json": b"oops, key=%s",
    "truncated json": b'{"id": 1, "status": "pending", "echo": "%s"',
    "not utf-8": b"\xffkey=%s",
}


def _settings_of(ca: str) -> certpoll.CASettings:
    if ca == "digicert":
        return certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1)
    if ca == "sectigo":
        return certpoll.SectigoSettings(
            customer_uri="c", login=SECTIGO_LOGIN, password=SECTIGO_PASSWORD, org_id=1, cert_type=1
        )
    return certpoll.GlobalSignSettings(
        api_key=GLOBALSIGN_API_KEY,
        api_secret=GLOBALSIGN_API_SECRET,
        client_cert_path=Path("/nonexistent.crt"),
        client_key_path=Path("/nonexistent.key"),
    )


@pytest.mark.parametrize("body", list(UNREADABLE))
@pytest.mark.parametrize(
    ("ca", "secret"),
    [
        ("digicert", DIGICERT_API_KEY),
        ("sectigo", SECTIGO_PASSWORD),
        ("globalsign", GLOBALSIGN_API_SECRET),
    ],
)
async def test_an_unreadable_answer_echoing_a_credential_leaves_it_nowhere_in_the_chain(
    ca: str, secret: str, body: str
) -> None:
    # json's JSONDecodeError keeps the whole answer as .doc, a UnicodeDecodeError as .object:
    # as the cause of the ResponseParseError, they carried the echoed credential.
    content = UNREADABLE[body] % secret.encode()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/login"):
            return httpx.Response(200, json={"access_token": "a-token"})
        return httpx.Response(200, content=content)

    settings_ = _settings_of(ca)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        connector = certpoll.connector_for(settings_, http=http)
        outcome = await connector.poll_once("12")
    assert isinstance(outcome, certpoll.Failed)
    assert isinstance(outcome.error, certpoll.ResponseParseError)
    assert secret not in _chain_texts(outcome.error)
    assert_no_secrets(outcome.error)


async def test_a_certificate_download_echoing_the_key_in_bytes_leaves_it_nowhere() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "/order/" in request.url.path:
            return httpx.Response(
                200, json={"id": 12, "status": "issued", "certificate": {"id": 7}}
            )
        return httpx.Response(200, content=b"\xff" + DIGICERT_API_KEY.encode())

    settings_ = certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        outcome = await certpoll.DigiCert(settings_, http=http).poll_once("12")
    assert isinstance(outcome, certpoll.Failed)
    assert DIGICERT_API_KEY not in _chain_texts(outcome.error)


@pytest.mark.parametrize("around", ["\n", "\r\n", " \n"])
async def test_a_key_read_from_a_file_is_sent_without_its_newline(around: str) -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["X-DC-DEVKEY"])
        return httpx.Response(200, json={"id": 1, "status": "pending"})

    settings_ = certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY + around, org_id=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        outcome = await certpoll.DigiCert(settings_, http=http).poll_once("1")
    assert isinstance(outcome, certpoll.Pending)
    assert outcome.error is None
    assert sent == [DIGICERT_API_KEY]


@pytest.mark.parametrize("cut", [64, 200])
@pytest.mark.parametrize("offset", [4, 8, 20])
async def test_an_echo_across_a_cut_leaves_no_first_characters(cut: int, offset: int) -> None:
    body = "~" * (cut - offset) + DIGICERT_API_KEY

    def handler(request: httpx.Request) -> httpx.Response:
        if cut == 64:
            return httpx.Response(200, json={"id": 1, "status": body})
        return httpx.Response(500, text=body)

    settings_ = certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        outcome = await certpoll.DigiCert(settings_, http=http).poll_once("1")
    text = " ".join(texts_of(outcome) + texts_of(getattr(outcome, "error", None)))
    assert DIGICERT_API_KEY[:offset] not in text
