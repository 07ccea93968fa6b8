"""A pytest plugin for ``make mutate``: each mutant meets its own module's tests, briefly.

mutmut maps every function to the tests that call it, so a mutant of the triage would also
be run against the fleet's slow end-to-end tests, and a kill there would hide a gap in the
triage's own tests. mutmut names the mutant under test in ``MUTANT_UNDER_TEST``
(``certpoll._triage.x_parse_retry_after__mutmut_3``); this plugin deselects every test that
is not in the focused files of that mutant's module. Outside a mutant (mutmut's statistics,
clean and forced-fail runs) it keeps the focused files of all modules.

A mutant that makes a test hang (a gate that never wakes its next waiter) would hold a
worker until mutmut's own limit, which is measured on the sum of all the tests of the
function. Under a mutant, each test is therefore cut at ``HANG_FACTOR`` times its own clean
duration (as mutmut measured it, in ``mutmut-stats.json``) plus ``HANG_SLACK`` seconds: the
test fails with :class:`MutantHung`, which counts as detected, like a timeout.

Loaded by mutmut through ``pytest_add_cli_args`` in pyproject.toml, never by ``make test``.
"""

from __future__ import annotations

import functools
import json
import os
import signal
from collections.abc import Generator
from pathlib import Path
from types import FrameType
from typing import Final

import pytest

#: The modules ``make mutate`` mutates, each with the test files that must notice a change.
FOCUSED_TESTS: Final[dict[str, tuple[str, ...]]] = {
    "certpoll._triage": (
        "tests/test_triage.py",
        "tests/test_triage_contents.py",
        "tests/test_properties.py",
        # What the triage keeps out of an error's cause chain is seen through a connector.
        "tests/test_security.py",
    ),
    # test_integrations.py: the poll ids the Poller hands its hooks.
    "certpoll._poller": (
        "tests/test_poller.py",
        "tests/test_poller_mutants.py",
        "tests/test_integrations.py",
    ),
    # Not tests/test_fleet.py: its ten thousand orders cost 16 s a mutant, and what it
    # notices of the gate, the gate's own tests must notice too.
    "certpoll._gate": ("tests/test_gate.py", "tests/test_gate_mutants.py"),
    # The backends' pure parts: the rules, the decisions and the URLs. Not the backends
    # themselves: their tests need real servers and real time (tests/test_gate_backends.py).
    "certpoll._backends.gate_state": ("tests/test_gate_state_mutants.py",),
    "certpoll._backends.gate": ("tests/test_gate_state_mutants.py",),
    "certpoll._backends.urls": (
        "tests/test_backend_urls.py",
        "tests/test_backend_urls_mutants.py",
    ),
}

#: A test under a mutant may take this many times its clean duration, plus ``HANG_SLACK``.
HANG_FACTOR: Final = 10.0
HANG_SLACK: Final = 5.0

#: Where mutmut keeps each test's clean duration, relative to its copy of the project.
MUTMUT_STATS: Final = "mutmut-stats.json"


class MutantHung(BaseException):
    """A test ran far past its clean duration under a mutant.

    A BaseException, so that no ``except Exception`` in the code under test and no asyncio
    task swallows it: it must end the test.
    """


def module_of(mutant_name: str) -> str:
    """``certpoll._triage`` for ``certpoll._triage.xǁTriageǁresponse__mutmut_7``."""
    return mutant_name.rpartition(".")[0]


def mutant_under_test() -> str:
    """The mutant mutmut is testing, or its phase (``stats``, ``fail``, ...), or ""."""
    return os.environ.get("MUTANT_UNDER_TEST", "")


def focused_files(mutant_name: str) -> frozenset[str]:
    """The test files that may run against ``mutant_name`` (all of them outside a mutant)."""
    files = FOCUSED_TESTS.get(module_of(mutant_name))
    if files is None:
        return frozenset(path for paths in FOCUSED_TESTS.values() for path in paths)
    return frozenset(files)


def hang_limit(clean_seconds: float) -> float:
    """Real seconds a test may run under a mutant before it counts as hung."""
    return HANG_FACTOR * clean_seconds + HANG_SLACK


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests outside the focused files of the mutant under test."""
    files = focused_files(mutant_under_test())
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (kept if item.nodeid.partition("::")[0] in files else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@functools.cache
def _clean_durations(root: Path) -> dict[str, float]:
    stats = root / MUTMUT_STATS
    if not stats.is_file():
        return {}
    durations: dict[str, float] = json.loads(stats.read_text("utf-8"))["duration_by_test"]
    return durations


def _hung(signum: int, frame: FrameType | None) -> None:
    raise MutantHung(f"ran past its limit under {mutant_under_test()}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    """Under a mutant, cut a test that runs far past its clean duration."""
    if module_of(mutant_under_test()) not in FOCUSED_TESTS:
        yield
        return
    clean = _clean_durations(item.config.rootpath).get(item.nodeid)
    if clean is None:
        yield
        return
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.setitimer(signal.ITIMER_REAL, hang_limit(clean))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
