"""Serving the simulated CA on 127.0.0.1 with uvicorn (the optional extra ``certpoll[sim]``).

With TLS, two servers run: one for DigiCert and Sectigo (server authentication only) and
one for Entrust and GlobalSign that requires a client certificate, as their real APIs do.
A throw-away TLS root signs the servers' certificate (for 127.0.0.1, ::1 and localhost)
and one client certificate; the files live in a temporary directory for the duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .._errors import ConfigError
from .._wire import MOUNTS
from ._app import BaseURLs, SimulatedCA
from ._http import ASGIApp, with_client_cert
from ._pki import Authority, pem

__all__ = ["ServedCA", "serve"]

_LOOPBACK = frozenset({"127.0.0.1", "::1"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ServedCA:
    """A running simulator: where it listens and the files a client needs.

    ``ca_cert_path`` is the root to trust for the servers' certificate (and to pin as
    GlobalSign's ``server_ca_path``); ``client_cert_path`` and ``client_key_path`` are the
    client key pair the Entrust and GlobalSign servers accept. All three are None without
    TLS, and are deleted when :func:`serve` exits.
    """

    base_urls: BaseURLs
    ca_cert_path: Path | None
    client_cert_path: Path | None
    client_key_path: Path | None

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting the servers and presenting the client certificate."""
        if self.ca_cert_path is None or self.client_cert_path is None:
            raise ConfigError("this simulator is served without TLS")
        context = ssl.create_default_context(cafile=str(self.ca_cert_path))
        context.load_cert_chain(str(self.client_cert_path), str(self.client_key_path))
        return context

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` that trusts the servers and presents the client cert."""
        verify: ssl.SSLContext | bool = True if self.ca_cert_path is None else self.ssl_context()
        return httpx.AsyncClient(verify=verify, **kwargs)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def serve(
    sim: SimulatedCA, *, tls: bool = True, host: str = "127.0.0.1"
) -> AsyncIterator[ServedCA]:
    """Serve ``sim`` on ``host`` (a loopback address) on free ports, for the block's duration.

    ``async with certpoll.testing.serve(sim) as served:`` then point the connectors at
    ``served.base_urls``. Needs uvicorn (``pip install 'certpoll[sim]'``).
    """
    try:
        import uvicorn  # noqa: F401 - only to fail early with a useful message
    except ModuleNotFoundError as exc:  # pragma: no cover - uvicorn is a dev dependency
        raise ModuleNotFoundError(
            "certpoll.testing.serve needs uvicorn: pip install 'certpoll[sim]'"
        ) from exc
    if host not in _LOOPBACK:
        raise ConfigError(
            f"the simulator listens on loopback only (127.0.0.1 or ::1), not {host!r}"
        )
    with tempfile.TemporaryDirectory(prefix="certpoll-sim-") as directory:
        files = _write_tls_files(Path(directory)) if tls else None
        async with contextlib.AsyncExitStack() as stack:
            first = await stack.enter_async_context(
                _running(with_client_cert(sim, False if tls else None), host, files, mtls=False)
            )
            second = first
            if files is not None:
                second = await stack.enter_async_context(
                    _running(with_client_cert(sim, True), host, files, mtls=True)
                )
            yield ServedCA(
                base_urls=BaseURLs(
                    digicert=first + MOUNTS["digicert"],
                    sectigo=first + MOUNTS["sectigo"],
                    entrust=second + MOUNTS["entrust"],
                    globalsign=second + MOUNTS["globalsign"],
                ),
                ca_cert_path=None if files is None else files.ca,
                client_cert_path=None if files is None else files.client_cert,
                client_key_path=None if files is None else files.client_key,
            )


@dataclass(frozen=True, slots=True)
class _TLSFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write_tls_files(directory: Path) -> _TLSFiles:
    now = datetime.now(UTC)
    root = Authority.root("certpoll simulator TLS root", now=now)

    def leaf(name: str, *, client: bool) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = root.sign(
            public_key=key.public_key(),
            common_name=name,
            dns_names=() if client else ("localhost",),
            ip_addresses=() if client else ("127.0.0.1", "::1"),
            serial=x509.random_serial_number(),
            not_before=now - timedelta(minutes=5),
            not_after=now + timedelta(days=7),
            client=client,
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        return pem(certificate), key_pem

    files = _TLSFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    files.ca.write_text(pem(root.certificate))
    server_cert, server_key = leaf("certpoll simulator", client=False)
    client_cert, client_key = leaf("certpoll simulator client", client=True)
    files.server_cert.write_text(server_cert)
    files.client_cert.write_text(client_cert)
    for path, text in ((files.server_key, server_key), (files.client_key, client_key)):
        path.touch(mode=0o600)
        path.write_text(text)
    return files


@contextlib.asynccontextmanager
async def _running(
    app: ASGIApp,
    host: str,
    files: _TLSFiles | None,
    *,
    mtls: bool,
) -> AsyncIterator[str]:
    """One uvicorn server on a free port of ``host``; yields its origin."""
    import uvicorn

    class _EmbeddedServer(uvicorn.Server):
        # The host application owns the signals; an embedded server must not steal Ctrl-C.
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    options: dict[str, object] = {}
    if files is not None:
        options = {
            "ssl_certfile": str(files.server_cert),
            "ssl_keyfile": str(files.server_key),
        }
        if mtls:
            options["ssl_ca_certs"] = str(files.ca)
            options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
        **options,  # type: ignore[arg-type]
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task
                raise RuntimeError("the simulator's server stopped while starting")
            await asyncio.sleep(0.005)
        scheme = "https" if files is not None else "http"
        shown = f"[{host}]" if ":" in host else host
        yield f"{scheme}://{shown}:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
