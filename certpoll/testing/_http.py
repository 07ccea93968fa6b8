"""The simulator's HTTP plumbing: ASGI types, a parsed request, a response and routes."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import parse_qsl

__all__ = [
    "CLIENT_CERT_SCOPE_KEY",
    "ASGIApp",
    "MAX_BODY_BYTES",
    "ErrorCode",
    "Handler",
    "Headers",
    "Receive",
    "Request",
    "Response",
    "Route",
    "Scope",
    "Send",
    "json_response",
    "problem_json",
    "request_of",
    "route_pattern",
    "same",
    "str_list",
    "with_client_cert",
]

Scope = dict[str, object]
Message = dict[str, object]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Set by the server in front of the app: True when the TLS peer sent a verified client
#: certificate, False when it cannot have. Absent (in-process): the transport is trusted.
CLIENT_CERT_SCOPE_KEY: Final = "certpoll.client_cert"

MAX_BODY_BYTES: Final = 1024 * 1024


@dataclass(slots=True)
class Request:
    """One request as the CA handlers see it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    origin: str
    client_cert: bool | None

    def json(self) -> dict[str, object] | None:
        """The body as a JSON object, or None when it is not one."""
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None
        return value if isinstance(value, dict) else None


@dataclass(slots=True)
class Response:
    """One answer: status, body, content type (None: no header) and extra headers."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def json_response(
    status: int, value: object, *, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    """``value`` as an ``application/json`` answer."""
    return Response(status, json.dumps(value).encode(), headers=headers)


def problem_json(
    status: int, code: str | int | None, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    """An RFC 7807 ``problem+json`` error with a description (HVCA's shape, and the default)."""
    content = json.dumps({"code": code or status, "description": message}).encode()
    return Response(status, content, "application/problem+json", headers)


Handler = Callable[[Request, re.Match[str]], Response]
#: Extra response headers, in order.
Headers = tuple[tuple[str, str], ...]
#: A CA's own error code: a word, a number, or None for its default.
ErrorCode = str | int | None


@dataclass(frozen=True, slots=True)
class Route:
    """A method and path pattern of one CA, its counter name (``"digicert.status"``) and handler."""

    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler


def route_pattern(template: str) -> re.Pattern[str]:
    """``/order/certificate/{order_id}`` as a regex; ``*_id`` of DigiCert/Sectigo is digits."""

    def group(match: re.Match[str]) -> str:
        name = match.group(1)
        digits = name in ("order_id", "certificate_id", "ssl_id")
        return f"(?P<{name}>{'[0-9]+' if digits else '[^/]+'})"

    return re.compile(re.sub(r"\{(\w+)\}", group, template) + "$")


class ASGIApp(Protocol):
    """Anything callable as an ASGI application."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


def with_client_cert(app: ASGIApp, client_cert: bool | None) -> ASGIApp:
    """``app`` told whether the TLS peer presented a verified client certificate.

    None tells it nothing (a plain-HTTP listener, where the transport is trusted).
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if client_cert is not None and scope.get("type") == "http":
            scope = {**scope, CLIENT_CERT_SCOPE_KEY: client_cert}
        await app(scope, receive, send)

    return wrapped


def same(given: str, expected: str) -> bool:
    """A constant-time comparison of two texts (credentials)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def str_list(value: object) -> bool:
    """Whether ``value`` is a JSON list of strings."""
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def request_of(scope: Scope, body: bytes) -> Request:
    """The :class:`Request` of an ASGI HTTP ``scope`` and its whole body."""
    raw_headers = scope.get("headers", [])
    headers: dict[str, str] = {}
    if isinstance(raw_headers, list | tuple):
        for name, value in raw_headers:
            headers[bytes(name).decode("latin-1").lower()] = bytes(value).decode("latin-1")
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    query_string = scope.get("query_string", b"")
    query = dict(
        parse_qsl(query_string.decode("latin-1") if isinstance(query_string, bytes) else "")
    )
    scheme = str(scope.get("scheme", "http"))
    host = headers.get("host", "certpoll-sim")
    client_cert = scope.get(CLIENT_CERT_SCOPE_KEY)
    return Request(
        method=str(scope.get("method", "GET")).upper(),
        path=path,
        query=query,
        headers=headers,
        body=body,
        origin=f"{scheme}://{host}{root}",
        client_cert=client_cert if isinstance(client_cert, bool) else None,
    )
