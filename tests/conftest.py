"""Fixtures shared by the whole suite."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import certpoll
from tests.helpers import FakeTime, leaked_secrets


@pytest.fixture
def fake_time() -> FakeTime:
    """A clock and a sleep that moves it: polls run in zero real time."""
    return FakeTime()


@pytest.fixture(autouse=True)
def _reset_hooks() -> Iterator[None]:
    yield
    certpoll.set_poll_hooks(None)


@pytest.fixture(autouse=True)
def _certpoll_debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Every certpoll log line is produced (and so checked for secrets) in every test."""
    caplog.set_level(logging.DEBUG, logger="certpoll")


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail any test in which a log record, its arguments or its extras hold a credential."""
    yield
    for record in caplog.records:
        text = " ".join([record.getMessage(), repr(record.args), repr(vars(record))])
        leaked = leaked_secrets(text)
        assert not leaked, f"log record {record.getMessage()!r} leaks {leaked}"
