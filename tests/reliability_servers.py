"""Misbehaving servers on 127.0.0.1 (port 0) for the real-socket reliability tests.

Each speaks just enough HTTP/1.1 to misbehave in one way: trickle a body, never answer,
reset the connection mid-body, or present a certificate from a CA the client does not trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

from tests.tls_helpers import TLSAuthority

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(
    behaviour: Behaviour, *, context: ssl.SSLContext | None = None, read_head: bool = True
) -> AsyncIterator[str]:
    """Serve ``behaviour`` for each connection; yields the base URL. Cleans up every task.

    With ``read_head`` (the default) the behaviour starts once the request head has arrived.
    """
    tasks: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        writers.append(writer)
        try:
            if read_head:
                await reader.readuntil(b"\r\n\r\n")
            await behaviour(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    scheme = "http" if context is None else "https"
    try:
        yield f"{scheme}://127.0.0.1:{port}/services/v2"
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()  # each behaviour then sees the connection gone and ends
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        await server.wait_closed()


def response_head(length: int, content_type: str = "application/json") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def trickle(body: bytes, *, every: float) -> Behaviour:
    """Answer 200 with ``body``, one byte every ``every`` seconds."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(response_head(len(body)))
        for byte in body:
            if writer.is_closing():
                return
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)

    return behaviour


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept the request, then say nothing until the client hangs up."""
    await reader.read()


def reset_mid_body(body: bytes, *, sent: int) -> Behaviour:
    """Announce ``body``, send its first ``sent`` bytes, then reset the connection (RST)."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(response_head(len(body)) + body[:sent])
        await writer.drain()
        sock = writer.get_extra_info("socket")
        if sock is not None:  # SO_LINGER 0: close() sends RST, not FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    return behaviour


def answer(body: bytes) -> Behaviour:
    """Answer every request on the connection with 200 and ``body``."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            writer.write(response_head(len(body)) + body)
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")

    return behaviour


@contextlib.asynccontextmanager
async def tls_server(ca: TLSAuthority, body: bytes) -> AsyncIterator[str]:
    """An HTTPS server for 127.0.0.1 with a certificate issued by ``ca``."""
    async with raw_server(answer(body), context=ca.server_context()) as url:
        yield url


async def not_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer a TLS ClientHello with plain text (use with ``read_head=False``)."""
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
