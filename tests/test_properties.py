"""Property-based tests (hypothesis; the deterministic profile is set in tests/conftest.py).

- The triage, and a whole poll through each connector: any status code, any body, any
  headers give Done/Pending/Failed or a certpoll error, never another exception.
- ``Retry-After``: any header text gives None or a finite, non-negative number of seconds.
- Order ids: any string is refused with a ConfigError, or sent as exactly one escaped path
  segment that decodes back to itself.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import certpoll
from certpoll._connectors._base import Connector, path_segment
from certpoll._gate import UpstreamGate
from certpoll._triage import Triage, parse_retry_after
from certpoll.testing import SimulatedCA
from tests.certs import make_csr
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

# Function-scoped fixtures (caplog, the autouse ones) are fine: nothing here depends on a
# fresh fixture per example.
FAST = settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

statuses = st.integers(min_value=100, max_value=599)
bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    ["status", "id", "certificate", "certificate_id", "sslId", "access_token", "x"]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=8,
    ).map(lambda value: httpx.Response(200, json=value).content),
)
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40
)
headers = st.dictionaries(
    st.sampled_from(
        [b"Retry-After", b"Date", b"Content-Type", b"Location", b"X-Any", b"Content-Encoding"]
    ),
    header_text.map(lambda text: text.encode("latin-1")),  # what a server can send
    max_size=4,
)


def response(status: int, body: bytes, extra: dict[bytes, bytes]) -> httpx.Response:
    request = httpx.Request("GET", "https://ca.test/v2/order/1")
    return httpx.Response(status, headers=extra, content=body, request=request)


@FAST
@given(status=statuses, body=bodies, extra=headers)
def test_the_triage_never_raises(status: int, body: bytes, extra: dict[bytes, bytes]) -> None:
    triage = Triage(
        ca="digicert",
        pending_status_codes=frozenset({202}),
        not_ready=lambda r: "later" if b"later" in r.content else None,
    )
    outcome = triage.response(response(status, body, extra), order_id="1")
    if 200 <= status < 300 and status != 202:
        assert outcome is None
    else:
        assert isinstance(outcome, certpoll.Pending | certpoll.Failed)
        if outcome.error is not None:
            assert isinstance(outcome.error, certpoll.PermanentError | certpoll.TransientError)
            assert outcome.error.status_code == status
        if status >= 500 or status in (408, 429):
            assert isinstance(outcome, certpoll.Pending)


# -- through the connectors ---------------------------------------------------------------


def run(coroutine: Coroutine[object, object, None]) -> None:
    """Each example on its own loop, closed at once.

    Not ``async def`` (looptime leaks a loop per example of an async ``@given`` test) and not
    ``asyncio.run`` (which unsets the loop the plugins set for the thread).
    """
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(coroutine)
    finally:
        loop.close()


def connector(ca: str, handler: httpx.MockTransport) -> Connector[Any]:
    time_ = FakeTime()
    http = httpx.AsyncClient(transport=handler)
    poller = time_.poller(max_wait=1.0)
    # The gate waits out a Retry-After too: on the same virtual clock.
    gate = UpstreamGate(clock=time_.clock, sleep=time_.sleep)
    files: dict[str, object] = {
        "client_cert_path": Path("/nonexistent/c.pem"),
        "client_key_path": Path("/nonexistent/k.pem"),
    }
    if ca == "digicert":
        return certpoll.DigiCert(
            certpoll.DigiCertSettings(api_key=DIGICERT_API_KEY, org_id=1),
            http=http,
            poller=poller,
            gate=gate,
        )
    if ca == "sectigo":
        settings_ = certpoll.SectigoSettings(
            customer_uri="c", login=SECTIGO_LOGIN, password=SECTIGO_PASSWORD, org_id=1, cert_type=2
        )
        return certpoll.Sectigo(settings_, http=http, poller=poller, gate=gate)
    if ca == "entrust":
        settings_e = certpoll.EntrustSettings(api_url="https://cagw.test", ca_id="CA1", **files)  # type: ignore[arg-type]
        return certpoll.Entrust(settings_e, http=http, poller=poller, gate=gate)
    settings_g = certpoll.GlobalSignSettings(
        api_key=GLOBALSIGN_API_KEY,
        api_secret=GLOBALSIGN_API_SECRET,
        **files,  # type: ignore[arg-type]
    )
    return certpoll.GlobalSign(settings_g, http=http, poller=poller, gate=gate)


#: A credential of each connector, for answers that echo it back.
OWN_SECRET = {
    "digicert": DIGICERT_API_KEY,
    "sectigo": SECTIGO_PASSWORD,
    "entrust": "",  # mTLS only: nothing to echo
    "globalsign": GLOBALSIGN_TOKEN,
}
CSR = make_csr("a.example")
ORDER_IDS = {"digicert": "99001", "sectigo": "55001", "entrust": "ENR-1", "globalsign": "0A1B"}


@FAST
@pytest.mark.parametrize("ca", ["digicert", "sectigo", "entrust", "globalsign"])
@given(status=statuses, body=bodies, extra=headers)
def test_any_answer_to_a_poll_is_an_outcome_or_a_certpoll_error(
    ca: str, status: int, body: bytes, extra: dict[bytes, bytes]
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/login"):
            return httpx.Response(200, json={"access_token": GLOBALSIGN_TOKEN})
        # The body may mention a credential: it must be redacted from whatever comes back.
        return httpx.Response(
            status, headers=extra, content=body.replace(b"x", OWN_SECRET[ca].encode(), 1)
        )

    async def poll() -> None:
        conn = connector(ca, httpx.MockTransport(answer))
        try:
            outcome = await conn.poll_once(ORDER_IDS[ca])
            assert isinstance(outcome, certpoll.Done | certpoll.Pending | certpoll.Failed)
            if isinstance(outcome, certpoll.Pending | certpoll.Failed):
                assert outcome.error is None or isinstance(outcome.error, certpoll.CertpollError)
                assert_no_secrets(outcome.error)
            status_ = await conn.get_order_status(ORDER_IDS[ca])
            assert isinstance(status_, certpoll.OrderStatus)
        except certpoll.CertpollError as exc:  # a permanent problem, raised on purpose
            assert_no_secrets(exc)
        finally:
            await conn.aclose()
            await conn.http.aclose()

    run(poll())


#: Any text, and often text with unpaired surrogates (a JSON body's "\ud800" decodes to one).
any_text = st.text(max_size=12) | st.text(
    st.sampled_from(["a", ".", "é", "\ud800", "\udfff"]), min_size=1, max_size=12
)


@FAST
@pytest.mark.parametrize("ca", ["digicert", "sectigo", "entrust", "globalsign"])
@given(common_name=any_text, sans=st.lists(any_text, max_size=2))
def test_any_request_text_is_refused_or_sent_as_utf8(
    ca: str, common_name: str, sans: list[str]
) -> None:
    """A request is refused by name (ConfigError) or sent; never a UnicodeEncodeError."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/login"):
            return httpx.Response(200, json={"access_token": GLOBALSIGN_TOKEN})
        sent.append(request)
        return httpx.Response(400, json={"errors": [{"message": "refused"}]})

    try:
        request = certpoll.CertificateRequest(common_name=common_name, csr_pem=CSR, sans=sans)
    except certpoll.ConfigError:
        return

    async def order() -> None:
        conn = connector(ca, httpx.MockTransport(answer))
        try:
            await conn.issue(request)
        except certpoll.CertpollError:
            pass
        finally:
            await conn.http.aclose()
        for request_sent in sent:
            request_sent.content.decode("utf-8")

    run(order())


