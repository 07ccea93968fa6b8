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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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


class ClientCA:
    """Issues client certificates, for fresh or existing keys."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certpoll client CA")])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, key: ec.EllipticCurvePrivateKey) -> tuple[bytes, int]:
        """A client certificate for ``key``: ``(PEM, serial)``."""
        now = datetime.now(UTC)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certpoll client")]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), serial


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
    server_ca: trustme.CA = field(default_factory=trustme.CA)
    client_ca: ClientCA = field(default_factory=ClientCA)
    seen: list[Seen] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def server_ca_path(self) -> Path:
        path = self.directory / "server-ca.pem"
        if not path.exists():
            self.server_ca.cert_pem.write_to_path(str(path))
        return path

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
        key = new_key() if key is None else key
        pem, serial = self.client_ca.issue(key)
        cert_path = self.directory / f"{name}.crt"
        key_path = self.directory / f"{name}.key"
        write_padded(cert_path, pem)
        key_path.write_bytes(key_pem(key))
        return ClientFiles(cert_path, key_path, key, serial)

    async def __aenter__(self) -> MTLSServer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_ca.issue_cert("127.0.0.1").configure_cert(context)
        context.load_verify_locations(cadata=self.client_ca.pem.decode())
        context.verify_mode = ssl.CERT_REQUIRED
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
