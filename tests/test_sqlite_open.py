"""Opening a SQLite gate or store while another process holds the file.

SQLite refuses the switch to WAL with ``database is locked`` at once, whatever the busy
timeout, while another connection holds the file's write lock: what several processes
starting at once on a new file (``uvicorn --workers 4`` on one ``sqlite://`` gate) run
into. The lock is held here by a second connection, and the "sleep" between tries is where
the test lets it go: nothing waits for real.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from certpoll import TransientError
from certpoll._backends.gate import GATE_SCHEMES
from certpoll._backends.gate_sqlite import SQLiteGate
from certpoll._backends.sqlite import open_wal
from certpoll._backends.urls import parse_backend_url
from tests.helpers import DIGICERT_API_KEY


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A connection holding the write lock of a new file still in rollback-journal mode."""
    connection = sqlite3.connect(tmp_path / "shared.db", isolation_level=None)
    connection.execute("CREATE TABLE other_app (x)")
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("INSERT INTO other_app VALUES (1)")
    yield connection
    connection.close()


def test_the_switch_to_wal_is_refused_at_once_while_another_connection_writes(
    holder: sqlite3.Connection, tmp_path: Path
) -> None:
    """What makes the retry necessary: the busy timeout does not apply to this step."""
    plain = sqlite3.connect(tmp_path / "shared.db", timeout=60, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        plain.execute("PRAGMA journal_mode=WAL")
    plain.close()


def test_a_refused_switch_is_tried_again_until_the_holder_lets_go(
    holder: sqlite3.Connection, tmp_path: Path
) -> None:
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            holder.execute("COMMIT")

    connection = open_wal(
        tmp_path / "shared.db",
        timeout=5.0,
        setup=["CREATE TABLE IF NOT EXISTS mine (x)"],
        clock=lambda: sum(pauses),
        sleep=sleep,
    )
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert connection.execute("SELECT count(*) FROM mine").fetchone() == (0,)
    assert pauses == [0.005, 0.01, 0.02]  # doubling from 5 ms
    connection.close()


def test_a_holder_that_never_lets_go_gives_the_error_after_the_timeout(
    holder: sqlite3.Connection, tmp_path: Path
) -> None:
    pauses: list[float] = []
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        open_wal(
            tmp_path / "shared.db", timeout=1.0, clock=lambda: sum(pauses), sleep=pauses.append
        )
    assert sum(pauses) <= 1.0
    assert max(pauses) == 0.1  # doubling, up to 100 ms
    assert sum(pauses) + 0.1 > 1.0  # tried until the next pause would pass the timeout


def test_no_timeout_means_one_try(holder: sqlite3.Connection, tmp_path: Path) -> None:
    """The store's connection on the event loop never waits: it falls back to its thread."""
    pauses: list[float] = []
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        open_wal(tmp_path / "shared.db", timeout=0.0, sleep=pauses.append)
    assert pauses == []


def test_an_error_other_than_busy_is_not_tried_again(tmp_path: Path) -> None:
    pauses: list[float] = []
    with pytest.raises(sqlite3.OperationalError, match="syntax"):
        open_wal(tmp_path / "new.db", timeout=5.0, setup=["NOT SQL"], sleep=pauses.append)
    assert pauses == []


async def test_a_gate_on_a_file_another_process_holds_is_unreachable_not_a_crash(
    holder: sqlite3.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its busy timeout, the gate's step is the documented TransientError."""
    monkeypatch.setattr("certpoll._backends.gate_sqlite.BUSY_TIMEOUT", 0.0)
    url = parse_backend_url(
        f"sqlite:///{tmp_path / 'shared.db'}", setting="gate_url", allowed=GATE_SCHEMES
    )
    gate = SQLiteGate(url)
    with pytest.raises(TransientError, match="unavailable"):
        await gate.step(DIGICERT_API_KEY, lambda state, now: None)
    await gate.aclose()