#: Names a caller may order: any text, internationalised names, around the 64-character
#: limit of a common name.
names = (
    st.text(max_size=12)
    | st.text(st.sampled_from(["a", ".", "-", "é", "ü"]), min_size=1, max_size=12)
    | st.integers(min_value=60, max_value=70).map(lambda length: "a" * length)
)


@FAST
@pytest.mark.parametrize("ca", ["digicert", "sectigo", "entrust", "globalsign"])
@given(common_name=names, sans=st.lists(names, max_size=2))
def test_the_simulator_answers_any_request_as_a_ca_does(
    ca: certpoll.CAName, common_name: str, sans: list[str]
) -> None:
    """Issued, or refused with a 400: never a 500, which certpoll reads as uncertain."""
    try:
        request = certpoll.CertificateRequest(common_name=common_name, csr_pem=CSR, sans=sans)
    except certpoll.ConfigError:
        return
    sim = SimulatedCA()

    async def order() -> None:
        settings = sim.credentials.settings(ca, sim.base_urls()[ca])
        async with sim.client() as http, certpoll.connector_for(settings, http=http) as conn:
            try:
                status = await conn.issue(request)
            except certpoll.ConfigError:  # refused by the connector: nothing was sent
                return
            except certpoll.PermanentError as refused:
                answered: object = refused.status_code
            else:
                answered = status.state
        assert answered in (400, certpoll.OrderState.ISSUED, certpoll.OrderState.PENDING)

    run(order())


