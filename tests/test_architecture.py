"""The architecture page (docs/architecture.md) names every module, and only modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "certpoll"
PAGE = (ROOT / "docs" / "architecture.md").read_text()


def _modules() -> set[str]:
    """The package's modules by the name the page gives them (backends as one folder)."""
    names = {path.name for path in PACKAGE.glob("*.py")} - {"__init__.py"}
    names |= {
        f"_connectors/{path.name}"
        for path in (PACKAGE / "_connectors").glob("*.py")
        if path.name != "__init__.py"
    }
    return names


def test_the_page_names_every_module() -> None:
    missing = {
        name
        for name in _modules()
        if name not in PAGE and name.removeprefix("_connectors/").removesuffix(".py") not in PAGE
    }
    assert not missing


def test_every_module_the_page_names_exists() -> None:
    named = set(re.findall(r"(?<![\w/])(_[a-z_]+\.py)", PAGE))
    assert named
    existing = {path.name for path in PACKAGE.rglob("*.py")}
    assert named <= existing


def test_the_page_is_in_the_navigation() -> None:
    assert "architecture.md" in (ROOT / "mkdocs.yml").read_text()
