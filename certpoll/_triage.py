"""The one place that decides what is transient and what is permanent.

Every request of every connector (submit excepted: see ``SubmissionUncertain``) goes through
:class:`Triage`:

=====================================  ==================================================
Response                               Outcome
=====================================  ==================================================
2xx                                    ``None``: the connector reads the body
a status in ``pending_status_codes``   ``Pending`` (GlobalSign's 202)
401, 403                               ``Failed(AuthenticationError)``
404                                    ``Failed(OrderNotFound)``
a CA's own "not ready" 4xx answer      ``Pending(detail=...)`` (Sectigo's collect codes)
429                                    ``Pending(RateLimited, retry_after=...)``
408, 5xx                               ``Pending(TransientError, retry_after=...)``
other 3xx and 4xx                      ``Failed(PermanentError)``
network, TLS, timeout                  ``Pending(TransientError)``
=====================================  ==================================================
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from ._errors import (
    AuthenticationError,
    OrderNotFound,
    PermanentError,
    RateLimited,
    TransientError,
)
from ._outcomes import Failed, Pending

__all__ = ["Triage", "parse_retry_after"]

logger = logging.getLogger("certpoll")

#: How much of a response body an error keeps.
BODY_EXCERPT_CHARS = 200

_DELAY_SECONDS = re.compile(r"[0-9]+")
_MAX_DELAY_DIGITS = 12


def parse_retry_after(value: str, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (RFC 9110 §10.2.3), or None if unusable.

    Accepts delay-seconds and the three HTTP-date forms (IMF-fixdate, RFC 850, asctime); a
    date without a zone is UTC, a date in the past means 0. ``now`` is the time the response
    was received (aware; default: the current UTC time), for dates. Garbage is logged and
    ignored.
    """
    text = value.strip()
    # More digits than centuries of seconds is garbage (and would overflow a float).
    if _DELAY_SECONDS.fullmatch(text) and len(text) <= _MAX_DELAY_DIGITS:
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        logger.warning("certpoll.retry_after_ignored value=%r", text[:64])
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = datetime.now(UTC) if now is None else now
    return max(0.0, (when - reference).total_seconds())


def _retry_after_of(response: httpx.Response) -> float | None:
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
    return parse_retry_after(value, now=now)


def _no_secrets(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class Triage:
    """Status-code triage for one connector.

    ``pending_status_codes`` are statuses that mean "still working" for this CA (GlobalSign
    answers 202). ``not_ready`` recognises a CA's own "try later" answer (a 4xx, or one of
    ``pending_status_codes``) and returns its words, or None. ``redact`` removes the
    connector's credentials from any text kept in an error.
    """

    ca: str
    pending_status_codes: frozenset[int] = frozenset()
    not_ready: Callable[[httpx.Response], str | None] | None = None
    redact: Callable[[str], str] = field(default=_no_secrets)

    def excerpt(self, response: httpx.Response) -> str:
        """The start of the body, redacted, for error messages."""
        try:
            text = response.text
        except (httpx.ResponseNotRead, UnicodeDecodeError, LookupError):
            return ""
        return self.redact(text[:BODY_EXCERPT_CHARS].strip())

    def response(
        self, response: httpx.Response, *, order_id: str | None = None
    ) -> Pending | Failed | None:
        """Triage an answer: None for a 2xx the connector must read, else the outcome."""
        status = response.status_code
        if status in self.pending_status_codes:
            words = self.not_ready(response) if self.not_ready is not None else None
            detail = self._what(response) if words is None else self.redact(words)
            return Pending(retry_after=_retry_after_of(response), detail=detail)
        if 200 <= status < 300:
            return None
        body = self.excerpt(response)
        where = f"{self.ca} {response.request.method} {self.redact(response.request.url.path)}"
        message = f"{where}: HTTP {status} {response.reason_phrase}".rstrip()
        if body:
            message = f"{message}: {body}"
        if status == 429 or status == 408 or status >= 500:
            retry_after = _retry_after_of(response)
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
        elif self.not_ready is not None and 400 <= status < 500:
            words = self.not_ready(response)
            if words is not None:
                return Pending(retry_after=_retry_after_of(response), detail=self.redact(words))
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
        error: TransientError | PermanentError
        if isinstance(exc, httpx.TransportError | httpx.DecodingError):
            error = TransientError(message, ca=self.ca, order_id=order_id)
            error.__cause__ = exc
            return Pending(error)
        error = PermanentError(message, ca=self.ca, order_id=order_id)
        error.__cause__ = exc
        return Failed(error)

    def _what(self, response: httpx.Response) -> str:
        return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
