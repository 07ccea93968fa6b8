"""mTLS for the connectors that need it (Entrust, GlobalSign), through one shared client.

An ``ssl.SSLContext`` cannot change its key pair once connections use it, and an
``httpx.AsyncClient`` cannot change its transport. So :class:`MTLSTransport` is a transport
to mount on a (shared) client for one CA origin: it owns an ``httpx.AsyncHTTPTransport``
built from a context holding the client key pair, and builds a new one when the certificate
file, the key file (or the pinned server CA file) changes on disk::

    async with httpx.AsyncClient(mounts=certpoll.mtls_mounts(entrust, globalsign)) as http:
        ...

Each request stats the files (``st_mtime_ns``, ``st_size``, ``st_ino``, ``st_dev``): cheap,
and it catches a rotation by rename, by rewrite, and one that touches only the key. A reload
that fails (a half-written pair, a missing file) keeps the previous pair loaded and fails the
request with ``httpx.ConnectError``, which the triage counts as transient: the next attempt
tries again. Replaced transports are closed once their last response is closed.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from ._errors import ConfigError
from ._settings import EntrustSettings, GlobalSignSettings

__all__ = ["MTLSTransport", "mtls_mounts"]

logger = logging.getLogger("certpoll")

_FileKey = tuple[int, int, int, int]


def _file_key(path: Path) -> _FileKey:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


@dataclass(eq=False)
class _Generation:
    """One loaded key pair and the transport built from it."""

    key: tuple[_FileKey, ...]
    transport: httpx.AsyncHTTPTransport
    in_flight: int = 0
    retired: bool = False
    closed: bool = False

    async def close_if_idle(self) -> None:
        if self.retired and self.in_flight == 0 and not self.closed:
            self.closed = True
            await self.transport.aclose()


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that tells its transport generation when it is closed."""

    def __init__(
        self, stream: httpx.AsyncByteStream, release: Callable[[], Awaitable[None]]
    ) -> None:
        self._stream = stream
        self._release = release
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if not self._released:
                self._released = True
                await self._release()


