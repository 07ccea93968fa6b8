"""What the triage puts in its outcomes, to the character, and where its bands end.

tests/test_triage.py checks that each row of the table yields the right kind of outcome.
These tests check the edges of each band of status codes and everything an outcome carries
(message, ``ca``, ``order_id``, ``body_excerpt``, ``retry_after``, ``detail``), so that
a change to any of them fails a test (``make mutate``, docs/testing-internals.md).
"""

from __future__ import annotations

import logging
import math
import traceback
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import certpoll
from certpoll import Failed, Pending, parse_retry_after
from certpoll._triage import Triage
from tests.helpers import DIGICERT_API_KEY

URL = "https://ca.test/order/certificate/42"


def redact(text: str) -> str:
    return text.replace(DIGICERT_API_KEY, "[redacted]")


TRIAGE = Triage(ca="digicert", redact=redact)


def answer(
    status: int,
    *,
    body: str = "",
    headers: dict[str, str] | None = None,
    method: str = "GET",
    url: str = URL,
) -> httpx.Response:
    request = httpx.Request(method, url)
    return httpx.Response(status, text=body, headers=headers, request=request)


def failed_error(outcome: Pending | Failed | None) -> certpoll.PermanentError:
    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, certpoll.PermanentError)
    return outcome.error


def pending_error(outcome: Pending | Failed | None) -> certpoll.TransientError:
    assert isinstance(outcome, Pending)
    assert isinstance(outcome.error, certpoll.TransientError)
    return outcome.error


# -- the edges of each band ---------------------------------------------------------------


@pytest.mark.parametrize("status", [199, 300])
def test_the_2xx_band_ends_at_200_and_300(status: int) -> None:
    # 1xx never reaches a connector as a final answer; 300 is a redirect httpx did not follow.
    error = failed_error(TRIAGE.response(answer(status)))
    assert type(error) is certpoll.PermanentError
    assert error.status_code == status


@pytest.mark.parametrize(("status", "transient"), [(407, False), (408, True), (409, False)])
def test_408_alone_among_its_neighbours_is_transient(status: int, transient: bool) -> None:
    outcome = TRIAGE.response(answer(status))
    assert isinstance(outcome, Pending) is transient


@pytest.mark.parametrize(("status", "transient"), [(428, False), (429, True), (430, False)])
def test_429_alone_among_its_neighbours_is_rate_limited(status: int, transient: bool) -> None:
    outcome = TRIAGE.response(answer(status))
    assert outcome is not None
    assert isinstance(outcome, Pending) is transient
    assert isinstance(outcome.error, certpoll.RateLimited) is transient


@pytest.mark.parametrize(("status", "transient"), [(499, False), (500, True)])
def test_the_5xx_band_starts_at_500(status: int, transient: bool) -> None:
    assert isinstance(TRIAGE.response(answer(status)), Pending) is transient


def always_not_ready(response: httpx.Response) -> str:
    return f"try later ({response.status_code})"


@pytest.mark.parametrize(("status", "pending"), [(399, False), (400, True), (499, True)])
def test_a_cas_not_ready_hook_is_asked_about_4xx_only(status: int, pending: bool) -> None:
    triage = Triage(ca="sectigo", not_ready=always_not_ready)
    assert isinstance(triage.response(answer(status)), Pending) is pending


# -- what a CA's "not ready" answer carries --------------------------------------------------


def test_a_not_ready_answer_keeps_its_retry_after_and_its_redacted_words() -> None:
    def not_ready(response: httpx.Response) -> str:
        return f"collect later, key {DIGICERT_API_KEY}"

    triage = Triage(ca="sectigo", not_ready=not_ready, redact=redact)
    outcome = triage.response(answer(400, headers={"Retry-After": "45"}))
    assert outcome == Pending(retry_after=45.0, detail="collect later, key [redacted]")


def test_a_pending_status_code_keeps_its_retry_after_and_says_which_status() -> None:
    triage = Triage(ca="globalsign", pending_status_codes=frozenset({202, 299}))
    assert triage.response(answer(202, headers={"Retry-After": "9"})) == Pending(
        retry_after=9.0, detail="HTTP 202 Accepted"
    )
    # A status without a reason phrase leaves no trailing space.
    assert triage.response(answer(299)) == Pending(detail="HTTP 299")


# -- what an error carries ------------------------------------------------------------------


