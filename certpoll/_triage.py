"""The one place that decides what is transient and what is permanent.

Every request of every connector (submit excepted: see ``SubmissionUncertain``) goes through
:class:`Triage`:

=====================================  ==================================================
Response                               Outcome
=====================================  ==================================================
2xx                                    ``None``: the connector reads the body
a status in ``pending_status_codes``   ``Pending`` (GlobalSign's 202)
401, 403                               ``Failed(AuthenticationError)``
404 for a route that does not exist    ``Failed(EndpointNotFound)``: the base URL is wrong
404                                    ``Failed(OrderNotFound)``
a CA's own "not ready" 4xx answer      ``Pending(detail=...)`` (Sectigo's collect codes)
429                                    ``Pending(RateLimited, retry_after=...)``
408, 5xx                               ``Pending(TransientError, retry_after=...)``
other 3xx and 4xx                      ``Failed(PermanentError)``
network, TLS, timeout                  ``Pending(TransientError)``
=====================================  ==================================================

A ``Retry-After`` is capped at ``retry_after_cap`` seconds (default
:data:`DEFAULT_RETRY_AFTER_CAP`), so no header can stall a connector, or overflow a date.
Every text kept in an error is redacted before it is cut to an excerpt.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx

from ._errors import (
    AuthenticationError,
    ConfigError,
    EndpointNotFound,
    OrderNotFound,
    PermanentError,
    RateLimited,
    TransientError,
)
from ._outcomes import Failed, Pending

__all__ = ["DEFAULT_RETRY_AFTER_CAP", "Triage", "parse_retry_after"]

E = TypeVar("E", bound=Exception)

logger = logging.getLogger("certpoll")

#: How much of a response body an error keeps.
BODY_EXCERPT_CHARS = 200

#: The longest wait a ``Retry-After`` can ask for, by default: ten minutes, the default
#: PollMaxWait. A longer request is honoured for this long; then one probe asks again.
DEFAULT_RETRY_AFTER_CAP = 600.0
#: How much of a CA's own "not ready" words a pending detail keeps.
_DETAIL_CHARS = 200

_DELAY_SECONDS = re.compile(r"[0-9]+")
#: Delay-seconds longer than this are above any cap (and their int would overflow a float).
_MAX_DELAY_DIGITS = 12


def parse_retry_after(
    value: str, *, now: datetime | None = None, cap: float = DEFAULT_RETRY_AFTER_CAP
) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (RFC 9110 §10.2.3), or None if unusable.

    Accepts delay-seconds and the three HTTP-date forms (IMF-fixdate, RFC 850, asctime); a
    date without a zone is UTC, a date in the past means 0. ``now`` is the time the response
    was received (aware; default: the current UTC time), for dates. The result is at most
    ``cap`` seconds (``math.inf`` spells out "no cap"). Garbage is logged and ignored.
    """
    return _parse_retry_after(value, now=now, cap=cap, redact=_unredacted)


def _parse_retry_after(
    value: str, *, now: datetime | None, cap: float, redact: Callable[[str], str]
) -> float | None:
    if math.isnan(cap) or cap < 0:
        raise ConfigError(f"cap must be 0 or more seconds, not {cap!r}")
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        if len(text) > _MAX_DELAY_DIGITS:
            return cap if math.isfinite(cap) else None
        return min(float(int(text)), cap)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        logger.warning("certpoll.retry_after_ignored value=%r", redact(text)[:64])
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = datetime.now(UTC) if now is None else now
    return min(max(0.0, (when - reference).total_seconds()), cap)


def _retry_after_of(
    response: httpx.Response, cap: float, redact: Callable[[str], str]
) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    now = None
    date = response.headers.get("Date")
    if date is not None:
        # Measuring against the server's own Date avoids trusting our clock against its clock.
        try:
            now = parsedate_to_datetime(date)
        except (TypeError, ValueError, IndexError, OverflowError):
            now = None
        else:
            if now.tzinfo is None:
                now = now.replace(tzinfo=UTC)
    return _parse_retry_after(value, now=now, cap=cap, redact=redact)


