"""A real TLS server on 127.0.0.1 that requires a client certificate, and key pairs for it.

The server speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) for httpx, records
the serial number of the client certificate of every request, and answers through a handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certpoll.testing import TestPKI

#: Client certificate files are padded to this size, so that a rewrite can keep the size.
PADDED_SIZE = 4096


@dataclass(frozen=True)
class Seen:
    """One request the server answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_serial: int


Handler = Callable[[Seen], tuple[int, dict[str, str], bytes]]


def echo_serial(seen: Seen) -> tuple[int, dict[str, str], bytes]:
    """The default answer: the client certificate's serial, as JSON."""
    return (
        200,
        {"Content-Type": "application/json"},
        json.dumps({"serial": seen.client_serial}).encode(),
    )


class TLSAuthority:
    """A CA for a test's TLS servers and clients, built on ``certpoll.testing``'s PKI.

    Its chains (root, intermediate, leaf) carry the extensions that Python 3.13's default
    ``VERIFY_X509_STRICT`` demands: the suite has one test PKI, the one the library ships.
    """

    def __init__(self, name: str = "certpoll test TLS") -> None:
        self._pki = TestPKI(name=name)

    @property
    def root_pem(self) -> bytes:
        """The root certificate: what a peer trusts."""
        return self._pki.root_pem.encode("ascii")

    def write_root(self, path: Path) -> Path:
        """Write the root certificate to ``path`` (a CA file to trust or pin)."""
        path.write_bytes(self.root_pem)
        return path

    def issue(self, key: ec.EllipticCurvePrivateKey, *, client: bool) -> tuple[bytes, int]:
        """A leaf for ``key`` then the intermediate, in PEM, and the leaf's serial.

        A server leaf is for 127.0.0.1, ::1 and localhost; a client leaf is for client auth.
        """
        now = datetime.now(UTC)
        serial = x509.random_serial_number()
        leaf = self._pki.intermediate.sign(
            public_key=key.public_key(),
            common_name="certpoll client" if client else "127.0.0.1",
            dns_names=() if client else ("localhost",),
            ip_addresses=() if client else ("127.0.0.1", "::1"),
            serial=serial,
            not_before=now - timedelta(minutes=5),
            not_after=now + timedelta(days=7),
            client=client,
        )
        intermediate = self._pki.intermediate.certificate
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, intermediate))
        return chain, serial

    def write_client(
        self,
        directory: Path,
        name: str = "client",
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> ClientFiles:
        """Issue a client certificate (for ``key`` or a new key) and write both files.

        The certificate file is padded to :data:`PADDED_SIZE` bytes and rewritten in place.
        """
        key = new_key() if key is None else key
        chain, serial = self.issue(key, client=True)
        cert_path = directory / f"{name}.crt"
        key_path = directory / f"{name}.key"
        write_padded(cert_path, chain)
        key_path.write_bytes(key_pem(key))
        return ClientFiles(cert_path, key_path, key, serial)

    def server_context(self, *, client_ca: TLSAuthority | None = None) -> ssl.SSLContext:
        """A server context for 127.0.0.1; with ``client_ca``, a client certificate is required."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        # Python 3.13's default, held on every version so that 3.11 and 3.12 check it too.
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        key = new_key()
        chain, _ = self.issue(key, client=False)
        # The ssl module loads a key pair from files only; they are read at once.
        with tempfile.TemporaryDirectory(prefix="certpoll-tls-") as directory:
            cert_path, key_path = Path(directory, "server.crt"), Path(directory, "server.key")
            cert_path.write_bytes(chain)
            key_path.write_bytes(key_pem(key))
            context.load_cert_chain(cert_path, key_path)
        if client_ca is not None:
            context.load_verify_locations(cadata=client_ca.root_pem.decode("ascii"))
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_padded(path: Path, pem: bytes) -> None:
    """Write ``pem`` in place, padded with newlines to :data:`PADDED_SIZE` bytes."""
    assert len(pem) < PADDED_SIZE
    with path.open("r+b" if path.exists() else "wb") as f:
        f.write(pem + b"\n" * (PADDED_SIZE - len(pem)))
        f.truncate()


def bump_mtime(path: Path, seconds: int = 2) -> None:
    """Move a file's mtime forward, as a rotation a moment later would."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


@dataclass
class ClientFiles:
    """A client key pair on disk."""

    cert_path: Path
    key_path: Path
    key: ec.EllipticCurvePrivateKey
    serial: int


@dataclass
class MTLSServer:
    """An HTTPS server on 127.0.0.1 (port chosen by the OS) requiring a client certificate."""

    directory: Path
    handler: Handler = echo_serial
    server_ca: TLSAuthority = field(default_factory=lambda: TLSAuthority("certpoll test server"))
    client_ca: TLSAuthority = field(default_factory=lambda: TLSAuthority("certpoll test client"))
    seen: list[Seen] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def server_ca_path(self) -> Path:
        path = self.directory / "server-ca.pem"
        return path if path.exists() else self.server_ca.write_root(path)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"https://127.0.0.1:{port}"

    @property
    def client_serials(self) -> list[int]:
        return [s.client_serial for s in self.seen]

    def write_client(
        self, name: str = "client", *, key: ec.EllipticCurvePrivateKey | None = None
    ) -> ClientFiles:
        """Issue a client certificate (for ``key`` or a new key) and write both files."""
        return self.client_ca.write_client(self.directory, name, key=key)

    async def __aenter__(self) -> MTLSServer:
        context = self.server_ca.server_context(client_ca=self.client_ca)
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0, ssl=context)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            serial = x509.load_der_x509_certificate(der).serial_number
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                seen = Seen(method, path, headers, body, serial)
                self.seen.append(seen)
                status, extra, content = self.handler(seen)
                out = [f"HTTP/1.1 {status} X", f"Content-Length: {len(content)}"]
                out += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + content)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):  # pragma: no cover - client went away
            return
        finally:
            self._tasks.discard(task)
            writer.close()
