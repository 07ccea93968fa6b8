"""The shared status-code triage, row by row, and Retry-After parsing."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

import certpoll
from certpoll import ConfigError, Failed, Pending, RateLimited, parse_retry_after
from certpoll._redaction import Redactor
from certpoll._triage import Triage

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
TRIAGE = Triage(ca="digicert")


def answer(status: int, *, body: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("GET", "https://ca.test/order/certificate/42")
    return httpx.Response(status, text=body, headers=headers, request=request)


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_is_for_the_connector_to_read(status: int) -> None:
    assert TRIAGE.response(answer(status)) is None


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, certpoll.PermanentError),
        (401, certpoll.AuthenticationError),
        (403, certpoll.AuthenticationError),
        (404, certpoll.OrderNotFound),
        (405, certpoll.PermanentError),
        (409, certpoll.PermanentError),
        (410, certpoll.PermanentError),
        (422, certpoll.PermanentError),
        (301, certpoll.PermanentError),
        (302, certpoll.PermanentError),
    ],
)
def test_4xx_and_redirects_are_permanent(status: int, error_type: type[Exception]) -> None:
    outcome = TRIAGE.response(answer(status, body='{"error": "nope"}'), order_id="42")
    assert isinstance(outcome, Failed)
    assert type(outcome.error) is error_type
    assert isinstance(outcome.error, certpoll.PermanentError)
    assert outcome.error.status_code == status
    assert outcome.error.order_id == "42"
    assert outcome.error.ca == "digicert"
    assert outcome.error.body_excerpt == '{"error": "nope"}'
    assert f"HTTP {status}" in str(outcome.error)


def test_429_is_rate_limited_with_its_retry_after() -> None:
    outcome = TRIAGE.response(answer(429, headers={"Retry-After": "60"}), order_id="42")
    assert isinstance(outcome, Pending)
    assert isinstance(outcome.error, certpoll.RateLimited)
    assert outcome.retry_after == 60
    assert outcome.error.retry_after == 60


def test_429_without_retry_after() -> None:
    outcome = TRIAGE.response(answer(429))
    assert isinstance(outcome, Pending)
    assert isinstance(outcome.error, certpoll.RateLimited)
    assert outcome.retry_after is None


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504, 599])
def test_5xx_and_408_are_transient(status: int) -> None:
    outcome = TRIAGE.response(answer(status, headers={"Retry-After": "7"}))
    assert isinstance(outcome, Pending)
    assert type(outcome.error) is certpoll.TransientError
    assert outcome.error.status_code == status
    assert outcome.retry_after == 7


def test_a_ca_specific_pending_status_code() -> None:
    triage = Triage(ca="globalsign", pending_status_codes=frozenset({202}))
    outcome = triage.response(answer(202, headers={"Retry-After": "3"}))
    assert outcome == Pending(retry_after=3, detail="HTTP 202 Accepted")
    assert TRIAGE.response(answer(202)) is None


def test_a_ca_specific_not_ready_answer_is_pending() -> None:
    def not_ready(response: httpx.Response) -> str | None:
        return "not collectable yet" if b"-183" in response.content else None

    triage = Triage(ca="sectigo", not_ready=not_ready)
    assert triage.response(answer(400, body='{"code": -183}')) == Pending(
        detail="not collectable yet"
    )
    other = triage.response(answer(400, body='{"code": -36}'))
    assert isinstance(other, Failed)
    assert type(other.error) is certpoll.PermanentError
    # Authentication and unknown orders stay permanent whatever the hook says.
    assert isinstance(triage.response(answer(401, body='{"code": -183}')), Failed)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ReadTimeout("read timed out"),
        httpx.ReadError("connection reset by peer"),
        httpx.RemoteProtocolError("server disconnected"),
        httpx.WriteError("broken pipe"),
        httpx.DecodingError("bad gzip"),
    ],
)
def test_network_tls_and_timeouts_are_transient(exc: httpx.HTTPError) -> None:
    exc.request = httpx.Request("GET", "https://ca.test/order/certificate/42")
    outcome = TRIAGE.exception(exc, order_id="42")
    assert isinstance(outcome, Pending)
    assert type(outcome.error) is certpoll.TransientError
    assert outcome.error.__cause__ is exc
    assert outcome.error.status_code is None
    assert "GET /order/certificate/42" in str(outcome.error)


def test_a_tls_failure_is_transient() -> None:
    exc = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    outcome = TRIAGE.exception(exc)
    assert isinstance(outcome, Pending)
    assert isinstance(outcome.error, certpoll.TransientError)


def test_other_httpx_errors_are_permanent() -> None:
    exc = httpx.TooManyRedirects("too many", request=httpx.Request("GET", "https://ca.test/x"))
    outcome = TRIAGE.exception(exc)
    assert isinstance(outcome, Failed)
    assert type(outcome.error) is certpoll.PermanentError
    assert outcome.error.__cause__ is exc


def test_credentials_are_redacted_from_errors() -> None:
    triage = Triage(ca="digicert", redact=lambda text: text.replace("s3cr3t", "[redacted]"))
    outcome = triage.response(answer(400, body="bad key s3cr3t"))
    assert isinstance(outcome, Failed)
    assert "s3cr3t" not in str(outcome.error)
    assert "s3cr3t" not in repr(outcome.error)
    assert outcome.error.body_excerpt == "bad key [redacted]"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "exc",
    [
        httpx.LocalProtocolError("Illegal header value b'Bearer s3cr3t-token\\n'"),
        httpx.ConnectError("cannot connect with key s3cr3t-token"),
        httpx.TooManyRedirects("too many, the last to ?key=s3cr3t-token"),
    ],
    ids=["illegal-header", "transient", "permanent"],
)
def test_a_cause_quoting_a_credential_is_left_out_of_the_chain(exc: httpx.HTTPError) -> None:
    # The message is redacted; the cause's own text is not ours to change, so it goes.
    triage = Triage(ca="globalsign", redact=Redactor(["s3cr3t-token"]))
    exc.request = httpx.Request("GET", "https://ca.test/certificates/0A")
    outcome = triage.exception(exc, order_id="0A")
    error = outcome.error
    assert error is not None
    assert error.__cause__ is None
    assert error.__suppress_context__
    assert "[redacted]" in str(error)
    assert "s3cr3t" not in str(error) + repr(error) + repr(vars(error))


def test_long_bodies_are_cut_to_an_excerpt() -> None:
    outcome = TRIAGE.response(answer(400, body="x" * 10_000))
    assert isinstance(outcome, Failed)
    assert len(outcome.error.body_excerpt or "") == 200  # type: ignore[attr-defined]


def test_an_unread_streaming_body_gives_an_empty_excerpt() -> None:
    request = httpx.Request("GET", "https://ca.test/x")
    response = httpx.Response(500, stream=httpx.ByteStream(b"boom"), request=request)
    assert TRIAGE.excerpt(response) == ""


# -- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120),
        ("0", 0),
        (" 15 ", 15),
        ("Sat, 28 Nov 2026 12:02:00 GMT", 120),  # IMF-fixdate
        ("Saturday, 28-Nov-26 12:01:00 GMT", 60),  # obsolete RFC 850
        ("Sat Nov 28 12:00:30 2026", 30),  # asctime: no zone, means UTC
        ("Sat, 28 Nov 2026 11:00:00 GMT", 0),  # in the past
    ],
)
def test_retry_after_forms(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize("value", ["soon", "-5", "1.5", "", "12abc", "Sat, 99 Foo 2026"])
def test_retry_after_garbage_is_ignored_and_logged(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert parse_retry_after(value, now=NOW) is None
    assert any("retry_after_ignored" in r.getMessage() for r in caplog.records)
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_retry_after_dates_default_to_the_current_utc_time() -> None:
    far = "Fri, 01 Jan 2100 00:00:00 GMT"
    assert (parse_retry_after(far, cap=math.inf) or 0) > 365 * 24 * 3600


@pytest.mark.parametrize(
    "value", ["601", "999999999999", "9" * 40, "Fri, 01 Jan 2100 00:00:00 GMT"]
)
def test_retry_after_is_capped_at_ten_minutes_by_default(value: str) -> None:
    assert parse_retry_after(value, now=NOW) == 600.0
    assert parse_retry_after(value, now=NOW, cap=30.0) == 30.0


def test_retry_after_cap_must_be_a_number_of_seconds() -> None:
    with pytest.raises(ConfigError):
        parse_retry_after("5", cap=math.nan)
    with pytest.raises(ConfigError):
        parse_retry_after("5", cap=-1.0)


def test_triage_caps_a_hostile_retry_after() -> None:
    triage = Triage(ca="digicert", retry_after_cap=90.0)
    outcome = triage.response(answer(429, headers={"Retry-After": "999999999999"}))
    assert isinstance(outcome, Pending)
    assert outcome.retry_after == 90.0
    assert isinstance(outcome.error, RateLimited)
    assert outcome.error.retry_after == 90.0


def test_retry_after_date_is_measured_against_the_server_date() -> None:
    response = answer(
        503,
        headers={
            "Retry-After": "Sat, 28 Nov 2026 12:05:00 GMT",
            "Date": "Sat, 28 Nov 2026 12:00:00 GMT",
        },
    )
    outcome = TRIAGE.response(response)
    assert isinstance(outcome, Pending)
    assert outcome.retry_after == 300


def test_a_naive_server_date_is_utc() -> None:
    response = answer(
        503, headers={"Retry-After": "Sat Nov 28 12:01:00 2026", "Date": "Sat Nov 28 12:00:00 2026"}
    )
    outcome = TRIAGE.response(response)
    assert isinstance(outcome, Pending)
    assert outcome.retry_after == 60


def test_a_broken_server_date_falls_back_to_our_clock() -> None:
    response = answer(
        503, headers={"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT", "Date": "yesterday"}
    )
    outcome = TRIAGE.response(response)
    assert isinstance(outcome, Pending)
    assert (outcome.retry_after or 0) > 0


# -- a cause chain that quotes a credential (Triage.scrubbed) --------------------------------

_SECRET = "s3cr3t-Key-for-the-chain"
_SCRUBBING = Triage(ca="digicert", redact=lambda text: text.replace(_SECRET, "[redacted]"))


class _QuotesOnlyInStr(Exception):
    """An error whose ``str`` shows the credential and whose ``repr`` does not."""

    def __str__(self) -> str:
        return f"sent {_SECRET}"

    def __repr__(self) -> str:
        return "_QuotesOnlyInStr()"


def _chained(cause: BaseException | None = None, context: BaseException | None = None) -> Exception:
    error = RuntimeError("certpoll's own words")
    error.__cause__, error.__context__ = cause, context
    return error


def _holder() -> Exception:
    return ValueError(f"the CA echoed {_SECRET}")


def _undecodable() -> UnicodeDecodeError:
    """A decoding error whose bytes (``object``, not in its ``args``) hold the credential."""
    error = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    error.object = _SECRET.encode() + b"\xff"
    return error


def _scrubbed(error: Exception) -> bool:
    """True if ``scrubbed`` cut the chain off."""
    kept = _SCRUBBING.scrubbed(error)
    return kept.__cause__ is None and kept.__context__ is None and kept.__suppress_context__


@pytest.mark.parametrize(
    "quoting",
    [
        pytest.param(_holder, id="in its message"),
        pytest.param(lambda: _QuotesOnlyInStr(), id="in its str only"),
        pytest.param(_undecodable, id="in a UnicodeDecodeError's object only"),
    ],
)
def test_a_cause_quoting_a_credential_is_left_out_whether_cause_or_context(
    quoting: Callable[[], BaseException],
) -> None:
    assert _scrubbed(_chained(cause=quoting()))
    assert _scrubbed(_chained(context=quoting()))


def test_a_credential_deep_in_the_chain_is_found_past_empty_links() -> None:
    # The holder is reached after a link without a context, and beside a clean link.
    past_an_end = RuntimeError("outer")
    past_an_end.__cause__, past_an_end.__context__ = _holder(), None
    assert _scrubbed(_chained(cause=past_an_end))
    beside_a_clean_one = RuntimeError("outer")
    beside_a_clean_one.__cause__, beside_a_clean_one.__context__ = _holder(), KeyError("clean")
    assert _scrubbed(_chained(cause=beside_a_clean_one))


def test_a_chain_that_loops_ends_and_a_clean_chain_is_kept() -> None:
    first, second = RuntimeError("first"), RuntimeError("second")
    first.__context__, second.__context__ = second, first
    error = _chained(cause=first)
    assert not _scrubbed(error)
    assert error.__cause__ is first
    # A UnicodeError without an ``object`` (raised by hand) is read too, not a crash.
    assert not _scrubbed(_chained(cause=UnicodeError("no object here")))
