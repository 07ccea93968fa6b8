"""The exceptions certpoll raises.

Every exception certpoll raises on purpose derives from :class:`CertpollError`::

    CertpollError
    ├── ConfigError (also ValueError)     a setting or an argument is wrong; fix the input
    ├── PermanentError                    the CA said no; retrying will not help
    │   ├── AuthenticationError           HTTP 401 or 403: the credential is wrong or lacks rights
    │   ├── OrderNotFound                 HTTP 404: the CA does not know this order or certificate
    │   ├── EndpointNotFound              HTTP 404 for the route itself: the base URL is wrong
    │   └── ResponseParseError            a 2xx answer that cannot be read (bad JSON, bad PEM, ...)
    ├── TransientError                    worth another try later (5xx, 408, network, TLS, timeout)
    │   ├── RateLimited                   HTTP 429
    │   ├── GateClosed                    the connector's own gate could not admit a request in time
    │   └── AttemptTimeout (also TimeoutError)  one poll attempt ran past ``attempt_timeout``
    └── SubmissionUncertain               an order POST may or may not have reached the CA

A :class:`TransientError` is rarely raised: the Poller keeps it as the ``last_error`` of a
pending outcome. ``asyncio.CancelledError`` is never caught or wrapped.

The underlying cause (an ``httpx`` exception, a ``json`` or ``cryptography`` error) is kept as
``__cause__``, never flattened into the message. No message, attribute or ``repr`` carries a
credential: response excerpts are redacted before they are cut and stored, and a cause whose
text quotes a credential (an httpx message naming a header value) is left out of the chain.
"""

from __future__ import annotations

__all__ = [
    "AttemptTimeout",
    "AuthenticationError",
    "CertpollError",
    "ConfigError",
    "EndpointNotFound",
    "GateClosed",
    "OrderNotFound",
    "PermanentError",
    "RateLimited",
    "ResponseParseError",
    "SubmissionUncertain",
    "TransientError",
]


class CertpollError(Exception):
    """The root of every exception certpoll raises on purpose."""


class ConfigError(CertpollError, ValueError):
    """A setting, an environment variable or an argument has a value certpoll cannot use."""


class _CAError(CertpollError):
    """An error about one request to one CA: where it happened and what the CA answered."""

    def __init__(
        self,
        message: str,
        *,
        ca: str | None = None,
        order_id: str | None = None,
        status_code: int | None = None,
        body_excerpt: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        #: ``"digicert"``, ``"sectigo"``, ``"entrust"`` or ``"globalsign"``; None outside a CA.
        self.ca = ca
        #: The order the request was about, when there was one.
        self.order_id = order_id
        #: The HTTP status code, or None when no response arrived.
        self.status_code = status_code
        #: The start of the response body, with every known credential redacted.
        self.body_excerpt = body_excerpt

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, ca={self.ca!r}, "
            f"order_id={self.order_id!r}, status_code={self.status_code!r})"
        )


class PermanentError(_CAError):
    """The CA answered in a way that another try will not change (most 4xx, unreadable 2xx)."""


class AuthenticationError(PermanentError):
    """HTTP 401 or 403: the credential was refused."""


class OrderNotFound(PermanentError):
    """HTTP 404: the CA knows no such order or certificate."""


class EndpointNotFound(PermanentError):
    """HTTP 404 for the API route itself, not for an order: the base URL is wrong.

    Unlike :class:`OrderNotFound`, it says nothing about the order; every request through
    the connector will get the same answer until its base URL is fixed.
    """


class ResponseParseError(PermanentError):
    """A successful answer whose body certpoll cannot read: bad JSON, a missing field, bad PEM."""


class TransientError(_CAError):
    """A problem worth another try: 5xx, 408, 429, a network, TLS or timeout error."""

    def __init__(
        self,
        message: str,
        *,
        ca: str | None = None,
        order_id: str | None = None,
        status_code: int | None = None,
        body_excerpt: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message,
            ca=ca,
            order_id=order_id,
            status_code=status_code,
            body_excerpt=body_excerpt,
        )
        #: Seconds the server asked us to wait (``Retry-After``), or None.
        self.retry_after = retry_after


class RateLimited(TransientError):
    """HTTP 429: the CA asks for fewer requests."""


class GateClosed(TransientError):
    """The connector's gate (rate limits, a shared cooldown) could not admit a request before
    its poll's deadline, or at once for the first look of ``issue()``.

    Nothing was sent. ``retry_after`` is the time until the gate opens, when it is known.
    """


class AttemptTimeout(TransientError, TimeoutError):
    """One poll attempt, all its requests together, ran longer than ``attempt_timeout``."""


class SubmissionUncertain(_CAError):
    """An order submission failed in a way that leaves open whether the CA received it.

    certpoll never re-sends an order on its own: the CA may have created (and will bill) the
    first one. Check the CA's order list for ``common_name`` before ordering again.
    """

    def __init__(
        self,
        message: str,
        *,
        ca: str,
        common_name: str,
        status_code: int | None = None,
        body_excerpt: str | None = None,
    ) -> None:
        super().__init__(message, ca=ca, status_code=status_code, body_excerpt=body_excerpt)
        #: The common name of the request that may have been ordered.
        self.common_name = common_name