def test_a_permanent_errors_contents() -> None:
    response = answer(409, body='  {"error": "duplicate"}\n', method="POST")
    error = failed_error(TRIAGE.response(response, order_id="42"))
    assert type(error) is certpoll.PermanentError
    assert str(error) == (
        'digicert POST /order/certificate/42: HTTP 409 Conflict: {"error": "duplicate"}'
    )
    assert error.message == str(error)
    assert error.ca == "digicert"
    assert error.order_id == "42"
    assert error.status_code == 409
    assert error.body_excerpt == '{"error": "duplicate"}'


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, certpoll.RateLimited), (408, certpoll.TransientError), (503, certpoll.TransientError)],
)
def test_a_transient_errors_contents(status: int, kind: type[certpoll.TransientError]) -> None:
    response = answer(status, body="busy", headers={"Retry-After": "12"})
    outcome = TRIAGE.response(response, order_id="42")
    error = pending_error(outcome)
    assert type(error) is kind
    reason = response.reason_phrase
    assert str(error) == f"digicert GET /order/certificate/42: HTTP {status} {reason}: busy"
    assert error.ca == "digicert"
    assert error.order_id == "42"
    assert error.status_code == status
    assert error.body_excerpt == "busy"
    assert error.retry_after == 12.0
    assert outcome == Pending(error, 12.0)


def test_an_error_without_a_body_or_a_reason_ends_at_the_status() -> None:
    error = failed_error(TRIAGE.response(answer(499)))
    assert str(error) == "digicert GET /order/certificate/42: HTTP 499"
    assert error.body_excerpt == ""
    assert error.order_id is None


def test_a_credential_in_the_path_is_redacted_from_the_message() -> None:
    url = f"https://ca.test/order/{DIGICERT_API_KEY}/certificate"
    error = pending_error(TRIAGE.response(answer(503, url=url)))
    assert str(error) == "digicert GET /order/[redacted]/certificate: HTTP 503 Service Unavailable"


def test_the_excerpt_is_the_first_200_characters_of_the_stripped_body() -> None:
    body = " " + "x" * 300
    error = failed_error(TRIAGE.response(answer(400, body=body)))
    assert error.body_excerpt == "x" * 200
    assert str(error).endswith(": " + "x" * 200)


# -- Retry-After through the triage -----------------------------------------------------------


def test_an_http_date_retry_after_without_a_date_header_is_measured_on_our_clock() -> None:
    in_five_minutes = format_datetime(datetime.now(UTC) + timedelta(minutes=5), usegmt=True)
    outcome = TRIAGE.response(answer(503, headers={"Retry-After": in_five_minutes}))
    assert isinstance(outcome, Pending)
    assert outcome.retry_after is not None
    assert 200 < outcome.retry_after <= 300


def test_a_past_http_date_retry_after_without_a_date_header_means_now() -> None:
    outcome = TRIAGE.response(answer(429, headers={"Retry-After": "Sat, 28 Nov 2020 12:00 GMT"}))
    assert isinstance(outcome, Pending)
    assert outcome.retry_after == 0.0


@pytest.mark.parametrize(("digits", "usable"), [(12, True), (13, False)])
def test_uncapped_delay_seconds_take_at_most_twelve_digits(digits: int, usable: bool) -> None:
    value = "9" * digits
    assert (parse_retry_after(value, cap=math.inf) == float(value)) is usable


def test_ignored_garbage_is_logged_cut_to_64_characters(caplog: pytest.LogCaptureFixture) -> None:
    garbage = "soon" + "!" * 100
    assert parse_retry_after(garbage) is None
    [record] = [r for r in caplog.records if r.name == "certpoll"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == f"certpoll.retry_after_ignored value={garbage[:64]!r}"


# -- a request that got no answer -------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind", "outcome_type"),
    [
        (httpx.ConnectError("connection refused"), certpoll.TransientError, Pending),
        (httpx.TooManyRedirects("too many redirects"), certpoll.PermanentError, Failed),
    ],
)
def test_a_failed_requests_error_contents(
    exc: httpx.HTTPError,
    kind: type[certpoll.TransientError | certpoll.PermanentError],
    outcome_type: type[Pending | Failed],
) -> None:
    exc.request = httpx.Request("PUT", URL)
    outcome = TRIAGE.exception(exc, order_id="42")
    assert type(outcome) is outcome_type
    error = outcome.error
    assert isinstance(error, kind)
    assert type(error) is kind
    assert str(error) == f"digicert PUT /order/certificate/42: {type(exc).__name__}: {exc}"
    assert error.ca == "digicert"
    assert error.order_id == "42"
    assert error.status_code is None
    assert error.__cause__ is exc


