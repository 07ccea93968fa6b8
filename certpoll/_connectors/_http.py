"""HTTP safety for the connectors: redirects followed without leaking, bodies read under a cap.

Small functions over ``httpx`` requests and responses, with no CA in them:
:func:`redirect_request` (made of :func:`redirect_url`, :func:`becomes_get` and
:func:`redirect_headers`, as httpx splits its own) and :func:`read_capped`.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

__all__ = [
    "CREDENTIAL_HEADERS",
    "becomes_get",
    "read_capped",
    "redirect_headers",
    "redirect_request",
    "redirect_url",
    "same_origin",
]

_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
#: Headers carrying a CA credential (DigiCert's key, Sectigo's account, GlobalSign's bearer
#: token): never sent to another origin. Any header holding a credential value is dropped too.
CREDENTIAL_HEADERS = frozenset(
    {
        "x-dc-devkey",
        "customeruri",
        "login",
        "password",
        "authorization",
        "proxy-authorization",
        "cookie",
    }
)
#: Recomputed for every new request, so never copied to one.
_FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})
#: What describes an encoded body, wrong once the body is decoded.
_ENCODING_HEADERS = (b"content-encoding", b"content-length", b"transfer-encoding")


def redirect_url(request: httpx.Request, response: httpx.Response) -> httpx.URL | None:
    """Where a 3xx answer points, or None: not a redirect, no usable ``Location``."""
    location = response.headers.get("Location")
    if response.status_code not in _REDIRECT_CODES or not location:
        return None
    try:
        url = request.url.join(location)
    except httpx.InvalidURL:
        return None
    return url if url.scheme in ("http", "https") else None


def becomes_get(method: str, status_code: int) -> bool:
    """Whether a redirect turns the request into a GET without a body: a 303 (but after a
    HEAD), or a 301/302 after a POST, as browsers and httpx do.
    """
    return (status_code == 303 and method != "HEAD") or (
        status_code in (301, 302) and method == "POST"
    )


def same_origin(one: httpx.URL, other: httpx.URL) -> bool:
    """Whether two URLs share scheme, host and port."""
    return (one.scheme, one.host, one.port) == (other.scheme, other.host, other.port)


def redirect_headers(
    request: httpx.Request,
    *,
    with_body: bool,
    cross_origin: bool,
    holds_secret: Callable[[str], bool],
) -> list[tuple[bytes, bytes]]:
    """The headers of ``request`` to send on, as raw pairs.

    Framing headers are recomputed; ``Content-Type`` goes with the body. Across origins, the
    credential headers and any header whose value ``holds_secret`` stay behind.
    """
    dropped = set(_FRAMING_HEADERS)
    if not with_body:
        dropped.add("content-type")
    if cross_origin:
        dropped |= CREDENTIAL_HEADERS
    return [
        (name, value)
        for name, value in request.headers.raw
        if name.decode("latin-1").lower() not in dropped
        and not (cross_origin and holds_secret(value.decode("latin-1")))
    ]


def redirect_request(
    request: httpx.Request, response: httpx.Response, *, holds_secret: Callable[[str], bool]
) -> httpx.Request | None:
    """The request a 3xx answer points to, or None where it must not be followed.

    Refused: anything not a redirect to http(s), a body not yet read, and a body that would
    leave the origin (a body may hold a credential: GlobalSign's login).
    """
    url = redirect_url(request, response)
    if url is None:
        return None
    try:
        content = request.content
    except httpx.RequestNotRead:
        return None
    method = request.method
    if becomes_get(method, response.status_code):
        method, content = "GET", b""
    cross_origin = not same_origin(url, request.url)
    if cross_origin and content:
        return None
    headers = redirect_headers(
        request, with_body=bool(content), cross_origin=cross_origin, holds_secret=holds_secret
    )
    return httpx.Request(
        method, url, headers=headers, content=content or None, extensions=request.extensions
    )


def _declared_within(headers: httpx.Headers, limit: int) -> bool:
    """Whether the body is declared, unencoded, no larger than ``limit`` bytes.

    An encoded body (gzip) may inflate far past its Content-Length, so it is read in chunks.
    """
    length = headers.get("content-length")
    if length is None or not length.isdigit() or "content-encoding" in headers:
        return False
    return int(length) <= limit


async def read_capped(
    http: httpx.AsyncClient,
    request: httpx.Request,
    *,
    limit: int,
    too_large: Callable[[httpx.Response], Exception],
) -> httpx.Response:
    """Send ``request`` (no redirect followed) and read its body; ``too_large(response)`` is
    raised as soon as the body passes ``limit`` bytes, and reading stops there.
    """
    response = await http.send(request, stream=True, follow_redirects=False)
    if _declared_within(response.headers, limit):
        # The common case: one read, and httpx's own response kept as it is. The framing
        # (h11) stops at Content-Length; the check after the read covers a transport
        # that does not.
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        if len(content) <= limit:
            return response
        raise too_large(response)
    try:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise too_large(response)
            chunks.append(chunk)
    finally:
        await response.aclose()
    # The body is already decoded: drop the headers that describe the encoded form.
    # Raw bytes: a header value that is not ASCII must not break the copy.
    headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _ENCODING_HEADERS]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=b"".join(chunks),
        request=request,
        extensions=response.extensions,
    )