class MTLSTransport(httpx.AsyncBaseTransport):
    """An ``httpx`` transport presenting a client certificate, reloaded when its files change.

    ``cert_path`` holds the client certificate (PEM, optionally followed by its chain) and
    ``key_path`` its private key (PEM, unencrypted). The server is verified against the
    usual roots (``httpx``'s: certifi, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when
    ``trust_env``), or, when ``server_ca_path`` is given, against the certificates of that
    file **only**. TLS 1.2 is the minimum. ``http2`` and ``limits`` go to the
    ``httpx.AsyncHTTPTransport`` underneath. ``verify=False`` (only that explicit value)
    skips the server's certificate check, with a warning; it cannot be combined with a pin.

    The pair is loaded at once: a missing or unreadable file is a :class:`ConfigError`.
    """

    verify: bool
    cert_path: Path
    key_path: Path
    server_ca_path: Path | None
    #: Times the pair was reloaded after its files changed.
    reloads: int

    def __init__(
        self,
        cert_path: str | os.PathLike[str],
        key_path: str | os.PathLike[str],
        *,
        server_ca_path: str | os.PathLike[str] | None = None,
        http2: bool = False,
        limits: httpx.Limits | None = None,
        trust_env: bool = True,
        verify: bool = True,
    ) -> None:
        if verify is not True and verify is not False:
            raise ConfigError(f"verify must be True or False, not {verify!r}")
        if not verify and server_ca_path is not None:
            raise ConfigError("server_ca_path pins the server's CA: it needs verify=True")
        self.verify = verify
        self.cert_path = Path(cert_path)
        self.key_path = Path(key_path)
        self.server_ca_path = None if server_ca_path is None else Path(server_ca_path)
        self._http2 = http2
        self._limits = httpx.Limits() if limits is None else limits
        self._trust_env = trust_env
        self._retired: list[_Generation] = []
        self._failed_keys: set[tuple[_FileKey, ...]] = set()
        self.reloads = 0
        if not verify:
            logger.warning(
                "certpoll.tls_verify_off mTLS transport for cert=%s: the server's certificate "
                "is NOT verified",
                self.cert_path,
            )
        try:
            self._current = self._load(self._stat())
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                f"cannot load the mTLS client key pair: {self._describe(exc)}"
            ) from exc

    def __repr__(self) -> str:
        return (
            f"MTLSTransport(cert_path={str(self.cert_path)!r}, key_path={str(self.key_path)!r}, "
            f"server_ca_path={None if self.server_ca_path is None else str(self.server_ca_path)!r})"
        )

    @property
    def _paths(self) -> tuple[Path, ...]:
        extra = () if self.server_ca_path is None else (self.server_ca_path,)
        return (self.cert_path, self.key_path, *extra)

    def _stat(self) -> tuple[_FileKey, ...]:
        return tuple(_file_key(p) for p in self._paths)

    def _describe(self, exc: BaseException) -> str:
        return (
            f"{type(exc).__name__}: {exc} (cert {str(self.cert_path)!r}, key "
            f"{str(self.key_path)!r}"
            + ("" if self.server_ca_path is None else f", server CA {str(self.server_ca_path)!r}")
            + ")"
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A new context with the key pair and trust roots as the files hold them now."""
        if not self.verify:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.server_ca_path is None:
            context = httpx.create_ssl_context(trust_env=self._trust_env)
        else:
            # The pinned bundle is the only trust root: no system store, no certifi.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.load_verify_locations(cafile=str(self.server_ca_path))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert_path), str(self.key_path))
        return context

    def _load(self, key: tuple[_FileKey, ...]) -> _Generation:
        # ``key`` is taken before reading: a file rewritten while being read is seen as
        # changed on the next request and read again.
        transport = httpx.AsyncHTTPTransport(
            verify=self.ssl_context(), http2=self._http2, limits=self._limits
        )
        return _Generation(key=key, transport=transport)

    async def _generation(self, request: httpx.Request) -> _Generation:
        """The generation to send with, reloaded first if the files changed."""
        # No await between the stat and the swap: concurrent requests cannot reload twice.
        try:
            key = self._stat()
        except OSError as exc:
            raise self._reload_failed(request, exc, ()) from exc
        if key == self._current.key:
            return self._current
        try:
            fresh = self._load(key)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise self._reload_failed(request, exc, key) from exc
        old, self._current = self._current, fresh
        self.reloads += 1
        self._failed_keys.clear()
        logger.info("certpoll.mtls_reloaded cert=%s key=%s", self.cert_path, self.key_path)
        old.retired = True
        self._retired.append(old)
        await old.close_if_idle()
        self._retired = [g for g in self._retired if not g.closed]
        return fresh

    def _reload_failed(
        self, request: httpx.Request, exc: Exception, key: tuple[_FileKey, ...]
    ) -> httpx.ConnectError:
        where = self._describe(exc)
        if key not in self._failed_keys:  # one warning per state of the files
            self._failed_keys.add(key)
            logger.warning("certpoll.mtls_reload_failed %s; keeping the previous pair", where)
        return httpx.ConnectError(
            f"reloading the mTLS client key pair failed, request not sent: {where}",
            request=request,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` with the current key pair."""
        generation = await self._generation(request)
        generation.in_flight += 1

        async def release() -> None:
            generation.in_flight -= 1
            await generation.close_if_idle()

        try:
            response = await generation.transport.handle_async_request(request)
        except BaseException:
            await release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_ReleasingStream(response.stream, release),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close the current transport and every replaced one still open."""
        for generation in [*self._retired, self._current]:
            if not generation.closed:
                generation.closed = True
                await generation.transport.aclose()
        self._retired.clear()


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    origin = f"{parsed.scheme}://{parsed.host}"
    return origin if parsed.port is None else f"{origin}:{parsed.port}"


def mtls_mounts(
    *settings: EntrustSettings | GlobalSignSettings,
) -> dict[str, httpx.AsyncBaseTransport]:
    """``{origin: MTLSTransport}`` for each CA's ``api_url``, for ``AsyncClient(mounts=...)``.

    Settings that share an origin and the same files share one transport; two different key
    pairs for one origin are a :class:`ConfigError` (a mount is per origin).
    """
    mounts: dict[str, MTLSTransport] = {}
    for item in settings:
        origin = _origin(item.api_url)
        server_ca = item.server_ca_path if isinstance(item, GlobalSignSettings) else None
        existing = mounts.get(origin)
        if existing is not None:
            if (
                existing.cert_path,
                existing.key_path,
                existing.server_ca_path,
                existing.verify,
            ) != (item.client_cert_path, item.client_key_path, server_ca, item.tls_verify):
                raise ConfigError(
                    f"{origin} is given two different mTLS key pairs or server CAs; "
                    "one client can mount only one transport per origin"
                )
            continue
        try:
            mounts[origin] = MTLSTransport(
                item.client_cert_path,
                item.client_key_path,
                server_ca_path=server_ca,
                verify=item.tls_verify,
            )
        except ConfigError as exc:
            names = [type(item).env_var("client_cert_path"), type(item).env_var("client_key_path")]
            if server_ca is not None:
                names.append(type(item).env_var("server_ca_path"))
            raise ConfigError(f"{' / '.join(names)}: {exc}") from exc
    return dict(mounts)