def test_an_error_raised_before_a_request_existed_names_the_ca() -> None:
    error = pending_error(TRIAGE.exception(httpx.ConnectError("no route to host")))
    assert str(error) == "digicert: ConnectError: no route to host"
    assert error.order_id is None


words = st.text(st.characters(categories=["L", "N", "P", "Zs"]), min_size=1, max_size=30)


@settings(max_examples=50)
@given(text=words.filter(lambda text: text[-1] not in ": "))
@example(text="TLS alert X")  # ends in a letter: nothing of the words may be cut
def test_a_failed_requests_message_is_where_kind_and_words(text: str) -> None:
    exc = httpx.ReadTimeout(text, request=httpx.Request("GET", URL))
    error = pending_error(TRIAGE.exception(exc))
    assert str(error) == f"digicert GET /order/certificate/42: ReadTimeout: {text}"


def test_a_failed_request_without_words_leaves_no_dangling_separator() -> None:
    exc = httpx.ReadTimeout("", request=httpx.Request("GET", URL))
    error = pending_error(TRIAGE.exception(exc))
    assert str(error) == "digicert GET /order/certificate/42: ReadTimeout"


def test_a_credential_in_a_failed_requests_words_is_redacted() -> None:
    exc = httpx.ConnectError(f"proxy refused {DIGICERT_API_KEY}", request=httpx.Request("GET", URL))
    error = pending_error(TRIAGE.exception(exc))
    assert (
        str(error) == "digicert GET /order/certificate/42: ConnectError: proxy refused [redacted]"
    )


# -- the Retry-After cap -----------------------------------------------------------------------


@pytest.mark.parametrize("cap", [0.0, 0.5])
def test_any_cap_of_zero_or_more_seconds_is_accepted(cap: float) -> None:
    assert parse_retry_after("30", cap=cap) == cap


@pytest.mark.parametrize("cap", [-1.0, math.nan])
def test_a_negative_or_nan_cap_is_refused_by_name(cap: float) -> None:
    with pytest.raises(certpoll.ConfigError, match="cap must be 0 or more seconds"):
        parse_retry_after("30", cap=cap)


def test_too_many_digits_mean_the_cap_or_nothing_without_one() -> None:
    assert parse_retry_after("9" * 13, cap=600.0) == 600.0
    assert parse_retry_after("9" * 13, cap=math.inf) is None


# -- a cause is kept only when it holds no credential ------------------------------------------


class LeakyRepr(Exception):
    """An exception whose message is clean but whose ``repr`` quotes a credential."""

    def __repr__(self) -> str:
        return f"LeakyRepr(header={DIGICERT_API_KEY!r})"


def test_a_cause_whose_repr_holds_a_credential_is_left_out_entirely() -> None:
    cause = LeakyRepr("bad header")
    try:
        raise cause
    except LeakyRepr:
        error = TRIAGE.chained(certpoll.TransientError("redacted words"), cause)
    assert error.__cause__ is None
    assert error.__suppress_context__ is True
    shown = "".join(traceback.format_exception(error))
    assert DIGICERT_API_KEY not in shown


def test_a_clean_cause_is_kept() -> None:
    cause = httpx.ConnectError("connection refused")
    error = TRIAGE.chained(certpoll.TransientError("words"), cause)
    assert error.__cause__ is cause


# -- a CA's own words on a pending status, and a missing route ------------------------------------


def test_a_pending_status_keeps_the_cas_words_redacted_and_cut() -> None:
    def words(response: httpx.Response) -> str:
        return f"{response.json()['status']} {DIGICERT_API_KEY} " + "." * 300

    triage = Triage(
        ca="globalsign", pending_status_codes=frozenset({202}), not_ready=words, redact=redact
    )
    outcome = triage.response(answer(202, body='{"status": "validating"}'))
    assert isinstance(outcome, Pending)
    assert outcome.detail == ("validating [redacted] " + "." * 300)[:200]


def route_hint(response: httpx.Response) -> str | None:
    return "check base_url" if response.request.url.path.startswith("/v9/") else None


def test_a_404_for_a_missing_route_says_what_to_check() -> None:
    triage = Triage(ca="digicert", missing_route=route_hint)
    error = failed_error(triage.response(answer(404, url="https://ca.test/v9/order/1")))
    assert type(error) is certpoll.EndpointNotFound
    assert str(error) == "digicert GET /v9/order/1: HTTP 404 Not Found (check base_url)"
    known_route = failed_error(triage.response(answer(404)))
    assert type(known_route) is certpoll.OrderNotFound