def _unredacted(text: str) -> str:
    """``text`` as it is: the default for a caller whose texts hold no secret."""
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class Triage:
    """Status-code triage for one connector.

    ``pending_status_codes`` are statuses that mean "still working" for this CA (GlobalSign
    answers 202). ``not_ready`` recognises a CA's own "try later" answer (a 4xx, or one of
    ``pending_status_codes``) and returns its words, or None. ``missing_route`` recognises
    a 404 for a route that does not exist and returns what to tell the user, or None.
    ``redact`` removes the connector's credentials from any text kept in an error.
    ``retry_after_cap`` bounds every ``Retry-After``.
    """

    ca: str
    pending_status_codes: frozenset[int] = frozenset()
    not_ready: Callable[[httpx.Response], str | None] | None = None
    missing_route: Callable[[httpx.Response], str | None] | None = None
    redact: Callable[[str], str] = field(default=_unredacted)
    retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP

    def excerpt(self, response: httpx.Response) -> str:
        """The start of the body, redacted (before the cut), for error messages."""
        try:
            text = response.text
        except (httpx.ResponseNotRead, UnicodeDecodeError, LookupError):
            return ""
        return self.redact(text.strip())[:BODY_EXCERPT_CHARS].strip()

    def chained(self, error: E, cause: BaseException) -> E:
        """``error`` with ``cause`` as its ``__cause__``, unless the cause holds a credential
        (see :meth:`scrubbed`): then ``error`` (whose own text is redacted) stands alone.
        """
        error.__cause__ = cause
        return self.scrubbed(error)

    def scrubbed(self, error: E) -> E:
        """``error`` without the causes below it if any of them holds a credential in its
        text, ``repr`` or attributes: an httpx message quoting a header value, the
        ``doc`` of a ``JSONDecodeError`` or the ``object`` of a ``UnicodeDecodeError`` (the
        whole answer, echo included). Such a cause is not certpoll's to redact, so it goes.
        """
        if self._holds_a_secret(error.__cause__) or self._holds_a_secret(error.__context__):
            error.__cause__ = None
            error.__context__ = None
            error.__suppress_context__ = True
        return error

    def _holds_a_secret(self, first: BaseException | None) -> bool:
        """True if ``first`` or anything in its chain shows a credential."""
        seen: set[int] = set()
        todo = [first]
        while todo:
            current = todo.pop()
            if current is None or id(current) in seen:
                continue
            seen.add(id(current))
            texts = [str(current), repr(current), repr(getattr(current, "__dict__", None))]
            if isinstance(current, UnicodeError):
                texts.append(repr(getattr(current, "object", None)))
            if any(self.redact(text) != text for text in texts):
                return True
            todo += [current.__cause__, current.__context__]
        return False

    def retry_after(self, response: httpx.Response) -> float | None:
        """The answer's ``Retry-After`` in seconds, capped; None without a usable one."""
        return _retry_after_of(response, self.retry_after_cap, self.redact)

    def response(
        self, response: httpx.Response, *, order_id: str | None = None
    ) -> Pending | Failed | None:
        """Triage an answer: None for a 2xx the connector must read, else the outcome."""
        status = response.status_code
        if status in self.pending_status_codes:
            words = self.not_ready(response) if self.not_ready is not None else None
            detail = self._what(response) if words is None else self.redact(words)[:_DETAIL_CHARS]
            return Pending(retry_after=self.retry_after(response), detail=detail)
        if 200 <= status < 300:
            return None
        body = self.excerpt(response)
        where = f"{self.ca} {response.request.method} {self.redact(response.request.url.path)}"
        message = f"{where}: HTTP {status} {response.reason_phrase}".rstrip()
        if body:
            message = f"{message}: {body}"
        if status == 429 or status == 408 or status >= 500:
            retry_after = self.retry_after(response)
            kind = RateLimited if status == 429 else TransientError
            transient = kind(
                message,
                ca=self.ca,
                order_id=order_id,
                status_code=status,
                body_excerpt=body,
                retry_after=retry_after,
            )
            return Pending(transient, retry_after)
        permanent: type[PermanentError] = PermanentError
        if status in (401, 403):
            permanent = AuthenticationError
        elif status == 404:
            permanent = OrderNotFound
            hint = None if self.missing_route is None else self.missing_route(response)
            if hint is not None:
                permanent, message = EndpointNotFound, f"{message} ({hint})"
        elif self.not_ready is not None and 400 <= status < 500:
            words = self.not_ready(response)
            if words is not None:
                return Pending(
                    retry_after=self.retry_after(response),
                    detail=self.redact(words)[:_DETAIL_CHARS],
                )
        return Failed(
            permanent(message, ca=self.ca, order_id=order_id, status_code=status, body_excerpt=body)
        )

    def exception(self, exc: httpx.HTTPError, *, order_id: str | None = None) -> Pending | Failed:
        """Triage a request that got no usable answer."""
        try:
            where = f"{self.ca} {exc.request.method} {self.redact(exc.request.url.path)}"
        except RuntimeError:  # an exception raised before a request existed
            where = self.ca
        message = f"{where}: {type(exc).__name__}: {self.redact(str(exc))}".rstrip(": ")
        if isinstance(exc, httpx.TransportError | httpx.DecodingError):
            return Pending(
                self.chained(TransientError(message, ca=self.ca, order_id=order_id), exc)
            )
        return Failed(self.chained(PermanentError(message, ca=self.ca, order_id=order_id), exc))

    def _what(self, response: httpx.Response) -> str:
        return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