# -- Retry-After --------------------------------------------------------------------------


@settings(max_examples=300)
@given(
    value=st.text(max_size=60)
    | st.from_regex(r"\A[0-9]{1,400}\Z")
    | st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT"))
)
@example(value="9" * 5000)
@example(value="Mon, 01 Jan 0000 00:00:00 GMT")
@example(value="Fri, 31 Dec 9999 23:59:59 +2359")
def test_retry_after_parses_any_text(value: str) -> None:
    seconds = parse_retry_after(value, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= 600.0)


@settings(max_examples=100)
@given(delay=st.integers(min_value=0, max_value=10**12 - 1), pad=st.sampled_from(["", " ", "\t"]))
def test_retry_after_delay_seconds_round_trip(delay: int, pad: str) -> None:
    assert parse_retry_after(f"{pad}{delay}{pad}", cap=math.inf) == float(delay)
    assert parse_retry_after(f"{pad}{delay}{pad}") == min(float(delay), 600.0)


# -- order ids ----------------------------------------------------------------------------

ids = st.text(max_size=80) | st.sampled_from(
    ["", ".", "..", "a/b", "../x", "%2F", "?q=1", "#f", "a b", "\u00e9", "\x00", "1" * 300]
)


@settings(max_examples=300)
@given(value=ids)
def test_an_order_id_is_one_escaped_segment_or_refused(value: str) -> None:
    try:
        segment = path_segment(value)
    except certpoll.ConfigError as exc:
        message = str(exc)
        segment = None
    if segment is None:
        assert "order id" in message
        return
    assert unquote(segment) == value
    assert not set(segment) & set("/?#\\ ")
    url = httpx.URL(f"https://ca.test/v2/order/{segment}")
    assert url.raw_path.decode("ascii").split("/")[-1] == segment
    assert url.path.startswith("/v2/order/")


@FAST
@pytest.mark.parametrize("ca", ["digicert", "sectigo", "entrust", "globalsign"])
@given(value=ids)
def test_a_connector_sends_any_order_id_as_one_segment_or_refuses_it(ca: str, value: str) -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/login"):
            return httpx.Response(200, json={"access_token": GLOBALSIGN_TOKEN})
        sent.append(request)
        return httpx.Response(503)

    async def poll() -> None:
        conn = connector(ca, httpx.MockTransport(answer))
        try:
            await conn.poll_once(value)
        except certpoll.ConfigError:
            assert sent == []
            return
        finally:
            await conn.http.aclose()
        [request] = sent
        last = request.url.raw_path.decode("ascii").split("?")[0].split("/")[-1]
        assert unquote(last) == value

    run(poll())
