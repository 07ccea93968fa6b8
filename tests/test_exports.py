"""The public surface is exactly what ``certpoll.__all__`` says, and nothing leaks into it."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import types

import pytest

import certpoll
import certpoll.testing


def declared_re_exports(package: types.ModuleType) -> set[str]:
    """The names ``package/__init__.py`` re-exports with ``from .x import Name as Name``.

    Read from the source, so eager imports and the ``TYPE_CHECKING`` block of lazy names
    both count, and a name declared there but left out of ``__all__`` (or the reverse) fails.
    """
    tree = ast.parse(inspect.getsource(package))
    return {
        alias.name
        for node in ast.walk(tree)
        # ``from . import instrumentation``: a namespace module, not a name of the package.
        if isinstance(node, ast.ImportFrom) and node.level > 0 and node.module is not None
        for alias in node.names
        if alias.asname == alias.name
    }


@pytest.mark.parametrize("package", [certpoll, certpoll.testing], ids=lambda p: p.__name__)
def test_all_is_exactly_what_init_re_exports(package: types.ModuleType) -> None:
    expected = declared_re_exports(package)
    assert expected, "the parser found no re-exports: the idiom changed, update this test"
    assert set(package.__all__) == expected
    assert len(package.__all__) == len(set(package.__all__))


def test_every_public_attribute_is_in_all() -> None:
    # dir(), not vars(): the connectors and settings are imported on first use.
    public = {
        name
        for name in dir(certpoll)
        if not name.startswith("_") and not isinstance(getattr(certpoll, name), types.ModuleType)
    }
    assert public == set(certpoll.__all__)


def test_every_name_in_all_resolves() -> None:
    for name in certpoll.__all__:
        assert getattr(certpoll, name) is not None


def test_importing_certpoll_does_not_import_the_simulator_or_optional_extras() -> None:
    # (rich is not in the list: httpx itself imports it when it is installed.)
    code = (
        "import sys, certpoll; "
        "heavy = {'certpoll.testing', 'uvicorn', 'prometheus_client', 'structlog', "
        "'opentelemetry'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_package_is_typed() -> None:
    from importlib.resources import files

    assert files("certpoll").joinpath("py.typed").is_file()
