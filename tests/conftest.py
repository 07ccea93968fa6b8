"""Fixtures shared by the whole suite."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator, Iterator

import pytest
from _pytest.capture import CaptureResult
from hypothesis import settings as hypothesis_settings

import certpoll
from tests.helpers import FakeTime, leaked_secrets

# Real PostgreSQL and Redis servers for the backends' tests: see tests/realservers.py.
pytest_plugins = ["tests.realservers"]

# Deterministic property tests: no example database, no wall-clock deadline, a fixed walk.
hypothesis_settings.register_profile("certpoll", database=None, deadline=None, derandomize=True)
hypothesis_settings.load_profile("certpoll")


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
def _no_secret_in_logs(
    caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> Iterator[None]:
    """Fail any test in which a log record, its arguments or its extras hold a credential.

    Output a test captures with ``capsys`` or ``capfd`` (the CLI's) is checked too: what the
    test reads and what it leaves unread. Output nobody captured is checked by
    :func:`pytest_runtest_makereport`.
    """
    captures = [
        request.getfixturevalue(name)
        for name in ("capsys", "capfd")
        if name in request.fixturenames
    ]
    for capture in captures:
        _check_what_is_read(capture)
    yield
    for capture in captures:
        capture.readouterr()  # checked on the way
    for record in caplog.records:
        text = " ".join([record.getMessage(), repr(record.args), repr(vars(record))])
        leaked = leaked_secrets(text)
        assert not leaked, f"log record {record.getMessage()!r} leaks {leaked}"


def _check_what_is_read(capture: pytest.CaptureFixture[str]) -> None:
    read = capture.readouterr

    def checked() -> CaptureResult[str]:
        result = read()
        leaked = leaked_secrets(result.out + result.err)
        assert not leaked, f"captured output leaks {leaked}"
        return result

    capture.readouterr = checked  # type: ignore[method-assign]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """Fail a test whose uncaptured stdout or stderr (pytest's own capture) holds a credential."""
    outcome = yield
    report = outcome.get_result()
    # Each phase's report repeats earlier phases' sections: check only this phase's own.
    own = [text for title, text in report.sections if title.endswith(f" {report.when}")]
    leaked = leaked_secrets(" ".join(own))
    if leaked and report.passed:
        report.outcome = "failed"
        report.longrepr = f"stdout/stderr of {item.nodeid} ({report.when}) leaks {leaked}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """Lend a sync test an event loop, and close it after.

    looptime 0.9 asks the event loop policy for the loop even around a sync test; in Python
    3.11 that creates a loop nobody closes, and its garbage collection fails a later test.
    """
    # pytest-asyncio marks every async test (auto mode), and wraps it in a sync function.
    if pyfuncitem.get_closest_marker("asyncio") is not None:
        return (yield)
    policy = asyncio.get_event_loop_policy()
    loop = asyncio.new_event_loop()
    policy.set_event_loop(loop)
    try:
        return (yield)
    finally:
        policy.set_event_loop(None)
        loop.close()
