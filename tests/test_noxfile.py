"""The Python matrix of ``make test``: the versions certpoll claims, and how each is found."""

from __future__ import annotations

import sys
from pathlib import Path

import nox
import pytest

import noxfile


def fake_python(path: Path, *, prints: str | None) -> Path:
    """An executable that reports ``prints`` as its version, or fails as a pyenv shim does."""
    body = f"echo {prints}" if prints else "echo 'pyenv: python: command not found' >&2; exit 127"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty PATH directory and an empty ``~/.pyenv``: add interpreters to either."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return tmp_path


def test_the_claimed_versions_run_from_requires_python_to_the_newest_without_a_gap() -> None:
    claimed = nox.project.python_versions(noxfile.PYPROJECT)
    assert claimed == nox.project.python_versions(noxfile.PYPROJECT, max_version=claimed[-1])
    assert claimed == noxfile.SUPPORTED
    assert claimed[0] == "3.11"
    assert {f"tests-{version}" for version in claimed} <= set(nox.registry.get())


def test_a_pyenv_shim_that_fails_is_passed_over_for_the_installed_interpreter(
    machine: Path,
) -> None:
    fake_python(machine / "bin" / "python3.99", prints=None)
    versions = machine / "home" / ".pyenv" / "versions"
    fake_python(versions / "3.99.9" / "bin" / "python3.99", prints="3.99")
    newest = fake_python(versions / "3.99.10" / "bin" / "python3.99", prints="3.99")
    assert noxfile.find_interpreter("3.99") == str(newest)


def test_an_interpreter_on_path_comes_first_if_it_is_the_version_it_claims(
    machine: Path,
) -> None:
    on_path = fake_python(machine / "bin" / "python3.99", prints="3.99")
    installed = machine / "home" / ".pyenv" / "versions" / "3.99.1" / "bin" / "python3.99"
    fake_python(installed, prints="3.99")
    assert noxfile.find_interpreter("3.99") == str(on_path)
    fake_python(on_path, prints="3.98")  # a misnamed link is not trusted
    assert noxfile.find_interpreter("3.99") == str(installed)


def test_a_version_found_nowhere_is_none(machine: Path) -> None:
    fake_python(machine / "bin" / "python3.99", prints=None)
    assert noxfile.find_interpreter("3.99") is None


def test_the_running_interpreter_counts(machine: Path) -> None:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert noxfile.find_interpreter(running) == sys.executable
