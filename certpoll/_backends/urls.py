"""Backend URLs: which backend, where, and how to name it without its password.

The forms, as users know them from SQLAlchemy and redis-py:

- ``memory://``: this process only.
- ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db``: a file on this host.
- ``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS).
- ``postgresql://[user[:password]@]host[:port]/database`` (``postgres://`` is accepted too).

A URL may hold a password (before the host, or as a ``password=`` query parameter), so it
is never shown as written: :attr:`BackendURL.redacted` is the form for messages, and
``repr`` and ``str`` use it.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, final
from urllib.parse import SplitResult, urlsplit, urlunsplit

from .._errors import ConfigError

__all__ = ["BackendURL", "Scheme", "parse_backend_url"]

Scheme = Literal["memory", "sqlite", "redis", "postgresql"]

_SCHEMES: dict[str, Scheme] = {
    "memory": "memory",
    "sqlite": "sqlite",
    "redis": "redis",
    "rediss": "redis",
    "postgresql": "postgresql",
    "postgres": "postgresql",
}


@final
@dataclass(frozen=True, slots=True)
class BackendURL:
    """A parsed backend URL. ``url`` is as written (it may hold a password): pass it to the
    client library, never to a message."""

    scheme: Scheme
    url: str = field(repr=False)
    #: The URL with any password replaced by ``***``: the one to show.
    redacted: str
    #: The database file of a ``sqlite`` URL.
    path: Path | None = None

    def __str__(self) -> str:
        return self.redacted


#: A query parameter that holds a password (libpq's ``password`` and ``sslpassword``,
#: redis-py's ``password``): its value is shown as ``***`` too.
_QUERY_PASSWORD = re.compile(r"(?i)((?:^|&)[^&=]*password=)[^&]*")


def _redact(url: str, parts: SplitResult) -> str:
    query = _QUERY_PASSWORD.sub(r"\1***", parts.query)
    if parts.password is None and query == parts.query:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
        netloc = f"{user}:***@{host}{port}"
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def parse_backend_url(url: str, *, setting: str, allowed: Collection[Scheme]) -> BackendURL:
    """Read ``url``, the value of the setting named ``setting``.

    Raises :class:`~certpoll.ConfigError` naming ``setting`` (and never the password) when
    the URL is not one of the ``allowed`` schemes or has no place to point at.
    """
    scheme_text, sep, _ = url.partition("://")
    scheme = _SCHEMES.get(scheme_text.lower()) if sep else None
    if scheme is None or scheme not in allowed:
        choices = ", ".join(f"{name}://" for name in allowed)
        shown = f"{scheme_text}://…" if sep else "a value with no scheme"
        raise ConfigError(f"{setting} must be a URL starting with one of {choices}, not {shown}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- urlsplit checks the port only when asked
    except ValueError as exc:
        raise ConfigError(f"{setting} is not a valid {scheme} URL: {exc}") from None
    redacted = _redact(url, parts)
    if scheme == "memory":
        return BackendURL(scheme, url, redacted)
    if scheme == "sqlite":
        # As in SQLAlchemy: sqlite:///relative.db and sqlite:////absolute.db.
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc or not path:
            raise ConfigError(
                f"{setting} must name a file: sqlite:///relative/path.db or "
                f"sqlite:////absolute/path.db, not {redacted}"
            )
        return BackendURL(scheme, url, redacted, Path(path))
    if not parts.hostname:
        raise ConfigError(f"{setting} must name a host: {redacted}")
    return BackendURL(scheme, url, redacted)
